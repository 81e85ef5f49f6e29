//! A stalled primary (`DEBUG SLEEP`) must not slow commands bound for other primaries (no
//! head-of-line blocking across shards), and commands bound for it fail at `op_timeout`
//! with a clear error instead of hanging.

use std::time::{Duration, Instant};

use slotgate_tests::{free_port, probe, wait_until, ClusterOptions, RedisCluster, Slotgate};

#[test]
fn stalled_shard_does_not_slow_the_others() {
    // A long node timeout, so the 2 s sleep never looks like a failure to the cluster.
    let cluster = RedisCluster::start(ClusterOptions {
        node_timeout_ms: 10_000,
        ..ClusterOptions::default()
    });
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let config = format!(
        "listen: \"127.0.0.1:{}\"\nupstream:\n  seeds: [{}]\n  op_timeout: 500ms\nlog: {{ level: warn }}\n",
        free_port(),
        seeds.join(", ")
    );
    let proxy = Slotgate::spawn(&config);
    let victim = cluster.primaries()[0];
    let owners = cluster.slot_owners();
    let key_on = |want_victim: bool| {
        (0..)
            .map(|i| format!("slow:{i}"))
            .find(|k| {
                (owners[slotgate_cluster::slot(k.as_bytes()) as usize] == victim) == want_victim
            })
            .unwrap()
    };
    let (healthy_key, stalled_key) = (key_on(false), key_on(true));
    let mut healthy = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut stalled = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&healthy_key)
        .arg("h")
        .query(&mut healthy)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&stalled_key)
        .arg("s")
        .query(&mut stalled)
        .unwrap();

    let sleeper = std::thread::spawn(move || {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &victim.to_string(), "DEBUG", "SLEEP", "2"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    });
    // Asleep: a PING of its own goes unanswered.
    assert!(
        wait_until(Duration::from_secs(5), || {
            probe::query(victim, &["PING"], Duration::from_millis(50)).is_err()
        }),
        "node {victim} kept answering PING after DEBUG SLEEP"
    );

    // The stalled shard: a clear error at op_timeout, not a hang.
    let started = Instant::now();
    let err = redis::cmd("GET")
        .arg(&stalled_key)
        .query::<String>(&mut stalled)
        .unwrap_err();
    let waited = started.elapsed();
    assert!(err.to_string().contains("did not answer in time"), "{err}");
    assert_eq!(
        err.code(),
        Some("TRYAGAIN"),
        "a read is safe to retry: {err}"
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    // A write that timed out was sent and may still run: never -TRYAGAIN for it.
    let late_key = format!("{{{stalled_key}}}:late");
    let err = redis::cmd("SET")
        .arg(&late_key)
        .arg("late")
        .query::<()>(&mut stalled)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("did not answer in time; the command may have been executed"),
        "{err}"
    );

    // Healthy shards: latency unaffected while the victim still sleeps.
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < until {
        let t = Instant::now();
        let v: String = redis::cmd("GET")
            .arg(&healthy_key)
            .query(&mut healthy)
            .unwrap();
        latencies.push(t.elapsed());
        assert_eq!(v, "h");
    }
    sleeper.join().unwrap();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(latencies.len() > 100, "only {} requests", latencies.len());
    assert!(
        p99 < Duration::from_millis(10),
        "p99 {p99:?} on healthy shards while one slept"
    );

    // The stalled shard serves again once it wakes up, on the same client connection.
    let v: String = redis::cmd("GET")
        .arg(&stalled_key)
        .query(&mut stalled)
        .unwrap();
    assert_eq!(v, "s");
    eprintln!(
        "slow shard: healthy p99 {p99:?} over {} requests; stalled shard error after {waited:?}",
        latencies.len()
    );
}
