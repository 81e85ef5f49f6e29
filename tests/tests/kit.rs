//! Tests of the test kit itself against real redis-server processes.

use std::time::{Duration, Instant};

use slotgate_tests::{
    assert_eventually, free_port, redis_benchmark, redis_benchmark_with_timeout, shared_cluster,
    slotgate_config, unique_key_prefix, ClusterOptions, RedisCluster, Reply, Slotgate,
};

/// Keys spread over many slots (no hash tags).
fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}key-{i}")).collect()
}

#[test]
fn shared_cluster_serves_keys_across_slots() {
    let cluster = shared_cluster();
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.primaries().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    let seed = cluster.nodes()[0];
    let prefix = unique_key_prefix("kit");
    for key in keys(&prefix, 20) {
        assert_eq!(
            cluster.cli(seed, &["-c", "SET", &key, &format!("v-{key}")]),
            "OK"
        );
    }
    // Read back through another node, following MOVED.
    let other = cluster.nodes()[4];
    for key in keys(&prefix, 20) {
        assert_eq!(cluster.cli(other, &["-c", "GET", &key]), format!("v-{key}"));
    }
    // slot("foo") = 12182 per REDIS-NOTES; its owner must hold the key directly.
    let owner = cluster.node_for_slot(12182);
    assert!(cluster.primaries().contains(&owner));
    assert_eq!(cluster.cli(owner, &["CLUSTER", "KEYSLOT", "foo"]), "12182");
    let tagged = format!("{{foo}}{prefix}");
    assert_eq!(
        cluster.query(owner, &["SET", &tagged, "x"]),
        Ok(Reply::Status("OK".into()))
    );
    assert_eq!(
        cluster.query(owner, &["GET", &tagged]),
        Ok(Reply::Bulk(Some(b"x".to_vec())))
    );
}

#[test]
fn redis_benchmark_reports_results_and_errors() {
    let cluster = shared_cluster();
    let primary = cluster.primaries()[0];
    // Single-slot commands that need no key: clean.
    let clean = redis_benchmark(primary, &["-q", "-n", "2000", "-t", "ping"]);
    clean.assert_clean();
    assert!(
        clean.rps("PING_INLINE").is_some_and(|r| r > 0.0),
        "{clean:?}"
    );
    assert!(clean.rps("PING_MBULK").is_some());
    // Random keys against one node of a cluster: MOVED on the first foreign key.
    let moved = redis_benchmark(primary, &["-q", "-n", "2000", "-r", "100000", "-t", "set"]);
    assert!(!moved.is_clean());
    assert!(
        moved.error_lines().iter().any(|l| l.contains("MOVED")),
        "{moved:?}"
    );
    // Cluster mode of redis-benchmark itself: clean, CSV output parsed.
    let csv = redis_benchmark(
        primary,
        &[
            "--cluster",
            "--csv",
            "-n",
            "3000",
            "-r",
            "1000",
            "-t",
            "set,get",
        ],
    );
    csv.assert_clean();
    assert!(
        csv.rps("SET").is_some() && csv.rps("GET").is_some(),
        "{csv:?}"
    );
    // Nothing listening: redis-benchmark spins forever, the deadline stops it.
    let refused = redis_benchmark_with_timeout(
        free_port(),
        &["-q", "-n", "10", "-t", "ping"],
        Duration::from_secs(2),
    );
    assert!(refused.timed_out() && !refused.is_clean());
    assert!(
        refused
            .error_lines()
            .iter()
            .any(|l| l.contains("Connection refused")),
        "{refused:?}"
    );
}

