//! Node administration through slotgate (`upstream.admin_commands`, docs/configuration.md
//! "Admin commands"): with users and `acl`, CONFIG SET / CONFIG RESETSTAT reach every node
//! serving slots (primaries and replicas), SAVE / BGSAVE / BGREWRITEAOF / LASTSAVE every
//! primary, CONFIG GET is answered by the primaries; a node that refuses is named in the
//! error; a user whose rules do not allow the command gets Redis's NOPERM; without users, or
//! with `deny`, the commands stay refused.
//!
//! The tests change settings and statistics of the shared cluster's nodes, so those that do
//! take [`NODES`] and put everything back.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slotgate_tests::admin::http_get;
use slotgate_tests::raw::{bulk, RawConn};
use slotgate_tests::{assert_eventually, shared_cluster, ProxyConfig, Reply, Slotgate};

const OK: &[u8] = b"+OK\r\n";

/// Held by every test that changes the nodes' settings, statistics or ACL.
static NODES: Mutex<()> = Mutex::new(());

fn nodes_lock() -> MutexGuard<'static, ()> {
    NODES.lock().unwrap_or_else(|e| e.into_inner())
}

/// `admin` may do everything, `reader` only reads, `getter` reads and may run CONFIG GET.
/// Short refreshes: replicas join the cluster's map after its primaries.
fn with_users() -> ProxyConfig {
    ProxyConfig::new(&shared_cluster().seeds())
        .admin()
        .refresh_interval(Duration::from_millis(200))
        .user("admin", "adminpass", "+@all ~* &*")
        .user("reader", "readerpass", "+@read ~*")
        .user("getter", "getterpass", "+@read +config|get ~*")
}

/// The shared proxy with [`with_users`] (admin commands default to `acl`).
fn proxy() -> &'static Slotgate {
    static PROXY: OnceLock<Slotgate> = OnceLock::new();
    PROXY.get_or_init(|| {
        let proxy = with_users().spawn();
        wait_for_every_node(&proxy);
        proxy
    })
}

/// Wait until `proxy`'s slot map (`/topology`) names every node of the cluster, replicas
/// included.
fn wait_for_every_node(proxy: &Slotgate) {
    let admin = proxy.admin_addr().expect("an admin port");
    let ports = shared_cluster().nodes();
    let knows_all = || {
        let (_, body) = http_get(admin, "/topology").unwrap_or_default();
        ports
            .iter()
            .all(|p| body.contains(&format!("127.0.0.1:{p}")))
    };
    assert_eventually!(
        knows_all(),
        Duration::from_secs(20),
        "slotgate's map lacks a node of {ports:?}"
    );
}

fn login(user: &str, pass: &str) -> RawConn {
    let mut c = RawConn::connect(proxy().port());
    c.roundtrip(&[b"AUTH", user.as_bytes(), pass.as_bytes()], OK);
    c
}

fn admin() -> RawConn {
    login("admin", "adminpass")
}

fn send(c: &mut RawConn, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    assert!(c.send_command(&args), "send failed");
    c.read_reply().expect("a reply")
}

fn rt(c: &mut RawConn, args: &[&str], expected: &[u8]) {
    let got = send(c, args);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "{args:?}"
    );
}

fn noperm(name: &str) -> Vec<u8> {
    format!("-NOPERM this user has no permissions to run the '{name}' command\r\n").into_bytes()
}

fn unsupported(name: &str) -> Vec<u8> {
    format!("-ERR slotgate: command '{name}' is not supported by the proxy\r\n").into_bytes()
}

/// `CONFIG GET <param>` of the node on `port`, asked directly.
fn node_config(port: u16, param: &str) -> String {
    match shared_cluster().query(port, &["CONFIG", "GET", param]) {
        Ok(Reply::Array(Some(pair))) if pair.len() == 2 => pair[1].string(),
        other => panic!("CONFIG GET {param} on {port}: {other:?}"),
    }
}

