//! The op state machine against scripted fake nodes on loopback ports: every way a request
//! to the cluster can end.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::runtime::context::WorkerCtx;
use crate::testing::{fake_node, local, worker_ctx, Answer, FakeNode};

const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
const SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";

/// A worker context whose slot map gives every slot to `owner` (at most 3 redirects).
fn worker(owner: &str, op_timeout: Duration) -> WorkerCtx {
    worker_ctx(&[(0, 16383, owner)], op_timeout)
}

/// Drive `op` as a session would until it finishes: its reply and outcome.
async fn finish(ctx: &WorkerCtx, mut op: Op) -> (String, CmdResult) {
    loop {
        if op.poll_sync(ctx, Instant::now()) {
            let outcome = op.outcome();
            return (
                String::from_utf8_lossy(&op.take_reply()).into_owned(),
                outcome,
            );
        }
        let event = match op.deadline() {
            Some(due) => tokio::select! {
                event = op.next_event() => event,
                () = tokio::time::sleep_until(due) => Event::Timeout,
            },
            None => op.next_event().await,
        };
        op.on_event(ctx, event);
    }
}

fn start(ctx: &WorkerCtx, wire: &'static [u8], readonly: bool) -> Op {
    let deadline = Instant::now() + ctx.cfg.upstream.op_timeout;
    let slot = slotgate_cluster::slot(b"k");
    Op::start(
        ctx,
        Route::Slot(slot),
        Bytes::from_static(wire),
        readonly,
        deadline,
        Dialect::RESP2,
        &crate::testing::budget(),
    )
}

fn reply(text: &str) -> Answer {
    Answer::Reply(text.as_bytes().to_vec())
}

#[test]
fn a_plain_reply_finishes_at_once() {
    local(|| async {
        let a = fake_node(|_| reply("$1\r\nv\r\n")).await;
        let ctx = worker(&a.addr, Duration::from_secs(2));
        assert_eq!(
            finish(&ctx, start(&ctx, GET, true)).await,
            ("$1\r\nv\r\n".into(), CmdResult::Ok)
        );
        assert_eq!(a.commands(), ["GET k"]);
    });
}

#[test]
fn moved_patches_the_map_and_resends_to_the_new_owner() {
    local(|| async {
        let b = fake_node(|_| reply("$1\r\nb\r\n")).await;
        let moved = format!("-MOVED {} {}\r\n", slotgate_cluster::slot(b"k"), b.addr);
        let a = fake_node(move |_| reply(&moved)).await;
        let ctx = worker(&a.addr, Duration::from_secs(2));
        let (got, outcome) = finish(&ctx, start(&ctx, GET, true)).await;
        assert_eq!(
            (got.as_str(), outcome),
            ("$1\r\nb\r\n", CmdResult::Redirected)
        );
        assert_eq!(a.commands(), ["GET k"]);
        assert_eq!(b.commands(), ["GET k"]);
        let owner = ctx
            .topology
            .map()
            .primary_for_slot(slotgate_cluster::slot(b"k"))
            .cloned();
        assert_eq!(owner.unwrap().as_str(), b.addr);
        // The next op goes straight to the new owner.
        assert_eq!(finish(&ctx, start(&ctx, GET, true)).await.0, "$1\r\nb\r\n");
        assert_eq!(a.commands().len(), 1);
    });
}

#[test]
fn ask_sends_asking_and_the_command_together_and_keeps_the_map() {
    local(|| async {
        let b = fake_node(|args| match args[0].as_str() {
            "ASKING" => reply("+OK\r\n"),
            _ => reply("$1\r\nb\r\n"),
        })
        .await;
        let ask = format!("-ASK {} {}\r\n", slotgate_cluster::slot(b"k"), b.addr);
        let a = fake_node(move |_| reply(&ask)).await;
        let ctx = worker(&a.addr, Duration::from_secs(2));
        assert_eq!(finish(&ctx, start(&ctx, GET, true)).await.0, "$1\r\nb\r\n");
        assert_eq!(b.commands(), ["ASKING", "GET k"]);
        let seen = b.seen.borrow();
        assert_eq!(
            seen[0].0, seen[1].0,
            "ASKING and the command share a connection"
        );
        let owner = ctx
            .topology
            .map()
            .primary_for_slot(slotgate_cluster::slot(b"k"))
            .cloned();
        assert_eq!(owner.unwrap().as_str(), a.addr, "ASK changes no map");
    });
}

#[test]
fn tryagain_clusterdown_and_loading_are_retried_until_an_answer() {
    for error in [
        "-TRYAGAIN later\r\n",
        "-CLUSTERDOWN The cluster is down\r\n",
        "-LOADING loading\r\n",
    ] {
        local(|| async move {
            let mut calls = 0;
            let a = fake_node(move |_| {
                calls += 1;
                if calls <= 2 {
                    reply(error)
                } else {
                    reply("+OK\r\n")
                }
            })
            .await;
            let ctx = worker(&a.addr, Duration::from_secs(2));
            assert_eq!(
                finish(&ctx, start(&ctx, SET, false)).await.0,
                "+OK\r\n",
                "{error}"
            );
            assert_eq!(a.commands().len(), 3, "{error}");
        });
    }
}

