//! The servers' diagnostics through slotgate, merged over every primary as one server would
//! answer them (docs/compatibility.md): SLOWLOG, LATENCY, Valkey's COMMANDLOG, CLUSTER
//! SLOT-STATS, and CLUSTER MYSHARDID from the one-node cluster emulation. Slow commands are
//! made on the nodes directly; what slotgate answers is checked against what the nodes say.
//! Commands a server lacks (COMMANDLOG, SLOT-STATS and MYSHARDID on Redis 7.0) keep the
//! server's error, and the suite says which it skipped. This suite runs against every
//! tested server.
//!
//! The tests change the primaries' slow log and latency settings, so each takes [`NODES`]
//! and puts the settings back.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use slotgate_tests::probe::{query_authed, Reply};
use slotgate_tests::raw::RawConn;
use slotgate_tests::{shared_cluster, unique_key_prefix, ProxyConfig, Slotgate};

/// Held by every test that changes the nodes' settings or logs.
static NODES: Mutex<()> = Mutex::new(());

fn nodes_lock() -> MutexGuard<'static, ()> {
    NODES.lock().unwrap_or_else(|e| e.into_inner())
}

/// `default` may do everything; `reader` only reads.
fn proxy() -> &'static Slotgate {
    static PROXY: OnceLock<Slotgate> = OnceLock::new();
    PROXY.get_or_init(|| {
        ProxyConfig::new(&shared_cluster().seeds())
            .user("default", "pw", "+@all ~* &*")
            .user("reader", "pw", "+@read ~*")
            .spawn()
    })
}