/// A field of `INFO <section>` of the node on `port`, asked directly.
fn node_info(port: u16, section: &str, field: &str) -> Option<String> {
    let text = shared_cluster()
        .query(port, &["INFO", section])
        .unwrap_or_else(|e| panic!("INFO {section} on {port}: {e}"))
        .string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// The primaries in the order slotgate lists them (by the lowest slot each serves), then
/// their replicas in the same order, as `127.0.0.1:port`.
fn nodes_in_slotgate_order() -> (Vec<u16>, Vec<u16>) {
    let cluster = shared_cluster();
    let mut primaries: Vec<u16> = Vec::new();
    for owner in cluster.slot_owners() {
        if !primaries.contains(&owner) {
            primaries.push(owner);
        }
    }
    let replicas = primaries
        .iter()
        .flat_map(|&p| cluster.replicas_of(p))
        .collect();
    (primaries, replicas)
}

fn addrs(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// No BGSAVE or AOF rewrite runs or waits on any primary.
fn wait_for_no_child() {
    for port in shared_cluster().primaries() {
        assert_eventually!(
            [
                "rdb_bgsave_in_progress",
                "aof_rewrite_in_progress",
                "aof_rewrite_scheduled"
            ]
            .iter()
            .all(|f| node_info(port, "persistence", f).as_deref() == Some("0")),
            Duration::from_secs(20),
            "a background save or rewrite still runs on {port}"
        );
    }
}

/// Puts a setting back on every node when dropped (also when the test fails).
struct RestoreConfig {
    param: &'static str,
    values: Vec<(u16, String)>,
}

impl RestoreConfig {
    fn save(param: &'static str) -> RestoreConfig {
        let values = shared_cluster()
            .nodes()
            .into_iter()
            .map(|p| (p, node_config(p, param)))
            .collect();
        RestoreConfig { param, values }
    }
}

impl Drop for RestoreConfig {
    fn drop(&mut self) {
        for (port, value) in &self.values {
            let _ = shared_cluster().query(*port, &["CONFIG", "SET", self.param, value]);
        }
    }
}

#[test]
fn config_set_reaches_every_node_and_config_get_reads_it_back() {
    let _nodes = nodes_lock();
    let cluster = shared_cluster();
    let restore = RestoreConfig::save("maxmemory-policy");
    assert!(
        restore.values.iter().all(|(_, v)| v != "allkeys-lru"),
        "a node already has allkeys-lru: {:?}",
        restore.values
    );
    let mut c = admin();
    rt(
        &mut c,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
        OK,
    );
    let ports = cluster.nodes();
    assert_eq!(ports.len(), 6);
    for &port in &ports {
        assert_eq!(
            node_config(port, "maxmemory-policy"),
            "allkeys-lru",
            "{port}"
        );
    }
    // CONFIG GET: a primary's answer, RESP2 pairs and a RESP3 map.
    let mut pair = b"*2\r\n".to_vec();
    pair.extend(bulk("maxmemory-policy"));
    pair.extend(bulk("allkeys-lru"));
    rt(&mut c, &["CONFIG", "GET", "maxmemory-policy"], &pair);
    let mut resp3 = login("admin", "adminpass");
    let hello = send(&mut resp3, &["HELLO", "3"]);
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    let mut map = b"%1\r\n".to_vec();
    map.extend(bulk("maxmemory-policy"));
    map.extend(bulk("allkeys-lru"));
    rt(&mut resp3, &["CONFIG", "GET", "maxmemory-policy"], &map);
    // Inside MULTI it cannot run (it needs every node).
    rt(&mut c, &["MULTI"], OK);
    rt(
        &mut c,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        b"-ERR slotgate: command 'config|set' cannot be used inside MULTI through the proxy\r\n",
    );
    rt(
        &mut c,
        &["EXEC"],
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    // Put it back through slotgate too.
    let original = restore.values[0].1.clone();
    assert!(restore.values.iter().all(|(_, v)| *v == original));
    rt(
        &mut c,
        &["CONFIG", "SET", "maxmemory-policy", &original],
        OK,
    );
    for &port in &ports {
        assert_eq!(node_config(port, "maxmemory-policy"), original, "{port}");
    }
}

#[test]
fn config_resetstat_resets_every_nodes_stats() {
    let _nodes = nodes_lock();
    let cluster = shared_cluster();
    let ports = cluster.nodes();
    // 100 ECHOs on every node, which nothing else in this suite sends.
    for &port in &ports {
        let mut node = RawConn::connect(port);
        let echo = slotgate_tests::probe::encode(&["ECHO", "x"]);
        assert!(node.send(&echo.repeat(100)));
        for _ in 0..100 {
            node.expect(b"$1\r\nx\r\n");
        }
        let stats = cluster
            .query(port, &["INFO", "commandstats"])
            .unwrap()
            .string();
        assert!(stats.contains("cmdstat_echo:calls=100"), "{port}: {stats}");
        let total: u64 = node_info(port, "stats", "total_commands_processed")
            .unwrap()
            .parse()
            .unwrap();
        assert!(total >= 100, "{port}: {total}");
    }
    rt(&mut admin(), &["CONFIG", "RESETSTAT"], OK);
    for &port in &ports {
        let stats = cluster
            .query(port, &["INFO", "commandstats"])
            .unwrap()
            .string();
        assert!(!stats.contains("cmdstat_echo"), "{port}: {stats}");
        let total: u64 = node_info(port, "stats", "total_commands_processed")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            total < 100,
            "{port}: total_commands_processed {total} after RESETSTAT"
        );
    }
}

#[test]
fn save_bgsave_bgrewriteaof_and_lastsave_on_every_primary() {
    let _nodes = nodes_lock();
    let cluster = shared_cluster();
    let (primaries, _) = nodes_in_slotgate_order();
    let mut c = admin();
    wait_for_no_child();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    rt(&mut c, &["SAVE"], OK);
    let saved: Vec<i64> = primaries
        .iter()
        .map(|&p| cluster.query(p, &["LASTSAVE"]).unwrap().int())
        .collect();
    assert!(
        saved.iter().all(|&t| t >= before),
        "{saved:?} before {before}"
    );
    // LASTSAVE: the oldest of the primaries' saves.
    let oldest = *saved.iter().min().unwrap();
    rt(&mut c, &["LASTSAVE"], format!(":{oldest}\r\n").as_bytes());
    rt(&mut c, &["BGSAVE"], b"+Background saving started\r\n");
    wait_for_no_child();
    rt(
        &mut c,
        &["BGREWRITEAOF"],
        b"+Background append only file rewriting started\r\n",
    );
    wait_for_no_child();
}

#[test]
fn a_user_whose_rules_do_not_allow_them_gets_redis_noperm() {
    let mut reader = login("reader", "readerpass");
    for (args, name) in [
        (
            &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"][..],
            "config|set",
        ),
        (&["CONFIG", "RESETSTAT"][..], "config|resetstat"),
        (&["CONFIG", "GET", "maxmemory-policy"][..], "config|get"),
        (&["SAVE"][..], "save"),
        (&["BGSAVE"][..], "bgsave"),
        (&["BGREWRITEAOF"][..], "bgrewriteaof"),
        (&["LASTSAVE"][..], "lastsave"),
    ] {
        rt(&mut reader, args, &noperm(name));
    }
    // Allowed CONFIG GET only: the primaries answer, CONFIG SET stays refused.
    let mut getter = login("getter", "getterpass");
    let reply = send(&mut getter, &["CONFIG", "GET", "maxmemory-policy"]);
    assert!(
        reply.starts_with(b"*2\r\n$16\r\nmaxmemory-policy\r\n"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    rt(
        &mut getter,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
        b"-NOPERM this user has no permissions to run the 'config|set' command\r\n",
    );
}

/// Under `deny`: refused with the unsupported reply, CONFIG GET harmless, LASTSAVE from one
/// primary; no node's setting changes.
fn assert_refused(c: &mut RawConn) {
    let cluster = shared_cluster();
    let before: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|&p| node_config(p, "maxmemory-policy"))
        .collect();
    for (args, name) in [
        (
            &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"][..],
            "config|set",
        ),
        (&["CONFIG", "RESETSTAT"][..], "config|resetstat"),
        (&["CONFIG", "REWRITE"][..], "config|rewrite"),
        (&["SAVE"][..], "save"),
        (&["BGSAVE"][..], "bgsave"),
        (&["BGREWRITEAOF"][..], "bgrewriteaof"),
    ] {
        rt(c, args, &unsupported(name));
    }
    rt(c, &["CONFIG", "GET", "maxmemory-policy"], b"*0\r\n");
    let mut save = b"*2\r\n".to_vec();
    save.extend(bulk("save"));
    save.extend(bulk(""));
    rt(c, &["CONFIG", "GET", "save"], &save);
    let lastsave = send(c, &["LASTSAVE"]);
    assert!(
        lastsave.starts_with(b":"),
        "{}",
        String::from_utf8_lossy(&lastsave)
    );
    let after: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|&p| node_config(p, "maxmemory-policy"))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn without_users_they_stay_refused() {
    let proxy = ProxyConfig::new(&shared_cluster().seeds()).spawn();
    assert_refused(&mut RawConn::connect(proxy.port()));
}

#[test]
fn deny_with_users_refuses_them() {
    let proxy = with_users().upstream_key("admin_commands", "deny").spawn();
    wait_for_every_node(&proxy);
    let mut c = RawConn::connect(proxy.port());
    c.roundtrip(&[b"AUTH", b"admin", b"adminpass"], OK);
    assert_refused(&mut c);
}

#[test]
fn a_refusing_node_is_named_with_its_error() {
    let _nodes = nodes_lock();
    let cluster = shared_cluster();
    let (primaries, replicas) = nodes_in_slotgate_order();
    let all: Vec<u16> = primaries.iter().chain(&replicas).copied().collect();
    let mut c = admin();
    // Every node refuses an unknown parameter.
    rt(
        &mut c,
        &["CONFIG", "SET", "no-such-parameter", "1"],
        format!(
            "-ERR slotgate: CONFIG SET failed on {} (ERR Unknown option or number of arguments for CONFIG SET - 'no-such-parameter'); succeeded on no node\r\n",
            addrs(&all)
        )
        .as_bytes(),
    );
    // The nodes run without a config file.
    rt(
        &mut c,
        &["CONFIG", "REWRITE"],
        format!(
            "-ERR slotgate: CONFIG REWRITE failed on {} (ERR The server is running without a config file); succeeded on no node\r\n",
            addrs(&all)
        )
        .as_bytes(),
    );
    // One replica's ACL refuses CONFIG RESETSTAT: the others apply it.
    let refusing = replicas[0];
    let acl = |rule: &str| {
        let reply = cluster.query(refusing, &["ACL", "SETUSER", "default", rule]);
        assert!(matches!(reply, Ok(Reply::Status(_))), "{reply:?}");
    };
    acl("-config|resetstat");
    let got = send(&mut c, &["CONFIG", "RESETSTAT"]);
    acl("+config|resetstat");
    let others: Vec<u16> = all.iter().copied().filter(|&p| p != refusing).collect();
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!(
            "-ERR slotgate: CONFIG RESETSTAT failed on 127.0.0.1:{refusing} (NOPERM this user has no permissions to run the 'config|resetstat' command); succeeded on {}\r\n",
            addrs(&others)
        )
    );
}
