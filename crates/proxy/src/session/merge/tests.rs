use bytes::{Bytes, BytesMut};

use super::{write, Merge};

fn merged(merge: Merge, replies: &[&str]) -> String {
    let replies: Vec<Bytes> = replies
        .iter()
        .map(|r| Bytes::copy_from_slice(r.as_bytes()))
        .collect();
    let mut out = BytesMut::new();
    write(merge, &replies, &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn mget_parts_go_back_in_key_order_nils_included() {
    // Keys 0, 2 went to one node, key 1 to another.
    let merge = Merge::Mget {
        total: 3,
        positions: vec![vec![0, 2], vec![1]],
    };
    let got = merged(merge, &["*2\r\n$1\r\na\r\n$-1\r\n", "*1\r\n$1\r\nb\r\n"]);
    assert_eq!(got, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
}

#[test]
fn mget_with_an_error_part_is_that_error() {
    let merge = Merge::Mget {
        total: 2,
        positions: vec![vec![0], vec![1]],
    };
    let got = merged(
        merge,
        &[
            "*1\r\n$1\r\na\r\n",
            "-CLUSTERDOWN slotgate: upstream 127.0.0.1:1 is unreachable\r\n",
        ],
    );
    assert_eq!(
        got,
        "-CLUSTERDOWN slotgate: upstream 127.0.0.1:1 is unreachable\r\n"
    );
}

#[test]
fn mget_with_a_part_of_the_wrong_shape_is_an_error() {
    let merge = Merge::Mget {
        total: 2,
        positions: vec![vec![0, 1]],
    };
    assert_eq!(
        merged(merge, &["*1\r\n$1\r\na\r\n"]),
        "-ERR slotgate: unexpected reply shape from upstream\r\n"
    );
}

#[test]
fn counts_are_summed_and_oks_combined() {
    assert_eq!(
        merged(Merge::SumInteger, &[":2\r\n", ":0\r\n", ":5\r\n"]),
        ":7\r\n"
    );
    assert_eq!(
        merged(Merge::SumInteger, &[":2\r\n", "$1\r\nx\r\n"]),
        "-ERR slotgate: unexpected reply shape from upstream\r\n"
    );
    assert_eq!(merged(Merge::AllOk, &["+OK\r\n", "+OK\r\n"]), "+OK\r\n");
    assert_eq!(
        merged(Merge::AllOk, &["+OK\r\n", "-OOM command not allowed\r\n"]),
        "-OOM command not allowed\r\n"
    );
}

#[test]
fn arrays_concatenate_and_and_arrays_take_the_minimum() {
    assert_eq!(
        merged(
            Merge::ConcatArrays,
            &["*1\r\n$1\r\na\r\n", "*0\r\n", "*1\r\n$1\r\nb\r\n"]
        ),
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        merged(
            Merge::AndArrays,
            &["*2\r\n:1\r\n:1\r\n", "*2\r\n:1\r\n:0\r\n"]
        ),
        "*2\r\n:1\r\n:0\r\n"
    );
    assert_eq!(
        merged(Merge::AndArrays, &["*2\r\n:1\r\n:1\r\n", "*1\r\n:1\r\n"]),
        "-ERR slotgate: unexpected reply shape from upstream\r\n"
    );
}

#[test]
fn pubsub_numsub_counts_are_summed_per_channel() {
    let a = "*4\r\n$1\r\nx\r\n:1\r\n$1\r\ny\r\n:0\r\n";
    let b = "*4\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n:3\r\n";
    assert_eq!(
        merged(Merge::SumPairs, &[a, b]),
        "*4\r\n$1\r\nx\r\n:3\r\n$1\r\ny\r\n:3\r\n"
    );
    // RESP3 maps stay maps.
    let a = "%1\r\n$1\r\nx\r\n:1\r\n";
    assert_eq!(merged(Merge::SumPairs, &[a, a]), "%1\r\n$1\r\nx\r\n:2\r\n");
}

#[test]
fn randomkey_prefers_a_key_and_first_is_the_first() {
    assert_eq!(
        merged(Merge::AnyNonNil, &["$-1\r\n", "$1\r\nk\r\n", "$-1\r\n"]),
        "$1\r\nk\r\n"
    );
    assert_eq!(merged(Merge::AnyNonNil, &["$-1\r\n", "$-1\r\n"]), "$-1\r\n");
    assert_eq!(
        merged(Merge::First, &["$3\r\nsha\r\n", "$3\r\nsha\r\n"]),
        "$3\r\nsha\r\n"
    );
}
