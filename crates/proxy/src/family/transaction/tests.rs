//! Transactions through the dispatcher against scripted fake nodes: queueing and EXEC on one
//! connection, a CROSSSLOT refusal turning EXEC into EXECABORT, a WATCH that aborts, and a
//! MOVED inside the transaction followed to the new owner.

use std::time::Duration;

use crate::session::client::ClientState;
use crate::testing::{fake_node, local, replies_of, worker_ctx, Answer};

fn client() -> ClientState {
    let peer = "127.0.0.1:9".parse().unwrap();
    ClientState::new(1, peer, peer, None, crate::testing::budget())
}

/// A node that runs transactions like Redis: `+OK` to MULTI, `+QUEUED` to each queued
/// command, then EXEC's array of `:1` per command (or `*-1` when `abort_exec`).
fn redis_like(abort_exec: bool) -> impl FnMut(&[String]) -> Answer {
    let mut queued: Option<usize> = None;
    move |args| {
        let reply = match (args[0].as_str(), queued.as_mut()) {
            ("MULTI", _) => {
                queued = Some(0);
                "+OK\r\n".to_string()
            }
            ("EXEC", Some(n)) => {
                let n = *n;
                queued = None;
                if abort_exec {
                    "*-1\r\n".to_string()
                } else {
                    format!("*{n}\r\n{}", ":1\r\n".repeat(n))
                }
            }
            (_, Some(n)) => {
                *n += 1;
                "+QUEUED\r\n".to_string()
            }
            ("WATCH", None) | ("UNWATCH", None) => "+OK\r\n".to_string(),
            _ => ":1\r\n".to_string(),
        };
        Answer::Reply(reply.into_bytes())
    }
}

#[test]
fn queued_commands_run_in_one_multi_exec_on_the_slots_owner() {
    local(|| async {
        let a = fake_node(redis_like(false)).await;
        let ctx = worker_ctx(&[(0, 16383, &a.addr)], Duration::from_secs(2));
        let mut c = client();
        let got = replies_of(
            &ctx,
            &mut c,
            &[&["MULTI"], &["INCR", "{t}a"], &["INCR", "{t}b"], &["EXEC"]],
        )
        .await;
        assert_eq!(
            got,
            [
                "+OK\r\n",
                "+QUEUED\r\n",
                "+QUEUED\r\n",
                "*2\r\n:1\r\n:1\r\n"
            ]
        );
        assert_eq!(a.commands(), ["MULTI", "INCR {t}a", "INCR {t}b", "EXEC"]);
        assert_eq!(a.connections(), 1, "one connection");
    });
}

#[test]
fn keys_in_two_slots_refuse_the_command_and_exec_aborts() {
    local(|| async {
        let a = fake_node(redis_like(false)).await;
        let ctx = worker_ctx(&[(0, 16383, &a.addr)], Duration::from_secs(2));
        let mut c = client();
        let got = replies_of(
            &ctx,
            &mut c,
            &[
                &["MULTI"],
                &["SET", "a", "1"],
                &["SET", "b", "1"],
                &["EXEC"],
            ],
        )
        .await;
        assert_eq!(got[0], "+OK\r\n");
        assert_eq!(got[1], "+QUEUED\r\n");
        assert_eq!(
            got[2],
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        );
        assert_eq!(
            got[3],
            "-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        assert!(a.commands().is_empty(), "nothing reached the node");
    });
}

#[test]
fn a_watched_key_that_changed_aborts_with_a_nil_array() {
    local(|| async {
        let a = fake_node(redis_like(true)).await;
        let ctx = worker_ctx(&[(0, 16383, &a.addr)], Duration::from_secs(2));
        let mut c = client();
        let got = replies_of(
            &ctx,
            &mut c,
            &[&["WATCH", "k"], &["MULTI"], &["SET", "k", "v"], &["EXEC"]],
        )
        .await;
        assert_eq!(got, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*-1\r\n"]);
        assert_eq!(a.commands(), ["WATCH k", "MULTI", "SET k v", "EXEC"]);
        assert_eq!(a.connections(), 1, "EXEC on the WATCH's connection");
    });
}

#[test]
fn a_moved_inside_the_transaction_runs_it_on_the_new_owner() {
    local(|| async {
        let b = fake_node(redis_like(false)).await;
        let slot = slotgate_cluster::slot(b"k");
        let moved = format!("-MOVED {slot} {}\r\n", b.addr);
        // The old owner refuses the queued command with MOVED and discards the transaction.
        let a = fake_node(move |args| {
            Answer::Reply(
                match args[0].as_str() {
                    "MULTI" => "+OK\r\n".to_string(),
                    "EXEC" => "-EXECABORT Transaction discarded because of previous errors.\r\n"
                        .to_string(),
                    _ => moved.clone(),
                }
                .into_bytes(),
            )
        })
        .await;
        let ctx = worker_ctx(&[(0, 16383, &a.addr)], Duration::from_secs(2));
        let mut c = client();
        let got = replies_of(&ctx, &mut c, &[&["MULTI"], &["INCR", "k"], &["EXEC"]]).await;
        assert_eq!(got, ["+OK\r\n", "+QUEUED\r\n", "*1\r\n:1\r\n"]);
        assert_eq!(a.commands(), ["MULTI", "INCR k", "EXEC"]);
        assert_eq!(b.commands(), ["MULTI", "INCR k", "EXEC"]);
    });
}
