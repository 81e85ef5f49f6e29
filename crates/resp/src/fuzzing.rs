//! Fuzzing and chunking harness: feeds input to the decoder or scanner in chunks, checks
//! that the outcome does not depend on how the input was split, and checks invariants of
//! every frame found. The `fuzz/` targets call [`request_decoder`] and [`reply_scanner`];
//! the unit tests use the same helpers to feed every case one byte at a time.

use bytes::BytesMut;

use crate::{
    aggregate_children, parse_value, Limits, ProtocolError, Reply, ReplyKind, ReplyScanner,
    Request, RequestDecoder,
};

/// What feeding an input produced: the frames, then how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome<T> {
    /// Frames in order.
    pub frames: Vec<T>,
    /// `Ok(n)`: input ran out with `n` bytes left unconsumed; `Err`: the first error.
    pub end: Result<usize, ProtocolError>,
}

/// Split `input` into chunks of the given sizes (cycled; a size of 0 counts as 1).
fn chunks<'a>(input: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = input;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(usize::MAX);
        i += 1;
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        rest = tail;
        Some(chunk)
    })
}

/// Decode `input` appended to the buffer in chunks of `sizes`, calling `decode` until it needs
/// more after each chunk.
pub fn decode_in_chunks(limits: Limits, input: &[u8], sizes: &[usize]) -> Outcome<Request> {
    let mut decoder = RequestDecoder::new(limits);
    feed_in_chunks(input, sizes, |buf| decoder.decode(buf))
}

/// Scan `input` appended to the buffer in chunks of `sizes`, calling `scan` until it needs
/// more after each chunk.
pub fn scan_in_chunks(input: &[u8], sizes: &[usize]) -> Outcome<Reply> {
    let mut scanner = ReplyScanner::new();
    feed_in_chunks(input, sizes, |buf| scanner.scan(buf))
}

/// Append `input` to a buffer in chunks of `sizes`, running `step` after each chunk until it
/// needs more, collecting the frames it yields; stops at the first error.
fn feed_in_chunks<T>(
    input: &[u8],
    sizes: &[usize],
    mut step: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
) -> Outcome<T> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks(input, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            match step(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        frames,
                        end: Err(e),
                    }
                }
            }
        }
    }
    Outcome {
        frames,
        end: Ok(buf.len()),
    }
}

/// Chunk sizes derived from the input itself, so a fuzz case replays identically.
fn pseudo_random_sizes(input: &[u8]) -> Vec<usize> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ input.len() as u64;
    for &b in input.iter().take(16) {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..32)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 17) as usize + 1
        })
        .collect()
}

/// Small limits so that short fuzz inputs reach every limit check.
pub fn small_limits() -> Limits {
    Limits {
        max_inline: 64,
        max_array: 16,
        max_bulk: 256,
    }
}

/// Decode `input` whole, one byte at a time and in pseudo-random chunks, under both the default
/// and [`small_limits`]; panic if the outcomes differ or a request breaks an invariant.
pub fn request_decoder(input: &[u8]) {
    for limits in [Limits::default(), small_limits()] {
        let whole = decode_in_chunks(limits, input, &[usize::MAX]);
        assert_eq!(whole, decode_in_chunks(limits, input, &[1]), "byte by byte");
        let sizes = pseudo_random_sizes(input);
        assert_eq!(
            whole,
            decode_in_chunks(limits, input, &sizes),
            "chunks {sizes:?}"
        );
        for request in &whole.frames {
            check_request(request);
        }
    }
}

fn check_request(request: &Request) {
    assert!(request.argc() >= 1);
    assert_eq!(request.args().count(), request.argc());
    // What goes upstream decodes to the same arguments.
    let wire = request.wire();
    let unlimited = Limits {
        max_inline: usize::MAX,
        max_array: usize::MAX,
        max_bulk: usize::MAX,
    };
    let again = decode_in_chunks(unlimited, &wire, &[usize::MAX]);
    assert_eq!(again.end, Ok(0));
    assert_eq!(again.frames.len(), 1);
    assert!(again.frames[0].args().eq(request.args()));
    assert!(Request::from_args(&request.args().collect::<Vec<_>>())
        .args()
        .eq(request.args()));
    for i in 0..request.argc() {
        assert_eq!(&request.arg_bytes(i)[..], request.arg(i));
    }
}

/// Scan `input` whole, one byte at a time and in pseudo-random chunks; panic if the outcomes
/// differ or a reply breaks an invariant.
pub fn reply_scanner(input: &[u8]) {
    let whole = scan_in_chunks(input, &[usize::MAX]);
    assert_eq!(whole, scan_in_chunks(input, &[1]), "byte by byte");
    let sizes = pseudo_random_sizes(input);
    assert_eq!(whole, scan_in_chunks(input, &sizes), "chunks {sizes:?}");
    for reply in &whole.frames {
        check_reply(reply);
    }
}

fn check_reply(reply: &Reply) {
    assert_ne!(reply.kind, ReplyKind::Attribute);
    assert_eq!(reply.is_error(), reply.error_text().is_some());
    match parse_value(&reply.raw) {
        Ok(Some((_, consumed))) => assert_eq!(consumed, reply.raw.len()),
        Ok(None) => panic!("scanner found a frame the value parser calls incomplete"),
        // The value parser also checks scalar contents and bounds nesting.
        Err(ProtocolError::InvalidReplyValue | ProtocolError::TooDeep) => {}
        Err(e) => panic!("scanner accepted a frame the value parser rejects: {e}"),
    }
    if let Some(children) = aggregate_children(&reply.raw) {
        let total: usize = children.iter().map(|c| c.len()).sum();
        assert!(total < reply.raw.len());
    }
}
