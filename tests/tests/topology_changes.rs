//! The cluster's shape changes under load through slotgate: a node is added and given slots
//! by `redis-cli --cluster rebalance`, a node is emptied and removed with `del-node`, and a
//! node comes back with a different role (after a manual failover, and after a `SIGKILL`
//! and the replica's promotion). A writer (`SET` of unique values) and a reader (`GET`) run
//! through slotgate for the whole scenario; afterwards every acknowledged write is read back.
//!
//! One scenario runs at a time (the machine has 2 cores: two clusters resharding at once
//! would measure the scheduler, not slotgate).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slotgate_tests::admin::{http_get, Scrape};
use slotgate_tests::{
    assert_eventually, cluster_under_load, ClusterOptions, RedisCluster, Slotgate,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `node="127.0.0.1:PORT"` label of a node's upstream series.
fn node_label(port: u16) -> String {
    format!("node=\"127.0.0.1:{port}\"")
}

/// slotgate's `/topology`: `(primary port, slots it serves, replica ports)` per shard.
fn topology(proxy: &Slotgate) -> Vec<(u16, u64, Vec<u16>)> {
    let admin = proxy.admin_addr().expect("admin port");
    let (code, json) = http_get(admin, "/topology").expect("GET /topology");
    assert_eq!(code, 200, "{json}");
    let topo: serde_json::Value = serde_json::from_str(&json).expect("/topology is JSON");
    let port = |node: &serde_json::Value| -> u16 {
        let addr = node["addr"].as_str().expect("addr");
        addr.rsplit(':').next().unwrap().parse().expect("port")
    };
    topo["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            let slots = s["slots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1)
                .sum();
            let replicas = s["replicas"].as_array().unwrap().iter().map(port).collect();
            (port(&s["primary"]), slots, replicas)
        })
        .collect()
}

/// Whether `port` appears anywhere in slotgate's `/topology`.
fn in_topology(proxy: &Slotgate, port: u16) -> bool {
    topology(proxy)
        .iter()
        .any(|(p, _, replicas)| *p == port || replicas.contains(&port))
}

/// `slotgate_upstream_connections` to the node on `port`, all kinds.
fn upstream_connections(s: &Scrape, port: u16) -> f64 {
    s.sum("slotgate_upstream_connections", &[&node_label(port)])
}

