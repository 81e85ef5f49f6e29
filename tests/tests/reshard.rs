//! Resharding slots while a writer and a reader run through slotgate: no client sees an
//! error and every acknowledged write reads back.

use slotgate_tests::{cluster_under_load, ClusterOptions};

#[test]
fn reshard_under_load_is_invisible() {
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "rs:");

    let before = proxy.scrape();
    let primaries = cluster.primaries();
    cluster.reshard(primaries[0], primaries[1], 1000);
    cluster.reshard(primaries[2], primaries[0], 500);
    let report = load.stop();
    let after = proxy.scrape();

    report.assert_no_errors();
    assert!(
        report.acked.len() > 1000,
        "too little load: {} writes",
        report.acked.len()
    );
    assert!(
        report.reads > 1000,
        "too little load: {} reads",
        report.reads
    );
    report.assert_no_lost_writes(&proxy.url());

    // An operator sees the reshard on a dashboard: redirects followed, map reloaded.
    let moved =
        |s: &slotgate_tests::admin::Scrape| s.get(r#"slotgate_redirects_total{kind="moved"}"#);
    assert!(
        moved(&after) > moved(&before),
        "no MOVED counted during a reshard"
    );
    let on_moved = |s: &slotgate_tests::admin::Scrape| {
        s.sum("slotgate_topology_refreshes_total", &[r#"trigger="moved""#])
    };
    assert!(
        on_moved(&after) > on_moved(&before),
        "no refresh triggered by MOVED"
    );
    assert_eq!(after.get("slotgate_topology_slots_covered"), 16384.0);
    eprintln!(
        "reshard metrics: moved {} ask {} redirected commands {}",
        moved(&after) - moved(&before),
        after.get(r#"slotgate_redirects_total{kind="ask"}"#)
            - before.get(r#"slotgate_redirects_total{kind="ask"}"#),
        after.sum("slotgate_commands_total", &[r#"result="redirected""#])
            - before.sum("slotgate_commands_total", &[r#"result="redirected""#])
    );
}
