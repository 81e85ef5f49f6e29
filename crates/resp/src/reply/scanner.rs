//! The resumable reply scanner: finds where one complete RESP2/RESP3 reply ends without
//! building it, keeping a stack of open aggregates' remaining element counts between calls.

use bytes::BytesMut;

use super::{classify_error, error_text, Reply, ReplyKind};
use crate::line::{find_crlf, parse_ll};
use crate::ProtocolError;

/// An aggregate whose elements are still arriving.
#[derive(Clone, Copy, Debug)]
struct Open {
    /// Frames still to come (two per map or attribute entry).
    remaining: u64,
    /// Attributes (`|`) annotate the next value and do not count as an element themselves.
    attribute: bool,
}

/// Resumable scanner of upstream replies: finds the end of one complete frame, RESP2 or RESP3.
///
/// Progress (scan offset, open aggregates) is kept between calls, so a large reply arriving in
/// many reads is scanned once overall and blob payloads are jumped over. An attribute (`|`)
/// and the value it annotates form one [`Reply`]. RESP3 streamed frames (`?` lengths) are
/// rejected; Redis never sends them. Sizes are not limited (upstream is trusted), declared
/// counts never cause allocation, and no input makes it panic.
///
/// # Contract
/// Between a call that returned `Ok(None)` and the next call, the caller may only append to
/// the buffer.
#[derive(Debug, Default)]
pub struct ReplyScanner {
    /// Offset of the next frame header.
    pos: usize,
    /// Offset where the search for the header's line end resumes (`>= pos`).
    scan: usize,
    /// End (after the CRLF) of a blob whose header has been read but not its payload.
    blob_end: Option<usize>,
    /// Open aggregates, innermost last.
    stack: Vec<Open>,
    /// Kind of the reply, known once its first non-attribute header has been read.
    root: Option<ReplyKind>,
}

// === impl ReplyScanner ===

impl ReplyScanner {
    /// A scanner at the start of a reply.
    pub fn new() -> Self {
        ReplyScanner::default()
    }

    /// Scan for one complete reply at the front of `buf`.
    ///
    /// `Ok(Some(reply))`: the reply's bytes were split off the front of `buf` (zero-copy).
    /// `Ok(None)`: more bytes are needed; nothing was consumed.
    ///
    /// # Errors
    /// The upstream broke the protocol; the connection must be closed.
    pub fn scan(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
        Ok(self.scan_slice(buf)?.map(|(len, kind)| Reply {
            raw: buf.split_to(len).freeze(),
            kind,
        }))
    }

    /// [`ReplyScanner::scan`] on a slice: `Some((length, kind))` of the complete reply at the
    /// front of `buf`, nothing consumed.
    pub(crate) fn scan_slice(
        &mut self,
        buf: &[u8],
    ) -> Result<Option<(usize, ReplyKind)>, ProtocolError> {
        if self.scan > buf.len() || self.pos > buf.len() {
            // The caller broke the append-only contract; start over rather than slice wrongly.
            self.reset();
        }
        if self.is_fresh() {
            // The common replies (a bulk string or its null, a status line, an integer)
            // complete in one pass here; anything else, or anything incomplete, takes the general path.
            match buf.first() {
                Some(b'$') if buf.starts_with(b"$-1\r\n") => {
                    return Ok(Some((5, ReplyKind::Null)));
                }
                Some(b'+') if buf.starts_with(b"+OK\r\n") => {
                    // Every successful write's reply: no line search.
                    return Ok(Some((5, ReplyKind::Simple)));
                }
                Some(b'$') => {
                    if let Some(len) = whole_bulk(buf) {
                        return Ok(Some((len, ReplyKind::Bulk)));
                    }
                }
                Some(&ty @ (b'+' | b':')) => {
                    // A short line (`+OK`, a small integer) ends before the word search
                    // in `find_crlf` is set up; a lone `\n` or a longer line takes it.
                    if let Some(newline) = buf.iter().take(32).position(|&b| b == b'\n') {
                        if newline >= 2 && buf[newline - 1] == b'\r' {
                            return Ok(Some((newline + 1, root_kind(ty, b""))));
                        }
                    }
                    return Ok(match find_crlf(buf, 0, 0) {
                        Ok(newline) => Some((newline + 1, root_kind(ty, b""))),
                        Err(resume) => {
                            self.scan = resume;
                            None
                        }
                    });
                }
                _ => {}
            }
        }
        let result = self.advance(buf);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Option<(usize, ReplyKind)>, ProtocolError> {
        loop {
            if let Some(end) = self.blob_end {
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                self.blob_end = None;
                self.pos = end;
                self.scan = end;
                if self.element_done(false) {
                    return Ok(Some(self.finish(buf)));
                }
                continue;
            }
            let Some(&ty) = buf.get(self.pos) else {
                return Ok(None);
            };
            if !is_type_byte(ty) {
                return Err(ProtocolError::InvalidReplyType(ty));
            }
            let newline = match find_crlf(buf, self.scan, self.pos) {
                Ok(newline) => newline,
                Err(resume) => {
                    self.scan = resume;
                    return Ok(None);
                }
            };
            let body = &buf[self.pos + 1..newline - 1];
            let next = newline + 1;
            if self.stack.is_empty() && self.root.is_none() && ty != b'|' {
                self.root = Some(root_kind(ty, body));
            }
            self.pos = next;
            self.scan = next;
            match ty {
                b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => {
                    if self.element_done(false) {
                        return Ok(Some(self.finish(buf)));
                    }
                }
                b'$' | b'!' | b'=' => match parse_length(body)? {
                    -1 if ty == b'$' => {
                        if self.element_done(false) {
                            return Ok(Some(self.finish(buf)));
                        }
                    }
                    n if n >= 0 => {
                        let end = next
                            .checked_add(n as usize)
                            .and_then(|e| e.checked_add(2))
                            .ok_or(ProtocolError::InvalidReplyLength)?;
                        self.blob_end = Some(end);
                    }
                    _ => return Err(ProtocolError::InvalidReplyLength),
                },
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_length(body)?;
                    let attribute = ty == b'|';
                    if n == -1 && ty == b'*' {
                        if self.element_done(false) {
                            return Ok(Some(self.finish(buf)));
                        }
                        continue;
                    }
                    if n < 0 {
                        return Err(ProtocolError::InvalidReplyLength);
                    }
                    let per_entry = if ty == b'%' || attribute { 2 } else { 1 };
                    let remaining = n as u64 * per_entry;
                    if remaining == 0 {
                        if self.element_done(attribute) {
                            return Ok(Some(self.finish(buf)));
                        }
                    } else {
                        self.stack.push(Open {
                            remaining,
                            attribute,
                        });
                    }
                }
                _ => return Err(ProtocolError::StreamedFrame),
            }
        }
    }

