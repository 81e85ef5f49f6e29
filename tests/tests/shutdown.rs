//! Graceful shutdown as docs/cli.md promises it: SIGTERM drains, `shutdown_grace` is an upper
//! bound even for a client blocked in `BLPOP k 0`, a second signal exits at once, and the last
//! log line says how the process ended.

use std::time::{Duration, Instant};

use slotgate_tests::raw::RawConn;
use slotgate_tests::{assert_eventually, shared_cluster, unique_key_prefix, ProxyConfig, Slotgate};

/// slotgate in front of the shared cluster with `shutdown_grace: grace` and an admin port
/// (its `/readyz` shows when the drain began).
fn proxy_with_grace(grace: &str) -> Slotgate {
    ProxyConfig::new(&shared_cluster().seeds())
        .admin()
        .raw(&format!("shutdown_grace: {grace}\n"))
        .spawn()
}

/// A raw client blocked in `BLPOP key 0` through `proxy` (the node reports it blocked).
fn blocked_client(proxy: &Slotgate, key: &str) -> RawConn {
    let mut conn = RawConn::connect(proxy.port());
    conn.roundtrip(&[b"PING"], b"+PONG\r\n");
    assert!(conn.send_command(&[b"BLPOP", key.as_bytes(), b"0"]));
    shared_cluster().wait_blocked(key);
    conn
}

/// The last non-empty line of the process's log.
fn last_log_line(proxy: &Slotgate) -> String {
    proxy
        .log()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// Wait until `proxy` logged that the drain began.
fn wait_draining(proxy: &Slotgate) {
    assert_eventually!(
        proxy.log().contains("shutting down"),
        Duration::from_secs(5),
        "no shutdown logged:\n{}",
        proxy.log()
    );
}

#[test]
fn an_idle_proxy_drains_and_says_so() {
    let mut proxy = proxy_with_grace("10s");
    let mut conn = RawConn::connect(proxy.port());
    conn.roundtrip(&[b"PING"], b"+PONG\r\n");
    let started = Instant::now();
    assert!(proxy.sigterm());
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{}", proxy.log()));
    let took = started.elapsed();
    eprintln!("idle drain: exit {took:?} after SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.log()
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(conn.closed_within(Duration::from_secs(1)));
    let last = last_log_line(&proxy);
    assert!(last.contains("exited: drained"), "last log line: {last}");
}

#[test]
fn a_blocking_command_that_ends_within_the_grace_is_answered_first() {
    let mut proxy = proxy_with_grace("10s");
    let key = format!("{}queue", unique_key_prefix("shutdown"));
    let mut conn = RawConn::connect(proxy.port());
    conn.roundtrip(&[b"PING"], b"+PONG\r\n");
    assert!(conn.send_command(&[b"BLPOP", key.as_bytes(), b"0.5"]));
    shared_cluster().wait_blocked(&key);
    let started = Instant::now();
    assert!(proxy.sigterm());
    // BLPOP's own timeout runs out during the drain: its nil reply arrives, then the close.
    conn.expect(b"*-1\r\n");
    assert!(conn.closed_within(Duration::from_secs(1)));
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{}", proxy.log()));
    let took = started.elapsed();
    eprintln!("BLPOP 0.5 with shutdown_grace 10s: exit {took:?} after SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.log()
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let last = last_log_line(&proxy);
    assert!(last.contains("exited: drained"), "last log line: {last}");
}

#[test]
fn a_client_blocked_in_blpop_does_not_hold_the_process_past_shutdown_grace() {
    let mut proxy = proxy_with_grace("1s");
    let key = format!("{}queue", unique_key_prefix("shutdown"));
    let mut blocked = blocked_client(&proxy, &key);
    // An idle client, a Pub/Sub subscriber and a client between MULTI and EXEC beside it
    // have nothing in flight: they are closed at once, not at the deadline.
    let mut idle = RawConn::connect(proxy.port());
    idle.roundtrip(&[b"PING"], b"+PONG\r\n");
    let mut subscriber = RawConn::connect(proxy.port());
    subscriber.roundtrip(
        &[b"SUBSCRIBE", b"shutdown:news"],
        b"*3\r\n$9\r\nsubscribe\r\n$13\r\nshutdown:news\r\n:1\r\n",
    );

    let mut multi = RawConn::connect(proxy.port());
    multi.roundtrip(&[b"MULTI"], b"+OK\r\n");
    multi.roundtrip(&[b"SET", b"shutdown:multi", b"1"], b"+QUEUED\r\n");

    let started = Instant::now();
    assert!(proxy.sigterm());
    assert!(
        multi.closed_within(Duration::from_millis(500)),
        "MULTI client left open"
    );
    assert!(
        idle.closed_within(Duration::from_millis(500)),
        "idle client left open"
    );
    assert!(
        subscriber.closed_within(Duration::from_millis(500)),
        "subscriber left open"
    );
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM; log:\n{}", proxy.log()));
    let took = started.elapsed();
    eprintln!("BLPOP 0 with shutdown_grace 1s: exit {took:?} after SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.log()
    );
    assert!(
        took >= Duration::from_millis(900),
        "exited before the grace: {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        blocked.closed_within(Duration::from_millis(200)),
        "blocked client left open"
    );
    let last = last_log_line(&proxy);
    assert!(
        last.contains("exited: shutdown_grace passed with 1 clients open"),
        "last log line: {last}"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    for second in ["TERM", "INT"] {
        let mut proxy = proxy_with_grace("30s");
        let key = format!("{}queue", unique_key_prefix("shutdown"));
        let mut blocked = blocked_client(&proxy, &key);
        assert!(proxy.sigterm());
        wait_draining(&proxy);
        assert!(
            proxy.try_exit_status().is_none(),
            "exited with a client blocked"
        );

        let started = Instant::now();
        assert!(proxy.signal(second));
        let status = proxy
            .wait_exit(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no exit after a second signal; log:\n{}", proxy.log()));
        let took = started.elapsed();
        eprintln!("SIGTERM then SIG{second}: exit {took:?} after the second");
        assert!(
            status.success(),
            "exit status {status}; log:\n{}",
            proxy.log()
        );
        assert!(took < Duration::from_millis(100), "took {took:?}");
        assert!(blocked.closed_within(Duration::from_millis(200)));
        let last = last_log_line(&proxy);
        assert!(
            last.contains("exited: second signal"),
            "last log line: {last}"
        );
    }
}
