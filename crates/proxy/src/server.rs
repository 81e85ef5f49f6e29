//! The outside of the engine: the workers' accept loops and TLS handshakes ([`worker`]),
//! and the read-only view the admin port serves ([`status`]).

pub mod status;
pub(crate) mod worker;