    /// Account for one complete frame; `true` when that completes the reply.
    fn element_done(&mut self, mut attribute: bool) -> bool {
        loop {
            if attribute {
                // An attribute annotates the frame after it: nothing is complete yet.
                return false;
            }
            let Some(top) = self.stack.last_mut() else {
                return true;
            };
            top.remaining -= 1;
            if top.remaining > 0 {
                return false;
            }
            attribute = top.attribute;
            self.stack.pop();
        }
    }

    /// The reply ends at `self.pos`: report it and get ready for the next one.
    fn finish(&mut self, buf: &[u8]) -> (usize, ReplyKind) {
        let len = self.pos;
        let kind = match self.root {
            Some(ReplyKind::Error(_)) => {
                ReplyKind::Error(classify_error(error_text(&buf[..len]).unwrap_or_default()))
            }
            Some(kind) => kind,
            None => ReplyKind::Attribute,
        };
        self.reset();
        (len, kind)
    }

    /// At the start of a reply, nothing of it scanned yet.
    fn is_fresh(&self) -> bool {
        self.pos == 0
            && self.scan == 0
            && self.blob_end.is_none()
            && self.stack.is_empty()
            && self.root.is_none()
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.scan = 0;
        self.blob_end = None;
        self.stack.clear();
        self.root = None;
    }
}

/// The length of the complete bulk string `$<len>\r\n<len bytes>\r\n` at the front of `buf`,
/// when its length is plain digits (no sign, no leading zero, at most 10 digits); `None` for
/// anything else (incomplete, malformed, null, other header forms), which the general path
/// then scans with the same result it always gives.
#[inline]
fn whole_bulk(buf: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    let mut at = 1;
    loop {
        match buf.get(at) {
            Some(&c @ b'0'..=b'9') if at <= 10 => len = len * 10 + usize::from(c - b'0'),
            Some(b'\r') => break,
            _ => return None,
        }
        at += 1;
    }
    if at == 1 || (at > 2 && buf[1] == b'0') || buf.get(at + 1) != Some(&b'\n') {
        return None;
    }
    let end = at + 2 + len + 2;
    (buf.get(end - 2..end)? == b"\r\n").then_some(end)
}

/// Every byte that may start a frame, including `.` (end of a stream), which is rejected later.
fn is_type_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b','
            | b'#'
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'>'
            | b'|'
            | b'.'
    )
}

/// A length or count header: `?` (streamed) is rejected, anything else must be an integer.
fn parse_length(body: &[u8]) -> Result<i64, ProtocolError> {
    if body == b"?" {
        return Err(ProtocolError::StreamedFrame);
    }
    parse_ll(body).ok_or(ProtocolError::InvalidReplyLength)
}

/// The kind of a reply whose first (non-attribute) header is `ty` + `body`.
fn root_kind(ty: u8, body: &[u8]) -> ReplyKind {
    match ty {
        b'+' => ReplyKind::Simple,
        // Classified once complete (a blob error's text comes after its header).
        b'-' | b'!' => ReplyKind::Error(super::ErrorClass::Other),
        b':' => ReplyKind::Integer,
        b'$' if body == b"-1" => ReplyKind::Null,
        b'$' => ReplyKind::Bulk,
        b'*' if body == b"-1" => ReplyKind::Null,
        b'*' => ReplyKind::Array,
        b'_' => ReplyKind::Null,
        b',' => ReplyKind::Double,
        b'#' => ReplyKind::Boolean,
        b'(' => ReplyKind::BigNumber,
        b'=' => ReplyKind::Verbatim,
        b'%' => ReplyKind::Map,
        b'~' => ReplyKind::Set,
        b'>' => ReplyKind::Push,
        _ => ReplyKind::Attribute,
    }
}
