//! `upstream.read_from`: read-only commands go to replicas (each node's `INFO commandstats`
//! says where they ran), writes never do, a replica that stops is skipped, and
//! `prefer-replica` falls back to the primary — in cluster and sentinel modes.

use std::time::Duration;

use redis::Commands;
use slotgate_tests::sentinel::{SentinelGroup, SentinelOptions, MASTER_NAME};
use slotgate_tests::{shared_cluster, unique_key_prefix, wait_until, ProxyConfig, Slotgate};

/// The cluster tests count every node's GETs: they take turns.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `calls` of `cmdstat_<command>` in an `INFO commandstats` text (0 when it never ran).
fn calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wait until `/topology` lists `n` replicas reads may go to.
fn wait_readable(proxy: &Slotgate, n: usize) {
    let admin = proxy.admin_addr().unwrap();
    let readable = || {
        let (_, body) = slotgate_tests::admin::http_get(admin, "/topology").unwrap_or_default();
        let mut count = 0;
        let mut rest = body.as_str();
        while let Some(i) = rest.find("\"readable\": [") {
            rest = &rest[i + 14..];
            let list = &rest[..rest.find(']').unwrap_or(0)];
            count += list.matches(':').count();
        }
        count
    };
    assert!(
        wait_until(Duration::from_secs(15), || readable() >= n),
        "{} of {n} replicas readable; log:\n{}",
        readable(),
        proxy.log()
    );
}

/// Write `n` keys through `proxy`, then read each `reads` times; every read must see the value
/// written (after replication caught up).
fn write_then_read(proxy: &Slotgate, prefix: &str, n: usize, reads: usize) {
    let mut con = proxy.connection();
    for i in 0..n {
        let _: () = con.set(format!("{prefix}:{i}"), i).unwrap();
    }
    for _ in 0..reads {
        for i in 0..n {
            let key = format!("{prefix}:{i}");
            let mut got: Option<usize> = None;
            // A replica may lag a few milliseconds behind the write just made.
            assert!(wait_until(Duration::from_secs(2), || {
                got = con.get(&key).unwrap();
                got == Some(i)
            }));
        }
    }
}

/// The shared cluster, and a slotgate reading from its replicas once all are readable.
fn reading_from_replicas() -> (&'static slotgate_tests::RedisCluster, Slotgate) {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .upstream_key("read_from", "replica")
        .upstream_key("refresh_interval", "1s")
        .upstream_key("max_replica_lag", "10s")
        .admin()
        .spawn();
    wait_readable(&proxy, cluster.replicas().len());
    (cluster, proxy)
}

/// GETs the nodes on `ports` have run, by their own `INFO commandstats`.
fn gets(cluster: &slotgate_tests::RedisCluster, ports: &[u16]) -> u64 {
    ports
        .iter()
        .map(|&p| {
            let stats = cluster.query(p, &["INFO", "commandstats"]).unwrap();
            calls(&stats.string(), "get")
        })
        .sum()
}

#[test]
fn cluster_reads_go_to_replicas_and_writes_to_primaries() {
    let _turn = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let (cluster, proxy) = reading_from_replicas();
    let gets = |ports: Vec<u16>| gets(cluster, &ports);
    let before_replicas = gets(cluster.replicas());
    let before_primaries = gets(cluster.primaries());
    write_then_read(&proxy, &unique_key_prefix("replica-reads"), 100, 2);
    let on_replicas = gets(cluster.replicas()) - before_replicas;
    let on_primaries = gets(cluster.primaries()) - before_primaries;
    assert!(on_replicas >= 200, "GETs on replicas: {on_replicas}");
    assert_eq!(on_primaries, 0, "GETs reached a primary");
    // No write was ever refused by a replica.
    for &p in &cluster.replicas() {
        let stats = cluster
            .query(p, &["INFO", "commandstats"])
            .unwrap()
            .string();
        let set = stats
            .lines()
            .find(|l| l.starts_with("cmdstat_set:"))
            .unwrap_or("");
        assert!(
            !set.contains("rejected_calls=") || set.contains("rejected_calls=0"),
            "{set}"
        );
    }
    let (_, body) =
        slotgate_tests::admin::http_get(proxy.admin_addr().unwrap(), "/topology").unwrap();
    assert!(body.contains("\"readable\": [\n"), "{body}");
}

#[test]
fn sentinel_replica_reads_skip_a_stopped_replica_and_fall_back_to_the_primary() {
    let group = SentinelGroup::start(SentinelOptions::default());
    let primary = group.primary();
    let replicas: Vec<u16> = group
        .nodes()
        .into_iter()
        .filter(|&p| p != primary)
        .collect();
    let gets = |port: u16| {
        calls(
            &group
                .query(port, &["INFO", "commandstats"])
                .unwrap()
                .string(),
            "get",
        )
    };
    let proxy = ProxyConfig::sentinel(&group.sentinel_addrs(), MASTER_NAME)
        .upstream_key("read_from", "prefer-replica")
        // Refreshes (and the replicas' lag checks) every second, so a slow first check on a
        // loaded machine is soon corrected.
        .upstream_key("refresh_interval", "1s")
        // A loaded machine may delay a replica's once-a-second acknowledgement past 1 s.
        .upstream_key("max_replica_lag", "10s")
        .admin()
        .spawn();
    wait_readable(&proxy, 2);
    let primary_gets = gets(primary);
    write_then_read(&proxy, &unique_key_prefix("sentinel-reads"), 50, 2);
    let on_replicas: u64 = replicas.iter().map(|&p| gets(p)).sum();
    assert!(on_replicas >= 100, "GETs on replicas: {on_replicas}");
    assert_eq!(gets(primary), primary_gets, "GETs reached the primary");
    // One replica stops: reads go on, without an error.
    group.kill_node(replicas[0]);
    let before = gets(replicas[1]);
    write_then_read(&proxy, &unique_key_prefix("one-replica"), 50, 2);
    assert!(gets(replicas[1]) > before, "the other replica took no read");
    // Both stop: prefer-replica reads from the primary.
    group.kill_node(replicas[1]);
    write_then_read(&proxy, &unique_key_prefix("no-replica"), 50, 1);
    assert!(
        gets(primary) > primary_gets,
        "no read fell back to the primary"
    );
}

#[test]
fn a_tracking_client_reads_from_primaries() {
    // A lagging replica could answer a tracking client's read with a value whose
    // invalidation the primary already sent: its cache would keep it. Its reads go to the
    // primaries, while other clients' reads still go to replicas.
    let _turn = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let (cluster, proxy) = reading_from_replicas();
    let gets = |ports: Vec<u16>| gets(cluster, &ports);
    let prefix = unique_key_prefix("tracking-primary");
    let mut con = proxy.connection();
    let _: () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .query(&mut con)
        .unwrap();
    let (replicas, primaries) = (gets(cluster.replicas()), gets(cluster.primaries()));
    for i in 0..50 {
        let _: Option<String> = con.get(format!("{prefix}:{i}")).unwrap();
    }
    assert_eq!(
        gets(cluster.replicas()) - replicas,
        0,
        "a tracked read reached a replica"
    );
    assert!(gets(cluster.primaries()) - primaries >= 50);
    // Tracking off: reads go to replicas again.
    let _: () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("OFF")
        .query(&mut con)
        .unwrap();
    let replicas = gets(cluster.replicas());
    for i in 0..50 {
        let _: Option<String> = con.get(format!("{prefix}:{i}")).unwrap();
    }
    assert!(gets(cluster.replicas()) - replicas >= 50);
}
