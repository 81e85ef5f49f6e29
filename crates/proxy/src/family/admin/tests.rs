use bytes::{Bytes, BytesMut};

use super::*;

const A: &str = "10.0.0.1:6379";
const B: &str = "10.0.0.2:6379";
const C: &str = "10.0.0.3:6379";

fn merged(name: &'static str, agreement: Agreement, replies: &[&str]) -> String {
    let nodes = [A, B, C][..replies.len()]
        .iter()
        .map(|n| NodeAddr::new(n))
        .collect();
    let m = AllNodes {
        name,
        nodes,
        agreement,
    };
    let replies: Vec<Bytes> = replies
        .iter()
        .map(|r| Bytes::copy_from_slice(r.as_bytes()))
        .collect();
    let mut out = BytesMut::new();
    write_merged(&m, &replies, &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn every_node_ok_is_ok() {
    let got = merged("config|set", Agreement::Ok, &["+OK\r\n"; 3]);
    assert_eq!(got, "+OK\r\n");
}

#[test]
fn one_node_refusing_names_who_failed_and_who_applied_it() {
    let got = merged(
        "config|set",
        Agreement::Ok,
        &["+OK\r\n", "-ERR Unknown option\r\n", "+OK\r\n"],
    );
    assert_eq!(
        got,
        format!("-ERR slotgate: CONFIG SET failed on {B} (ERR Unknown option); succeeded on {A}, {C}\r\n")
    );
}

#[test]
fn nodes_with_the_same_error_are_listed_together() {
    let got = merged(
        "config|rewrite",
        Agreement::Ok,
        &[
            "-ERR The server is running without a config file\r\n",
            "-NOPERM no\r\n",
            "-ERR The server is running without a config file\r\n",
        ],
    );
    assert_eq!(
        got,
        format!("-ERR slotgate: CONFIG REWRITE failed on {A}, {C} (ERR The server is running without a config file); {B} (NOPERM no); succeeded on no node\r\n")
    );
}

#[test]
fn slotgates_own_upstream_errors_count_as_failures() {
    let got = merged(
        "save",
        Agreement::Ok,
        &[
            "+OK\r\n",
            &format!("-ERR slotgate: upstream {B} did not answer in time; the command may have been executed\r\n"),
        ],
    );
    assert_eq!(
        got,
        format!("-ERR slotgate: SAVE failed on {B} (ERR slotgate: upstream {B} did not answer in time; the command may have been executed); succeeded on {A}\r\n")
    );
}

#[test]
fn an_unexpected_shape_is_a_failure() {
    let got = merged("save", Agreement::Ok, &["+OK\r\n", ":1\r\n"]);
    assert_eq!(
        got,
        format!("-ERR slotgate: SAVE failed on {B} (unexpected reply shape); succeeded on {A}\r\n")
    );
}

#[test]
fn resp3_blob_errors_are_read() {
    let got = merged("save", Agreement::Ok, &["!7\r\nERR bad\r\n", "+OK\r\n"]);
    assert_eq!(
        got,
        format!("-ERR slotgate: SAVE failed on {A} (ERR bad); succeeded on {B}\r\n")
    );
}

#[test]
fn bgsave_started_everywhere_is_redis_text() {
    let started = "+Background saving started\r\n";
    let got = merged("bgsave", Agreement::Started, &[started; 3]);
    assert_eq!(got, started);
}

#[test]
fn bgsave_scheduled_somewhere_says_scheduled() {
    let got = merged(
        "bgsave",
        Agreement::Started,
        &[
            "+Background saving started\r\n",
            "+Background saving scheduled\r\n",
            "+Background saving started\r\n",
        ],
    );
    assert_eq!(got, "+Background saving scheduled\r\n");
}

#[test]
fn bgsave_in_progress_on_one_node_is_an_error() {
    let got = merged(
        "bgsave",
        Agreement::Started,
        &[
            "+Background saving started\r\n",
            "-ERR Background save already in progress\r\n",
        ],
    );
    assert_eq!(
        got,
        format!("-ERR slotgate: BGSAVE failed on {B} (ERR Background save already in progress); succeeded on {A}\r\n")
    );
}

#[test]
fn lastsave_is_the_oldest() {
    let got = merged(
        "lastsave",
        Agreement::Oldest,
        &[":1700000300\r\n", ":1700000100\r\n", ":1700000200\r\n"],
    );
    assert_eq!(got, ":1700000100\r\n");
}

#[test]
fn lastsave_error_names_the_node() {
    let got = merged("lastsave", Agreement::Oldest, &[":1\r\n", "$1\r\nx\r\n"]);
    assert_eq!(
        got,
        format!(
            "-ERR slotgate: LASTSAVE failed on {B} (unexpected reply shape); succeeded on {A}\r\n"
        )
    );
}

#[test]
fn config_get_is_the_first_nodes_reply_as_it_is() {
    let first = "%1\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n";
    let other = "%1\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n";
    assert_eq!(
        merged("config|get", Agreement::First, &[first, other]),
        first
    );
    let got = merged("config|get", Agreement::First, &[first, "-NOPERM x\r\n"]);
    assert_eq!(
        got,
        format!("-ERR slotgate: CONFIG GET failed on {B} (NOPERM x); succeeded on {A}\r\n")
    );
}

#[test]
fn a_missing_reply_is_a_failure_not_a_panic() {
    let m = AllNodes {
        name: "save",
        nodes: vec![NodeAddr::new(A), NodeAddr::new(B)],
        agreement: Agreement::Ok,
    };
    let mut out = BytesMut::new();
    write_merged(&m, &[Bytes::from_static(b"+OK\r\n")], &mut out);
    assert!(out.starts_with(b"-ERR slotgate: SAVE failed on 10.0.0.2:6379"));
    let empty = AllNodes {
        name: "save",
        nodes: Vec::new(),
        agreement: Agreement::First,
    };
    let mut out = BytesMut::new();
    write_merged(&empty, &[], &mut out);
    assert!(out.starts_with(b"-ERR slotgate: SAVE failed on"));
}

#[test]
fn only_the_admin_commands_have_a_shape() {
    for name in [
        "config|set",
        "config|resetstat",
        "config|rewrite",
        "save",
        "bgsave",
        "bgrewriteaof",
        "lastsave",
    ] {
        assert!(shape(name).is_some(), "{name}");
    }
    for name in [
        "config|get",
        "flushall",
        "publish",
        "shutdown",
        "config|help",
    ] {
        assert!(shape(name).is_none(), "{name}");
    }
    assert_eq!(shape("config|set").unwrap().0, Reach::EveryNode);
    assert_eq!(shape("save").unwrap().0, Reach::Primaries);
}
