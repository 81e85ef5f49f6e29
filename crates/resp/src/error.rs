//! Protocol errors: what went wrong while decoding a client request or scanning an upstream
//! reply, and the exact bytes the proxy sends to the client before closing the connection.
//!
//! Client-side variants reply with Redis 7.0's own wording (checked against a real
//! `redis-server` 7.0); upstream-side variants are proxy-only conditions and reply with
//! `-ERR slotgate: …`.

/// A framing error. After any of these the connection cannot be resynchronised: the proxy
/// writes [`ProtocolError::to_reply`] and closes it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    // === client requests (Redis wording) ===
    /// `*N` header that is not a valid integer, or larger than `INT_MAX` or `max_array`.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$N` header that is not a valid integer, negative, or larger than `max_bulk`.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// An element of a multibulk request that does not start with `$`.
    #[error("expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// An inline request with an unterminated quote, or a closing quote not followed by a
    /// space or the end of the line.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An inline line longer than `max_inline`.
    #[error("too big inline request")]
    TooBigInlineRequest,
    /// A `*N` header line longer than `max_inline`.
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$N` header line longer than `max_inline`.
    #[error("too big bulk count string")]
    TooBigBulkCount,

    // === upstream replies (proxy-only) ===
    /// A reply frame starting with a byte that is no RESP2/RESP3 type.
    #[error("upstream sent an invalid reply type byte 0x{0:02x}")]
    InvalidReplyType(u8),
    /// A reply length or count header that is not a valid integer.
    #[error("upstream sent an invalid length in a reply header")]
    InvalidReplyLength,
    /// A reply line or payload not terminated by CRLF.
    #[error("upstream sent a reply frame without its CRLF terminator")]
    MissingCrlf,
    /// A RESP3 streamed string or aggregate (`?` length); Redis never sends them.
    #[error("upstream sent a streamed RESP3 frame, which is not supported")]
    StreamedFrame,
    /// A scalar reply whose contents do not parse (integer, double, boolean).
    #[error("upstream sent an invalid scalar value")]
    InvalidReplyValue,
    /// A reply nested deeper than the owned-value parser accepts.
    #[error("upstream sent a reply nested too deeply")]
    TooDeep,
}

const EXPECTED_DOLLAR_PREFIX: &[u8] = b"-ERR Protocol error: expected '$', got '";
const EXPECTED_DOLLAR_LEN: usize = EXPECTED_DOLLAR_PREFIX.len() + 4;

/// `-ERR Protocol error: expected '$', got 'X'\r\n` for every byte X, built at compile time so
/// [`ProtocolError::to_reply`] can return `&'static` bytes. Like Redis, `\r` and `\n` are shown
/// as a space so the reply stays one line.
static EXPECTED_DOLLAR_REPLIES: [[u8; EXPECTED_DOLLAR_LEN]; 256] = build_expected_dollar();

const fn build_expected_dollar() -> [[u8; EXPECTED_DOLLAR_LEN]; 256] {
    let mut table = [[0u8; EXPECTED_DOLLAR_LEN]; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < EXPECTED_DOLLAR_PREFIX.len() {
            table[b][i] = EXPECTED_DOLLAR_PREFIX[i];
            i += 1;
        }
        let shown = if b == b'\r' as usize || b == b'\n' as usize {
            b' '
        } else {
            b as u8
        };
        table[b][i] = shown;
        table[b][i + 1] = b'\'';
        table[b][i + 2] = b'\r';
        table[b][i + 3] = b'\n';
        b += 1;
    }
    table
}

/// Reply sent to a client when the upstream broke the protocol.
const UPSTREAM_PROTOCOL_REPLY: &[u8] = b"-ERR slotgate: protocol error from upstream\r\n";

// === impl ProtocolError ===

impl ProtocolError {
    /// The exact error reply to send before closing the connection.
    ///
    /// Client-side errors use Redis 7.0's wording byte for byte, e.g.
    /// `-ERR Protocol error: invalid multibulk length\r\n`. Upstream-side errors all reply
    /// `-ERR slotgate: protocol error from upstream\r\n`.
    pub fn to_reply(&self) -> &'static [u8] {
        match self {
            ProtocolError::InvalidMultibulkLength => {
                b"-ERR Protocol error: invalid multibulk length\r\n"
            }
            ProtocolError::InvalidBulkLength => b"-ERR Protocol error: invalid bulk length\r\n",
            ProtocolError::ExpectedDollar(b) => &EXPECTED_DOLLAR_REPLIES[*b as usize],
            ProtocolError::UnbalancedQuotes => {
                b"-ERR Protocol error: unbalanced quotes in request\r\n"
            }
            ProtocolError::TooBigInlineRequest => {
                b"-ERR Protocol error: too big inline request\r\n"
            }
            ProtocolError::TooBigMultibulkCount => {
                b"-ERR Protocol error: too big mbulk count string\r\n"
            }
            ProtocolError::TooBigBulkCount => b"-ERR Protocol error: too big bulk count string\r\n",
            ProtocolError::InvalidReplyType(_)
            | ProtocolError::InvalidReplyLength
            | ProtocolError::MissingCrlf
            | ProtocolError::StreamedFrame
            | ProtocolError::InvalidReplyValue
            | ProtocolError::TooDeep => UPSTREAM_PROTOCOL_REPLY,
        }
    }

    /// Whether the error is about a client request (as opposed to an upstream reply).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            ProtocolError::InvalidMultibulkLength
                | ProtocolError::InvalidBulkLength
                | ProtocolError::ExpectedDollar(_)
                | ProtocolError::UnbalancedQuotes
                | ProtocolError::TooBigInlineRequest
                | ProtocolError::TooBigMultibulkCount
                | ProtocolError::TooBigBulkCount
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ProtocolError;

    #[test]
    fn replies_use_redis_wording() {
        assert_eq!(
            ProtocolError::ExpectedDollar(b'P').to_reply(),
            b"-ERR Protocol error: expected '$', got 'P'\r\n"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'\r').to_reply(),
            b"-ERR Protocol error: expected '$', got ' '\r\n"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(0xff).to_reply(),
            b"-ERR Protocol error: expected '$', got '\xff'\r\n"
        );
        assert_eq!(
            ProtocolError::TooBigBulkCount.to_reply(),
            b"-ERR Protocol error: too big bulk count string\r\n"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'x').to_string(),
            "expected '$', got 'x'"
        );
        assert!(ProtocolError::UnbalancedQuotes.is_client_error());
        assert!(!ProtocolError::MissingCrlf.is_client_error());
        assert_eq!(
            ProtocolError::MissingCrlf.to_reply(),
            b"-ERR slotgate: protocol error from upstream\r\n"
        );
    }
}
