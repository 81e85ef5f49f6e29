//! Resharding slots while a writer and a reader run through slotgate: no client sees an
//! error and every acknowledged write reads back.

use std::time::Duration;

use slotgate_tests::{
    assert_eventually, free_port, slotgate_config, ClusterOptions, Load, RedisCluster, Slotgate,
};

#[test]
fn reshard_under_load_is_invisible() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = Slotgate::spawn(&slotgate_config(&cluster.seeds(), free_port()));
    let load = Load::start(&proxy.url(), "rs:");
    assert_eventually!(load.acked_count() > 200, Duration::from_secs(10));

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
