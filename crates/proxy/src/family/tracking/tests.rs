use bytes::Bytes;

use super::{format, overlap, prefix_collision};
use crate::protocol::Protocol;
use crate::runtime::tracking::Invalidated;

fn keys(names: &[&str]) -> Invalidated {
    Invalidated::Keys(
        names
            .iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect(),
    )
}

fn text(b: Option<Bytes>) -> Option<String> {
    b.map(|b| String::from_utf8(b.to_vec()).unwrap())
}

#[test]
fn invalidations_are_written_as_redis_writes_them() {
    // RESP3: a push on the client's own connection (or its RESP3 redirect target's).
    assert_eq!(
        text(format(Protocol::Resp3, false, &keys(&["k"]))).unwrap(),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
    );
    assert_eq!(
        text(format(Protocol::Resp3, false, &Invalidated::All)).unwrap(),
        ">2\r\n$10\r\ninvalidate\r\n_\r\n"
    );
    // RESP2: a message on __redis__:invalidate, only to a subscribed connection.
    assert_eq!(
        text(format(Protocol::Resp2, true, &keys(&["a", "b"]))).unwrap(),
        "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        text(format(Protocol::Resp2, true, &Invalidated::All)).unwrap(),
        "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"
    );
    assert_eq!(format(Protocol::Resp2, false, &keys(&["k"])), None);
    assert_eq!(
        text(format(
            Protocol::Resp3,
            false,
            &Invalidated::RedirectBroken(13)
        ))
        .unwrap(),
        ">2\r\n$21\r\ntracking-redir-broken\r\n:13\r\n"
    );
    assert_eq!(
        format(Protocol::Resp2, true, &Invalidated::RedirectBroken(13)),
        None
    );
}

#[test]
fn prefixes_must_not_overlap_in_redis_words() {
    let b = |s: &[&str]| -> Vec<Bytes> {
        s.iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    };
    assert!(overlap(b"a", b"ab") && overlap(b"ab", b"a") && !overlap(b"ab", b"ac"));
    assert!(
        overlap(b"", b"x"),
        "no prefix (every key) overlaps everything"
    );
    let err = prefix_collision(&[], &b(&["a", "ab"])).unwrap();
    assert_eq!(
        &err[..],
        b"-ERR Prefix 'a' overlaps with another provided prefix 'ab'. Prefixes for a single client must not overlap.\r\n"
    );
    let err = prefix_collision(&b(&["a"]), &b(&["ab"])).unwrap();
    assert_eq!(
        &err[..],
        b"-ERR Prefix 'ab' overlaps with an existing prefix 'a'. Prefixes for a single client must not overlap.\r\n"
    );
    assert!(prefix_collision(&b(&["a"]), &b(&["b", "c"])).is_none());
}
