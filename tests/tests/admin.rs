//! The admin port against a real cluster: `/metrics` counts exactly what real clients sent,
//! `/readyz` follows a primary's death and the failover after it, `/topology` shows the
//! cluster as slotgate routes by it, and SIGTERM drains pipelined load cleanly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotgate_tests::admin::{http_get, http_request, scrape};
use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, probe, redis_benchmark, shared_cluster, wait_until, ClusterOptions,
    ProxyConfig, RedisCluster, Slotgate,
};

/// slotgate started with `config` (which has an admin port), and its admin address.
fn spawn(config: ProxyConfig) -> (Slotgate, SocketAddr) {
    let proxy = config.spawn();
    let admin = proxy.admin_addr().expect("config with an admin port");
    (proxy, admin)
}

fn ready(admin: SocketAddr) -> bool {
    matches!(http_get(admin, "/readyz"), Ok((200, _)))
}

#[test]
fn metrics_count_exactly_what_clients_sent() {
    let cluster = shared_cluster();
    let (proxy, admin) = spawn(ProxyConfig::new(&cluster.seeds()).admin());
    assert_eventually!(ready(admin), Duration::from_secs(10), "never ready");
    let before = scrape(admin);

    let n = 20_000;
    let out = redis_benchmark(
        proxy.port(),
        &[
            "-t",
            "get,set",
            "-n",
            &n.to_string(),
            "-c",
            "20",
            "-P",
            "8",
            "-r",
            "100000",
        ],
    );
    out.assert_clean();
    let mut raw = RawConn::connect(proxy.port());
    raw.roundtrip(
        &[b"NOSUCHCMD", b"x"],
        b"-ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' \r\n",
    );
    raw.roundtrip(
        &[b"GET"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    let after = scrape(admin);
    let delta = |series: &str| after.get(series) - before.get(series);

    let n = n as f64;
    assert_eq!(
        delta(r#"slotgate_commands_total{command="get",result="ok"}"#),
        n
    );
    assert_eq!(
        delta(r#"slotgate_commands_total{command="set",result="ok"}"#),
        n
    );
    assert_eq!(
        delta(r#"slotgate_commands_total{command="get",result="error"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"slotgate_commands_total{command="unknown",result="error"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"slotgate_command_duration_seconds_count{command="get"}"#),
        n + 1.0
    );
    let le_5s = delta(r#"slotgate_command_duration_seconds_bucket{command="set",le="5"}"#);
    assert_eq!(le_5s, n, "every SET answered within 5 s");
    // Every GET and SET went upstream exactly once (no redirects on a stable cluster).
    let upstream = after.sum("slotgate_upstream_requests_total", &[])
        - before.sum("slotgate_upstream_requests_total", &[]);
    assert!(
        (2.0 * n..2.0 * n + 50.0).contains(&upstream),
        "upstream requests {upstream} for {} commands",
        2.0 * n
    );
    assert_eq!(
        after.sum("slotgate_upstream_duration_seconds_count", &[])
            - before.sum("slotgate_upstream_duration_seconds_count", &[]),
        upstream
    );
    assert!(delta(r#"slotgate_client_connections_total{result="accepted"}"#) >= 21.0);
    assert_eventually!(
        scrape(admin).get("slotgate_client_connections") == 1.0,
        Duration::from_secs(5),
        "only the raw client should remain connected"
    );
    assert_eq!(after.get("slotgate_topology_slots_covered"), 16384.0);
    assert_eq!(after.get(r#"slotgate_topology_nodes{role="primary"}"#), 3.0);
    assert_eq!(after.get("slotgate_ready"), 1.0);
    let conns = after.sum("slotgate_upstream_connections", &[]);
    assert!(
        conns >= 3.0 && conns % 3.0 == 0.0,
        "one connection per primary per worker, got {conns}"
    );
    assert!(after.get("process_resident_memory_bytes") > 1e6);
    assert!(after.get("process_open_fds") > 5.0);
    assert!(after.text.contains("slotgate_build_info{version=\""));
    assert!(
        after
            .samples
            .keys()
            .filter(|k| k.starts_with("slotgate_commands_total{"))
            .all(|k| k.contains("result=\"ok\"")
                || k.contains("result=\"error\"")
                || k.contains("result=\"redirected\"")
                || k.contains("result=\"timeout\"")),
        "result label values are bounded"
    );
    slotgate_tests::promtool::check_exposition(&after.text);
    drop(proxy);
}

#[test]
fn admin_routes_and_nothing_else() {
    let cluster = shared_cluster();
    let (_proxy, admin) = spawn(ProxyConfig::new(&cluster.seeds()).admin());
    let (code, body) = http_get(admin, "/").unwrap();
    assert_eq!(code, 200);
    for route in ["/metrics", "/healthz", "/readyz", "/topology"] {
        assert!(body.contains(route), "{body}");
    }
    assert_eq!(http_get(admin, "/healthz").unwrap(), (200, "ok\n".into()));
    for path in ["/debug/pprof", "/metrics/x", "/admin", "/../etc/passwd"] {
        assert_eq!(http_get(admin, path).unwrap().0, 404, "{path}");
    }
    assert_eq!(http_request(admin, "POST", "/metrics").unwrap().0, 405);
    assert_eq!(http_request(admin, "DELETE", "/readyz").unwrap().0, 405);

    assert_eventually!(ready(admin), Duration::from_secs(10));
    let (code, json) = http_get(admin, "/topology").unwrap();
    assert_eq!(code, 200);
    let topo: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(topo["slots_covered"], 16384);
    let shards = topo["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    let mut primaries: Vec<u16> = shards
        .iter()
        .map(|s| {
            assert_eq!(s["primary"]["role"], "primary");
            assert_eq!(s["primary"]["state"], "connected", "{json}");
            for r in s["replicas"].as_array().unwrap() {
                assert_eq!(r["role"], "replica", "{json}");
            }
            let addr = s["primary"]["addr"].as_str().unwrap();
            addr.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    primaries.sort_unstable();
    let mut expected = cluster.primaries();
    expected.sort_unstable();
    assert_eq!(primaries, expected);
    let covered: u64 = shards
        .iter()
        .flat_map(|s| s["slots"].as_array().unwrap().iter())
        .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(covered, 16384);
    assert!(topo["map_age_seconds"].as_f64().unwrap() < 15.0);
}

#[test]
fn metrics_can_be_turned_off() {
    let cluster = shared_cluster();
    let (proxy, admin) = spawn(
        ProxyConfig::new(&cluster.seeds())
            .admin()
            .admin_metrics(false),
    );
    let mut raw = RawConn::connect(proxy.port());
    raw.roundtrip(&[b"SET", b"admin:off", b"1"], b"+OK\r\n");
    let s = scrape(admin);
    assert_eq!(s.sum("slotgate_commands_total", &[]), 0.0);
    assert_eq!(s.sum("slotgate_upstream_requests_total", &[]), 0.0);
    assert!(s.get(r#"slotgate_client_connections_total{result="accepted"}"#) >= 1.0);
    assert_eq!(s.get("slotgate_topology_slots_covered"), 16384.0);
}

#[test]
fn readyz_and_topology_follow_a_primary_kill_and_the_failover() {
    let cluster = RedisCluster::start(ClusterOptions {
        node_timeout_ms: 2000,
        ..ClusterOptions::default()
    });
    let (proxy, admin) = spawn(ProxyConfig::new(&cluster.seeds()).admin());
    assert_eventually!(ready(admin), Duration::from_secs(10), "never ready");
    let before = scrape(admin);

    let victim = cluster.primaries()[0];
    cluster.kill_node(victim);
    let mut reason = String::new();
    assert_eventually!(
        match http_get(admin, "/readyz") {
            Ok((503, body)) => {
                reason = body;
                true
            }
            _ => false,
        },
        Duration::from_secs(5),
        "/readyz stayed 200 with a primary dead"
    );
    assert!(
        reason.starts_with("not ready: ") && reason.contains(&victim.to_string()),
        "{reason}"
    );
    assert_eq!(scrape(admin).get("slotgate_ready"), 0.0);

    assert_eventually!(
        cluster.primaries().len() == 3 && !cluster.primaries().contains(&victim),
        Duration::from_secs(20),
        "no replica was promoted"
    );
    assert_eventually!(
        ready(admin),
        Duration::from_secs(5),
        "/readyz not 200 after the failover: {:?}",
        http_get(admin, "/readyz")
    );
    let (_, json) = http_get(admin, "/topology").unwrap();
    let topo: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(topo["slots_covered"], 16384);
    let addrs: Vec<&str> = topo["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["primary"]["addr"].as_str().unwrap())
        .collect();
    assert!(
        !addrs.iter().any(|a| a.ends_with(&format!(":{victim}"))),
        "{json}"
    );

    let after = scrape(admin);
    let victim_label = format!("node=\"127.0.0.1:{victim}\"");
    assert!(
        after.sum("slotgate_upstream_errors_total", &[&victim_label]) >= 1.0,
        "no upstream error counted for the dead node"
    );
    let on_error = |s: &slotgate_tests::admin::Scrape| {
        s.sum(
            "slotgate_topology_refreshes_total",
            &[r#"trigger="error""#, r#"result="ok""#],
        )
    };
    assert!(
        on_error(&after) > on_error(&before),
        "no refresh on error: {:?}",
        after
            .samples
            .iter()
            .filter(|(k, _)| k.starts_with("slotgate_topology_refreshes_total"))
            .collect::<Vec<_>>()
    );
    assert!(
        after.get("slotgate_topology_last_refresh_timestamp_seconds")
            > before.get("slotgate_topology_last_refresh_timestamp_seconds")
    );
    drop(proxy);
}

/// One pipelining client: rounds of `depth` INCRs on its key, counting the replies in
/// `replies` as they come; returns the integer replies it got, in order, and whether the
/// stream ended on a frame boundary.
fn pipelined_incr(
    port: u16,
    key: String,
    depth: usize,
    stop: Arc<AtomicBool>,
    replies: Arc<AtomicUsize>,
) -> (Vec<i64>, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let cmd = format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len());
    let round = cmd.repeat(depth);
    let mut values = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) || s.write_all(round.as_bytes()).is_err() {
            break;
        }
        let mut got = 0;
        while got < depth {
            // Complete lines only: every reply here is one line (`:n` or `-ERR ...`).
            while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = buf.drain(..end + 2).collect();
                if line[0] == b':' {
                    values.push(std::str::from_utf8(&line[1..end]).unwrap().parse().unwrap());
                }
                got += 1;
                replies.fetch_add(1, Ordering::Relaxed);
            }
            if got >= depth {
                break;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return (values, buf.is_empty()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    // Drain whatever is still owed until the proxy closes.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    buf.extend_from_slice(&rest);
    while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
        let line: Vec<u8> = buf.drain(..end + 2).collect();
        if line[0] == b':' {
            values.push(std::str::from_utf8(&line[1..end]).unwrap().parse().unwrap());
        }
    }
    (values, buf.is_empty())
}

#[test]
fn sigterm_drains_pipelined_load_and_exits_zero() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let (mut proxy, admin) = spawn(ProxyConfig::new(&cluster.seeds()).admin());
    assert_eventually!(ready(admin), Duration::from_secs(10));

    const DEPTH: usize = 64;
    let stop = Arc::new(AtomicBool::new(false));
    // drain:0..7 land on every primary (two or more keys each).
    let keys: Vec<String> = (0..8).map(|i| format!("drain:{i}")).collect();
    let replies: Vec<Arc<AtomicUsize>> = keys.iter().map(|_| Arc::default()).collect();
    let clients: Vec<_> = keys
        .iter()
        .zip(&replies)
        .map(|(k, replies)| {
            let (port, key, stop) = (proxy.port(), k.clone(), Arc::clone(&stop));
            let replies = Arc::clone(replies);
            std::thread::spawn(move || pipelined_incr(port, key, DEPTH, stop, replies))
        })
        .collect();
    // Every client is going: each has had a whole round answered.
    let counts = || -> Vec<usize> { replies.iter().map(|r| r.load(Ordering::Relaxed)).collect() };
    assert_eventually!(
        counts().iter().all(|&n| n >= DEPTH),
        Duration::from_secs(10),
        "replies per client: {:?}",
        counts()
    );

    // Freeze one primary so commands for its slots are in flight when SIGTERM arrives. Once
    // it leaves a PING of its own unanswered it is frozen, and the rounds of the clients
    // whose keys it holds (they pipeline without pause) wait on it.
    let frozen = cluster.primaries()[0];
    cluster.stop_node(frozen);
    assert!(
        wait_until(Duration::from_secs(5), || {
            probe::query(frozen, &["PING"], Duration::from_millis(50)).is_err()
        }),
        "node {frozen} still answers PING after SIGSTOP"
    );
    assert!(proxy.sigterm());
    let signalled = Instant::now();
    // The signal is handled asynchronously: /readyz turns 503 within moments, while the
    // frozen shard keeps commands in flight (the process cannot exit yet).
    assert_eventually!(
        matches!(
            http_get(admin, "/readyz"),
            Ok((503, ref body)) if body == "not ready: shutting down\n"
        ),
        Duration::from_millis(250),
        "/readyz did not turn 503 on SIGTERM: {:?}",
        http_get(admin, "/readyz")
    );
    assert!(
        proxy.wait_exit(Duration::from_millis(300)).is_none(),
        "slotgate exited while commands were stuck on the frozen node {frozen}; log:\n{}",
        proxy.log()
    );
    cluster.cont_node(frozen);

    let status = proxy
        .wait_exit(Duration::from_secs(12))
        .expect("slotgate did not exit within shutdown_grace");
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(11), "exit took {took:?}");

    for (key, client) in keys.iter().zip(clients) {
        let (values, clean_end) = client.join().unwrap();
        assert!(clean_end, "{key}: a reply was cut in half");
        assert!(!values.is_empty(), "{key}: no replies at all");
        // Acknowledged INCRs ran exactly once each, in order.
        for (i, v) in values.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1, "{key}: reply {i}");
        }
        let stored: i64 = cluster
            .cli(
                cluster.node_for_slot(slotgate_cluster::slot(key.as_bytes())),
                &["GET", key],
            )
            .parse()
            .unwrap();
        assert!(
            stored >= values.len() as i64,
            "{key}: {} acknowledged, {stored} stored",
            values.len()
        );
    }
}