#[test]
fn faults_kill_restart_reshard_failover() {
    let started = Instant::now();
    let cluster = RedisCluster::start(ClusterOptions {
        node_timeout_ms: 1000,
        ..ClusterOptions::default()
    });
    eprintln!("cluster started in {:?}", started.elapsed());
    let seed = cluster.nodes()[0];
    let prefix = unique_key_prefix("faults");
    for key in keys(&prefix, 30) {
        assert_eq!(cluster.cli(seed, &["-c", "SET", &key, "1"]), "OK");
    }

    // SIGSTOP / SIGCONT a replica: it stops answering, then comes back.
    let replica = cluster.replicas()[0];
    cluster.stop_node(replica);
    assert!(
        cluster.query(replica, &["PING"]).is_err(),
        "stopped node answered"
    );
    cluster.cont_node(replica);
    assert_eq!(
        cluster.query(replica, &["PING"]),
        Ok(Reply::Status("PONG".into()))
    );

    // Kill a replica and restart it: it rejoins from nodes.conf as the same node.
    let id = cluster.node_id(replica);
    let pid = cluster.pid(replica).expect("pid");
    cluster.kill_node(replica);
    assert!(cluster.pid(replica).is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "killed pid still exists"
    );
    cluster.restart_node(replica);
    cluster.wait_healthy(Duration::from_secs(30));
    assert_eq!(cluster.node_id(replica), id);

    // Reshard 10 slots between two primaries.
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let before = slots_of(&cluster, to);
    cluster.reshard(from, to, 10);
    assert_eq!(slots_of(&cluster, to), before + 10);
    for key in keys(&prefix, 30) {
        assert_eq!(
            cluster.cli(seed, &["-c", "GET", &key]),
            "1",
            "{key} lost by reshard"
        );
    }

    // Manual failover: a replica of `from` takes over, `from` becomes its replica.
    let new_primary = cluster
        .replicas()
        .into_iter()
        .find(|&r| {
            cluster
                .cli(r, &["INFO", "replication"])
                .contains(&format!("master_port:{from}"))
        })
        .expect("a replica of the first primary");
    cluster.failover(new_primary);
    assert!(cluster.primaries().contains(&new_primary));
    assert!(cluster.replicas().contains(&from));

    // SIGKILL a primary: its replica is promoted after node timeout; restart, it rejoins.
    let victim = new_primary;
    cluster.kill_node(victim);
    assert_eventually!(
        cluster.health().is_ok(),
        Duration::from_secs(30),
        "{:?}",
        cluster.health()
    );
    assert!(
        cluster.primaries().contains(&from),
        "old primary promoted back"
    );
    cluster.restart_node(victim);
    cluster.wait_healthy(Duration::from_secs(30));
    assert!(cluster.replicas().contains(&victim));
    for key in keys(&prefix, 30) {
        assert_eq!(
            cluster.cli(seed, &["-c", "GET", &key]),
            "1",
            "{key} lost by failover"
        );
    }
    eprintln!("fault test took {:?}", started.elapsed());
}

/// Number of slots the primary on `port` owns (per its own CLUSTER NODES line).
fn slots_of(cluster: &RedisCluster, port: u16) -> usize {
    let text = cluster.cli(port, &["CLUSTER", "NODES"]);
    slotgate_tests::cluster::parse_cluster_nodes(&text)
        .into_iter()
        .find(|e| e.is_myself())
        .map(|e| e.slots.iter().map(|&(s, t)| usize::from(t - s) + 1).sum())
        .unwrap_or(0)
}

#[test]
fn slotgate_config_and_missing_binary() {
    let yaml = slotgate_config(
        &["127.0.0.1:7001".to_string(), "127.0.0.1:7002".to_string()],
        6380,
    );
    assert_eq!(
        yaml,
        "listen: \"127.0.0.1:6380\"\nupstream:\n  seeds: [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\nlog: { level: info }\n"
    );
    assert_eq!(slotgate_tests::slotgate::listen_addr_of(&yaml).port(), 6380);
    let err = Slotgate::builder(&yaml)
        .bin("/nonexistent/slotgate")
        .try_spawn()
        .unwrap_err();
    assert!(err.contains("/nonexistent/slotgate"), "{err}");
}

/// The process handle, exercised with a stand-in binary: a script that reads the listen port
/// from the config and runs redis-server there (the real slotgate is tested elsewhere).
#[test]
fn slotgate_handle_with_stand_in_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("fake-slotgate");
    std::fs::write(
        &script,
        "#!/bin/bash\nset -e\n[ \"$1\" = --config ] || exit 2\n\
         port=$(sed -n 's/^listen: \"127.0.0.1:\\([0-9]*\\)\"/\\1/p' \"$2\")\n\
         echo \"fake slotgate on $port\" >&2\n\
         exec redis-server --port \"$port\" --bind 127.0.0.1 --save '' --appendonly no\n",
    )
    .expect("write script");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    let port = free_port();
    let mut proxy = Slotgate::builder(&slotgate_config(&["127.0.0.1:1".to_string()], port))
        .bin(&script)
        .spawn();
    assert_eq!(proxy.port(), port);
    assert!(
        proxy.log().contains(&format!("fake slotgate on {port}")),
        "{}",
        proxy.log()
    );
    assert!(proxy.sigterm());
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exited after SIGTERM");
    assert!(status.success(), "{status:?}");
    // A stand-in that exits at once: the failure carries its log.
    let failing = dir.path().join("failing-slotgate");
    std::fs::write(&failing, "#!/bin/sh\necho 'bad config: boom' >&2\nexit 1\n").expect("write");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&failing)
        .status()
        .expect("chmod");
    let err = Slotgate::builder(&slotgate_config(&[], free_port()))
        .bin(&failing)
        .try_spawn()
        .unwrap_err();
    assert!(err.contains("bad config: boom"), "{err}");
}
