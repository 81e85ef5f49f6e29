//! Failover under load through slotgate: a coordinated `CLUSTER FAILOVER` is invisible, and
//! a primary killed with SIGKILL costs only the affected slots an error window bounded by
//! the cluster's own failure detection, never other shards.

use std::time::{Duration, Instant};

use slotgate_tests::{
    assert_eventually, cluster_under_load, ClusterOptions, Load, ProxyConfig, RedisCluster,
};

#[test]
fn manual_failover_under_load_is_invisible() {
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "fo:");

    let scrape_before = proxy.scrape();
    let replica = cluster.replicas()[0];
    cluster.failover(replica);
    let acked_before = load.acked_count();
    assert_eventually!(
        load.acked_count() > acked_before + 500,
        Duration::from_secs(10),
        "writes stalled after failover"
    );
    let report = load.stop();

    report.assert_no_errors();
    report.assert_no_lost_writes(&proxy.url());
    // The failover shows on a dashboard: the old primary's MOVED was followed.
    let after = proxy.scrape();
    let moved =
        |s: &slotgate_tests::admin::Scrape| s.get(r#"slotgate_redirects_total{kind="moved"}"#);
    assert!(
        moved(&after) > moved(&scrape_before),
        "no MOVED counted across a failover"
    );
}

#[test]
fn killed_primary_only_affects_its_slots_for_a_bounded_window() {
    let options = ClusterOptions {
        node_timeout_ms: 2000,
        ..ClusterOptions::default()
    };
    let cluster = RedisCluster::start(options);
    let proxy = ProxyConfig::new(&cluster.seeds())
        .env(
            "RUST_LOG",
            &std::env::var("SLOTGATE_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .spawn();
    let load = Load::start(&proxy.url(), "kill:");
    assert_eventually!(load.acked_count() > 200, Duration::from_secs(10));

    let victim = cluster.primaries()[1];
    let owners = cluster.slot_owners();
    let victim_slots: Vec<u16> = (0..16384u16)
        .filter(|&s| owners[s as usize] == victim)
        .collect();
    cluster.kill_node(victim);
    let killed_at = Instant::now();
    // The replica takes over after cluster-node-timeout plus Redis's election delay
    // (500 ms + up to 500 ms random + rank): that part is the cluster's, not slotgate's.
    assert_eventually!(
        cluster.primaries().len() == 3 && !cluster.primaries().contains(&victim),
        Duration::from_secs(20),
        "no replica was promoted"
    );
    let promoted_at = Instant::now();
    let before = load.acked_count();
    assert_eventually!(
        load.acked_count() > before + 500,
        Duration::from_secs(15),
        "writes did not resume"
    );
    let report = load.stop();

    let affected = |key: &str| {
        victim_slots
            .binary_search(&slotgate_cluster::slot(key.as_bytes()))
            .is_ok()
    };
    let elsewhere: Vec<_> = report.errors.iter().filter(|e| !affected(&e.key)).collect();
    assert!(
        elsewhere.is_empty(),
        "{} errors on healthy shards, first: {:?}",
        elsewhere.len(),
        elsewhere.first()
    );
    let first_success_after = |t: Instant| {
        report
            .successes
            .iter()
            .find(|s| s.at > t && affected(&s.key))
            .map(|s| s.at)
            .expect("the affected slots never served again")
    };
    // slotgate's own share: from the promotion (as the test saw it, polling every 20 ms) to
    // the first command served on the lost slots.
    let noticed = first_success_after(promoted_at).saturating_duration_since(promoted_at);
    let cluster_failover = promoted_at.duration_since(killed_at);
    let window = report
        .errors
        .first()
        .map(|first| first_success_after(first.at).duration_since(first.at));
    eprintln!(
        "primary kill: {} errors on the affected slots, error window {window:?}, cluster promoted after {cluster_failover:?}, slotgate served the new primary {noticed:?} later; {} writes, {} reads",
        report.errors.len(),
        report.acked.len(),
        report.reads
    );
    assert!(
        noticed <= Duration::from_secs(1),
        "slotgate took {noticed:?} to use the promoted replica; log:\n{}",
        proxy.log()
    );
    if std::env::var_os("SLOTGATE_TEST_LOG").is_some() {
        eprintln!("{}", proxy.log());
    }
    if let Some(window) = window {
        assert!(
            window <= cluster_failover + Duration::from_secs(1),
            "error window {window:?} longer than the cluster's failover ({cluster_failover:?}) + 1 s; errors:\n{}",
            report.first_errors(5)
        );
    }
    // Redis replicates asynchronously: writes acknowledged just before the kill may never
    // have reached the replica, and the cluster itself lost them. What slotgate must never do
    // is lose a write the cluster kept: every key slotgate cannot read back must be on the
    // dead primary's slots and must be missing from the cluster too (asked directly).
    let lost = report.lost_writes(&proxy.url());
    let owners_now = cluster.slot_owners();
    for entry in &lost {
        let key = entry.split(": ").next().unwrap_or_default();
        assert!(affected(key), "write lost on a healthy shard: {entry}");
        let owner = owners_now[slotgate_cluster::slot(key.as_bytes()) as usize];
        let direct = cluster.query(owner, &["GET", key]);
        let want = report
            .acked
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        assert!(
            direct.as_ref().ok().and_then(|r| r.text()) != want,
            "slotgate lost {entry}, but the cluster kept it: {direct:?}"
        );
    }
    eprintln!(
        "primary kill: {} acknowledged writes the cluster itself did not keep",
        lost.len()
    );
}
