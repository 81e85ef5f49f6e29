//! The resumable request decoder: multibulk and inline commands, with Redis 7.0's framing
//! rules and error replies, and the decoder limits (docs/configuration.md).
//!
//! Framing follows `processMultibulkBuffer`/`processInlineBuffer` in Redis's `networking.c`,
//! so the proxy and the upstream always agree on where a request ends:
//! - a header line ends at the first `\r` and needs one more byte after it (Redis skips two
//!   bytes without checking that the second is `\n`); the two bytes after a bulk payload are
//!   skipped unchecked as well;
//! - `*N` with `N <= 0` is consumed and ignored; an inline line with no arguments too;
//! - lengths parse like `string2ll` (no sign, no leading zeros).

use bytes::{Buf, BytesMut};

use super::args::{ArgRanges, INLINE_ARGS};
use super::inline;
use super::{Limits, Request};
use crate::line::{find_byte, parse_ll};
use crate::ProtocolError;

/// Where the decoder is inside the request at the front of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing of the next request has been looked at.
    Idle,
    /// Searching for the `\n` that ends an inline line.
    Inline,
    /// Searching for the `\r` that ends the `*N` line.
    MultibulkHeader,
    /// Searching for the `\r` that ends a `$N` line starting at `line_start`.
    BulkHeader,
    /// Waiting for a bulk payload (plus its two terminator bytes) to arrive completely.
    BulkPayload { start: usize, len: usize },
}

/// Outcome of looking at an inline line.
enum InlineStep {
    NeedMore,
    /// A line without arguments was consumed.
    Skipped,
    Request(Request),
}

/// Resumable decoder of client requests (multibulk `*N\r\n$len\r\n…` and inline commands).
///
/// Progress is kept between calls: a request arriving in many reads is scanned once overall,
/// and a large bulk payload is jumped over, never scanned.
///
/// # Contract
/// Between a call that returned `Ok(None)` and the next call, the caller may only append to
/// the buffer. (Handing it a shorter buffer resets the decoder, without panicking.)
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    /// Offset where the current line search resumes.
    scan: usize,
    /// Offset of the current `$N` header line.
    line_start: usize,
    /// Arguments still expected by the current multibulk request.
    remaining: usize,
    /// Arguments found so far in the current multibulk request.
    args: ArgRanges,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(Limits::default())
    }
}

