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
