//! The read cache (`cache:`, docs/cache.md) end to end, against the shared cluster (and a
//! cluster of its own where nodes restart): hits are byte-identical to the nodes' replies in
//! RESP2 and RESP3; a write made directly on a node is seen once its invalidation arrives
//! (the delay is measured and printed); slotgate's own writes are read back at once; no
//! client ever reads a value older than one it wrote or read; FLUSHALL, `max_ttl`,
//! `max_memory`, ACL key patterns, lost node state, and the cache turned off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    shared_cluster, unique_key_prefix, wait_until, ClusterOptions, ProxyConfig, RedisCluster,
    Reply, Slotgate,
};

/// A slotgate with the cache on (and metrics), in front of `cluster`.
fn cached_proxy(cluster: &RedisCluster, extra: &[(&'static str, &str)]) -> Slotgate {
    let mut cfg = ProxyConfig::new(&cluster.seeds())
        .admin()
        .cache("enabled", "true");
    for (k, v) in extra {
        cfg = cfg.cache(k, *v);
    }
    cfg.spawn()
}

fn metric(proxy: &Slotgate, series: &str) -> f64 {
    proxy.scrape().get(series)
}

fn hits(proxy: &Slotgate) -> f64 {
    metric(proxy, "slotgate_cache_requests_total{result=\"hit\"}")
}

/// A direct connection to the primary serving `key`.
fn node_conn(cluster: &RedisCluster, key: &str) -> redis::Connection {
    let port = cluster.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .expect("node connection")
}

fn get(c: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(c).expect("GET")
}

fn set(c: &mut redis::Connection, key: &str, value: impl redis::ToRedisArgs) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(c)
        .expect("SET")
}

/// Read `key` through `c` until a read is a hit (the links are up and the value filled).
fn until_cached(proxy: &Slotgate, c: &mut redis::Connection, key: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || {
            let before = hits(proxy);
            let _ = get(c, key);
            hits(proxy) > before
        }),
        "{key} never became a cache hit"
    );
}

fn raw_call(c: &mut RawConn, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    assert!(c.send_command(&args));
    c.read_reply().expect("a reply")
}

/// Every cached command, RESP2 and RESP3: the hit is the node's reply, byte for byte.
#[test]
fn hits_are_byte_identical_to_the_nodes_replies() {
    let cluster = shared_cluster();
    let proxy = cached_proxy(cluster, &[]);
    let p = unique_key_prefix("cache-bytes");
    let (s, h, l, st, z) = (
        format!("{{{p}}}s"),
        format!("{{{p}}}h"),
        format!("{{{p}}}l"),
        format!("{{{p}}}set"),
        format!("{{{p}}}z"),
    );
    let mut setup = proxy.connection();
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(&s)
        .arg("hello world")
        .ignore()
        .cmd("HSET")
        .arg(&h)
        .arg("f1")
        .arg("v1")
        .arg("f2")
        .arg("22")
        .ignore()
        .cmd("RPUSH")
        .arg(&l)
        .arg("a")
        .arg("b")
        .arg("c")
        .ignore()
        .cmd("SADD")
        .arg(&st)
        .arg("m1")
        .arg("m2")
        .ignore()
        .cmd("ZADD")
        .arg(&z)
        .arg("1.5")
        .arg("x")
        .ignore()
        .query(&mut setup)
        .unwrap();
    let missing = format!("{{{p}}}missing");
    let reads: Vec<Vec<&str>> = vec![
        vec!["GET", &s],
        vec!["GET", &missing],
        vec!["GETRANGE", &s, "0", "4"],
        vec!["STRLEN", &s],
        vec!["HGET", &h, "f1"],
        vec!["HMGET", &h, "f1", "nope", "f2"],
        vec!["HGETALL", &h],
        vec!["HEXISTS", &h, "f2"],
        vec!["HLEN", &h],
        vec!["HSTRLEN", &h, "f1"],
        vec!["LINDEX", &l, "1"],
        vec!["LLEN", &l],
        vec!["LRANGE", &l, "0", "-1"],
        vec!["SCARD", &st],
        vec!["SISMEMBER", &st, "m2"],
        vec!["ZCARD", &z],
        vec!["ZSCORE", &z, "x"],
    ];
    let port = cluster.node_for_slot(slotgate_cluster::slot(s.as_bytes()));
    for proto in ["2", "3"] {
        let mut via = RawConn::connect(proxy.port());
        let mut node = RawConn::connect(port);
        raw_call(&mut via, &["HELLO", proto]);
        raw_call(&mut node, &["HELLO", proto]);
        // Wait for the links: one read becomes a hit.
        assert!(wait_until(Duration::from_secs(10), || {
            let before = hits(&proxy);
            raw_call(&mut via, &["GET", &s]);
            hits(&proxy) > before
        }));
        for args in &reads {
            let direct = raw_call(&mut node, args);
            let first = raw_call(&mut via, args); // a miss: fills
            let before = hits(&proxy);
            let second = raw_call(&mut via, args);
            assert!(hits(&proxy) > before, "RESP{proto} {args:?} was not a hit");
            assert_eq!(
                String::from_utf8_lossy(&first),
                String::from_utf8_lossy(&direct),
                "RESP{proto} {args:?}"
            );
            assert_eq!(
                String::from_utf8_lossy(&second),
                String::from_utf8_lossy(&direct),
                "RESP{proto} {args:?} (hit)"
            );
        }
    }
}

