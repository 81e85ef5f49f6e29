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

/// A slot half-way through a migration: the keys already moved get `-ASK` from the old owner,
/// and slotgate sends them to the importing node after `ASKING`, over its shared (pipelined)
/// connections, with the replies of one pipelined batch kept in order. `-ASK` does not change
/// the slot map (no MOVED follows, nothing is patched).
#[test]
fn ask_during_a_migration_is_followed_in_order_over_shared_connections() {
    use slotgate_tests::raw::RawConn;
    use slotgate_tests::RedisCluster;

    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = slotgate_tests::ProxyConfig::new(&cluster.seeds())
        .admin()
        .spawn();
    let (from, to) = (cluster.primaries()[0], cluster.primaries()[1]);
    let owners = cluster.slot_owners();
    let slot = (0..16384u16).find(|&s| owners[s as usize] == from).unwrap();
    let tag = (0..)
        .map(|i| format!("{{ask:{i}}}"))
        .find(|k| slotgate_cluster::slot(k.as_bytes()) == slot)
        .unwrap();
    let keys: Vec<String> = (0..8).map(|i| format!("{tag}k{i}")).collect();
    let mut raw = RawConn::connect(proxy.port());
    for (i, k) in keys.iter().enumerate() {
        raw.roundtrip(
            &[b"SET", k.as_bytes(), format!("v{i}").as_bytes()],
            b"+OK\r\n",
        );
    }

    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let slot_s = slot.to_string();
    let setslot = |port: u16, state: &str, id: &str| {
        assert_eq!(
            cluster.cli(port, &["CLUSTER", "SETSLOT", &slot_s, state, id]),
            "OK"
        );
    };
    setslot(to, "IMPORTING", &from_id);
    setslot(from, "MIGRATING", &to_id);
    // Every other key moves; the rest stay on the old owner for now.
    let to_s = to.to_string();
    let mut migrate = vec!["127.0.0.1", &to_s, "", "0", "5000", "KEYS"];
    migrate.extend(keys.iter().step_by(2).map(String::as_str));
    assert_eq!(
        cluster.cli(
            from,
            &["MIGRATE"]
                .iter()
                .chain(&migrate)
                .copied()
                .collect::<Vec<_>>()
        ),
        "OK"
    );
    // The old owner no longer has it: it answers ASK itself.
    assert!(cluster.cli(from, &["GET", &keys[0]]).starts_with("ASK "));

    let scrape = || {
        let s = proxy.scrape();
        (
            s.sum("slotgate_redirects_total", &[r#"kind="ask""#]),
            s.sum("slotgate_redirects_total", &[r#"kind="moved""#]),
        )
    };
    let (ask_before, moved_before) = scrape();
    // One write: GETs of moved and unmoved keys in turn, and a SET of a new key in the slot
    // (the old owner sends writes of keys it does not have to the importing node).
    let fresh = format!("{tag}fresh");
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        batch.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()).as_bytes());
        expected.extend_from_slice(format!("$2\r\nv{i}\r\n").as_bytes());
    }
    batch.extend_from_slice(
        format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{fresh}\r\n$1\r\nf\r\n",
            fresh.len()
        )
        .as_bytes(),
    );
    expected.extend_from_slice(b"+OK\r\n");
    assert!(raw.send(&batch));
    raw.expect(&expected);

    let (ask_after, moved_after) = scrape();
    assert!(
        ask_after - ask_before >= 5.0,
        "4 moved keys and a new one should each have been redirected by ASK: {}",
        ask_after - ask_before
    );
    assert_eq!(moved_after, moved_before, "ASK must not be taken as MOVED");
    assert!(cluster.cli(from, &["GET", &fresh]).starts_with("ASK "));

    // The migration ends: the rest of the keys move, the slot changes owner, and the
    // proxy's map follows on the next redirect (MOVED).
    let mut rest = vec!["MIGRATE", "127.0.0.1", &to_s, "", "0", "5000", "KEYS"];
    rest.extend(keys.iter().skip(1).step_by(2).map(String::as_str));
    assert_eq!(cluster.cli(from, &rest), "OK");
    for port in [to, from] {
        setslot(port, "NODE", &to_id);
    }
    raw.roundtrip(&[b"GET", keys[1].as_bytes()], b"$2\r\nv1\r\n");
    assert!(
        scrape().1 > moved_after,
        "the slot's new owner was learnt from MOVED"
    );
}
