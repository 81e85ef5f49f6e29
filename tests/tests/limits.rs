//! Decoder limits (docs/configuration.md): a huge declared bulk, a 10 MB inline line and a 2^31 array
//! header each get Redis's protocol error and close only that connection, and the proxy's
//! memory stays flat while it is attacked.

use std::time::Duration;

use slotgate_tests::raw::RawConn;
use slotgate_tests::{shared_cluster, shared_proxy, ProxyConfig, Slotgate};

fn proxy() -> &'static Slotgate {
    shared_proxy()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Send `attack`, expect `reply` and a close, while a bystander connection keeps working.
fn attack(bytes: &[u8], reply: &[u8]) {
    let mut bystander = RawConn::connect(proxy().port());
    bystander.roundtrip(&[b"PING"], b"+PONG\r\n");
    let mut conn = RawConn::connect(proxy().port());
    conn.send(bytes); // may fail part-way once the proxy has closed: that is the point
    conn.expect(reply);
    assert!(
        conn.closed_within(Duration::from_secs(5)),
        "the offending connection must close"
    );
    bystander.roundtrip(&[b"ECHO", b"still here"], b"$10\r\nstill here\r\n");
}

#[test]
fn huge_bulk_header() {
    attack(
        b"*2\r\n$3\r\nGET\r\n$2147483647\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
}

#[test]
fn huge_array_header() {
    attack(
        b"*2147483648\r\n",
        b"-ERR Protocol error: invalid multibulk length\r\n",
    );
}

#[test]
fn ten_megabyte_inline_line() {
    let line = vec![b'a'; 10 * 1024 * 1024];
    attack(&line, b"-ERR Protocol error: too big inline request\r\n");
}

#[test]
fn memory_stays_flat_under_repeated_attacks() {
    let pid = proxy().pid();
    // Warm up allocator pools once, then measure.
    let line = vec![b'x'; 10 * 1024 * 1024];
    attack(&line, b"-ERR Protocol error: too big inline request\r\n");
    let before = rss_kib(pid);
    for _ in 0..10 {
        attack(&line, b"-ERR Protocol error: too big inline request\r\n");
        attack(
            b"*1\r\n$2147483647\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        );
        attack(
            b"*2147483648\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        );
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn pipeline_deeper_than_max_pipeline_keeps_order() {
    // Far more pipelined upstream commands than max_pipeline (1024): reading pauses and
    // resumes, and every reply comes back in order.
    let mut conn = RawConn::connect(proxy().port());
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..6000 {
        let key = format!("limits:pipeline:{}", i % 50);
        batch.extend_from_slice(
            format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
        );
        expected.extend_from_slice(b"$-1\r\n");
        if i % 100 == 0 {
            batch.extend_from_slice(
                format!("*2\r\n$4\r\nECHO\r\n${}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
            );
            expected.extend_from_slice(format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes());
        }
    }
    assert!(conn.send(&batch));
    conn.expect(&expected);
}

#[test]
fn tiny_max_pipeline_is_exceeded_without_stalling() {
    // With max_pipeline 4, a pipeline of 3,000 commands (local ones answered at once and
    // upstream ones) must be answered completely and in order: reading pauses at 4 in
    // flight and resumes, including when every buffered command was already read.
    let tiny = ProxyConfig::new(&shared_cluster().seeds())
        .max_pipeline(4)
        .log_level("warn")
        .spawn();
    let mut conn = RawConn::connect(tiny.port());
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..3000 {
        let s = i.to_string();
        if i % 3 == 0 {
            batch.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$20\r\nlimits:tiny:missing0\r\n");
            expected.extend_from_slice(b"$-1\r\n");
        } else {
            batch.extend_from_slice(
                format!("*2\r\n$4\r\nECHO\r\n${}\r\n{s}\r\n", s.len()).as_bytes(),
            );
            expected.extend_from_slice(format!("${}\r\n{s}\r\n", s.len()).as_bytes());
        }
    }
    assert!(conn.send(&batch));
    conn.expect(&expected);
    // Only local commands: every entry is ready the moment it is decoded.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..2000 {
        batch.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        expected.extend_from_slice(b"+PONG\r\n");
    }
    assert!(conn.send(&batch));
    conn.expect(&expected);
}

/// A slotgate with limits of its own.
fn proxy_with_limits(limits: impl FnOnce(ProxyConfig) -> ProxyConfig) -> Slotgate {
    limits(ProxyConfig::new(&shared_cluster().seeds()).log_level("warn")).spawn()
}

#[test]
fn max_clients_refuses_the_next_connection() {
    let limited = proxy_with_limits(|c| c.max_clients(3));
    // The start-up readiness probe may still hold a slot for a moment: fill the three slots
    // with connections that got PONG.
    let mut held: Vec<RawConn> = Vec::new();
    slotgate_tests::assert_eventually!(
        {
            let mut c = RawConn::connect(limited.port());
            if c.send_command(&[b"PING"]) && c.read_line().as_deref() == Some(&b"+PONG\r\n"[..]) {
                held.push(c);
            }
            held.len() == 3
        },
        Duration::from_secs(5)
    );
    let mut extra = RawConn::connect(limited.port());
    extra.expect(b"-ERR max number of clients reached\r\n");
    assert!(extra.closed_within(Duration::from_secs(5)));
    // Room again once one leaves.
    drop(held.pop());
    slotgate_tests::assert_eventually!(
        {
            let mut c = RawConn::connect(limited.port());
            c.send_command(&[b"PING"]) && !c.closed_within(Duration::from_millis(200))
        },
        Duration::from_secs(5)
    );
}

#[test]
fn client_idle_timeout_closes_idle_connections_only() {
    let limited = proxy_with_limits(|c| c.limit("client_idle_timeout", "300ms"));
    let mut idle = RawConn::connect(limited.port());
    idle.roundtrip(&[b"PING"], b"+PONG\r\n");
    let mut busy = RawConn::connect(limited.port());
    for _ in 0..10 {
        busy.roundtrip(&[b"PING"], b"+PONG\r\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        idle.closed_within(Duration::from_secs(2)),
        "idle client was not closed"
    );
    busy.roundtrip(&[b"PING"], b"+PONG\r\n");
}

#[test]
fn max_request_bytes_rejects_a_larger_bulk() {
    let limited = proxy_with_limits(|c| c.limit("max_request_bytes", "1kb"));
    let mut ok = RawConn::connect(limited.port());
    let fits = vec![b'v'; 1024];
    ok.roundtrip(&[b"SET", b"limits:mrb", &fits], b"+OK\r\n");
    let mut conn = RawConn::connect(limited.port());
    let too_big = vec![b'v'; 1025];
    conn.send_command(&[b"SET", b"limits:mrb", &too_big]);
    conn.expect(b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(conn.closed_within(Duration::from_secs(5)));
    ok.roundtrip(&[b"STRLEN", b"limits:mrb"], b":1024\r\n");
}
