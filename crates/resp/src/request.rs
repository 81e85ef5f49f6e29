//! Client requests: the first step of a command's path through the proxy. The session feeds
//! bytes read from the client to a [`RequestDecoder`], which yields [`Request`]s: the client's
//! own bytes (forwarded upstream unchanged) plus the position of every argument in them.

pub(crate) mod args;
mod decoder;
mod inline;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use decoder::RequestDecoder;

use args::ArgRanges;

/// Decoder limits (docs/configuration.md). Breaking one is a [`crate::ProtocolError`] and the client
/// connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest inline line, and longest `*N`/`$N` header line, in bytes (Redis: 64 KiB).
    pub max_inline: usize,
    /// Most elements in one multibulk request (`*N`).
    pub max_array: usize,
    /// Largest bulk argument (`$N`) in bytes (Redis's `proto-max-bulk-len`, 512 MiB).
    pub max_bulk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inline: 64 * 1024,
            max_array: 1_048_576,
            max_bulk: 512 * 1024 * 1024,
        }
    }
}

/// One decoded client request.
///
/// Arguments are ranges into a shared buffer: [`Request::raw`] for multibulk requests, the
/// re-encoded multibulk ([`Request::wire`]) for inline ones. Cloning is cheap (reference
/// counts plus the range list).
#[derive(Clone, Debug)]
pub struct Request {
    raw: Bytes,
    /// For inline requests: the multibulk encoding the argument ranges point into.
    encoded: Option<Bytes>,
    args: ArgRanges,
}

// === impl Request ===

/// Requests are equal when the client sent the same bytes and they split into the same
/// arguments.
impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
            && self.is_inline() == other.is_inline()
            && self.args().eq(other.args())
    }
}

impl Eq for Request {}

impl Request {
    /// Number of arguments, including the command name. Always at least 1 for decoded requests.
    #[inline]
    pub fn argc(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` (0 is the command name).
    ///
    /// # Panics
    /// If `i >= self.argc()`.
    #[inline]
    pub fn arg(&self, i: usize) -> &[u8] {
        let (start, len) = self.args.get(i);
        &self.source()[start..start + len]
    }

    /// Argument `i`, or `None` past the last one: for positions computed from the
    /// arguments themselves, where a short line must be an error, not a panic.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.argc()).then(|| self.arg(i))
    }

    /// Argument `i` as a zero-copy [`Bytes`] slice of the request buffer.
    ///
    /// # Panics
    /// If `i >= self.argc()`.
    pub fn arg_bytes(&self, i: usize) -> Bytes {
        let (start, len) = self.args.get(i);
        self.source().slice(start..start + len)
    }

    /// All arguments in order, the command name first.
    pub fn args(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let source = self.source();
        self.args
            .iter()
            .map(move |(start, len)| &source[start..start + len])
    }

    /// The exact bytes the client sent: the whole multibulk frame, or the inline line including
    /// its line end.
    #[inline]
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Whether the client sent this request as an inline command.
    #[inline]
    pub fn is_inline(&self) -> bool {
        self.encoded.is_some()
    }

    /// The bytes to forward upstream: [`Request::raw`] for multibulk requests, a multibulk
    /// encoding of the arguments for inline ones.
    #[inline]
    pub fn wire(&self) -> Bytes {
        self.encoded.as_ref().unwrap_or(&self.raw).clone()
    }

    /// [`Request::wire`], borrowed.
    #[inline]
    pub fn wire_ref(&self) -> &Bytes {
        self.encoded.as_ref().unwrap_or(&self.raw)
    }

    /// [`Request::wire`], taking the request apart instead of sharing its bytes.
    #[inline]
    pub fn into_wire(self) -> Bytes {
        self.encoded.unwrap_or(self.raw)
    }

    /// Build a multibulk request from arguments (sub-commands made by the proxy, tests).
    ///
    /// An empty `args` gives a request with `argc() == 0` whose wire form is `*0\r\n`.
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Request {
        let size: usize = args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>() + 16;
        let mut buf = BytesMut::with_capacity(size);
        let ranges = crate::encode::command_ranges(&mut buf, args);
        Request {
            raw: buf.freeze(),
            encoded: None,
            args: ranges,
        }
    }

    /// The buffer the argument ranges point into.
    #[inline]
    fn source(&self) -> &Bytes {
        self.encoded.as_ref().unwrap_or(&self.raw)
    }
}
