use bytes::{Bytes, BytesMut};

use super::{aggregate_children, classify_error, parse_integer, ErrorClass, ReplyKind};
use crate::fuzzing::{scan_in_chunks, Outcome};
use crate::{ProtocolError, Reply, ReplyScanner};

/// Scan `input` whole, one byte at a time, and in several chunkings; all must agree.
fn scan(input: &[u8]) -> Outcome<Reply> {
    let whole = scan_in_chunks(input, &[usize::MAX]);
    for sizes in [&[1][..], &[2], &[3, 1, 7], &[5, 11, 2, 64]] {
        assert_eq!(
            whole,
            scan_in_chunks(input, sizes),
            "chunks {sizes:?} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    crate::fuzzing::reply_scanner(input);
    whole
}

/// `input` is exactly one reply of `kind`.
fn one(input: &[u8], kind: ReplyKind) {
    let out = scan(input);
    assert_eq!(out.end, Ok(0), "{:?}", String::from_utf8_lossy(input));
    assert_eq!(
        out.frames,
        vec![Reply {
            raw: Bytes::copy_from_slice(input),
            kind
        }],
        "{:?}",
        String::from_utf8_lossy(input)
    );
}

fn fails(input: &[u8], err: ProtocolError) {
    let out = scan(input);
    assert_eq!(out.end, Err(err), "{:?}", String::from_utf8_lossy(input));
}

#[test]
fn resp2_frames() {
    one(b"+OK\r\n", ReplyKind::Simple);
    one(b"-ERR bad\r\n", ReplyKind::Error(ErrorClass::Other));
    one(b":-12\r\n", ReplyKind::Integer);
    one(b"$5\r\nhello\r\n", ReplyKind::Bulk);
    one(b"$0\r\n\r\n", ReplyKind::Bulk);
    one(b"$4\r\na\r\nb\r\n", ReplyKind::Bulk);
    one(b"$-1\r\n", ReplyKind::Null);
    one(b"*-1\r\n", ReplyKind::Null);
    one(b"*0\r\n", ReplyKind::Array);
    one(
        b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n*0\r\n",
        ReplyKind::Array,
    );
}

#[test]
fn one_pass_replies_agree_with_the_general_path() {
    // Whole inputs take the one-pass path for `$`, `+` and `:`; `scan` also feeds them in
    // chunks, which go through the general path, and requires the same outcome.
    one(b"$10\r\n0123456789\r\n", ReplyKind::Bulk);
    one(b"$1\r\n\r\r\n", ReplyKind::Bulk);
    one(b":0\r\n", ReplyKind::Integer);
    one(b"+a\nb\r\n", ReplyKind::Simple);
    // The short-line loop: an empty line, a lone `\r` before the end, a line ending just
    // inside and just past its 32 bytes.
    one(b"+\r\n", ReplyKind::Simple);
    // `+OK` has a path of its own; lines that only start like it do not take it.
    one(b"+OKAY\r\n", ReplyKind::Simple);
    one(b"+OK\rX\r\n", ReplyKind::Simple);
    one(b"+O\r\n", ReplyKind::Simple);
    one(b"+a\rb\r\n", ReplyKind::Simple);
    one(b":-1234567890123456789\r\n", ReplyKind::Integer);
    one(b"+0123456789012345678901234567890\r\n", ReplyKind::Simple);
    one(b"+01234567890123456789012345678901\r\n", ReplyKind::Simple);
    fails(b"$01\r\nx\r\n", ProtocolError::InvalidReplyLength);
    fails(b"$5\r\nhelloXY", ProtocolError::MissingCrlf);
    fails(b"$5\n\r\nhello\r\n", ProtocolError::InvalidReplyLength);
    // Longer than the one-pass path parses: the general path waits for the payload.
    let out = scan(b"$12345678901\r\nx");
    assert_eq!((out.frames.len(), out.end), (0, Ok(15)));
    let out = scan(b"+OK\r\n$3\r\nabc\r\n:1\r\n$-1\r\n$0\r\n\r\n");
    assert_eq!(out.end, Ok(0));
    let kinds: Vec<ReplyKind> = out.frames.iter().map(|r| r.kind).collect();
    use ReplyKind::*;
    assert_eq!(kinds, [Simple, Bulk, Integer, Null, Bulk]);
}

#[test]
fn resp3_frames() {
    one(b"_\r\n", ReplyKind::Null);
    one(b",3.14\r\n", ReplyKind::Double);
    one(b",-inf\r\n", ReplyKind::Double);
    one(b"#t\r\n", ReplyKind::Boolean);
    one(
        b"(3492890328409238509324850943850943825024385\r\n",
        ReplyKind::BigNumber,
    );
    one(b"=15\r\ntxt:Some string\r\n", ReplyKind::Verbatim);
    one(
        b"!21\r\nSYNTAX invalid syntax\r\n",
        ReplyKind::Error(ErrorClass::Other),
    );
    one(b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n", ReplyKind::Map);
    one(b"%0\r\n", ReplyKind::Map);
    one(b"~2\r\n+a\r\n+b\r\n", ReplyKind::Set);
    one(b">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n", ReplyKind::Push);
}

#[test]
fn attributes_belong_to_the_next_value() {
    one(
        b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n",
        ReplyKind::Array,
    );
    one(b"|0\r\n+OK\r\n", ReplyKind::Simple);
    one(
        b"|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n:1\r\n",
        ReplyKind::Integer,
    );
    // Inside an aggregate, an attribute does not count as an element.
    one(b"*2\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n", ReplyKind::Array);
    one(
        b"|1\r\n+a\r\n+b\r\n-MOVED 1 h:1\r\n",
        ReplyKind::Error(ErrorClass::Moved),
    );
    let out = scan(b"|1\r\n+a\r\n+b\r\n");
    assert_eq!(out.frames, vec![]);
    assert_eq!(out.end, Ok(12));
}

#[test]
fn lines_end_at_the_first_crlf() {
    // Lone `\r`/`\n` inside a line are content, as hiredis and redis-protocol read them.
    one(b"+a\nb\rc\r\n", ReplyKind::Simple);
    one(b"-\n$3\r\n", ReplyKind::Error(ErrorClass::Other));
    let reply = scan(b"-ASK\r1\r\n").frames.remove(0);
    assert_eq!(reply.error_text(), Some(&b"ASK\r1"[..]));
    assert_eq!(scan(b"+OK\n").end, Ok(4));
}

#[test]
fn pipelined_replies_split_exactly() {
    let out = scan(b"+OK\r\n$3\r\nabc\r\n*1\r\n:1\r\n-ERR x\r\n:5");
    let raws: Vec<&[u8]> = out.frames.iter().map(|r| &r.raw[..]).collect();
    assert_eq!(
        raws,
        vec![
            &b"+OK\r\n"[..],
            b"$3\r\nabc\r\n",
            b"*1\r\n:1\r\n",
            b"-ERR x\r\n"
        ]
    );
    assert_eq!(out.end, Ok(2));
}

#[test]
fn classifies_cluster_errors() {
    let cases: [(&[u8], ErrorClass); 8] = [
        (b"-MOVED 3999 127.0.0.1:6381\r\n", ErrorClass::Moved),
        (b"-ASK 3999 127.0.0.1:6381\r\n", ErrorClass::Ask),
        (
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            ErrorClass::TryAgain,
        ),
        (
            b"-CLUSTERDOWN The cluster is down\r\n",
            ErrorClass::ClusterDown,
        ),
        (
            b"-LOADING Redis is loading the dataset in memory\r\n",
            ErrorClass::Loading,
        ),
        (b"-MOVEDX 1\r\n", ErrorClass::Other),
        (b"-ERR\r\n", ErrorClass::Other),
        (b"!10\r\nASK 1 h:10\r\n", ErrorClass::Ask),
    ];
    for (raw, class) in cases {
        one(raw, ReplyKind::Error(class));
    }
    let reply = scan(b"-MOVED 3999 127.0.0.1:6381\r\n").frames.remove(0);
    assert!(reply.is_error());
    assert_eq!(reply.error_text(), Some(&b"MOVED 3999 127.0.0.1:6381"[..]));
    let blob = scan(b"!5\r\nERR x\r\n").frames.remove(0);
    assert_eq!(blob.error_text(), Some(&b"ERR x"[..]));
    let ok = scan(b"+OK\r\n").frames.remove(0);
    assert!(!ok.is_error());
    assert_eq!(ok.error_text(), None);
    assert_eq!(classify_error(b""), ErrorClass::Other);
}

#[test]
fn rejects_broken_frames() {
    fails(b"x\r\n", ProtocolError::InvalidReplyType(b'x'));
    fails(b"+OK\r\n\r\n", ProtocolError::InvalidReplyType(b'\r'));
    fails(b"$3\r\nabcd\r\n", ProtocolError::MissingCrlf);
    fails(b"$x\r\n", ProtocolError::InvalidReplyLength);
    fails(b"$-2\r\n", ProtocolError::InvalidReplyLength);
    fails(b"~-1\r\n", ProtocolError::InvalidReplyLength);
    fails(b"*1\r\n:1\r\n$\r\n", ProtocolError::InvalidReplyLength);
    fails(b"$?\r\n;4\r\nabcd\r\n;0\r\n", ProtocolError::StreamedFrame);
    fails(b"*?\r\n:1\r\n.\r\n", ProtocolError::StreamedFrame);
    fails(b".\r\n", ProtocolError::StreamedFrame);
    // A type byte is rejected as soon as it arrives, without waiting for a line end.
    fails(
        b"*2\r\n:1\r\nzzzzzzzz",
        ProtocolError::InvalidReplyType(b'z'),
    );
}

#[test]
fn huge_counts_wait_without_allocating() {
    let out = scan(b"*9223372036854775807\r\n%9223372036854775807\r\n:1\r\n");
    assert_eq!(out.frames, vec![]);
    let out = scan(b"$9223372036854775807\r\nabc");
    assert_eq!(out.end, Ok(25));
}

#[test]
fn deep_nesting_does_not_recurse() {
    let mut input = b"*1\r\n".repeat(100_000);
    input.extend_from_slice(b":1\r\n");
    let out = scan_in_chunks(&input, &[4096]);
    assert_eq!(out.frames.len(), 1);
    assert_eq!(out.frames[0].raw.len(), input.len());
}

#[test]
fn large_array_in_pieces() {
    let mut input = b"*100000\r\n".to_vec();
    for i in 0..100_000 {
        input.extend_from_slice(format!("$5\r\n{i:05}\r\n").as_bytes());
    }
    let mut scanner = ReplyScanner::new();
    let mut buf = BytesMut::new();
    let mut replies = Vec::new();
    for chunk in input.chunks(65536) {
        buf.extend_from_slice(chunk);
        if let Some(r) = scanner.scan(&mut buf).unwrap() {
            replies.push(r);
        }
    }
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].raw.len(), input.len());
    let children = aggregate_children(&replies[0].raw).unwrap();
    assert_eq!(children.len(), 100_000);
    assert_eq!(&children[42][..], b"$5\r\n00042\r\n");
}

#[test]
fn aggregate_children_splits_direct_children() {
    let raw = Bytes::from_static(b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n:2\r\n|1\r\n+x\r\n+y\r\n$-1\r\n");
    let children = aggregate_children(&raw).unwrap();
    let children: Vec<&[u8]> = children.iter().map(|c| &c[..]).collect();
    assert_eq!(
        children,
        vec![
            &b"$1\r\na\r\n"[..],
            b"*2\r\n:1\r\n:2\r\n",
            b"|1\r\n+x\r\n+y\r\n$-1\r\n"
        ]
    );
    let map = Bytes::from_static(b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n");
    assert_eq!(aggregate_children(&map).unwrap().len(), 4);
    let set = Bytes::from_static(b"|1\r\n+a\r\n+b\r\n~1\r\n+m\r\n");
    assert_eq!(
        aggregate_children(&set).unwrap(),
        vec![Bytes::from_static(b"+m\r\n")]
    );
    assert_eq!(
        aggregate_children(&Bytes::from_static(b">0\r\n")),
        Some(vec![])
    );
    assert_eq!(
        aggregate_children(&Bytes::from_static(b"*0\r\n")),
        Some(vec![])
    );
    assert_eq!(aggregate_children(&Bytes::from_static(b"*-1\r\n")), None);
    assert_eq!(aggregate_children(&Bytes::from_static(b"+OK\r\n")), None);
    assert_eq!(
        aggregate_children(&Bytes::from_static(b"*2\r\n:1\r\n")),
        None
    );
    assert_eq!(aggregate_children(&Bytes::from_static(b"")), None);
}

#[test]
fn parses_integers() {
    assert_eq!(parse_integer(b":123\r\n"), Some(123));
    assert_eq!(parse_integer(b":-9223372036854775808\r\n"), Some(i64::MIN));
    assert_eq!(parse_integer(b":0\r\n"), Some(0));
    assert_eq!(parse_integer(b"+123\r\n"), None);
    assert_eq!(parse_integer(b":12a\r\n"), None);
    assert_eq!(parse_integer(b":12"), None);
}