/// A write made directly on the node reaches readers through slotgate once the node's
/// report arrives; prints the delay from the write to the first read of the new value.
#[test]
fn a_direct_write_is_seen_after_its_invalidation() {
    let cluster = shared_cluster();
    let proxy = cached_proxy(cluster, &[]);
    let key = format!("{}k", unique_key_prefix("cache-direct"));
    let mut via = proxy.connection();
    let mut node = node_conn(cluster, &key);
    set(&mut node, &key, "0");
    until_cached(&proxy, &mut via, &key);
    let mut delays = Vec::new();
    for i in 1..=200 {
        // The old value is cached …
        let _ = get(&mut via, &key);
        let _ = get(&mut via, &key);
        let want = i.to_string();
        set(&mut node, &key, &want);
        let written = Instant::now();
        // … until the report drops it.
        loop {
            if get(&mut via, &key).as_deref() == Some(want.as_str()) {
                delays.push(written.elapsed());
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(5),
                "write {i} never seen"
            );
        }
    }
    delays.sort();
    let p = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    println!(
        "direct write → read of the new value through the cache: p50 {:?}, p99 {:?}, max {:?}",
        p(0.50),
        p(0.99),
        delays[delays.len() - 1]
    );
    assert!(metric(&proxy, "slotgate_invalidations_total{source=\"server\"}") >= 1.0);
}

/// A client's writes through slotgate are read back at once, pipelined or not.
#[test]
fn own_writes_are_read_back_immediately() {
    let cluster = shared_cluster();
    let proxy = cached_proxy(cluster, &[]);
    let p = unique_key_prefix("cache-own");
    let (k, h) = (format!("{{{p}}}k"), format!("{{{p}}}h"));
    let mut c = proxy.connection();
    set(&mut c, &k, "start");
    until_cached(&proxy, &mut c, &k);
    for i in 0..500 {
        let v = i.to_string();
        let (a, b, len, got, field): (String, String, i64, String, String) = redis::pipe()
            .cmd("GET")
            .arg(&k)
            .ignore()
            .cmd("SET")
            .arg(&k)
            .arg(&v)
            .cmd("GET")
            .arg(&k)
            .cmd("STRLEN")
            .arg(&k)
            .cmd("MSET")
            .arg(&k)
            .arg(format!("{v}m"))
            .ignore()
            .cmd("GET")
            .arg(&k)
            .cmd("HSET")
            .arg(&h)
            .arg("f")
            .arg(&v)
            .ignore()
            .cmd("HGET")
            .arg(&h)
            .arg("f")
            .query(&mut c)
            .unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("OK", v.as_str()), "round {i}");
        assert_eq!(len as usize, v.len());
        assert_eq!(got, format!("{v}m"));
        assert_eq!(field, v);
        // Not pipelined, and a transaction's write.
        let _: () = redis::cmd("DEL").arg(&k).query(&mut c).unwrap();
        assert_eq!(get(&mut c, &k), None, "round {i}: after DEL");
        let _: () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&k)
            .arg(format!("tx{v}"))
            .ignore()
            .query(&mut c)
            .unwrap();
        assert_eq!(
            get(&mut c, &k),
            Some(format!("tx{v}")),
            "round {i}: after EXEC"
        );
    }
    assert!(hits(&proxy) > 0.0);
    assert!(metric(&proxy, "slotgate_invalidations_total{source=\"own_write\"}") > 0.0);
}

