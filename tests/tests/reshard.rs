//! Resharding slots while a writer and a reader run through slotgate: no client sees an
//! error and every acknowledged write reads back.

use slotgate_tests::{cluster_under_load, ClusterOptions};

#[test]
fn reshard_under_load_is_invisible() {
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "rs:");

    let primaries = cluster.primaries();
    cluster.reshard(primaries[0], primaries[1], 1000);
    cluster.reshard(primaries[2], primaries[0], 500);
    let report = load.stop();

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
}
