//! The engine's error type: failures to start or to talk to the cluster, never per-command
//! errors (those are Redis replies, see `replies`).

use std::io;

/// Why the proxy could not start or an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that failed.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// An upstream node could not be reached or misbehaved.
    #[error("upstream {addr}: {reason}")]
    Upstream {
        /// The node.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// Authentication to the cluster was refused.
    #[error("upstream {addr} refused authentication: {reply}")]
    UpstreamAuth {
        /// The node.
        addr: String,
        /// The node's error reply.
        reply: String,
    },
    /// A node's TLS certificate was refused (wrong CA, wrong name): a configuration error.
    #[error("upstream {addr}: TLS handshake failed: {reason}")]
    UpstreamTls {
        /// The node.
        addr: String,
        /// Why the handshake failed.
        reason: String,
    },
    /// A certificate, key or CA file cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A worker thread could not be started.
    #[error("cannot start worker: {0}")]
    Runtime(#[from] io::Error),
}