/// Writers (INCR through slotgate and directly on the node) and readers (GET through
/// slotgate) at once: no client ever reads a value older than one it wrote or read.
#[test]
fn no_client_reads_older_than_what_it_wrote_or_read() {
    let cluster = shared_cluster();
    let proxy = Arc::new(cached_proxy(cluster, &[]));
    let key = Arc::new(format!("{}counter", unique_key_prefix("cache-mono")));
    let mut c = proxy.connection();
    set(&mut c, &key, "0");
    until_cached(&proxy, &mut c, &key);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for id in 0..6 {
        let (proxy, key, stop) = (Arc::clone(&proxy), Arc::clone(&key), Arc::clone(&stop));
        let direct = id == 5;
        let port = cluster.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
        threads.push(std::thread::spawn(move || {
            let mut c = if direct {
                redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                    .unwrap()
            } else {
                proxy.connection()
            };
            let (mut seen, mut reads) = (0i64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                // Writers write now and then; everyone reads.
                if id % 2 == 1 && reads % 4 == 0 {
                    let v: i64 = redis::cmd("INCR").arg(&*key).query(&mut c).unwrap();
                    assert!(v > seen, "client {id}: INCR gave {v} after {seen}");
                    seen = v;
                }
                let v: i64 = redis::cmd("GET").arg(&*key).query(&mut c).unwrap();
                assert!(v >= seen, "client {id}: read {v} after it saw {seen}");
                seen = v;
                reads += 1;
            }
            reads
        }));
    }
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!("{reads} reads, {} hits", hits(&proxy));
    assert!(hits(&proxy) > 0.0);
}

#[test]
fn flushall_drops_everything() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = cached_proxy(&cluster, &[]);
    let mut c = proxy.connection();
    for i in 0..50 {
        set(&mut c, &format!("f{i}"), i);
    }
    until_cached(&proxy, &mut c, "f0");
    for i in 0..50 {
        assert_eq!(get(&mut c, &format!("f{i}")), Some(i.to_string()));
    }
    assert!(metric(&proxy, "slotgate_cache_bytes") > 0.0);
    // Directly on every primary: the reports drop everything.
    for port in cluster.primaries() {
        cluster.query(port, &["FLUSHALL"]).unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || (0..50).all(|i| get(
        &mut c,
        &format!("f{i}")
    )
    .is_none())));
    // Through slotgate too.
    for i in 0..50 {
        set(&mut c, &format!("f{i}"), i);
        let _ = get(&mut c, &format!("f{i}"));
    }
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert!((0..50).all(|i| get(&mut c, &format!("f{i}")).is_none()));
}

#[test]
fn entries_live_at_most_max_ttl() {
    let cluster = shared_cluster();
    let proxy = cached_proxy(cluster, &[("max_ttl", "1s")]);
    let key = format!("{}k", unique_key_prefix("cache-ttl"));
    let mut c = proxy.connection();
    set(&mut c, &key, "v");
    until_cached(&proxy, &mut c, &key);
    let ttl = "slotgate_invalidations_total{source=\"ttl\"}";
    assert!(
        wait_until(Duration::from_secs(5), || metric(&proxy, ttl) >= 1.0),
        "no entry expired"
    );
    let before = metric(&proxy, "slotgate_cache_requests_total{result=\"miss\"}");
    assert_eq!(get(&mut c, &key).as_deref(), Some("v"));
    assert!(metric(&proxy, "slotgate_cache_requests_total{result=\"miss\"}") > before);
}

#[test]
fn memory_stays_under_max_memory() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .workers(2)
        .cache("enabled", "true")
        .cache("max_memory", "256kb")
        .spawn();
    let p = unique_key_prefix("cache-mem");
    let mut c = proxy.connection();
    let value = "x".repeat(200);
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET").arg(format!("{p}{i}")).arg(&value).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    until_cached(&proxy, &mut c, &format!("{p}0"));
    for round in 0..2 {
        for i in 0..5000 {
            assert_eq!(
                get(&mut c, &format!("{p}{i}")).as_deref(),
                Some(value.as_str())
            );
        }
        let bytes = metric(&proxy, "slotgate_cache_bytes");
        assert!(
            bytes <= 256.0 * 1024.0,
            "round {round}: {bytes} bytes cached"
        );
        assert!(bytes > 0.0);
    }
    assert!(metric(&proxy, "slotgate_invalidations_total{source=\"memory\"}") > 0.0);
}

/// A restricted user gets NOPERM for a key outside its patterns even when a full user's read
/// filled the cache with it.
#[test]
fn a_hit_passes_the_acl_gate_first() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .user("admin", "adminpw", "on ~* +@all")
        .user("app", "apppw", "on ~app:* +@all")
        .cache("enabled", "true")
        .spawn();
    let p = unique_key_prefix("cache-acl");
    let other = format!("other:{p}");
    let mine = format!("app:{p}");
    let mut admin = RawConn::connect(proxy.port());
    raw_call(&mut admin, &["AUTH", "admin", "adminpw"]);
    raw_call(&mut admin, &["SET", &other, "secret"]);
    raw_call(&mut admin, &["SET", &mine, "mine"]);
    assert!(wait_until(Duration::from_secs(10), || {
        let before = hits(&proxy);
        raw_call(&mut admin, &["GET", &other]);
        raw_call(&mut admin, &["GET", &mine]);
        hits(&proxy) >= before + 2.0
    }));
    let mut app = RawConn::connect(proxy.port());
    raw_call(&mut app, &["AUTH", "app", "apppw"]);
    let denied = raw_call(&mut app, &["GET", &other]);
    assert!(
        denied.starts_with(b"-NOPERM"),
        "{}",
        String::from_utf8_lossy(&denied)
    );
    assert_eq!(raw_call(&mut app, &["GET", &mine]), b"$4\r\nmine\r\n");
    let mut anon = RawConn::connect(proxy.port());
    assert!(raw_call(&mut anon, &["GET", &mine]).starts_with(b"-NOAUTH"));
}

