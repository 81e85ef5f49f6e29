//! slotgate in front of a Sentinel-managed primary (`upstream.mode: sentinel`) and of a
//! standalone server (`upstream.mode: standalone`): every family works with keys in any
//! slots, a `SENTINEL FAILOVER` under load costs no error and no acknowledged write, and a
//! killed primary is replaced within the sentinels' own time and fenced when it returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Commands, Value};
use slotgate_tests::admin::{http_get, scrape};
use slotgate_tests::sentinel::{SentinelGroup, SentinelOptions, DOWN_AFTER, MASTER_NAME};
use slotgate_tests::{unique_key_prefix, wait_until, ProxyConfig, Slotgate};

/// The group the feature tests share (no test here changes its primary).
fn shared_group() -> &'static SentinelGroup {
    static GROUP: OnceLock<SentinelGroup> = OnceLock::new();
    GROUP.get_or_init(|| {
        SentinelGroup::start(SentinelOptions {
            sentinel_password: Some("sentinel-secret".into()),
            tls: None,
        })
    })
}

fn sentinel_proxy(group: &SentinelGroup) -> Slotgate {
    ProxyConfig::sentinel(&group.sentinel_addrs(), MASTER_NAME)
        .upstream_key("sentinel_password", "\"${SENTINEL_PW}\"")
        .env("SENTINEL_PW", "sentinel-secret")
        .admin()
        .spawn()
}

/// Strings, hashes, lists, multi-key commands across slots, pipelines, transactions with
/// WATCH, scripts, Pub/Sub, blocking commands and RESP3 through `proxy`.
fn exercise_families(proxy: &Slotgate, mode: &str) {
    let p = unique_key_prefix(mode);
    let mut con = proxy.connection();
    let (a, b) = (format!("{p}:a"), format!("{p}:b"));
    // Keys in different slots go together: one server has them all.
    assert_ne!(
        slotgate_cluster::slot(a.as_bytes()),
        slotgate_cluster::slot(b.as_bytes())
    );
    let _: () = con.mset(&[(&a, "1"), (&b, "2")]).unwrap();
    let got: Vec<String> = con.mget(&[&a, &b]).unwrap();
    assert_eq!(got, ["1", "2"]);
    let moved: bool = redis::cmd("RENAME")
        .arg(&a)
        .arg(format!("{p}:c"))
        .query::<String>(&mut con)
        .is_ok();
    assert!(moved, "RENAME across slots");
    let _: () = con.hset(format!("{p}:h"), "f", "v").unwrap();
    assert_eq!(
        con.hget::<_, _, String>(format!("{p}:h"), "f").unwrap(),
        "v"
    );
    let _: () = con.rpush(format!("{p}:l"), &["x", "y"]).unwrap();
    assert_eq!(con.llen::<_, i64>(format!("{p}:l")).unwrap(), 2);
    // A pipeline.
    let (one, two): (String, String) = redis::pipe()
        .set(format!("{p}:p1"), "one")
        .ignore()
        .get(format!("{p}:p1"))
        .get(&b)
        .query(&mut con)
        .unwrap();
    assert_eq!((one.as_str(), two.as_str()), ("one", "2"));
    // A transaction with WATCH over keys in several slots.
    let _: () = redis::cmd("WATCH")
        .arg(&b)
        .arg(format!("{p}:c"))
        .query(&mut con)
        .unwrap();
    let exec: Vec<Value> = redis::pipe()
        .atomic()
        .incr(&b, 1)
        .incr(format!("{p}:c"), 1)
        .query(&mut con)
        .unwrap();
    assert_eq!(exec, vec![Value::Int(3), Value::Int(2)]);
    // Scripts with keys in two slots, EVALSHA after.
    let script = "return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])";
    let both: String = redis::cmd("EVAL")
        .arg(script)
        .arg(2)
        .arg(&b)
        .arg(format!("{p}:c"))
        .query(&mut con)
        .unwrap();
    assert_eq!(both, "32");
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script)
        .query(&mut con)
        .unwrap();
    let again: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(2)
        .arg(&b)
        .arg(format!("{p}:c"))
        .query(&mut con)
        .unwrap();
    assert_eq!(again, "32");
    // Blocking: a BLPOP answered by a push from another client.
    let list = format!("{p}:q");
    let pusher = {
        let mut other = proxy.connection();
        let list = list.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            let _: i64 = other.rpush(&list, "job").unwrap();
        })
    };
    let popped: (String, String) = redis::cmd("BLPOP")
        .arg(&list)
        .arg(5)
        .query(&mut con)
        .unwrap();
    assert_eq!(popped.1, "job");
    pusher.join().unwrap();
    // Pub/Sub.
    let channel = format!("{p}:chan");
    let mut sub = proxy.connection();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe(&channel).unwrap();
    let receivers: i64 = con.publish(&channel, "hello").unwrap();
    assert_eq!(receivers, 1);
    let msg = pubsub.get_message().unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "hello");
    drop(pubsub);
    // RESP3.
    let client = redis::Client::open(format!("{}/?protocol=resp3", proxy.url())).unwrap();
    let mut r3 = client.get_connection().unwrap();
    let map: Value = redis::cmd("HGETALL")
        .arg(format!("{p}:h"))
        .query(&mut r3)
        .unwrap();
    assert!(matches!(map, Value::Map(_)), "{map:?}");
    // Cluster commands do not exist here, as on the server itself.
    let err = redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string().contains("cluster support disabled"),
        "{err}"
    );
    let info: String = redis::cmd("INFO").arg("slotgate").query(&mut con).unwrap();
    assert!(info.contains(&format!("upstream_mode:{mode}")), "{info}");
}