// === impl RequestDecoder ===

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Idle,
            scan: 0,
            line_start: 0,
            remaining: 0,
            args: ArgRanges::default(),
        }
    }

    /// Change the limits; they apply from the next call to [`RequestDecoder::decode`] on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decode one request from the front of `buf`.
    ///
    /// - `Ok(Some(request))`: the request's bytes were split off the front of `buf`
    ///   (zero-copy).
    /// - `Ok(None)`: more bytes are needed. Skipped input (empty inline lines, `*0`, `*-1`) may
    ///   have been consumed from `buf`.
    ///
    /// # Errors
    /// A framing error or a broken limit. The connection must be closed after writing
    /// [`ProtocolError::to_reply`]; the decoder's state is unspecified afterwards.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        if self.scan > buf.len() {
            // The caller broke the append-only contract; start over rather than slice wrongly.
            self.reset();
        }
        if self.state == State::Idle {
            if let Some(request) = self.decode_whole(buf) {
                return Ok(Some(request));
            }
        }
        loop {
            match self.state {
                State::Idle => match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        self.state = State::MultibulkHeader;
                        self.scan = 1;
                    }
                    Some(_) => {
                        self.state = State::Inline;
                        self.scan = 0;
                    }
                },
                State::Inline => match self.decode_inline(buf)? {
                    InlineStep::NeedMore => return Ok(None),
                    InlineStep::Skipped => continue,
                    InlineStep::Request(request) => return Ok(Some(request)),
                },
                State::MultibulkHeader => {
                    let Some(r) = self.find_header_end(buf, 0)? else {
                        return Ok(None);
                    };
                    let count = match parse_ll(&buf[1..r]) {
                        Some(n) if n <= i64::from(i32::MAX) => n,
                        _ => return Err(ProtocolError::InvalidMultibulkLength),
                    };
                    if count <= 0 {
                        // Redis ignores `*0` and negative counts.
                        buf.advance(r + 2);
                        self.reset();
                        continue;
                    }
                    let count = count as usize;
                    if count > self.limits.max_array {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    self.remaining = count;
                    self.args = ArgRanges::with_capacity(count);
                    self.line_start = r + 2;
                    self.scan = r + 2;
                    self.state = State::BulkHeader;
                }
                State::BulkHeader => {
                    let line_start = self.line_start;
                    let Some(r) = self.find_header_end(buf, line_start)? else {
                        return Ok(None);
                    };
                    let first = buf[line_start];
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedDollar(first));
                    }
                    let len = match parse_ll(&buf[line_start + 1..r]) {
                        Some(n) if n >= 0 && n as u64 <= self.limits.max_bulk as u64 => n as usize,
                        _ => return Err(ProtocolError::InvalidBulkLength),
                    };
                    self.scan = r + 2;
                    self.state = State::BulkPayload { start: r + 2, len };
                }
                State::BulkPayload { start, len } => {
                    let end = start.saturating_add(len).saturating_add(2);
                    if buf.len() < end {
                        return Ok(None);
                    }
                    self.args.push(start, len);
                    self.remaining -= 1;
                    if self.remaining == 0 {
                        let raw = buf.split_to(end).freeze();
                        let args = std::mem::take(&mut self.args);
                        self.reset();
                        return Ok(Some(Request {
                            raw,
                            encoded: None,
                            args,
                        }));
                    }
                    self.line_start = end;
                    self.scan = end;
                    self.state = State::BulkHeader;
                }
            }
        }
    }

    /// The fast path for the common case: a short multibulk request (at most
    /// [`INLINE_ARGS`] arguments, lengths of at most 9 digits) that is already complete at
    /// the front of `buf`, parsed in one pass. `None` for anything else, with nothing
    /// consumed: the general state machine then decides, with the exact errors and limits.
    #[inline]
    fn decode_whole(&mut self, buf: &mut BytesMut) -> Option<Request> {
        /// `digits\r?` at `at`: the value (no sign, no leading zero unless `0` alone, at most
        /// 9 digits) and the offset just after the line end (the byte after `\r` is skipped
        /// unchecked, as Redis does).
        #[inline(always)]
        fn number(b: &[u8], mut at: usize) -> Option<(usize, usize)> {
            // One or two digits, the usual case, read from one window without a loop.
            // Anything else (or a window running past the buffer) takes the loop below.
            if let Some(&[d0, d1, d2, _]) = b.get(at..at + 4) {
                match (d0, d1, d2) {
                    (b'0'..=b'9', b'\r', _) => return Some((usize::from(d0 - b'0'), at + 3)),
                    (b'1'..=b'9', b'0'..=b'9', b'\r') => {
                        return Some((usize::from(d0 - b'0') * 10 + usize::from(d1 - b'0'), at + 4))
                    }
                    _ => {}
                }
            }
            let start = at;
            let mut v = 0usize;
            while let Some(&c) = b.get(at) {
                match c {
                    b'0'..=b'9' if at - start < 9 => v = v * 10 + usize::from(c - b'0'),
                    b'\r' => break,
                    _ => return None,
                }
                at += 1;
            }
            let digits = at - start;
            if digits == 0 || digits > 9 || (digits > 1 && b[start] == b'0') {
                return None;
            }
            // The `\r` and the byte after it must both be there.
            (at + 1 < b.len()).then_some((v, at + 2))
        }
        let b = &buf[..];
        if b.first() != Some(&b'*') {
            return None;
        }
        let (count, mut at) = number(b, 1)?;
        if count == 0 || count > INLINE_ARGS || count > self.limits.max_array {
            return None;
        }
        if at > self.limits.max_inline {
            return None;
        }
        // Filled here rather than through `ArgRanges::push`, whose spill path keeps it from
        // being inlined: the count is known to fit, and an offset beyond `u32` falls back.
        let mut items = [(0u32, 0u32); INLINE_ARGS];
        for item in &mut items[..count] {
            if b.get(at) != Some(&b'$') {
                return None;
            }
            let (len, start) = number(b, at + 1)?;
            if len > self.limits.max_bulk || start - at > self.limits.max_inline {
                return None;
            }
            at = start + len + 2;
            if at > b.len() {
                return None;
            }
            *item = (u32::try_from(start).ok()?, u32::try_from(len).ok()?);
        }
        Some(Request {
            raw: buf.split_to(at).freeze(),
            encoded: None,
            args: ArgRanges::Inline {
                len: count as u8,
                items,
            },
        })
    }

    /// Find the `\r` ending the header line that starts at `line_start`, resuming at
    /// `self.scan`. `Ok(Some(r))` once the byte after `\r` has arrived too.
    fn find_header_end(
        &mut self,
        buf: &[u8],
        line_start: usize,
    ) -> Result<Option<usize>, ProtocolError> {
        let too_big = || {
            if self.state == State::MultibulkHeader {
                ProtocolError::TooBigMultibulkCount
            } else {
                ProtocolError::TooBigBulkCount
            }
        };
        match find_byte(&buf[self.scan..], b'\r') {
            None => {
                if buf.len() - line_start > self.limits.max_inline {
                    return Err(too_big());
                }
                self.scan = buf.len();
                Ok(None)
            }
            Some(i) => {
                let r = self.scan + i;
                if r - line_start > self.limits.max_inline {
                    return Err(too_big());
                }
                self.scan = r;
                if r + 1 < buf.len() {
                    Ok(Some(r))
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Decode an inline line at the front of `buf`, skipping lines without arguments.
    fn decode_inline(&mut self, buf: &mut BytesMut) -> Result<InlineStep, ProtocolError> {
        // The limit is on the line's content, without its line end. Until the `\n` arrives, a
        // last `\r` may still turn out to be part of the line end, hence the `+ 1`: the outcome
        // does not depend on how the line was split into reads.
        let max = self.limits.max_inline;
        let Some(i) = find_byte(&buf[self.scan..], b'\n') else {
            if buf.len() > max.saturating_add(1) {
                return Err(ProtocolError::TooBigInlineRequest);
            }
            self.scan = buf.len();
            return Ok(InlineStep::NeedMore);
        };
        let newline = self.scan + i;
        let content_end = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        if content_end > max {
            return Err(ProtocolError::TooBigInlineRequest);
        }
        let encoded = inline::encode_inline(&buf[..content_end])?;
        self.reset();
        match encoded {
            None => {
                buf.advance(newline + 1);
                Ok(InlineStep::Skipped)
            }
            Some((encoded, args)) => Ok(InlineStep::Request(Request {
                raw: buf.split_to(newline + 1).freeze(),
                encoded: Some(encoded),
                args,
            })),
        }
    }

    /// Where the next line search starts (tests check that payloads are not re-scanned).
    #[cfg(test)]
    pub(crate) fn scan_offset(&self) -> usize {
        self.scan
    }

    fn reset(&mut self) {
        self.state = State::Idle;
        self.scan = 0;
        self.line_start = 0;
        self.remaining = 0;
    }
}
