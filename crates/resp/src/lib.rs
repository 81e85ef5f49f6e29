//! RESP2/RESP3 for slotgate: the bytes layer under every command the proxy handles.
//!
//! - [`RequestDecoder`] turns client bytes into [`Request`]s (multibulk and inline), resumably
//!   and within [`Limits`], with Redis 7.0's framing and error replies.
//! - [`ReplyScanner`] finds where each upstream [`Reply`] ends without building it, so replies
//!   are forwarded as the bytes Redis sent; [`aggregate_children`] takes arrays apart for
//!   split commands.
//! - [`encode`] writes the replies and commands the proxy makes itself.
//! - [`value`] parses a reply into an owned tree, off the hot path.
//!
//! No I/O happens here: callers own the buffers and the sockets.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod encode;
mod error;
mod line;
mod reply;
mod request;
pub mod value;

pub use error::ProtocolError;
pub use line::{find_byte, parse_ll};
pub use reply::{
    aggregate_children, classify_error, parse_integer, ErrorClass, Reply, ReplyKind, ReplyScanner,
};
pub use request::{Limits, Request, RequestDecoder};
pub use value::{parse_value, Value};

/// Entry points for the cargo-fuzz targets in `fuzz/`, exercised by unit tests too. Not a
/// stable API.
#[doc(hidden)]
pub mod fuzzing;