#[test]
fn sentinel_mode_serves_every_family() {
    let group = shared_group();
    let proxy = sentinel_proxy(group);
    exercise_families(&proxy, "sentinel");
    let admin = proxy.admin_addr().unwrap();
    let primary = format!("127.0.0.1:{}", group.primary());
    assert!(wait_until(Duration::from_secs(5), || {
        scrape(admin).get("slotgate_sentinels_reachable") == 3.0
    }));
    let m = scrape(admin);
    assert_eq!(
        m.get(&format!(
            "slotgate_sentinel_primary{{address=\"{primary}\"}}"
        )),
        1.0
    );
    let (status, body) = http_get(admin, "/topology").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("\"mode\": \"sentinel\"") && body.contains(&primary),
        "{body}"
    );
    assert!(body.contains("\"sentinels_reachable\": 3"), "{body}");
    let (status, _) = http_get(admin, "/readyz").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn standalone_mode_serves_every_family() {
    let group = shared_group();
    let proxy = ProxyConfig::standalone(&format!("127.0.0.1:{}", group.primary()))
        .admin()
        .spawn();
    exercise_families(&proxy, "standalone");
    let (status, body) = http_get(proxy.admin_addr().unwrap(), "/topology").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"mode\": \"standalone\""), "{body}");
}

#[test]
fn a_wrong_sentinel_password_or_master_name_is_not_ready() {
    let group = shared_group();
    let proxy = ProxyConfig::sentinel(&group.sentinel_addrs(), "nosuchmaster")
        .upstream_key("sentinel_password", "sentinel-secret")
        .admin()
        .builder()
        .wait_ready(false)
        .spawn();
    let admin = proxy.admin_addr().unwrap();
    assert!(wait_until(Duration::from_secs(5), || http_get(
        admin, "/readyz"
    )
    .is_ok()));
    let (status, body) = http_get(admin, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    let mut con = proxy.connection();
    let err = con.get::<_, Option<String>>("k").unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("clusterdown"),
        "{err}"
    );
}

/// What writers and readers saw during a run.
#[derive(Default)]
struct Tally {
    /// Key, value and when the write was acknowledged.
    acked: Mutex<Vec<(String, String, Instant)>>,
    errors: Mutex<Vec<(Instant, String)>>,
    ops: AtomicU64,
}