fn moved(s: &Scrape) -> f64 {
    s.get(r#"slotgate_redirects_total{kind="moved"}"#)
}

/// How many `-MOVED` the node on `port` has answered since it started (`INFO errorstats`).
fn moved_answered(cluster: &RedisCluster, port: u16) -> u64 {
    let info = cluster.cli(port, &["INFO", "errorstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("errorstat_MOVED:count="))
        .map_or(0, |v| v.trim().parse().expect("count"))
}

fn role(cluster: &RedisCluster, port: u16) -> String {
    let info = cluster.cli(port, &["INFO", "replication"]);
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

/// Waits until `n` more writes are acknowledged: the load is still flowing.
fn writes_continue(load: &slotgate_tests::Load, n: usize, what: &str) {
    let before = load.acked_count();
    assert_eventually!(
        load.acked_count() >= before + n,
        Duration::from_secs(15),
        "writes stalled {what}"
    );
}

#[test]
fn add_node_and_rebalance_under_load_is_invisible() {
    let _serial = serial();
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "add:");
    let before = proxy.scrape();

    let started = Instant::now();
    let new = cluster.add_node();
    let added = started.elapsed();
    let rebalancing = Instant::now();
    let out = cluster.rebalance(true);
    let rebalanced = rebalancing.elapsed();
    let owners = cluster.slot_owners();
    let new_slots = owners.iter().filter(|&&o| o == new).count();
    // An even share of 16384 over 4 primaries is 4096; rebalance stops within its 2 %
    // threshold.
    assert!(
        new_slots >= 4000,
        "the new primary got only {new_slots} slots:\n{out}"
    );

    // slotgate learns the new primary from MOVED and serves its slots from it.
    assert_eventually!(
        topology(&proxy)
            .iter()
            .any(|&(p, slots, _)| p == new && slots as usize == new_slots),
        Duration::from_secs(5),
        "/topology does not show {new} with its {new_slots} slots: {:?}",
        topology(&proxy)
    );
    let served_before = proxy
        .scrape()
        .sum("slotgate_upstream_requests_total", &[&node_label(new)]);
    writes_continue(&load, 500, "after the rebalance");
    // A replica for the new primary, joined under load as well.
    let replica = cluster.add_replica(new);
    assert_eventually!(
        topology(&proxy)
            .iter()
            .any(|(p, _, replicas)| *p == new && replicas.contains(&replica)),
        Duration::from_secs(15),
        "/topology does not show {replica} as the replica of {new}: {:?}",
        topology(&proxy)
    );
    writes_continue(&load, 500, "after adding a replica");
    let report = load.stop();
    let after = proxy.scrape();

    report.assert_no_errors();
    report.assert_no_lost_writes(&proxy.url());
    let served = after.sum("slotgate_upstream_requests_total", &[&node_label(new)]);
    assert!(
        served > served_before,
        "no requests went to the new primary after the rebalance ({served_before} → {served})"
    );
    // The acknowledged writes in the new node's slots are on the new node itself.
    let on_new: Vec<&(String, String)> = report
        .acked
        .iter()
        .filter(|(k, _)| owners[slotgate_cluster::slot(k.as_bytes()) as usize] == new)
        .collect();
    assert!(!on_new.is_empty(), "no acknowledged key in the new slots");
    for (k, v) in on_new.iter().step_by(on_new.len() / 50 + 1) {
        let direct = cluster
            .query(new, &["GET", k])
            .expect("GET on the new node");
        assert_eq!(direct.text().as_deref(), Some(v.as_str()), "{k} on {new}");
    }
    assert_eq!(after.get("slotgate_topology_slots_covered"), 16384.0);
    eprintln!(
        "add-node + rebalance: add-node {added:?}, rebalance moved {new_slots} slots in {rebalanced:?}; \
         {} writes, {} reads, 0 errors; {} acknowledged keys landed on the new node; \
         moved {} ask {}; {served} requests to the new primary",
        report.acked.len(),
        report.reads,
        on_new.len(),
        moved(&after) - moved(&before),
        after.get(r#"slotgate_redirects_total{kind="ask"}"#)
            - before.get(r#"slotgate_redirects_total{kind="ask"}"#),
    );
}

#[test]
fn remove_node_under_load_is_invisible() {
    let _serial = serial();
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "del:");
    let before = proxy.scrape();
    let victim = cluster.primaries()[2];
    let victim_slots = cluster
        .slot_owners()
        .iter()
        .filter(|&&o| o == victim)
        .count();
    assert!(
        upstream_connections(&before, victim) > 0.0,
        "slotgate had no connection to {victim} to begin with"
    );

    let draining = Instant::now();
    cluster.drain_node(victim);
    let drained = draining.elapsed();
    let role_after_drain = role(&cluster, victim);
    writes_continue(&load, 300, "after draining");
    let deleting = Instant::now();
    cluster.del_node(victim);
    let deleted = deleting.elapsed();
    let gone_at = Instant::now();

    // slotgate forgets it: out of /topology, no connection left, no reconnect attempts.
    assert_eventually!(
        !in_topology(&proxy, victim) && upstream_connections(&proxy.scrape(), victim) == 0.0,
        Duration::from_secs(15),
        "slotgate still uses the removed node {victim}: /topology {:?}, {} connections",
        topology(&proxy),
        upstream_connections(&proxy.scrape(), victim)
    );
    let forgotten = gone_at.elapsed();
    // Each worker drops the upstreams of nodes that left the map on a 250 ms tick; until
    // then its connection task may try to reconnect once or twice. Wait until the error
    // count holds across two scrapes 400 ms apart (longer than that tick); after that, nothing.
    let errors = |s: &Scrape| s.sum("slotgate_upstream_errors_total", &[&node_label(victim)]);
    let settling = Instant::now();
    let mut errors_then = errors(&proxy.scrape());
    loop {
        std::thread::sleep(Duration::from_millis(400));
        let now = errors(&proxy.scrape());
        if now == errors_then {
            break;
        }
        assert!(
            settling.elapsed() < Duration::from_secs(10),
            "slotgate still counts errors for the removed node {victim} after {:?}: {now}",
            settling.elapsed()
        );
        errors_then = now;
    }
    let settled = settling.elapsed();
    writes_continue(&load, 1000, "after del-node");
    let report = load.stop();
    let after = proxy.scrape();
    assert_eq!(
        errors(&after),
        errors_then,
        "slotgate kept trying to reach the removed node: {:?}\n{}",
        after
            .samples
            .iter()
            .filter(|(k, _)| k.contains(&node_label(victim)))
            .collect::<Vec<_>>(),
        proxy
            .log()
            .lines()
            .filter(|l| l.contains(&victim.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    );

    report.assert_no_errors();
    report.assert_no_lost_writes(&proxy.url());
    assert_eq!(after.get("slotgate_topology_slots_covered"), 16384.0);
    let shards = topology(&proxy);
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert!(
        shards
            .iter()
            .all(|(p, _, _)| cluster.primaries().contains(p)),
        "{shards:?}"
    );
    eprintln!(
        "drain + del-node: {victim_slots} slots moved off in {drained:?} (the emptied node became a {role_after_drain}), \
         del-node {deleted:?}, gone from slotgate {forgotten:?} after; {} writes, {} reads, 0 errors; \
         moved {}; {} upstream errors counted for the removed node (its process killed), none once the count held \
         ({settled:?} after /topology dropped it)",
        report.acked.len(),
        report.reads,
        moved(&after) - moved(&before),
        errors_then as u64,
    );
}

#[test]
fn old_primary_restarted_as_replica_after_manual_failover_and_failed_back() {
    let _serial = serial();
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "rr:");
    let before = proxy.scrape();
    let old = cluster.primaries()[0];
    let replica = cluster.replicas_of(old)[0];

    cluster.failover(replica);
    writes_continue(&load, 300, "after the failover");
    // The old primary, now a replica, restarts (empty: no persistence) and resyncs.
    cluster.restart_node(old);
    cluster.wait_healthy(Duration::from_secs(30));
    assert_eq!(role(&cluster, old), "slave");
    let moved_by_old = moved_answered(&cluster, old);
    writes_continue(&load, 300, "after the restart");
    // It takes its slots back: the restarted node is a primary again.
    cluster.failover(old);
    let failed_back = Instant::now();
    assert_eq!(role(&cluster, old), "master");
    writes_continue(&load, 300, "after failing back");
    // Steady state: no more MOVED once slotgate has followed the switch.
    let settled = proxy.scrape();
    writes_continue(&load, 300, "in steady state");
    let report = load.stop();
    let after = proxy.scrape();

    report.assert_no_errors();
    report.assert_no_lost_writes(&proxy.url());
    assert_eq!(
        moved(&after),
        moved(&settled),
        "MOVED still followed after the switch settled"
    );
    // slotgate routes nothing to replicas (`read_from: primary`), so its replica lists are
    // only shown (/topology, slotgate_topology_nodes): the refresh right after the switch
    // may have seen the demoted node not yet listed under the new primary, and the next
    // periodic refresh (refresh_interval, 10 s) corrects it.
    assert_eventually!(
        topology(&proxy)
            .iter()
            .any(|(p, _, replicas)| *p == old && replicas.contains(&replica)),
        Duration::from_secs(15),
        "{:?}",
        topology(&proxy)
    );
    let replica_shown = failed_back.elapsed();
    eprintln!(
        "failover, restart as replica, fail back: {} writes, {} reads, 0 errors; moved followed {}; \
         the restarted replica answered {moved_by_old} MOVED (slotgate sent it nothing); \
         /topology listed the demoted node as a replica {replica_shown:?} after the fail-back",
        report.acked.len(),
        report.reads,
        moved(&after) - moved(&before),
    );
    assert_eq!(
        moved_by_old, 0,
        "slotgate sent commands to the restarted node while it was a replica"
    );
}

#[test]
fn killed_primary_comes_back_as_a_replica_without_stale_writes() {
    let _serial = serial();
    let (cluster, proxy, load) = cluster_under_load(ClusterOptions::default(), "kr:");
    let victim = cluster.primaries()[1];
    let owners = cluster.slot_owners();
    let affected = |key: &str| owners[slotgate_cluster::slot(key.as_bytes()) as usize] == victim;
    // Not right after the replicas' first sync: a primary streams writes to a replica only
    // once it has loaded the snapshot, and a kill before that loses every write since.
    writes_continue(&load, 1000, "before the kill");

    cluster.kill_node(victim);
    let killed_at = Instant::now();
    assert_eventually!(
        cluster.primaries().len() == 3 && !cluster.primaries().contains(&victim),
        Duration::from_secs(20),
        "no replica was promoted"
    );
    let promoted_at = Instant::now();
    writes_continue(&load, 300, "after the promotion");

    // The old primary returns. Its nodes.conf still says it is the primary of its slots
    // (with an older config epoch) and it has no data; the cluster tells it otherwise and
    // it turns into a replica of the promoted node.
    let restarting = Instant::now();
    cluster.restart_node(victim);
    let restarted_at = Instant::now();
    cluster.wait_healthy(Duration::from_secs(30));
    let rejoined = restarting.elapsed();
    assert_eq!(role(&cluster, victim), "slave");
    let settled = proxy.scrape();
    writes_continue(&load, 500, "after the old primary rejoined");
    let report = load.stop();
    let after = proxy.scrape();

    // Redis replicates asynchronously: writes the old primary acknowledged just before the
    // kill may never have reached the replica, and the cluster itself lost them (most
    // likely when the kill comes right after the replica's first sync). Those are the only
    // acceptable losses: each must be on the dead shard, acknowledged before the kill, and
    // missing from the cluster when asked directly. Reading one back gives nil, before and
    // after the restart alike: those reads are the cluster's loss showing, not errors.
    let lost = report.lost_writes(&proxy.url());
    let owners_now = cluster.slot_owners();
    let mut lost_keys: Vec<&str> = Vec::new();
    for entry in &lost {
        let key = entry.split(": ").next().unwrap_or_default();
        assert!(affected(key), "write lost on a healthy shard: {entry}");
        let owner = owners_now[slotgate_cluster::slot(key.as_bytes()) as usize];
        let want = report
            .acked
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        let direct = cluster.query(owner, &["GET", key]);
        assert!(
            direct.as_ref().ok().and_then(|r| r.text()) != want,
            "slotgate lost {entry}, but the cluster kept it: {direct:?}"
        );
        let acked_at = report
            .successes
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.at)
            .expect("acked");
        assert!(
            acked_at <= killed_at,
            "{entry} was acknowledged after the kill and lost"
        );
        lost_keys.push(key);
    }
    let (lost_reads, errors): (Vec<_>, Vec<_>) = report.errors.iter().partition(|e| {
        e.op == "GET" && e.message.starts_with("read None") && lost_keys.contains(&e.key.as_str())
    });

    let bad: Vec<_> = errors
        .iter()
        .filter(|e| !affected(&e.key) || e.at >= restarted_at)
        .collect();
    assert!(
        bad.is_empty(),
        "{} errors on other shards or after the old primary returned, first: {:?}\nrestarted node {victim}:\n{}",
        bad.len(),
        bad.first(),
        slotgate_tests::process::tail_file(&cluster.log_path(victim), 40),
    );
    for e in &errors {
        assert!(
            !e.message.contains("MOVED") && !e.message.contains("READONLY"),
            "a redirect reached the client: {e:?}"
        );
        assert!(
            e.at <= promoted_at + Duration::from_secs(1),
            "an error {:?} after the promotion: {e:?}",
            e.at.duration_since(promoted_at)
        );
    }
    let moved_by_victim = moved_answered(&cluster, victim);
    assert!(
        moved_by_victim <= 10,
        "the restarted node answered {moved_by_victim} MOVED: slotgate kept sending to it"
    );
    assert_eq!(
        moved(&after),
        moved(&settled),
        "MOVED still followed after the node rejoined"
    );
    let first_success_after = |t: Instant| {
        report
            .successes
            .iter()
            .find(|s| s.at > t && affected(&s.key))
            .map(|s| s.at)
    };
    let window = errors
        .first()
        .and_then(|first| first_success_after(first.at).map(|ok| ok.duration_since(first.at)));
    eprintln!(
        "kill, promotion, old primary back as replica: {} errors (all on the dead shard, none later than 1 s after the promotion), \
         error window {window:?}; cluster promoted after {:?}, slotgate served the new primary {:?} later; \
         the old primary rejoined as a replica {rejoined:?} after its restart and answered {moved_by_victim} MOVED; \
         {} writes, {} reads; {} acknowledged writes the cluster itself lost ({} nil reads of them)",
        errors.len(),
        promoted_at.duration_since(killed_at),
        first_success_after(promoted_at).map(|t| t.saturating_duration_since(promoted_at)),
        report.acked.len(),
        report.reads,
        lost.len(),
        lost_reads.len(),
    );
}