#[test]
fn a_retryable_error_that_lasts_past_the_deadline_is_the_reply() {
    local(|| async {
        let a = fake_node(|_| reply("-CLUSTERDOWN The cluster is down\r\n")).await;
        let ctx = worker(&a.addr, Duration::from_millis(150));
        let started = Instant::now();
        let (got, outcome) = finish(&ctx, start(&ctx, GET, true)).await;
        assert_eq!(
            (got.as_str(), outcome),
            ("-CLUSTERDOWN The cluster is down\r\n", CmdResult::Error)
        );
        assert!(started.elapsed() < Duration::from_millis(400));
        // 10 + 20 + 40 + 80 ms of backoff fit before 150 ms: a few tries, not one per ms.
        let tries = a.commands().len();
        assert!((3..=6).contains(&tries), "{tries} tries");
    });
}

#[test]
fn a_read_lost_after_the_write_is_resent_once_and_a_write_is_not() {
    local(|| async {
        let mut calls = 0;
        let a = fake_node(move |_| {
            calls += 1;
            if calls == 1 {
                Answer::Close
            } else {
                reply("$1\r\nv\r\n")
            }
        })
        .await;
        let ctx = worker(&a.addr, Duration::from_secs(2));
        assert_eq!(finish(&ctx, start(&ctx, GET, true)).await.0, "$1\r\nv\r\n");
        assert_eq!(a.commands(), ["GET k", "GET k"]);

        let b = fake_node(|_| Answer::Close).await;
        let ctx = worker(&b.addr, Duration::from_secs(2));
        let (got, _) = finish(&ctx, start(&ctx, SET, false)).await;
        assert_eq!(
            got,
            format!("-ERR slotgate: connection to upstream {} lost; the command may have been executed\r\n", b.addr)
        );
        assert_eq!(b.commands(), ["SET k v"], "a write is never sent twice");

        // A read lost twice is an error too.
        let c = fake_node(|_| Answer::Close).await;
        let ctx = worker(&c.addr, Duration::from_secs(2));
        assert!(finish(&ctx, start(&ctx, GET, true))
            .await
            .0
            .contains("lost"));
        assert_eq!(c.commands().len(), 2);
    });
}

#[test]
fn an_unreachable_node_is_retried_then_reported_unreachable() {
    local(|| async {
        // A port nothing listens on.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let ctx = worker(&addr, Duration::from_millis(200));
        let (got, outcome) = finish(&ctx, start(&ctx, SET, false)).await;
        assert_eq!(
            got,
            format!("-CLUSTERDOWN slotgate: upstream {addr} is unreachable\r\n")
        );
        assert_eq!(outcome, CmdResult::Error);
    });
}

#[test]
fn a_silent_node_times_out_a_read_as_tryagain_and_a_write_as_maybe_executed() {
    local(|| async {
        let a: FakeNode = fake_node(|_| Answer::Silence).await;
        let ctx = worker(&a.addr, Duration::from_millis(100));
        let (got, outcome) = finish(&ctx, start(&ctx, GET, true)).await;
        assert_eq!(
            got,
            format!(
                "-TRYAGAIN slotgate: upstream {} did not answer in time\r\n",
                a.addr
            )
        );
        assert_eq!(outcome, CmdResult::Timeout);
        let (got, _) = finish(&ctx, start(&ctx, SET, false)).await;
        assert_eq!(
            got,
            format!("-ERR slotgate: upstream {} did not answer in time; the command may have been executed\r\n", a.addr)
        );
    });
}

#[test]
fn the_redirect_limit_returns_the_last_redirect() {
    local(|| async {
        let slot = slotgate_cluster::slot(b"k");
        // Two nodes that send the command to each other forever.
        let b_addr = Rc::new(std::cell::RefCell::new(String::new()));
        let to_b = Rc::clone(&b_addr);
        let a = fake_node(move |_| reply(&format!("-MOVED {slot} {}\r\n", to_b.borrow()))).await;
        let a_addr = a.addr.clone();
        let b = fake_node(move |_| reply(&format!("-MOVED {slot} {a_addr}\r\n"))).await;
        *b_addr.borrow_mut() = b.addr.clone();
        let ctx = worker(&a.addr, Duration::from_secs(2));
        let (got, outcome) = finish(&ctx, start(&ctx, GET, true)).await;
        assert!(got.starts_with("-MOVED"), "{got}");
        assert_eq!(outcome, CmdResult::Error);
        assert_eq!(
            a.commands().len() + b.commands().len(),
            4,
            "the first try and 3 redirects"
        );
    });
}

#[test]
fn noscript_is_repaired_once_with_the_body_slotgate_saw() {
    local(|| async {
        let mut loaded = false;
        let a = fake_node(move |args| match args[0].as_str() {
            "SCRIPT" => {
                loaded = true;
                reply("$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n")
            }
            _ if loaded => reply(":1\r\n"),
            _ => reply("-NOSCRIPT No matching script. Please use EVAL.\r\n"),
        })
        .await;
        let ctx = worker(&a.addr, Duration::from_secs(2));
        let wire: &'static [u8] =
            b"*3\r\n$7\r\nEVALSHA\r\n$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n$1\r\n0\r\n";
        let mut op = start(&ctx, wire, false);
        op.repair_noscript(Bytes::from_static(
            b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n",
        ));
        assert_eq!(finish(&ctx, op).await.0, ":1\r\n");
        let commands = a.commands();
        assert_eq!(commands.len(), 3);
        assert!(commands[1].starts_with("SCRIPT LOAD"), "{commands:?}");
    });
}
