//! Who a client is and what it may do: the configured users and their password checks
//! ([`users`]), and the Redis ACL rules a command line is checked against ([`acl`]). Pure:
//! no I/O and no session state; the gate a session runs every command through is
//! `session::gate`.

pub mod acl;
pub mod users;
