use bytes::BytesMut;

use super::{Limits, Request, RequestDecoder};
use crate::fuzzing::{decode_in_chunks, small_limits, Outcome};
use crate::ProtocolError;

/// Decode `input` whole, one byte at a time, and in several chunkings; all must agree.
fn decode(limits: Limits, input: &[u8]) -> Outcome<Request> {
    let whole = decode_in_chunks(limits, input, &[usize::MAX]);
    for sizes in [&[1][..], &[2], &[3, 1, 7], &[5, 11, 2, 64]] {
        assert_eq!(
            whole,
            decode_in_chunks(limits, input, sizes),
            "chunks {sizes:?} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    crate::fuzzing::request_decoder(input);
    whole
}

fn args_of(outcome: &Outcome<Request>) -> Vec<Vec<Vec<u8>>> {
    outcome
        .frames
        .iter()
        .map(|r| r.args().map(<[u8]>::to_vec).collect())
        .collect()
}

fn v(args: &[&str]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_bytes().to_vec()).collect()
}

/// Expect the requests' arguments and the count of unconsumed bytes.
fn expect(input: &[u8], want: &[&[&str]], leftover: usize) {
    let out = decode(Limits::default(), input);
    let want: Vec<_> = want.iter().map(|a| v(a)).collect();
    assert_eq!(args_of(&out), want, "{:?}", String::from_utf8_lossy(input));
    assert_eq!(
        out.end,
        Ok(leftover),
        "{:?}",
        String::from_utf8_lossy(input)
    );
}

/// Expect an error (after the listed requests).
fn expect_err(limits: Limits, input: &[u8], before: usize, err: ProtocolError, reply: &[u8]) {
    let out = decode(limits, input);
    assert_eq!(
        out.frames.len(),
        before,
        "{:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(
        out.end,
        Err(err.clone()),
        "{:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(err.to_reply(), reply);
}

#[test]
fn multibulk_requests() {
    expect(b"*1\r\n$4\r\nPING\r\n", &[&["PING"]], 0);
    expect(
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        &[&["SET", "k", ""], &["GET", "k"]],
        0,
    );
    expect(
        b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n",
        &[&["ECHO", "a\r\nb"]],
        0,
    );
    // Incomplete tails stay in the buffer.
    expect(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET", &[&["PING"]], 11);
    expect(b"*", &[], 1);
    expect(b"*1\r", &[], 3);
    expect(b"*1\r\n$4\r\nPIN", &[], 11);
}

/// Lengths of one, two and three digits, around the one-window path for one or two digits
/// (`decode` also feeds every input one byte at a time, where that path cannot apply).
#[test]
fn lengths_of_one_two_and_three_digits() {
    for n in [0, 1, 9, 10, 11, 99, 100, 101] {
        let arg = "x".repeat(n);
        let input = format!("*2\r\n$4\r\nECHO\r\n${n}\r\n{arg}\r\n");
        expect(input.as_bytes(), &[&["ECHO", &arg]], 0);
    }
    let eleven = format!("*11\r\n{}", "$1\r\nx\r\n".repeat(11));
    expect(eleven.as_bytes(), &[&["x"; 11]], 0);
    // A length cut short after its `\r`: nothing is consumed until the rest arrives.
    expect(b"*1\r\n$12\r", &[], 8);
    expect(b"*1\r\n$1\r", &[], 7);
}

#[test]
fn binary_arguments_are_kept_exactly() {
    let mut input = b"*2\r\n$4\r\nECHO\r\n$256\r\n".to_vec();
    let payload: Vec<u8> = (0..=255).collect();
    input.extend_from_slice(&payload);
    input.extend_from_slice(b"\r\n");
    let out = decode(Limits::default(), &input);
    assert_eq!(out.frames[0].arg(1), &payload[..]);
    assert_eq!(out.frames[0].raw(), &input[..]);
    assert_eq!(out.frames[0].wire(), input);
}

#[test]
fn skips_what_redis_ignores() {
    expect(b"*0\r\n*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n", &[&["PING"]], 0);
    expect(b"\r\n\n   \r\n \t \nPING\r\n", &[&["PING"]], 0);
    expect(b"*0\r\n", &[], 0);
    expect(b"\n\n\n", &[], 0);
}

#[test]
fn follows_redis_framing_quirks() {
    // Redis ends a header at `\r` and skips the next byte unchecked, and skips the two bytes
    // after a payload unchecked: the proxy must frame exactly like the server it forwards to.
    expect(b"*1\rX$4\rXPING\r\n", &[&["PING"]], 0);
    expect(
        b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n",
        &[&["PING"], &["PING"]],
        0,
    );
}

#[test]
fn inline_requests() {
    expect(b"PING\r\n", &[&["PING"]], 0);
    expect(b"PING\n", &[&["PING"]], 0);
    expect(
        b"SET k \"a b\"\r\nGET k\n",
        &[&["SET", "k", "a b"], &["GET", "k"]],
        0,
    );
    expect(b"ECHO \"\\x41\\n\"\r\n", &[&["ECHO", "A\n"]], 0);
    expect(b"ECHO 'it\\'s'\r\n", &[&["ECHO", "it's"]], 0);
    // NUL ends the line as far as splitting goes, like Redis's C string handling.
    expect(b"ECHO a\0b c\r\n", &[&["ECHO", "a"]], 0);
    expect(b"PING", &[], 4);
    let out = decode(Limits::default(), b"SET k  v\r\n");
    let req = &out.frames[0];
    assert!(req.is_inline());
    assert_eq!(req.raw(), &b"SET k  v\r\n"[..]);
    assert_eq!(
        req.wire(),
        &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"[..]
    );
    assert_eq!(req.arg_bytes(2), &b"v"[..]);
}

#[test]
fn protocol_errors_match_redis() {
    let d = Limits::default();
    expect_err(
        d,
        b"*2147483648\r\n",
        0,
        ProtocolError::InvalidMultibulkLength,
        b"-ERR Protocol error: invalid multibulk length\r\n",
    );
    for bad in [
        &b"*01\r\n"[..],
        b"*-0\r\n",
        b"*+1\r\n",
        b"*\r\n",
        b"*1x\r\n",
        b"*1 \r\n",
    ] {
        expect_err(
            d,
            bad,
            0,
            ProtocolError::InvalidMultibulkLength,
            b"-ERR Protocol error: invalid multibulk length\r\n",
        );
    }
    for bad in [
        &b"*1\r\n$-1\r\n"[..],
        b"*1\r\n$04\r\n",
        b"*1\r\n$\r\n",
        b"*1\r\n$536870913\r\n",
    ] {
        expect_err(
            d,
            bad,
            0,
            ProtocolError::InvalidBulkLength,
            b"-ERR Protocol error: invalid bulk length\r\n",
        );
    }
    expect_err(
        d,
        b"*1\r\n$4\r\nPING\r\n*1\r\nPING\r\n",
        1,
        ProtocolError::ExpectedDollar(b'P'),
        b"-ERR Protocol error: expected '$', got 'P'\r\n",
    );
    expect_err(
        d,
        b"*1\r\n\r\n",
        0,
        ProtocolError::ExpectedDollar(b'\r'),
        b"-ERR Protocol error: expected '$', got ' '\r\n",
    );
    expect_err(
        d,
        b"SET \"a\"b c\r\n",
        0,
        ProtocolError::UnbalancedQuotes,
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    );
    expect_err(
        d,
        b"PING\r\nSET 'a\r\n",
        1,
        ProtocolError::UnbalancedQuotes,
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    );
}

#[test]
fn limits() {
    let small = small_limits();
    // max_array: 16.
    let mut ok = b"*16\r\n".to_vec();
    for _ in 0..16 {
        ok.extend_from_slice(b"$1\r\na\r\n");
    }
    assert_eq!(decode(small, &ok).frames.len(), 1);
    let reply = b"-ERR Protocol error: invalid multibulk length\r\n";
    expect_err(
        small,
        b"*17\r\n",
        0,
        ProtocolError::InvalidMultibulkLength,
        reply,
    );
    expect_err(
        d(),
        b"*1048577\r\n",
        0,
        ProtocolError::InvalidMultibulkLength,
        reply,
    );
    // max_bulk: 256.
    let mut ok = b"*1\r\n$256\r\n".to_vec();
    ok.extend_from_slice(&[b'x'; 256]);
    ok.extend_from_slice(b"\r\n");
    assert_eq!(decode(small, &ok).frames.len(), 1);
    let reply = b"-ERR Protocol error: invalid bulk length\r\n";
    expect_err(
        small,
        b"*1\r\n$257\r\n",
        0,
        ProtocolError::InvalidBulkLength,
        reply,
    );
    // max_inline: 64 bytes of inline content (line end excluded), and header lines.
    let line = [b'a'; 64];
    assert_eq!(
        decode(small, &[&line[..], b"\r\n"].concat()).frames.len(),
        1
    );
    assert_eq!(decode(small, &[&line[..], b"\n"].concat()).frames.len(), 1);
    assert_eq!(decode(small, &[&line[..], b"\r"].concat()).end, Ok(65));
    let reply = b"-ERR Protocol error: too big inline request\r\n";
    let long = [b'a'; 65];
    assert_eq!(decode(small, &long).end, Ok(65));
    expect_err(
        small,
        &[&long[..], b"a"].concat(),
        0,
        ProtocolError::TooBigInlineRequest,
        reply,
    );
    expect_err(
        small,
        &[&long[..], b"\n"].concat(),
        0,
        ProtocolError::TooBigInlineRequest,
        reply,
    );
    expect_err(
        small,
        &[&long[..], b"\r\n"].concat(),
        0,
        ProtocolError::TooBigInlineRequest,
        reply,
    );
    let mut header = b"*".to_vec();
    header.extend_from_slice(&[b'1'; 64]);
    let reply = b"-ERR Protocol error: too big mbulk count string\r\n";
    expect_err(
        small,
        &header,
        0,
        ProtocolError::TooBigMultibulkCount,
        reply,
    );
    let mut header = b"*1\r\n$".to_vec();
    header.extend_from_slice(&[b'1'; 64]);
    let reply = b"-ERR Protocol error: too big bulk count string\r\n";
    expect_err(small, &header, 0, ProtocolError::TooBigBulkCount, reply);
}

fn d() -> Limits {
    Limits::default()
}

#[test]
fn huge_bulk_header_fails_before_any_payload() {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(&b"*1\r\n$2147483647\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::InvalidBulkLength)
    );
}

#[test]
fn huge_inline_line_fails_once_over_max_inline() {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::new();
    let chunk = vec![b'a'; 16 * 1024];
    let mut fed = 0;
    let err = loop {
        buf.extend_from_slice(&chunk);
        fed += chunk.len();
        assert!(fed <= 10 * 1024 * 1024);
        match decoder.decode(&mut buf) {
            Ok(None) => continue,
            Ok(Some(_)) => panic!("no request expected"),
            Err(e) => break e,
        }
    };
    assert_eq!(err, ProtocolError::TooBigInlineRequest);
    assert_eq!(fed, 64 * 1024 + chunk.len());
}

#[test]
fn large_bulk_in_pieces_is_not_rescanned() {
    let len = 10 * 1024 * 1024;
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(format!("*2\r\n$3\r\nSET\r\n${len}\r\n").as_bytes());
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    let payload_start = buf.len();
    let chunk = vec![b'\r'; 64 * 1024]; // worst case for a line search
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        buf.extend_from_slice(&chunk[..n]);
        sent += n;
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        // The decoder waits for the payload's end; it never looks inside.
        assert_eq!(decoder.scan_offset(), payload_start);
    }
    buf.extend_from_slice(b"\r\n");
    let req = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(req.arg(1).len(), len);
    assert!(buf.is_empty());
}

#[test]
fn header_lines_resume_where_they_stopped() {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(&b"*1\r\n$1"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.scan_offset(), 6);
    buf.extend_from_slice(b"0");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.scan_offset(), 7);
}

#[test]
fn shrunk_buffer_resets_instead_of_panicking() {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPI"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    let mut other = BytesMut::from(&b"PING\r\n"[..]);
    let req = decoder.decode(&mut other).unwrap().unwrap();
    assert_eq!(req.arg(0), b"PING");
}

#[test]
fn request_accessors() {
    let req = Request::from_args(&["MGET", "a", "bb", "", "c", "d", "e", "f"]);
    assert_eq!(req.argc(), 8);
    assert!(!req.is_inline());
    assert_eq!(req.arg(2), b"bb");
    assert_eq!(req.arg(3), b"");
    assert_eq!(req.arg_bytes(7), &b"f"[..]);
    assert_eq!(req.args().collect::<Vec<_>>()[1], b"a");
    assert_eq!(req.wire(), req.raw().clone());
    let decoded = decode(d(), req.raw());
    assert_eq!(decoded.frames, vec![req.clone()]);
    let empty = Request::from_args::<&str>(&[]);
    assert_eq!(empty.argc(), 0);
    assert_eq!(empty.raw(), &b"*0\r\n"[..]);
}

#[test]
#[should_panic]
fn arg_out_of_range_panics() {
    Request::from_args(&["PING"]).arg(1);
}

#[test]
fn set_limits_applies_to_next_decode() {
    let mut decoder = RequestDecoder::default();
    decoder.set_limits(small_limits());
    assert_eq!(decoder.limits(), small_limits());
    let mut buf = BytesMut::from(&b"*17\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::InvalidMultibulkLength)
    );
}
