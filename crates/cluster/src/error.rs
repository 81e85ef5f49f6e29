//! The cluster crate's one error type.

/// Why a topology answer could not be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ClusterError {
    /// The `CLUSTER SLOTS` reply did not have the documented shape.
    #[error("malformed CLUSTER SLOTS reply: {0}")]
    MalformedSlots(&'static str),
    /// The node answered with an error instead of a slot table.
    #[error("node answered CLUSTER SLOTS with an error: {0}")]
    NodeError(String),
}