/// Two writers (unique values, each acknowledged write remembered) and a reader through
/// `proxy`, until `stop`.
fn start_load(
    proxy: &Slotgate,
    prefix: &str,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    for w in 0..2 {
        let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
        let url = proxy.url();
        let prefix = format!("{prefix}:w{w}");
        handles.push(thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let mut con = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("{prefix}:{}", i % 500);
                let value = format!("v{i}");
                if con.is_none() {
                    con = client.get_connection().ok();
                }
                let Some(c) = con.as_mut() else { continue };
                match redis::cmd("SET").arg(&key).arg(&value).query::<String>(c) {
                    Ok(_) => {
                        tally
                            .acked
                            .lock()
                            .unwrap()
                            .push((key, value, Instant::now()));
                    }
                    Err(e) => {
                        tally
                            .errors
                            .lock()
                            .unwrap()
                            .push((Instant::now(), e.to_string()));
                        if e.is_io_error() {
                            con = None;
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                tally.ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
    let url = proxy.url();
    let key = format!("{prefix}:w0:1");
    handles.push(thread::spawn(move || {
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = con.get::<_, Option<String>>(&key) {
                tally
                    .errors
                    .lock()
                    .unwrap()
                    .push((Instant::now(), format!("read: {e}")));
                thread::sleep(Duration::from_millis(5));
            }
        }
    }));
    handles
}

/// The last value each key was acknowledged with.
fn last_values(tally: &Tally) -> std::collections::HashMap<String, String> {
    tally
        .acked
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect()
}

/// A raw RESP3 connection that sees invalidation pushes among its replies.
struct Tracker {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
    pushes: Vec<slotgate_resp::Value>,
}

impl Tracker {
    fn connect(port: u16) -> Tracker {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        Tracker {
            stream,
            buf: Vec::new(),
            pushes: Vec::new(),
        }
    }

    /// The next frame, within `timeout`.
    fn frame(&mut self, timeout: Duration) -> Option<slotgate_resp::Value> {
        use std::io::Read;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some((v, used)) = slotgate_resp::parse_value(&self.buf).unwrap() {
                self.buf.drain(..used);
                return Some(v);
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("slotgate closed the tracking connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Send a command and return its reply (pushes before it are kept).
    fn call(&mut self, args: &[&str]) -> slotgate_resp::Value {
        use std::io::Write;
        let mut wire = format!("*{}\r\n", args.len());
        for a in args {
            wire.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(wire.as_bytes()).unwrap();
        loop {
            match self.frame(Duration::from_secs(10)).expect("a reply") {
                slotgate_resp::Value::Push(p) => self.pushes.push(slotgate_resp::Value::Push(p)),
                reply => return reply,
            }
        }
    }

    /// Whether an invalidation naming `key` (or a flush) arrives within `timeout`.
    fn invalidated(&mut self, key: &str, timeout: Duration) -> bool {
        let names = |v: &slotgate_resp::Value| {
            let slotgate_resp::Value::Push(items) = v else {
                return false;
            };
            match items.get(1) {
                Some(slotgate_resp::Value::Array(keys)) => {
                    keys.iter().any(|k| k.as_bytes() == Some(key.as_bytes()))
                }
                _ => true, // null keys: drop everything
            }
        };
        if let Some(i) = self.pushes.iter().position(names) {
            self.pushes.drain(..=i);
            return true;
        }
        let deadline = std::time::Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.frame(left) {
                Some(v) if names(&v) => return true,
                Some(_) => {}
                None => return false,
            }
        }
        false
    }
}

#[test]
fn sentinel_failover_under_load_loses_nothing() {
    let group = SentinelGroup::start(SentinelOptions::default());
    let proxy = ProxyConfig::sentinel(&group.sentinel_addrs(), MASTER_NAME)
        .admin()
        .spawn();
    let old = group.primary();
    let prefix = unique_key_prefix("failover");
    // Session state made before the failover: a subscription and a loaded script.
    let channel = format!("{prefix}:events");
    let mut sub = proxy.connection();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe(&channel).unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut con = proxy.connection();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return 'loaded'")
        .query(&mut con)
        .unwrap();
    // A client tracking a key it read: the failover loses the old primary's tracking state,
    // so slotgate must tell the client (and keep telling it of changes afterwards).
    let tracked = format!("{prefix}:tracked");
    let mut tracker = Tracker::connect(proxy.port());
    tracker.call(&["HELLO", "3"]);
    tracker.call(&["CLIENT", "TRACKING", "ON"]);
    tracker.call(&["GET", &tracked]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let handles = start_load(&proxy, &prefix, &stop, &tally);
    thread::sleep(Duration::from_secs(1));
    let new = group.failover();
    assert_ne!(new, old);
    // The subscription follows the new primary; the script runs there (loaded again by
    // slotgate if the node lacks it); WAIT counts the new primary's replicas.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let _: i64 = con.publish(&channel, "after").unwrap();
            pubsub
                .get_message()
                .is_ok_and(|m| m.get_payload::<String>().unwrap() == "after")
        }),
        "no message after the failover"
    );
    let ran: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(0)
        .query(&mut con)
        .unwrap();
    assert_eq!(ran, "loaded");
    let _: () = con.set(format!("{prefix}:waited"), 1).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert!(acked >= 1, "WAIT after the failover: {acked}");
    // The tracking client was told (its pushes wait on its connection meanwhile).
    assert!(
        tracker.invalidated(&tracked, Duration::from_secs(10)),
        "no invalidation for a key read before the failover"
    );
    tracker.call(&["GET", &tracked]);
    let _: () = con.set(&tracked, "after").unwrap();
    assert!(
        tracker.invalidated(&tracked, Duration::from_secs(5)),
        "no invalidation for a write after the failover"
    );
    // Keep writing past the moment the old primary is demoted (the sentinels take about
    // 10 s more for that), so writes it would take are caught.
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let errors = tally.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} client-visible errors: {:?}\nslotgate log:\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        proxy.log()
    );
    let expected = last_values(&tally);
    assert!(
        expected.len() > 100,
        "too little load: {} keys",
        expected.len()
    );
    // Every acknowledged write reads back, through slotgate and on the new primary.
    let mut con = proxy.connection();
    let mut lost = Vec::new();
    for (key, value) in &expected {
        let got: Option<String> = con.get(key).unwrap();
        if got.as_deref() != Some(value.as_str()) {
            lost.push((key.clone(), value.clone(), got));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        expected.len(),
        &lost[..lost.len().min(5)]
    );
    let m = scrape(proxy.admin_addr().unwrap());
    assert!(m.get("slotgate_failovers_total{mode=\"sentinel\"}") >= 1.0);
    assert_eq!(
        m.get(&format!(
            "slotgate_sentinel_primary{{address=\"127.0.0.1:{new}\"}}"
        )),
        1.0
    );
    eprintln!(
        "failover under load: {} commands, {} keys written, 0 errors, 0 lost",
        tally.ops.load(Ordering::Relaxed),
        expected.len()
    );
}

#[test]
fn a_killed_primary_is_replaced_and_fenced_when_it_returns() {
    let group = SentinelGroup::start(SentinelOptions::default());
    let proxy = ProxyConfig::sentinel(&group.sentinel_addrs(), MASTER_NAME)
        .admin()
        .spawn();
    let old = group.primary();
    let prefix = unique_key_prefix("kill");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let handles = start_load(&proxy, &prefix, &stop, &tally);
    thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    group.kill_node(old);
    let new = group.wait_new_primary(old, Duration::from_secs(30));
    let announced_at = Instant::now();
    // The old primary comes back empty and writable until the sentinels convert it: it must
    // never take a write meanwhile.
    group.restart_node(old);
    let converted = wait_until(Duration::from_secs(30), || {
        if group.role(old).as_deref() == Some("master") {
            let keys = group.query(old, &["DBSIZE"]).map(|r| r.int()).unwrap_or(0);
            assert_eq!(keys, 0, "the stale primary took writes");
            false
        } else {
            group.role(old).as_deref() == Some("slave")
        }
    });
    assert!(converted, "the sentinels did not convert the old primary");
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let errors = tally.errors.lock().unwrap().clone();
    let last_error = errors.iter().map(|(at, _)| *at).max().unwrap_or(killed_at);
    let window = last_error.saturating_duration_since(killed_at);
    let served_after = last_error.saturating_duration_since(announced_at);
    eprintln!(
        "kill -9: {} errors over {window:?}; new primary announced {:?} after the kill; \
         last error {served_after:?} after the announcement",
        errors.len(),
        announced_at - killed_at
    );
    assert!(
        served_after <= Duration::from_secs(1),
        "errors went on {served_after:?} after the sentinels named {new}"
    );
    assert!(window <= (announced_at - killed_at) + Duration::from_secs(1));
    assert!(
        window <= DOWN_AFTER + Duration::from_secs(8),
        "error window {window:?}"
    );
    // Writes acknowledged after the recovery all read back.
    let recovered: Vec<(String, String)> = tally
        .acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, at)| *at > last_error)
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    assert!(
        !recovered.is_empty(),
        "no write succeeded after the failover"
    );
    let expected: std::collections::HashMap<_, _> = recovered.into_iter().collect();
    let mut con = proxy.connection();
    for (key, value) in &expected {
        let got: Option<String> = con.get(key).unwrap();
        assert_eq!(got.as_deref(), Some(value.as_str()), "{key}");
    }
}

/// Numbered databases through `proxy` (standalone or sentinel mode), checked on the server
/// at `primary` too.
fn exercise_databases(proxy: &Slotgate, group: &SentinelGroup, mode: &str, base: u16) {
    // Databases base, base + 1 and base + 2 are this run's alone (DBSIZE, SWAPDB, FLUSHDB).
    let (a, b, c) = (base, base + 1, base + 2);
    let p = unique_key_prefix(mode);
    let key = format!("{p}:k");
    // A client whose URL names database 3 (redis-rs sends SELECT 3 on connect).
    let mut db3 = redis::Client::open(format!("{}/3", proxy.url()))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut db0 = proxy.connection();
    let _: () = db3.set(&key, "in-3").unwrap();
    assert_eq!(db0.get::<_, Option<String>>(&key).unwrap(), None);
    assert_eq!(db3.get::<_, String>(&key).unwrap(), "in-3");
    // On the server itself, the key is in database 3.
    let primary = group.primary();
    let on_server = |db: &str| {
        let client = redis::Client::open(format!("redis://127.0.0.1:{primary}/{db}")).unwrap();
        let mut con = client.get_connection().unwrap();
        con.get::<_, Option<String>>(&key).unwrap()
    };
    assert_eq!(on_server("3").as_deref(), Some("in-3"));
    assert_eq!(on_server("0"), None);
    // Interleaved clients on one worker, pipelined: each keeps its database.
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.set(format!("{p}:n{i}"), i).ignore().get(&key);
    }
    let seen: Vec<Option<String>> = pipe.query(&mut db0).unwrap();
    assert!(seen.iter().all(|v| v.is_none()), "db 0 saw db 3's key");
    let seen3: Vec<String> = (0..50).map(|_| db3.get(&key).unwrap()).collect();
    assert!(seen3.iter().all(|v| v == "in-3"));
    // SELECT inside one connection, MOVE, COPY … DB, SWAPDB, DBSIZE, FLUSHDB, SCAN.
    let _: () = redis::cmd("SELECT").arg(a).query(&mut db0).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut db0).unwrap(), 0);
    let _: () = db0.set(format!("{p}:m"), "x").unwrap();
    let moved: i64 = redis::cmd("MOVE")
        .arg(format!("{p}:m"))
        .arg(b)
        .query(&mut db0)
        .unwrap();
    assert_eq!(moved, 1);
    let copied: i64 = redis::cmd("COPY")
        .arg(&key)
        .arg(format!("{p}:copy"))
        .arg("DB")
        .arg(a)
        .query(&mut db3)
        .unwrap();
    assert_eq!(copied, 1);
    assert_eq!(db0.get::<_, String>(format!("{p}:copy")).unwrap(), "in-3");
    let (cursor, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(1000)
        .query(&mut db0)
        .unwrap();
    assert_eq!((cursor, keys), (0, vec![format!("{p}:copy")]));
    let _: () = redis::cmd("SWAPDB").arg(a).arg(c).query(&mut db0).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut db0).unwrap(), 0);
    let _: () = redis::cmd("SELECT").arg(c).query(&mut db0).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut db0).unwrap(), 1);
    let _: () = redis::cmd("FLUSHDB").query(&mut db0).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut db0).unwrap(), 0);
    assert_eq!(
        db3.get::<_, String>(&key).unwrap(),
        "in-3",
        "FLUSHDB of another database reached 3"
    );
    // Transactions, scripts and blocking commands keep the database.
    let exec: Vec<Value> = redis::pipe()
        .atomic()
        .incr(format!("{p}:t"), 1)
        .get(&key)
        .query(&mut db3)
        .unwrap();
    assert_eq!(exec[1], Value::BulkString(b"in-3".to_vec()));
    let via_script: String = redis::cmd("EVAL")
        .arg("return redis.call('GET', KEYS[1])")
        .arg(1)
        .arg(&key)
        .query(&mut db3)
        .unwrap();
    assert_eq!(via_script, "in-3");
    let list = format!("{p}:q");
    let _: i64 = db3.rpush(&list, "job").unwrap();
    let popped: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(&list)
        .arg(1)
        .query(&mut db0)
        .unwrap();
    assert_eq!(popped, None, "BLPOP in another database took db 3's job");
    let popped: (String, String) = redis::cmd("BLPOP")
        .arg(&list)
        .arg(1)
        .query(&mut db3)
        .unwrap();
    assert_eq!(popped.1, "job");
    // Databases the server does not have, and bad arguments.
    let err = redis::cmd("SELECT")
        .arg(16)
        .query::<()>(&mut db0)
        .unwrap_err();
    assert!(
        err.to_string().contains("DB index is out of range"),
        "{err}"
    );
    let err = redis::cmd("SELECT")
        .arg("x")
        .query::<()>(&mut db0)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range"),
        "{err}"
    );
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut db3).unwrap();
    assert!(info.contains(" db=3 "), "{info}");
}

