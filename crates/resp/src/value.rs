//! An owned tree of a reply, for use off the hot path: parsing `CLUSTER SLOTS`, `INFO`, and
//! checking replies in tests. The hot path forwards raw bytes and never builds one.

#[cfg(test)]
mod tests;

use crate::line::{find_crlf, parse_ll};
use crate::ProtocolError;

/// Deepest nesting [`parse_value`] accepts; the parser recurses, so this bounds its stack use.
pub const MAX_DEPTH: usize = 128;

/// One RESP2/RESP3 value. Attributes are parsed and dropped.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `+` simple string.
    Simple(Vec<u8>),
    /// `-` simple error or `!` blob error: the text without `-` and CRLF.
    Error(Vec<u8>),
    /// `:` integer.
    Integer(i64),
    /// `$` bulk string.
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or `_`.
    Null,
    /// `*` array.
    Array(Vec<Value>),
    /// `%` map, in wire order (duplicate keys kept).
    Map(Vec<(Value, Value)>),
    /// `~` set, in wire order.
    Set(Vec<Value>),
    /// `>` push.
    Push(Vec<Value>),
    /// `,` double (`inf`, `-inf`, `nan` included).
    Double(f64),
    /// `#t` / `#f`.
    Boolean(bool),
    /// `(` big number: its decimal digits, as sent.
    BigNumber(Vec<u8>),
    /// `=` verbatim string: the whole payload, including the 3-letter format and `:`
    /// (e.g. `txt:hello`).
    Verbatim(Vec<u8>),
}

// === impl Value ===

impl Value {
    /// The bytes of a simple string, bulk string or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) | Value::Verbatim(b) => Some(b),
            _ => None,
        }
    }

    /// The value of an integer.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an array, set or push.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }
}

/// Parse one complete frame from the start of `buf`.
///
/// `Ok(Some((value, consumed)))` when a whole frame is there, `Ok(None)` if `buf` ends before
/// the frame does.
///
/// # Errors
/// Invalid framing, invalid scalar contents (integer, double, boolean), streamed frames, or
/// nesting deeper than [`MAX_DEPTH`].
pub fn parse_value(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    Parser { buf }.value(0, 0)
}

/// A frame header: type byte, the text between it and CRLF, and where the frame body starts.
struct Header<'a> {
    ty: u8,
    body: &'a [u8],
    next: usize,
}

struct Parser<'a> {
    buf: &'a [u8],
}

/// `?`-propagation for "incomplete": `need!(expr)` returns `Ok(None)` when `expr` is `None`.
macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

impl<'a> Parser<'a> {
    fn header(&self, pos: usize) -> Result<Option<Header<'a>>, ProtocolError> {
        let ty = need!(self.buf.get(pos).copied());
        let newline = need!(find_crlf(self.buf, pos, pos).ok());
        Ok(Some(Header {
            ty,
            body: &self.buf[pos + 1..newline - 1],
            next: newline + 1,
        }))
    }

    /// The value at `pos`, skipping attributes, and the offset after it.
    fn value(&self, pos: usize, depth: usize) -> Result<Option<(Value, usize)>, ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(ProtocolError::TooDeep);
        }
        let h = need!(self.header(pos)?);
        let next = h.next;
        let value = match h.ty {
            b'+' => Value::Simple(h.body.to_vec()),
            b'-' => Value::Error(h.body.to_vec()),
            b':' => Value::Integer(parse_ll(h.body).ok_or(ProtocolError::InvalidReplyValue)?),
            b'(' => Value::BigNumber(h.body.to_vec()),
            b'_' if h.body.is_empty() => Value::Null,
            b'#' => match h.body {
                b"t" => Value::Boolean(true),
                b"f" => Value::Boolean(false),
                _ => return Err(ProtocolError::InvalidReplyValue),
            },
            b',' => Value::Double(parse_double(h.body)?),
            b'$' | b'!' | b'=' => {
                let n = length(h.body)?;
                if n == -1 && h.ty == b'$' {
                    return Ok(Some((Value::Null, next)));
                }
                let n = usize::try_from(n).map_err(|_| ProtocolError::InvalidReplyLength)?;
                let end = next
                    .checked_add(n)
                    .ok_or(ProtocolError::InvalidReplyLength)?;
                let data = need!(self.buf.get(next..end)).to_vec();
                let crlf = need!(self.buf.get(end..end + 2));
                if crlf != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                let value = match h.ty {
                    b'$' => Value::Bulk(data),
                    b'!' => Value::Error(data),
                    _ => Value::Verbatim(data),
                };
                return Ok(Some((value, end + 2)));
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => return self.aggregate(&h, depth),
            b'_' => return Err(ProtocolError::InvalidReplyValue),
            b'?' | b'.' => return Err(ProtocolError::StreamedFrame),
            other => return Err(ProtocolError::InvalidReplyType(other)),
        };
        Ok(Some((value, next)))
    }

    fn aggregate(
        &self,
        h: &Header<'a>,
        depth: usize,
    ) -> Result<Option<(Value, usize)>, ProtocolError> {
        let n = length(h.body)?;
        if n == -1 && h.ty == b'*' {
            return Ok(Some((Value::Null, h.next)));
        }
        let n = usize::try_from(n).map_err(|_| ProtocolError::InvalidReplyLength)?;
        // Every frame takes at least 3 bytes: cap what a bogus count can make us reserve.
        let cap = n.min((self.buf.len() - h.next) / 3);
        let mut pos = h.next;
        if h.ty == b'%' || h.ty == b'|' {
            let mut pairs = Vec::with_capacity(cap / 2);
            for _ in 0..n {
                let (k, after_key) = need!(self.value(pos, depth + 1)?);
                let (v, after_value) = need!(self.value(after_key, depth + 1)?);
                pairs.push((k, v));
                pos = after_value;
            }
            if h.ty == b'|' {
                // Attributes annotate the next value; the tree keeps only the value.
                return self.value(pos, depth + 1);
            }
            return Ok(Some((Value::Map(pairs), pos)));
        }
        let mut items = Vec::with_capacity(cap);
        for _ in 0..n {
            let (v, after) = need!(self.value(pos, depth + 1)?);
            items.push(v);
            pos = after;
        }
        let value = match h.ty {
            b'*' => Value::Array(items),
            b'~' => Value::Set(items),
            _ => Value::Push(items),
        };
        Ok(Some((value, pos)))
    }
}

fn length(body: &[u8]) -> Result<i64, ProtocolError> {
    if body == b"?" {
        return Err(ProtocolError::StreamedFrame);
    }
    parse_ll(body).ok_or(ProtocolError::InvalidReplyLength)
}

fn parse_double(body: &[u8]) -> Result<f64, ProtocolError> {
    let text = std::str::from_utf8(body).map_err(|_| ProtocolError::InvalidReplyValue)?;
    match text {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "-nan" => Ok(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            && !text.is_empty() =>
        {
            text.parse().map_err(|_| ProtocolError::InvalidReplyValue)
        }
        _ => Err(ProtocolError::InvalidReplyValue),
    }
}