/// A reshard moving the key's slot, a node restart, a failover, or slotgate's links to a node
/// killed: what the cache held is dropped, and a value written meanwhile is read.
#[test]
fn lost_node_state_is_dropped() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = cached_proxy(&cluster, &[]);
    let key = "{lost}k";
    let slot = slotgate_cluster::slot(key.as_bytes());
    let mut c = proxy.connection();
    // What drops the entry (`slotgate_invalidations_total{source}`): the report of MIGRATE
    // deleting the key on the old primary, or the node's state being lost.
    let events: [(&str, &str, &dyn Fn()); 4] = [
        ("reshard", "server", &|| {
            cluster.move_slot_away(slot);
        }),
        ("killed connections", "topology", &|| {
            let primary = cluster.node_for_slot(slot);
            cluster
                .query(primary, &["CLIENT", "KILL", "TYPE", "normal"])
                .unwrap();
        }),
        ("failover", "topology", &|| {
            let primary = cluster.node_for_slot(slot);
            cluster.failover(cluster.replicas_of(primary)[0]);
        }),
        ("restart", "topology", &|| {
            cluster.restart_node(cluster.node_for_slot(slot));
            cluster.wait_healthy(Duration::from_secs(30));
        }),
    ];
    for (i, (what, source, event)) in events.iter().enumerate() {
        let series = format!("slotgate_invalidations_total{{source=\"{source}\"}}");
        let dropped = |proxy: &Slotgate| metric(proxy, &series);
        let old = format!("old{i}");
        assert!(wait_until(Duration::from_secs(15), || {
            redis::cmd("SET")
                .arg(key)
                .arg(&old)
                .query::<()>(&mut c)
                .is_ok()
        }));
        until_cached(&proxy, &mut c, key);
        let before = dropped(&proxy);
        event();
        assert!(
            wait_until(Duration::from_secs(15), || dropped(&proxy) > before),
            "{what}: nothing dropped"
        );
        // A write on the node (whoever serves the slot now, once it takes writes again) is
        // read through slotgate as soon as the node's report can arrive.
        let new = format!("new{i}");
        assert!(
            wait_until(Duration::from_secs(15), || {
                let port = cluster.node_for_slot(slot);
                cluster.query(port, &["SET", key, &new]) == Ok(Reply::Status("OK".into()))
            }),
            "{what}: {new} cannot be written on the node"
        );
        assert!(
            wait_until(Duration::from_secs(2), || {
                redis::cmd("GET")
                    .arg(key)
                    .query::<Option<String>>(&mut c)
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some(new.as_str())
            }),
            "{what}: {new} written on the node, but not read through slotgate within 2 s"
        );
    }
}

/// `cache.enabled: false` (the default): no cacheable read is counted, and a direct write is
/// read at once.
#[test]
fn the_cache_off_changes_nothing() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).admin().spawn();
    let key = format!("{}k", unique_key_prefix("cache-off"));
    let mut c = proxy.connection();
    let mut node = node_conn(cluster, &key);
    for i in 0..100 {
        set(&mut node, &key, i);
        assert_eq!(get(&mut c, &key), Some(i.to_string()));
    }
    let scrape = proxy.scrape();
    assert_eq!(scrape.sum("slotgate_cache_requests_total", &[]), 0.0);
    assert_eq!(scrape.get("slotgate_cache_bytes"), 0.0);
    assert!(scrape
        .text
        .contains("slotgate_cache_requests_total{result=\"hit\"} 0"));
}

/// The cache refuses settings it cannot be exact with.
#[test]
fn the_cache_needs_one_connection_per_node_and_primary_reads() {
    let cluster = shared_cluster();
    for (key, value) in [("connections_per_node", "2"), ("read_from", "replica")] {
        let cfg = ProxyConfig::new(&cluster.seeds())
            .upstream_key(key, value)
            .cache("enabled", "true");
        let Err(err) = Slotgate::try_spawn(&cfg.yaml()) else {
            panic!("{key}: {value} was accepted with the cache on");
        };
        assert!(err.contains("cache.enabled needs"), "{err}");
    }
}