#[test]
fn sentinel_mode_keeps_each_clients_database() {
    let group = shared_group();
    exercise_databases(&sentinel_proxy(group), group, "sentinel-db", 5);
}

#[test]
fn standalone_mode_keeps_each_clients_database() {
    let group = shared_group();
    let proxy = ProxyConfig::standalone(&format!("127.0.0.1:{}", group.primary())).spawn();
    exercise_databases(&proxy, group, "standalone-db", 9);
}

/// `redis-cli` through `proxy`'s TLS listener with the client certificate of `pki`.
fn cli_tls(pki: &slotgate_tests::tls::TestPki, port: u16, user: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(pki.cli_args(true))
        .args([
            "-p",
            &port.to_string(),
            "--user",
            user,
            "--pass",
            "pw",
            "--no-auth-warning",
        ])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sentinel_mode_with_mutual_tls_and_acl_users() {
    let group = shared_group();
    let pki = slotgate_tests::tls::TestPki::generate();
    let p = unique_key_prefix("sentinel-acl");
    let proxy = ProxyConfig::sentinel(&group.sentinel_addrs(), MASTER_NAME)
        .upstream_key("sentinel_password", "sentinel-secret")
        .tls(&pki, true)
        .user("app", "pw", &format!("+@all ~{p}:* &*"))
        .user("reader", "pw", "+@read ~*")
        .builder()
        .wait_ready(false)
        .spawn();
    let port = proxy.port();
    assert!(
        wait_until(Duration::from_secs(10), || cli_tls(
            &pki,
            port,
            "app",
            &["PING"]
        ) == "PONG"),
        "slotgate not ready; log:\n{}",
        proxy.log()
    );
    assert_eq!(
        cli_tls(&pki, port, "app", &["SET", &format!("{p}:a"), "1"]),
        "OK"
    );
    let refused = cli_tls(&pki, port, "app", &["SET", "other:a", "1"]);
    assert!(refused.contains("NOPERM"), "{refused}");
    assert_eq!(
        cli_tls(&pki, port, "reader", &["GET", &format!("{p}:a")]),
        "1"
    );
    let refused = cli_tls(&pki, port, "reader", &["SET", &format!("{p}:a"), "2"]);
    assert!(refused.contains("NOPERM"), "{refused}");
    // A restricted user's script over keys in two slots, as the server allows.
    let out = cli_tls(
        &pki,
        port,
        "app",
        &[
            "EVAL",
            "redis.call('SET', KEYS[1], 'x'); return redis.call('GET', KEYS[2])",
            "2",
            &format!("{p}:b"),
            &format!("{p}:a"),
        ],
    );
    assert_eq!(out, "1");
    // Without a client certificate the handshake fails.
    let out = std::process::Command::new("redis-cli")
        .args(pki.cli_args(false))
        .args(["-p", &port.to_string(), "PING"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("PONG"), "{text}");
}

#[test]
fn sentinels_reached_over_tls() {
    let pki = std::sync::Arc::new(slotgate_tests::tls::TestPki::generate());
    let group = SentinelGroup::start(SentinelOptions {
        sentinel_password: None,
        tls: Some(std::sync::Arc::clone(&pki)),
    });
    let proxy = ProxyConfig::sentinel(&group.sentinel_tls_addrs(), MASTER_NAME)
        .upstream_key(
            "sentinel_tls",
            format!("{{ ca: \"{}\" }}", pki.ca.display()),
        )
        .admin()
        .spawn();
    let mut con = proxy.connection();
    let _: () = con.set("tls-sentinel-key", "v").unwrap();
    assert_eq!(con.get::<_, String>("tls-sentinel-key").unwrap(), "v");
    let admin = proxy.admin_addr().unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        scrape(admin).get("slotgate_sentinels_reachable") == 3.0
    }));
    // Sentinel certificates slotgate does not trust stop it at start, naming a sentinel,
    // as an untrusted node certificate does.
    let other = slotgate_tests::tls::TestPki::generate();
    let mut untrusting = ProxyConfig::sentinel(&group.sentinel_tls_addrs(), MASTER_NAME)
        .upstream_key(
            "sentinel_tls",
            format!("{{ ca: \"{}\" }}", other.ca.display()),
        )
        .builder()
        .wait_ready(false)
        .spawn();
    let status = untrusting.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let log = untrusting.log();
    assert!(log.contains("certificate"), "{log}");
}
