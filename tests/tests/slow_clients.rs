//! Clients that read slowly or not at all, against a real cluster: they cost slotgate and the
//! nodes a bounded amount of memory, never stall the other clients of the same node, are
//! served in full and in order once they read, and are closed (logged and counted) past
//! their limits. The process-wide budget refuses new commands with `-OOM` when it is full.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use slotgate_tests::admin::Scrape;
use slotgate_tests::config::ProxyConfig;
use slotgate_tests::probe::{encode, Reply};
use slotgate_tests::raw::RawConn;
use slotgate_tests::tls::TestPki;
use slotgate_tests::{assert_eventually, shared_cluster, unique_key_prefix, wait_until};

const MIB: usize = 1024 * 1024;

/// A value of `len` bytes that is not all one byte (a reply cut or shifted shows).
fn value(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 23) as u8).collect()
}

/// `$<len>\r\n<value>\r\n`.
fn bulk_of(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

/// `n` pipelined `GET key` in one buffer.
fn gets(key: &str, n: usize) -> Vec<u8> {
    encode(&[b"GET", key.as_bytes()]).repeat(n)
}

/// slotgate's resident memory in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A node's `used_memory`.
fn used_memory(port: u16) -> usize {
    let info = match shared_cluster().query(port, &["INFO", "memory"]) {
        Ok(Reply::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO memory: {other:?}"),
    };
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

fn closes(scrape: &Scrape, reason: &str) -> f64 {
    scrape.get(&format!(
        "slotgate_client_closes_total{{reason=\"{reason}\"}}"
    ))
}

/// A plain TCP client that pipelines without reading, then reads on demand.
struct Slow {
    stream: TcpStream,
}

impl Slow {
    fn connect(port: u16) -> Slow {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Slow { stream }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Read exactly `expected`, `times` times over (every reply whole, in order).
    fn expect_each(&mut self, expected: &[u8], times: usize) {
        let mut got = vec![0u8; expected.len()];
        for i in 0..times {
            self.stream
                .read_exact(&mut got)
                .unwrap_or_else(|e| panic!("reply {i} of {times}: {e}"));
            assert!(got == expected, "reply {i} of {times} differs");
        }
    }

    /// Whether slotgate closed the connection (after any bytes still on their way).
    fn closed(&mut self) -> bool {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Percentile `p` (0–100) of `samples`.
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

#[test]
fn stuck_readers_cost_bounded_memory_and_never_stall_their_node() {
    let cluster = shared_cluster();
    let pki = TestPki::generate();
    // `listen` speaks TLS, `plaintext_listen` plain TCP (both the same proxy).
    let port = slotgate_tests::free_port();
    let config = ProxyConfig::new(&cluster.seeds())
        .admin()
        .workers(2)
        .tls(&pki, false)
        .plaintext_listen(port);
    let proxy = config.builder().wait_ready(false).spawn();
    let tls_port = proxy.port();
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "slotgate did not start: {}",
        proxy.log()
    );
    cluster.wait_healthy(Duration::from_secs(10));
    let p = unique_key_prefix("slowc");
    let (big, small, list, channel) = (
        format!("{{{p}}}big"),
        format!("{{{p}}}small"),
        format!("{{{p}}}list"),
        format!("{p}:news"),
    );
    let node = cluster.node_for_slot(slotgate_cluster::slot(big.as_bytes()));
    let big_value = value(MIB);
    let mut setup = RawConn::connect(port);
    assert!(setup.send_command(&[b"SET", big.as_bytes(), &big_value]));
    setup.expect(b"+OK\r\n");
    setup.roundtrip(&[b"SET", small.as_bytes(), b"s"], b"+OK\r\n");

    // Bystanders: a subscriber and a client blocked on a list of the same node.
    let mut subscriber = RawConn::connect(port);
    assert!(subscriber.send_command(&[b"SUBSCRIBE", channel.as_bytes()]));
    assert!(subscriber.read_reply().is_some());
    let mut blocked = RawConn::connect(port);
    assert!(blocked.send_command(&[b"BLPOP", list.as_bytes(), b"0"]));
    cluster.wait_blocked(&list);

    let memory_before = used_memory(node);
    const GETS: usize = 500;
    // Four stuck readers: three plain, one TLS; each pipelines 500 GETs of 1 MiB.
    let mut slow: Vec<Slow> = (0..3).map(|_| Slow::connect(port)).collect();
    for s in &mut slow {
        s.send(&gets(&big, GETS));
    }
    let tls_client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{tls_port}/"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.ca).unwrap()),
        },
    )
    .unwrap();
    let mut tls_slow = tls_client.get_connection().unwrap();
    tls_slow.send_packed_command(&gets(&big, GETS)).unwrap();

    // A fifth client on the same node, for 3 s: small GETs, a PUBLISH, an RPUSH.
    let (mut max_rss, mut max_memory) = (0, 0);
    let mut latencies = Vec::new();
    let mut fifth = RawConn::connect(port);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        fifth.roundtrip(&[b"GET", small.as_bytes()], b"$1\r\ns\r\n");
        latencies.push(t.elapsed());
        if latencies.len() % 50 == 0 {
            max_rss = max_rss.max(rss(proxy.pid()));
            max_memory = max_memory.max(used_memory(node));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    fifth.roundtrip(&[b"PUBLISH", channel.as_bytes(), b"hello"], b":1\r\n");
    let message = subscriber.read_reply().expect("the subscriber's message");
    assert!(message.ends_with(b"$5\r\nhello\r\n"), "{message:?}");
    fifth.roundtrip(&[b"RPUSH", list.as_bytes(), b"x"], b":1\r\n");
    let popped = blocked.read_reply().expect("BLPOP's reply");
    assert!(popped.ends_with(b"$1\r\nx\r\n"), "{popped:?}");

    let p99 = percentile(&mut latencies, 99);
    eprintln!(
        "slotgate RSS max {} MB, node used_memory +{} MB, fifth client p99 {p99:?} over {} GETs",
        max_rss / MIB,
        max_memory.saturating_sub(memory_before) / MIB,
        latencies.len()
    );
    assert!(
        max_rss < 400 * MIB,
        "slotgate RSS reached {} MB",
        max_rss / MIB
    );
    assert!(
        max_memory.saturating_sub(memory_before) < 200 * MIB,
        "the node's used_memory grew by {} MB",
        (max_memory - memory_before) / MIB
    );
    assert!(
        p99 < Duration::from_millis(10),
        "a small GET on the stuck readers' node: p99 {p99:?}"
    );
    let scrape = proxy.scrape();
    assert!(scrape.get("slotgate_buffered_bytes") > 0.0);

    // They start reading: every reply arrives, whole and in order.
    let expected = bulk_of(&big_value);
    let readers: Vec<_> = slow
        .into_iter()
        .map(|mut s| {
            let expected = expected.clone();
            std::thread::spawn(move || s.expect_each(&expected, GETS))
        })
        .collect();
    for i in 0..GETS {
        let v: Vec<u8> = redis::FromRedisValue::from_redis_value(tls_slow.recv_response().unwrap())
            .unwrap_or_else(|e| panic!("TLS reply {i}: {e}"));
        assert!(v == big_value, "TLS reply {i} differs");
    }
    for r in readers {
        if r.join().is_err() {
            panic!("a plain reader failed; slotgate's log:\n{}", proxy.log());
        }
    }
    assert_eq!(closes(&proxy.scrape(), "output_limit"), 0.0);
    // Nothing is held once everyone has read (the gauge is exact to 64 KiB per worker).
    assert_eventually!(
        proxy.scrape().get("slotgate_buffered_bytes") < (2 * 64 * 1024) as f64,
        Duration::from_secs(5),
        "buffered bytes stay at {}",
        proxy.scrape().get("slotgate_buffered_bytes")
    );
}

#[test]
fn a_client_past_its_hard_limit_is_closed_and_counted() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .limit("max_client_output", "4mb")
        .limit("client_output_soft", "1mb")
        .spawn();
    let port = proxy.port();
    let p = unique_key_prefix("slowhard");
    let (big, small) = (format!("{{{p}}}big"), format!("{{{p}}}small"));
    let mut setup = RawConn::connect(port);
    assert!(setup.send_command(&[b"SET", big.as_bytes(), &value(MIB)]));
    setup.expect(b"+OK\r\n");
    setup.roundtrip(&[b"SET", small.as_bytes(), b"s"], b"+OK\r\n");

    // Small replies first (the window opens wide), then large ones, never read: what
    // arrives for it passes 4 MB.
    let mut hostile = Slow::connect(port);
    let mut burst = gets(&small, 200);
    burst.extend_from_slice(&gets(&big, 200));
    hostile.send(&burst);
    assert_eventually!(
        closes(&proxy.scrape(), "output_limit") == 1.0,
        Duration::from_secs(10),
        "not closed: {:?}",
        proxy.scrape().get("slotgate_buffered_bytes")
    );
    assert!(hostile.closed(), "the connection stayed open");
    assert!(proxy
        .log()
        .contains("closing a client that does not read its replies"));
    // Everyone else is unaffected; nothing stays held for the closed client.
    let mut other = RawConn::connect(port);
    other.roundtrip(&[b"GET", small.as_bytes()], b"$1\r\ns\r\n");
    assert_eventually!(
        proxy.scrape().get("slotgate_buffered_bytes") < (2 * 64 * 1024) as f64,
        Duration::from_secs(5),
        "buffered bytes stay at {}",
        proxy.scrape().get("slotgate_buffered_bytes")
    );

    // A client that reads, with the same large replies, is served in full.
    let mut reader = Slow::connect(port);
    reader.send(&gets(&big, 50));
    reader.expect_each(&bulk_of(&value(MIB)), 50);
    assert_eq!(closes(&proxy.scrape(), "output_limit"), 1.0);
}

#[test]
fn a_client_held_at_its_soft_mark_too_long_is_closed() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .limit("client_output_soft", "2mb")
        .limit("client_output_soft_timeout", "1s")
        .spawn();
    let port = proxy.port();
    let p = unique_key_prefix("slowsoft");
    let (big, small) = (format!("{{{p}}}big"), format!("{{{p}}}small"));
    let mut setup = RawConn::connect(port);
    assert!(setup.send_command(&[b"SET", big.as_bytes(), &value(MIB)]));
    setup.expect(b"+OK\r\n");
    setup.roundtrip(&[b"SET", small.as_bytes(), b"s"], b"+OK\r\n");

    // Small replies open the window wide; the large ones behind them then pass the soft
    // mark (not the 32 MB hard limit), and the client never reads. (A client that stops
    // reading under a steady load stays just under the mark: backpressure keeps it there.)
    let mut stuck = Slow::connect(port);
    let mut burst = gets(&small, 100);
    burst.extend_from_slice(&gets(&big, 20));
    stuck.send(&burst);
    let started = Instant::now();
    assert_eventually!(
        closes(&proxy.scrape(), "output_soft_limit") == 1.0,
        Duration::from_secs(10),
        "not closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the soft timeout",
        started.elapsed()
    );
    assert!(stuck.closed());
    assert_eq!(closes(&proxy.scrape(), "output_limit"), 0.0);
}

#[test]
fn a_full_process_budget_refuses_new_commands_until_clients_read() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .workers(1)
        .limit("client_output_soft", "8mb")
        .limit("max_client_output", "64mb")
        .limit("max_buffered", "4mb")
        .spawn();
    let port = proxy.port();
    let p = unique_key_prefix("slowfull");
    let (big, small) = (format!("{{{p}}}big"), format!("{{{p}}}small"));
    let mut setup = RawConn::connect(port);
    assert!(setup.send_command(&[b"SET", big.as_bytes(), &value(MIB)]));
    setup.expect(b"+OK\r\n");
    setup.roundtrip(&[b"SET", small.as_bytes(), b"s"], b"+OK\r\n");

    // Small replies open its window wide, then 30 MB of replies are on their way to a
    // client that does not read: far more than the socket buffers take.
    let mut stuck = Slow::connect(port);
    let mut burst = gets(&small, 100);
    burst.extend_from_slice(&gets(&big, 30));
    stuck.send(&burst);
    const OOM: &[u8] = b"-OOM slotgate: buffers for all clients are full (limits.max_buffered); command not run, try again later\r\n";
    let mut other = RawConn::connect(port);
    assert!(
        wait_until(Duration::from_secs(10), || {
            assert!(other.send_command(&[b"GET", small.as_bytes()]));
            other.read_reply().unwrap() == OOM
        }),
        "GET was never refused"
    );
    // What slotgate answers itself still works; the refusals and the bytes are in /metrics.
    other.roundtrip(&[b"PING"], b"+PONG\r\n");
    let scrape = proxy.scrape();
    assert!(scrape.get("slotgate_buffers_full_refusals_total") >= 1.0);
    assert!(scrape.get("slotgate_buffered_bytes") >= (4 * MIB) as f64);
    assert_eq!(
        scrape.get("slotgate_buffered_bytes_limit"),
        (4 * MIB) as f64
    );

    // The stuck client reads everything (in order); then commands run again.
    stuck.expect_each(b"$1\r\ns\r\n", 100);
    stuck.expect_each(&bulk_of(&value(MIB)), 30);
    assert!(
        wait_until(Duration::from_secs(5), || {
            assert!(other.send_command(&[b"GET", small.as_bytes()]));
            other.read_reply().unwrap() == b"$1\r\ns\r\n"
        }),
        "commands stayed refused after the client read its replies"
    );
}

#[test]
fn replies_of_blocking_commands_count_against_the_hard_limit() {
    // A blocking command's reply comes from a task on a dedicated connection, not from a
    // shared one: it is charged all the same, the moment the task has it.
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .limit("max_client_output", "4mb")
        .limit("client_output_soft", "1mb")
        .spawn();
    let port = proxy.port();
    let p = unique_key_prefix("slowblpop");
    let list = format!("{{{p}}}list");
    let mut setup = RawConn::connect(port);
    let big = value(MIB);
    for _ in 0..40 {
        assert!(setup.send_command(&[b"RPUSH", list.as_bytes(), &big]));
        assert!(setup.read_reply().is_some());
    }
    // Small replies first open its window wide; then 40 BLPOPs that each pop 1 MiB at once,
    // never read.
    let mut stuck = Slow::connect(port);
    let mut burst = encode(&[b"PING"]).repeat(300);
    burst.extend_from_slice(&encode(&[b"BLPOP", list.as_bytes(), b"0"]).repeat(40));
    stuck.send(&burst);
    assert_eventually!(
        closes(&proxy.scrape(), "output_limit") == 1.0,
        Duration::from_secs(10),
        "not closed: {} bytes buffered",
        proxy.scrape().get("slotgate_buffered_bytes")
    );
    assert!(stuck.closed());
}
