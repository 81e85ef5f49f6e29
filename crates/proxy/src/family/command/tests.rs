use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use slotgate_commands::lookup_name;

use super::{serves_in, Filter, Kind, Served};
use crate::protocol::Protocol;
use crate::session::merge::WholeMerge;
use crate::upstream::command_table::Learned;

fn served(one_primary: bool, admin_acl: bool) -> Served {
    Served {
        learned: Arc::new(Learned::default()),
        one_primary,
        admin_acl,
    }
}

fn filtered(kind: Kind, reply: &str) -> String {
    let filter = Filter {
        served: served(false, false),
        kind,
    };
    let mut out = BytesMut::new();
    filter.write(&[Bytes::copy_from_slice(reply.as_bytes())], &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

/// A `COMMAND` entry (RESP2) named `name` with these subcommand entries.
fn entry(name: &str, subs: &[String]) -> String {
    format!(
        "*10\r\n${}\r\n{name}\r\n:-2\r\n*1\r\n+fast\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*{}\r\n{}",
        name.len(),
        subs.len(),
        subs.concat()
    )
}

#[test]
fn refused_commands_and_subcommands_are_left_out_of_command() {
    let client = entry(
        "client",
        &[entry("client|kill", &[]), entry("client|setname", &[])],
    );
    let reply = format!(
        "*3\r\n{}{}{client}",
        entry("get", &[]),
        entry("monitor", &[])
    );
    let want = format!(
        "*2\r\n{}{}",
        entry("get", &[]),
        entry("client", &[entry("client|setname", &[])])
    );
    assert_eq!(filtered(Kind::Entries { nil: None }, &reply), want);
}

#[test]
fn command_info_answers_nil_for_a_refused_name_as_for_an_unknown_one() {
    let reply = format!(
        "*3\r\n{}{}$-1\r\n",
        entry("get", &[]),
        entry("monitor", &[])
    );
    let want = format!("*3\r\n{}$-1\r\n$-1\r\n", entry("get", &[]));
    let nil = Some(Protocol::Resp2);
    assert_eq!(filtered(Kind::Entries { nil }, &reply), want);
    let reply = format!("*2\r\n{}_\r\n", entry("monitor", &[]));
    let nil = Some(Protocol::Resp3);
    assert_eq!(filtered(Kind::Entries { nil }, &reply), "*2\r\n_\r\n_\r\n");
}

#[test]
fn list_and_count_name_only_what_is_served() {
    let reply = "*5\r\n$3\r\nget\r\n$7\r\nmonitor\r\n$6\r\nclient\r\n$11\r\nclient|kill\r\n$11\r\nclient|info\r\n";
    assert_eq!(
        filtered(Kind::List, reply),
        "*3\r\n$3\r\nget\r\n$6\r\nclient\r\n$11\r\nclient|info\r\n"
    );
    // COUNT counts top-level commands, as Redis does.
    assert_eq!(filtered(Kind::Count, reply), ":2\r\n");
}

#[test]
fn docs_leave_out_refused_commands_and_subcommands_in_both_protocols() {
    let doc =
        |subs: &str| format!("*4\r\n$7\r\nsummary\r\n$1\r\ns\r\n$11\r\nsubcommands\r\n{subs}");
    let kill = "$11\r\nclient|kill\r\n*2\r\n$7\r\nsummary\r\n$1\r\nk\r\n";
    let info = "$11\r\nclient|info\r\n*2\r\n$7\r\nsummary\r\n$1\r\ni\r\n";
    let reply = format!(
        "*4\r\n$7\r\nmonitor\r\n{}$6\r\nclient\r\n{}",
        doc("*0\r\n"),
        doc(&format!("*4\r\n{kill}{info}"))
    );
    let want = format!("*2\r\n$6\r\nclient\r\n{}", doc(&format!("*2\r\n{info}")));
    assert_eq!(filtered(Kind::Docs, &reply), want);
    // RESP3: maps, counted in pairs.
    let doc3 =
        |subs: &str| format!("%2\r\n$7\r\nsummary\r\n$1\r\ns\r\n$11\r\nsubcommands\r\n{subs}");
    let reply = format!(
        "%2\r\n$7\r\nmonitor\r\n{}$6\r\nclient\r\n{}",
        doc3("%0\r\n"),
        doc3(&format!("%2\r\n{kill}{info}"))
    );
    let want = format!("%1\r\n$6\r\nclient\r\n{}", doc3(&format!("%1\r\n{info}")));
    assert_eq!(filtered(Kind::Docs, &reply), want);
}

#[test]
fn an_error_passes_and_a_reply_of_the_wrong_shape_is_not_trusted() {
    let err = "-ERR unknown subcommand\r\n";
    assert_eq!(filtered(Kind::List, err), err);
    assert!(filtered(Kind::List, ":3\r\n").starts_with("-ERR"));
}

#[test]
fn what_is_served_follows_the_mode_and_the_admin_setting() {
    let cmd = |name: &str| lookup_name(name.as_bytes()).unwrap();
    let sub = |name: &str, sub: &str| {
        slotgate_commands::lookup(&[name.as_bytes(), sub.as_bytes()][..]).unwrap()
    };
    assert!(serves_in(false, false, cmd("get")));
    assert!(!serves_in(false, false, cmd("monitor")));
    // SWAPDB with one primary; CLUSTER and READONLY only in cluster mode.
    assert!(!serves_in(false, false, cmd("swapdb")));
    assert!(serves_in(true, false, cmd("swapdb")));
    assert!(serves_in(false, false, sub("cluster", "info")));
    assert!(!serves_in(true, false, sub("cluster", "info")));
    assert!(!serves_in(true, false, cmd("readonly")));
    // CONFIG SET under `upstream.admin_commands: acl`.
    assert!(!serves_in(false, false, sub("config", "set")));
    assert!(serves_in(false, true, sub("config", "set")));
    // A container is served when one of its subcommands is.
    let s = served(true, false);
    assert!(s.name(b"client"));
    assert!(!s.name(b"cluster"));
    assert!(s.name(b"command"));
    assert!(!s.name(b"client|kill"));
    assert!(!s.name(b"nosuch"));
}