/// `args` through slotgate as `default`.
fn via(args: &[&str]) -> Reply {
    query_authed(proxy().port(), "pw", args, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{args:?} through slotgate: {e}"))
}

/// `args` on the node at `port`, directly.
fn direct(port: u16, args: &[&str]) -> Reply {
    shared_cluster()
        .query(port, args)
        .unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"))
}

/// `args` through slotgate on a connection that said `HELLO 3`: the raw RESP3 reply.
fn via_resp3(args: &[&str]) -> String {
    let mut c = RawConn::connect(proxy().port());
    c.roundtrip(&[b"AUTH", b"default", b"pw"], b"+OK\r\n");
    assert!(c.send_command(&[b"HELLO", b"3"]));
    c.read_reply().expect("HELLO's reply");
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    assert!(c.send_command(&args));
    String::from_utf8_lossy(&c.read_reply().expect("a reply")).into_owned()
}

/// Whether the cluster's servers know `command` (`name` or `container|sub`).
fn server_has(command: &str) -> bool {
    let port = shared_cluster().primaries()[0];
    match direct(port, &["COMMAND", "INFO", command]) {
        Reply::Array(Some(items)) => !matches!(
            items.first(),
            Some(Reply::Array(None) | Reply::Bulk(None)) | None
        ),
        other => panic!("COMMAND INFO {command}: {other:?}"),
    }
}

fn int(r: &Reply) -> i64 {
    r.int()
}

/// Puts a setting back on every primary when dropped (also when the test fails).
struct Restore {
    param: &'static str,
    values: Vec<(u16, String)>,
}

impl Restore {
    fn save(param: &'static str) -> Restore {
        let values = shared_cluster()
            .primaries()
            .into_iter()
            .map(|p| match direct(p, &["CONFIG", "GET", param]) {
                Reply::Array(Some(pair)) if pair.len() == 2 => (p, pair[1].string()),
                other => panic!("CONFIG GET {param} on {p}: {other:?}"),
            })
            .collect();
        Restore { param, values }
    }

    /// Set the parameter to `value` on every primary.
    fn set(&self, value: &str) {
        for (port, _) in &self.values {
            assert_eq!(
                direct(*port, &["CONFIG", "SET", self.param, value]),
                Reply::Status("OK".into())
            );
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for (port, value) in &self.values {
            let _ = shared_cluster().query(*port, &["CONFIG", "SET", self.param, value]);
        }
    }
}

/// The log entries `[id, timestamp, duration, args, peer, name]` of a GET reply: timestamp
/// and arguments.
fn log_entries(reply: Reply) -> Vec<(i64, Vec<String>)> {
    reply
        .array()
        .into_iter()
        .map(|e| {
            let fields = e.array();
            let args = fields[3]
                .clone()
                .array()
                .iter()
                .map(Reply::string)
                .collect();
            (int(&fields[1]), args)
        })
        .collect()
}

/// Every primary logs everything for a moment and runs `ECHO <marker>` (which slotgate
/// answers itself, so nothing but this test sends it to a node); then logs nothing more.
/// Returns the markers.
fn mark_every_primary(slowlog: &Restore, reset: &[&str]) -> Vec<String> {
    let p = unique_key_prefix("marker");
    for port in shared_cluster().primaries() {
        assert_eq!(direct(port, reset), Reply::Status("OK".into()));
    }
    slowlog.set("0");
    let markers: Vec<String> = shared_cluster()
        .primaries()
        .into_iter()
        .map(|port| {
            let marker = format!("{p}{port}");
            direct(port, &["ECHO", &marker]);
            marker
        })
        .collect();
    slowlog.set("10000000");
    markers
}

#[test]
fn slowlog_is_every_primarys_newest_first() {
    let _nodes = nodes_lock();
    let slowlog = Restore::save("slowlog-log-slower-than");
    let markers = mark_every_primary(&slowlog, &["SLOWLOG", "RESET"]);

    let all = log_entries(via(&["SLOWLOG", "GET", "-1"]));
    for marker in &markers {
        assert!(
            all.iter()
                .any(|(_, args)| args == &["ECHO", marker.as_str()]),
            "{marker} missing from {all:?}"
        );
    }
    assert!(all.windows(2).all(|w| w[0].0 >= w[1].0), "{all:?}");
    let total: i64 = shared_cluster()
        .primaries()
        .into_iter()
        .map(|p| int(&direct(p, &["SLOWLOG", "LEN"])))
        .sum();
    assert_eq!(all.len() as i64, total);
    assert_eq!(int(&via(&["SLOWLOG", "LEN"])), total);
    // The first n, and Redis's default of 10.
    assert_eq!(log_entries(via(&["SLOWLOG", "GET", "2"])), all[..2]);
    let default = log_entries(via(&["SLOWLOG", "GET"]));
    assert_eq!(default, all[..all.len().min(10)]);
    // RESP3: the same entries (arrays of integers and strings).
    assert!(
        via_resp3(&["SLOWLOG", "GET", "1"]).starts_with("*1\r\n*6\r\n:"),
        "RESP3 SLOWLOG GET"
    );

    assert_eq!(via(&["SLOWLOG", "RESET"]), Reply::Status("OK".into()));
    for port in shared_cluster().primaries() {
        assert_eq!(int(&direct(port, &["SLOWLOG", "LEN"])), 0, "{port}");
    }
    assert_eq!(via(&["SLOWLOG", "GET"]), Reply::Array(Some(vec![])));
}

#[test]
fn bad_arguments_get_the_servers_error() {
    let port = shared_cluster().primaries()[0];
    for args in [
        &["SLOWLOG", "GET", "x"][..],
        &["SLOWLOG", "GET", "-5"],
        &["LATENCY", "HISTORY"],
        &["LATENCY", "GRAPH", "no-such-event"],
        &["LATENCY", "HISTORY", "a", "b"],
    ] {
        let expected = direct(port, args);
        assert!(
            matches!(expected, Reply::Error(_)),
            "{args:?}: {expected:?}"
        );
        assert_eq!(via(args), expected, "{args:?}");
    }
}

/// What LATENCY LATEST should say, from the primaries' own rows: per event the timestamp
/// and latest sample of the primary that saw it last, the largest maximum, further counters
/// summed.
fn expected_latest(rows: Vec<Reply>) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in rows {
        let fields = row.array();
        let event = fields[0].string();
        let n: Vec<i64> = fields[1..].iter().map(int).collect();
        match out.get_mut(&event) {
            None => {
                out.insert(event, n);
            }
            Some(seen) => {
                if n[0] > seen[0] || (n[0] == seen[0] && n[1] > seen[1]) {
                    seen[1] = n[1];
                }
                seen[0] = seen[0].max(n[0]);
                seen[2] = seen[2].max(n[2]);
                for i in 3..n.len() {
                    seen[i] += n[i];
                }
            }
        }
    }
    out
}

fn latest_rows(reply: Reply) -> BTreeMap<String, Vec<i64>> {
    reply
        .array()
        .into_iter()
        .map(|row| {
            let fields = row.array();
            (fields[0].string(), fields[1..].iter().map(int).collect())
        })
        .collect()
}

#[test]
fn latency_events_are_merged_per_event() {
    let _nodes = nodes_lock();
    let threshold = Restore::save("latency-monitor-threshold");
    let primaries = shared_cluster().primaries();
    for &port in &primaries {
        direct(port, &["LATENCY", "RESET"]).int();
    }
    threshold.set("5");
    // 20, 30, 40 ms: a `command` event on every primary.
    for (i, &port) in primaries.iter().enumerate() {
        let secs = format!("0.0{}", i + 2);
        assert_eq!(
            direct(port, &["DEBUG", "SLEEP", &secs]),
            Reply::Status("OK".into())
        );
    }
    threshold.set("0");

    let mut rows = Vec::new();
    let mut samples: BTreeMap<i64, i64> = BTreeMap::new();
    for &port in &primaries {
        rows.extend(direct(port, &["LATENCY", "LATEST"]).array());
        for s in direct(port, &["LATENCY", "HISTORY", "command"]).array() {
            let s = s.array();
            let slot = samples.entry(int(&s[0])).or_insert(0);
            *slot = (*slot).max(int(&s[1]));
        }
    }
    let events = rows.len() as i64;
    let latest = latest_rows(via(&["LATENCY", "LATEST"]));
    assert_eq!(latest, expected_latest(rows));
    assert!(latest["command"][2] >= 40, "{latest:?}");

    let history: Vec<(i64, i64)> = via(&["LATENCY", "HISTORY", "command"])
        .array()
        .into_iter()
        .map(|s| {
            let s = s.array();
            (int(&s[0]), int(&s[1]))
        })
        .collect();
    assert_eq!(history, samples.into_iter().collect::<Vec<_>>());

    // Human text: each primary's under its address.
    for args in [&["LATENCY", "DOCTOR"][..], &["LATENCY", "GRAPH", "command"]] {
        let text = via(args).string();
        for port in &primaries {
            assert!(
                text.contains(&format!("# 127.0.0.1:{port}\n")),
                "{args:?}: {text}"
            );
        }
    }
    assert!(via_resp3(&["LATENCY", "DOCTOR"]).starts_with('='));

    assert_eq!(int(&via(&["LATENCY", "RESET"])), events);
    assert_eq!(via(&["LATENCY", "LATEST"]), Reply::Array(Some(vec![])));
}

/// `{command: {calls, histogram_usec: {bucket: cumulative}}}` of a RESP2 reply.
fn histogram(reply: Reply) -> BTreeMap<String, (i64, Vec<(i64, i64)>)> {
    let mut out = BTreeMap::new();
    for pair in reply.array().chunks(2) {
        let body = pair[1].clone().array();
        let buckets = body[3]
            .clone()
            .array()
            .chunks(2)
            .map(|b| (int(&b[0]), int(&b[1])))
            .collect();
        out.insert(pair[0].string(), (int(&body[1]), buckets));
    }
    out
}

#[test]
fn latency_histograms_add_up() {
    let _nodes = nodes_lock();
    // SETRANGE on keys of every primary; nothing else in this suite sends it.
    let p = unique_key_prefix("histogram");
    for i in 0..30 {
        let key = format!("{p}{i}");
        assert_eq!(via(&["SETRANGE", &key, "0", "x"]), Reply::Int(1));
    }
    let calls: i64 = shared_cluster()
        .primaries()
        .into_iter()
        .map(|port| {
            histogram(direct(port, &["LATENCY", "HISTOGRAM", "setrange"]))
                .get("setrange")
                .map_or(0, |h| h.0)
        })
        .sum();
    assert!(calls >= 30, "{calls}");
    let merged = histogram(via(&["LATENCY", "HISTOGRAM", "setrange"]));
    let (merged_calls, buckets) = &merged["setrange"];
    assert_eq!(*merged_calls, calls);
    // Cumulative: growing, the last bucket counts every call.
    assert!(buckets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    assert_eq!(buckets.last().map(|b| b.1), Some(calls));
    // RESP3: maps all the way down.
    let resp3 = via_resp3(&["LATENCY", "HISTOGRAM", "setrange"]);
    assert!(
        resp3.starts_with("%1\r\n$8\r\nsetrange\r\n%2\r\n$5\r\ncalls\r\n"),
        "{resp3}"
    );
    assert!(resp3.contains("$14\r\nhistogram_usec\r\n%"), "{resp3}");
}

#[test]
fn commandlog_is_merged_like_the_slow_log() {
    let _nodes = nodes_lock();
    if !server_has("commandlog") {
        eprintln!("skipped: the servers have no COMMANDLOG (Valkey 8.1+)");
        let reply = via(&["COMMANDLOG", "GET", "1", "slow"]);
        assert!(
            matches!(&reply, Reply::Error(e) if e.starts_with("ERR unknown command 'COMMANDLOG'")),
            "{reply:?}"
        );
        return;
    }
    let slowlog = Restore::save("slowlog-log-slower-than");
    let markers = mark_every_primary(&slowlog, &["COMMANDLOG", "RESET", "slow"]);
    let all = log_entries(via(&["COMMANDLOG", "GET", "-1", "slow"]));
    for marker in &markers {
        assert!(
            all.iter()
                .any(|(_, args)| args == &["ECHO", marker.as_str()]),
            "{marker} missing from {all:?}"
        );
    }
    assert!(all.windows(2).all(|w| w[0].0 >= w[1].0), "{all:?}");
    assert_eq!(
        log_entries(via(&["COMMANDLOG", "GET", "1", "slow"])),
        all[..1]
    );
    assert_eq!(int(&via(&["COMMANDLOG", "LEN", "slow"])), all.len() as i64);
    let port = shared_cluster().primaries()[0];
    for args in [
        &["COMMANDLOG", "GET", "x", "slow"][..],
        &["COMMANDLOG", "GET", "1", "nonsense"],
    ] {
        let expected = direct(port, args);
        assert!(
            matches!(expected, Reply::Error(_)),
            "{args:?}: {expected:?}"
        );
        assert_eq!(via(args), expected, "{args:?}");
    }
    assert_eq!(
        via(&["COMMANDLOG", "RESET", "slow"]),
        Reply::Status("OK".into())
    );
    assert_eq!(int(&via(&["COMMANDLOG", "LEN", "slow"])), 0);
}

/// `[[slot, {metric: n, …}], …]` of a RESP2 reply as `(slot, key-count)`.
fn slot_counts(reply: Reply) -> Vec<(i64, i64)> {
    reply
        .array()
        .into_iter()
        .map(|e| {
            let e = e.array();
            let stats = e[1].clone().array();
            let keys = stats
                .chunks(2)
                .find(|kv| kv[0].string() == "key-count")
                .map_or(-1, |kv| int(&kv[1]));
            (int(&e[0]), keys)
        })
        .collect()
}

#[test]
fn slot_stats_cover_every_primarys_slots() {
    let _nodes = nodes_lock();
    let cluster = shared_cluster();
    if !server_has("cluster|slot-stats") {
        eprintln!("skipped: the servers have no CLUSTER SLOT-STATS (Valkey 8.0+, Redis 8.2+)");
        let args = ["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "1"];
        assert_eq!(via(&args), direct(cluster.primaries()[0], &args));
        return;
    }
    // 5, 4 and 3 keys in one slot of each of three primaries.
    let p = unique_key_prefix("slotstats");
    let mut tags: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let tag = format!("{p}t{i}");
        let slot = slotgate_cluster::slot(format!("{{{tag}}}").as_bytes());
        let owner = cluster.node_for_slot(slot);
        if !tags.iter().any(|(_, s)| cluster.node_for_slot(*s) == owner) {
            tags.push((tag, slot));
        }
        if tags.len() == 3 {
            break;
        }
    }
    for (n, (tag, _)) in tags.iter().enumerate() {
        for k in 0..5 - n {
            let key = format!("{{{tag}}}{k}");
            assert_eq!(via(&["SET", &key, "v"]), Reply::Status("OK".into()));
        }
    }

    let all = slot_counts(via(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "16383"]));
    assert_eq!(all.len(), 16384);
    assert!(all.iter().enumerate().all(|(i, (s, _))| *s == i as i64));
    for (n, (_, slot)) in tags.iter().enumerate() {
        assert_eq!(all[*slot as usize].1, 5 - n as i64, "slot {slot}");
    }

    let top = slot_counts(via(&[
        "CLUSTER",
        "SLOT-STATS",
        "ORDERBY",
        "key-count",
        "LIMIT",
        "3",
    ]));
    let expected: Vec<(i64, i64)> = tags
        .iter()
        .enumerate()
        .map(|(n, (_, slot))| (*slot as i64, 5 - n as i64))
        .collect();
    assert_eq!(top, expected);
    let mut ascending = all.clone();
    ascending.sort_by_key(|&(slot, keys)| (keys, slot));
    let asc = slot_counts(via(&[
        "CLUSTER",
        "SLOT-STATS",
        "ORDERBY",
        "key-count",
        "LIMIT",
        "4",
        "ASC",
    ]));
    assert_eq!(asc, ascending[..4]);

    let slot = tags[0].1.to_string();
    let resp3 = via_resp3(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", &slot, &slot]);
    assert!(
        resp3.starts_with(&format!("*1\r\n*2\r\n:{slot}\r\n%")),
        "{resp3}"
    );
    for args in [
        &["CLUSTER", "SLOT-STATS", "ORDERBY", "nonsense"][..],
        &["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "5", "2"],
    ] {
        let expected = direct(cluster.primaries()[0], args);
        assert!(
            matches!(expected, Reply::Error(_)),
            "{args:?}: {expected:?}"
        );
        assert_eq!(via(args), expected, "{args:?}");
    }
}

#[test]
fn myshardid_is_the_emulated_clusters_shard() {
    let cluster = shared_cluster();
    let args = ["CLUSTER", "MYSHARDID"];
    if !server_has("cluster|myshardid") {
        eprintln!("skipped: the servers have no CLUSTER MYSHARDID (Redis 7.2+, Valkey)");
        assert_eq!(via(&args), direct(cluster.primaries()[0], &args));
        return;
    }
    let id = via(&args).string();
    assert_eq!(id.len(), 40, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(via(&args).string(), id, "stable");
    assert_ne!(id, via(&["CLUSTER", "MYID"]).string());
    for port in cluster.primaries() {
        assert_ne!(direct(port, &args).string(), id, "not a node's shard");
    }
}

#[test]
fn a_user_without_admin_gets_noperm() {
    let mut c = RawConn::connect(proxy().port());
    c.roundtrip(&[b"AUTH", b"reader", b"pw"], b"+OK\r\n");
    let mut refused = vec![
        ("slowlog|get", &["SLOWLOG", "GET"][..]),
        ("slowlog|len", &["SLOWLOG", "LEN"][..]),
        ("slowlog|reset", &["SLOWLOG", "RESET"][..]),
        ("latency|latest", &["LATENCY", "LATEST"][..]),
        ("latency|histogram", &["LATENCY", "HISTOGRAM"][..]),
        ("latency|doctor", &["LATENCY", "DOCTOR"][..]),
        ("latency|reset", &["LATENCY", "RESET"][..]),
    ];
    if server_has("commandlog") {
        refused.push(("commandlog|get", &["COMMANDLOG", "GET", "1", "slow"][..]));
    }
    if server_has("cluster|slot-stats") {
        refused.push((
            "cluster|slot-stats",
            &["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "1"][..],
        ));
    }
    for (name, args) in refused {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let expected =
            format!("-NOPERM this user has no permissions to run the '{name}' command\r\n");
        c.roundtrip(&args, expected.as_bytes());
    }
}
