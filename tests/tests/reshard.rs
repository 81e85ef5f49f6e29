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

    assert!(
        report.errors.is_empty(),
        "{} client-visible errors:\n{}",
        report.errors.len(),
        report.first_errors(5)
    );
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
    let lost = report.lost_writes(&proxy.url());
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
