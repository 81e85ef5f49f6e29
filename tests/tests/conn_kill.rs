//! Upstream connections killed under load (`CLIENT KILL TYPE normal` on every primary, 20
//! times): read-only commands never fail (they are resent once on a fresh connection),
//! writes fail only if they were in flight on the killed connection, and every acknowledged
//! write is still there.

use std::time::Duration;

use slotgate_tests::{assert_eventually, cluster_under_load, ClusterOptions};

#[test]
fn killed_upstream_connections_cost_reads_nothing() {
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "ck:");

    for round in 0..20 {
        for port in cluster.primaries() {
            let killed = cluster.cli(port, &["CLIENT", "KILL", "TYPE", "normal"]);
            assert!(
                killed.parse::<u32>().is_ok(),
                "round {round}: CLIENT KILL on {port}: {killed}"
            );
        }
        let before = load.acked_count();
        assert_eventually!(
            load.acked_count() > before + 50,
            Duration::from_secs(10),
            "round {round}: writes stalled"
        );
    }
    let report = load.stop();

    let read_errors: Vec<_> = report.errors.iter().filter(|e| e.op == "GET").collect();
    assert!(
        read_errors.is_empty(),
        "{} read errors, first: {:?}",
        read_errors.len(),
        read_errors.first()
    );
    for e in &report.errors {
        assert!(
            e.message.contains("may have been executed"),
            "unexpected write error: {e:?}"
        );
    }
    report.assert_no_lost_writes(&proxy.url());
    eprintln!(
        "connection kills: 60 kills, {} write errors (in flight), 0 read errors over {} reads, {} writes",
        report.errors.len(),
        report.reads,
        report.acked.len()
    );
}

/// `total_connections_received` of the node on `port`.
fn connections_received(cluster: &slotgate_tests::RedisCluster, port: u16) -> u64 {
    let info = cluster.cli(port, &["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received in INFO stats")
}

#[test]
fn a_node_that_drops_every_connection_gets_a_capped_reconnect_rate() {
    let cluster = slotgate_tests::RedisCluster::start(ClusterOptions::default());
    let proxy = slotgate_tests::ProxyConfig::new(&cluster.seeds())
        .workers(2)
        .spawn();
    let victim = cluster.primaries()[0];
    let client = redis::Client::open(format!("redis://127.0.0.1:{victim}/")).unwrap();
    let mut killer = client.get_connection().unwrap();

    let window = Duration::from_secs(3);
    let before = connections_received(&cluster, victim);
    let start = std::time::Instant::now();
    let mut kills = 0u64;
    while start.elapsed() < window {
        // SKIPME yes (the default): the killer's own connection survives.
        let n: u64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal"])
            .query(&mut killer)
            .unwrap();
        kills += n;
    }
    let made = connections_received(&cluster, victim) - before;
    // 2 workers × 1 connection × at most 10 attempts a second, plus the topology refresher's
    // short-lived connections (at most 10 a second, debounced) and slack for timer jitter.
    let cap = 2 * 10 * 3 + 10 * 3 + 20;
    assert!(
        made <= cap,
        "{made} connections in {window:?} ({kills} killed): reconnects are not rate-capped"
    );
    assert!(
        kills >= 20,
        "only {kills} connections were killed: the cap was not exercised"
    );

    // Once the node behaves again, commands through slotgate work.
    let url = proxy.url();
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eventually!(
        (0..50).all(|i| redis::cmd("SET")
            .arg(format!("ck-cap:{i}"))
            .arg(i)
            .query::<()>(&mut con)
            .is_ok()),
        Duration::from_secs(5),
        "slotgate did not recover after the kills stopped"
    );
    eprintln!("reconnect cap: {kills} kills, {made} connections in {window:?}");
}
