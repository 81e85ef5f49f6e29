//! Upstream replies: the last step of a command's path. Replies are forwarded to the client as
//! the raw bytes Redis sent; the [`ReplyScanner`] only finds where each one ends and what kind
//! it is, so the session can spot `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN`/`LOADING` errors and
//! the split/merge code can take arrays apart with [`aggregate_children`].

mod scanner;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use scanner::ReplyScanner;

use crate::line::{find_crlf, parse_ll};

/// One complete reply frame from upstream (with any attribute that annotates it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The exact bytes of the frame.
    pub raw: Bytes,
    /// What the frame is; for an attribute-annotated value, the kind of the value.
    pub kind: ReplyKind,
}

/// The type of a reply frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// `+` simple string.
    Simple,
    /// `-` simple error or `!` blob error, classified by its first word.
    Error(ErrorClass),
    /// `:` integer.
    Integer,
    /// `$` bulk string.
    Bulk,
    /// `$-1`, `*-1` or RESP3 `_`.
    Null,
    /// `*` array.
    Array,
    /// RESP3 `%` map.
    Map,
    /// RESP3 `~` set.
    Set,
    /// RESP3 `>` push (out-of-band message).
    Push,
    /// RESP3 `,` double.
    Double,
    /// RESP3 `#` boolean.
    Boolean,
    /// RESP3 `(` big number.
    BigNumber,
    /// RESP3 `=` verbatim string.
    Verbatim,
    /// RESP3 `|` attribute. Never the kind of a [`Reply`]: an attribute and the value after it
    /// form one reply of the value's kind.
    Attribute,
}

/// Error replies the proxy reacts to (cluster redirects and retryable states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// `MOVED <slot> <endpoint>:<port>`: the slot lives elsewhere from now on.
    Moved,
    /// `ASK <slot> <endpoint>:<port>`: this command only, send `ASKING` first.
    Ask,
    /// `TRYAGAIN …`: multi-key command during a migration; retry later.
    TryAgain,
    /// `CLUSTERDOWN …`: the cluster (or the node's view of it) is down.
    ClusterDown,
    /// `LOADING …`: the node is loading its dataset.
    Loading,
    /// `READONLY …`: a write sent to a replica (a primary demoted by a failover); it did not
    /// run.
    ReadOnly,
    /// Any other error.
    Other,
}

// === impl Reply ===

impl Reply {
    /// Whether the reply is an error (`-` or `!`).
    pub fn is_error(&self) -> bool {
        matches!(self.kind, ReplyKind::Error(_))
    }

    /// The text of an error reply, without the `-` and CRLF (for a blob error, its payload);
    /// `None` if the reply is not an error.
    pub fn error_text(&self) -> Option<&[u8]> {
        if self.is_error() {
            error_text(&self.raw)
        } else {
            None
        }
    }
}

/// Classify an error by its first word (`MOVED`, `ASK`, …), case-sensitively like Redis
/// clients do.
pub fn classify_error(text: &[u8]) -> ErrorClass {
    let word_end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    match &text[..word_end] {
        b"MOVED" => ErrorClass::Moved,
        b"ASK" => ErrorClass::Ask,
        b"TRYAGAIN" => ErrorClass::TryAgain,
        b"CLUSTERDOWN" => ErrorClass::ClusterDown,
        b"LOADING" => ErrorClass::Loading,
        b"READONLY" => ErrorClass::ReadOnly,
        _ => ErrorClass::Other,
    }
}

/// Text of the error frame at the start of `raw` (after any attributes), or `None` if it is
/// not a complete error frame.
fn error_text(raw: &[u8]) -> Option<&[u8]> {
    let start = skip_attributes(raw)?;
    let frame = &raw[start..];
    match frame.first()? {
        b'-' => {
            let newline = find_crlf(frame, 0, 0).ok()?;
            Some(&frame[1..newline - 1])
        }
        b'!' => {
            let header_end = frame.iter().position(|&b| b == b'\r')?;
            let len = usize::try_from(parse_ll(&frame[1..header_end])?).ok()?;
            frame.get(header_end + 2..header_end + 2 + len)
        }
        _ => None,
    }
}

/// Offset of the first frame in `raw` that is not an attribute. `None` if `raw` is incomplete
/// or invalid.
fn skip_attributes(raw: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while raw.get(pos) == Some(&b'|') {
        let (count, body_start) = aggregate_header(&raw[pos..])?;
        pos += body_start;
        for _ in 0..count.checked_mul(2)? {
            let (len, _) = ReplyScanner::new().scan_slice(&raw[pos..]).ok()??;
            pos += len;
        }
    }
    Some(pos)
}

/// `(count, header length)` of an aggregate header line at the start of `frame`.
fn aggregate_header(frame: &[u8]) -> Option<(i64, usize)> {
    let header_end = frame.iter().position(|&b| b == b'\r')?;
    let count = parse_ll(frame.get(1..header_end)?)?;
    Some((count, header_end + 2))
}

/// Split a complete aggregate frame (array, set, push or map) into its direct children, as
/// zero-copy slices of `raw`. Map children come as key, value, key, value, …; an attribute
/// before the aggregate is skipped, attributes inside stay attached to the child they annotate.
///
/// `Some(vec![])` for an empty aggregate; `None` for a null array (`*-1`), for anything that
/// is not an aggregate, and for an incomplete or invalid frame.
pub fn aggregate_children(raw: &Bytes) -> Option<Vec<Bytes>> {
    let start = skip_attributes(raw)?;
    let frame = &raw[start..];
    let per_entry = match frame.first()? {
        b'*' | b'~' | b'>' => 1,
        b'%' => 2,
        _ => return None,
    };
    let (count, header_len) = aggregate_header(frame)?;
    let count = usize::try_from(count).ok()?.checked_mul(per_entry)?;
    // Each child takes at least 3 bytes, so a bogus count cannot over-allocate.
    let mut children = Vec::with_capacity(count.min(frame.len() / 3));
    let mut pos = start + header_len;
    for _ in 0..count {
        let (len, _) = ReplyScanner::new().scan_slice(raw.get(pos..)?).ok()??;
        children.push(raw.slice(pos..pos + len));
        pos += len;
    }
    Some(children)
}

/// The value of an integer reply: `:123\r\n` gives `Some(123)`. `None` for anything else.
pub fn parse_integer(raw: &[u8]) -> Option<i64> {
    let body = raw.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}
