//! Commands the servers have and slotgate's built-in (Redis 7.0) table lacks are learned
//! from the primaries' `COMMAND` and served: routed by their key specs, checked against ACL
//! key patterns, merged by their tips. Against Redis 7.0 there is nothing to learn and they
//! keep Redis's unknown-command error. This suite runs against every tested server.

use redis::Value;
use slotgate_tests::admin::scrape;
use slotgate_tests::probe::Reply;
use slotgate_tests::{shared_cluster, unique_key_prefix, ProxyConfig};

/// Whether the cluster's servers know `command`.
fn server_has(command: &str) -> bool {
    let cluster = shared_cluster();
    let port = cluster.primaries()[0];
    match cluster.query(port, &["COMMAND", "INFO", command]) {
        Ok(Reply::Array(Some(items))) => !matches!(
            items.first(),
            Some(Reply::Array(None) | Reply::Bulk(None)) | None
        ),
        other => panic!("COMMAND INFO {command}: {other:?}"),
    }
}

#[test]
fn newer_commands_are_served_or_unknown_as_on_the_servers() {
    let cluster = shared_cluster();
    let p = unique_key_prefix("learned");
    let proxy = ProxyConfig::new(&cluster.seeds())
        .user("default", "pw", "+@all ~* &*")
        .user("app", "pw", &format!("+@all ~{p}:*"))
        .admin()
        .spawn();
    let client = |user: &str| {
        redis::Client::open(format!("redis://{user}:pw@127.0.0.1:{}/", proxy.port()))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let mut con = client("default");
    let mut app = client("app");
    let key = format!("{p}:h");
    let newer = ["hexpire", "hsetex", "waitaof", "commandlog"];
    let known: Vec<&str> = newer.iter().copied().filter(|c| server_has(c)).collect();
    let learned =
        scrape(proxy.admin_addr().unwrap()).get("slotgate_commands_table_size{source=\"learned\"}");
    assert_eq!(
        learned > 0.0,
        known.iter().any(|&c| c != "waitaof"), // WAITAOF is built in
        "learned {learned}, servers know {known:?}"
    );
    eprintln!("the servers know {known:?}; slotgate learned {learned} commands");

    if known.contains(&"hexpire") {
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("f")
            .arg("v")
            .query(&mut con)
            .unwrap();
        let set: Vec<i64> = redis::cmd("HEXPIRE")
            .arg(&key)
            .arg(100)
            .arg("FIELDS")
            .arg(1)
            .arg("f")
            .query(&mut app)
            .unwrap();
        assert_eq!(set, [1]);
        let ttl: Vec<i64> = redis::cmd("HTTL")
            .arg(&key)
            .arg("FIELDS")
            .arg(1)
            .arg("f")
            .query(&mut con)
            .unwrap();
        assert!((1..=100).contains(&ttl[0]), "{ttl:?}");
        // The ACL applies with the learned key spec: another key is refused as Redis words it.
        let err = redis::cmd("HEXPIRE")
            .arg("other:h")
            .arg(100)
            .arg("FIELDS")
            .arg(1)
            .arg("f")
            .query::<Value>(&mut app)
            .unwrap_err();
        assert!(
            err.to_string().contains("No permissions to access a key")
                || err.code() == Some("NOPERM"),
            "{err}"
        );
        // Keys in two slots in one call: -CROSSSLOT, as for every one-slot command.
        let (a, b) = (format!("{p}:a"), format!("{p}:b"));
        assert_ne!(
            slotgate_cluster::slot(a.as_bytes()),
            slotgate_cluster::slot(b.as_bytes())
        );
    } else {
        let err = redis::cmd("HEXPIRE")
            .arg(&key)
            .arg(100)
            .arg("FIELDS")
            .arg(1)
            .arg("f")
            .query::<Value>(&mut con)
            .unwrap_err();
        assert!(err.to_string().contains("unknown command"), "{err}");
    }
    if known.contains(&"hsetex") {
        let set: i64 = redis::cmd("HSETEX")
            .arg(format!("{p}:x"))
            .arg("EX")
            .arg(100)
            .arg("FIELDS")
            .arg(1)
            .arg("a")
            .arg("1")
            .query(&mut app)
            .unwrap();
        assert_eq!(set, 1);
        let got: Vec<String> = redis::cmd("HGETEX")
            .arg(format!("{p}:x"))
            .arg("FIELDS")
            .arg(1)
            .arg("a")
            .query(&mut app)
            .unwrap();
        assert_eq!(got, ["1"]);
    }
    if known.contains(&"waitaof") {
        // In the built-in table and emulated (tests/waitaof.rs), not learned.
        let counts: Vec<i64> = redis::cmd("WAITAOF")
            .arg(0)
            .arg(0)
            .arg(0)
            .query(&mut con)
            .unwrap();
        assert_eq!(counts.len(), 2, "{counts:?}");
    }
    if server_has("client|capa") {
        // A capability the client announces: answered by slotgate as the server answers it,
        // never set on a connection slotgate shares.
        let ok: Value = redis::cmd("CLIENT")
            .arg("CAPA")
            .arg("redirect")
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, Value::Okay);
        let err = redis::cmd("CLIENT")
            .arg("CAPA")
            .query::<Value>(&mut con)
            .unwrap_err();
        assert!(
            err.to_string().contains("wrong number of arguments"),
            "{err}"
        );
    }
    if server_has("client|import-source") {
        // A connection setting that would apply to every client sharing the connection.
        let err = redis::cmd("CLIENT")
            .arg("IMPORT-SOURCE")
            .arg("ON")
            .query::<Value>(&mut con)
            .unwrap_err();
        assert!(
            err.to_string().contains("not supported by the proxy"),
            "{err}"
        );
    }
    if known.contains(&"commandlog") {
        let reply: Value = redis::cmd("COMMANDLOG")
            .arg("LEN")
            .arg("slow")
            .query(&mut con)
            .unwrap();
        assert!(matches!(reply, Value::Int(_)), "{reply:?}");
    }
}

/// The name of a `COMMAND` entry.
fn entry_name(entry: &Value) -> String {
    match entry {
        Value::Array(fields) => match fields.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("entry name {other:?}"),
        },
        other => panic!("entry {other:?}"),
    }
}

#[test]
fn command_reports_exactly_what_slotgate_serves() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let url = format!("redis://127.0.0.1:{}/", proxy.port());
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let refused = [
        "monitor",
        "sync",
        "psync",
        "replicaof",
        "client|kill",
        "config|set",
        "cluster|addslots",
    ];

    // Bare COMMAND, which redis-py's RedisCluster sends when it starts.
    let all: Vec<Value> = redis::cmd("COMMAND").query(&mut con).unwrap();
    let names: Vec<String> = all.iter().map(entry_name).collect();
    for name in ["get", "client", "cluster", "command", "eval"] {
        assert!(names.iter().any(|n| n == name), "{name} missing");
    }
    for name in ["monitor", "sync", "replicaof"] {
        assert!(!names.iter().any(|n| n == name), "{name} listed");
    }
    // CLIENT's subcommands: those slotgate answers, not CLIENT KILL.
    let client = all.iter().find(|e| entry_name(e) == "client").unwrap();
    let Value::Array(fields) = client else {
        unreachable!()
    };
    let Value::Array(subs) = &fields[9] else {
        panic!("{:?}", fields[9])
    };
    let subs: Vec<String> = subs.iter().map(entry_name).collect();
    assert!(subs.iter().any(|s| s == "client|setname"), "{subs:?}");
    assert!(!subs.iter().any(|s| s == "client|kill"), "{subs:?}");

    // LIST names the same commands and their served subcommands; COUNT counts them.
    let list: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    for name in refused {
        assert!(!list.iter().any(|n| n == name), "{name} listed");
    }
    let top: Vec<&String> = list.iter().filter(|n| !n.contains('|')).collect();
    assert_eq!(top.len(), names.len());
    let count: usize = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    assert_eq!(count, names.len());
    // The servers list more: the difference is what slotgate refuses.
    let port = cluster.primaries()[0];
    let Ok(Reply::Int(direct)) = cluster.query(port, &["COMMAND", "COUNT"]) else {
        panic!("COMMAND COUNT on a node")
    };
    assert!(direct as usize > count, "node {direct}, slotgate {count}");
    let filtered: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("PATTERN")
        .arg("client*")
        .query(&mut con)
        .unwrap();
    assert!(filtered.iter().all(|n| n.starts_with("client")));
    assert!(
        filtered.iter().any(|n| n == "client|setname"),
        "{filtered:?}"
    );
    assert!(!filtered.iter().any(|n| n == "client|kill"), "{filtered:?}");

    // INFO answers nil for a refused name, as for an unknown one.
    let info: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .arg("monitor")
        .arg("nosuch")
        .query(&mut con)
        .unwrap();
    assert_eq!(info.len(), 3);
    assert_eq!(entry_name(&info[0]), "get");
    assert_eq!(info[1], Value::Nil);
    assert_eq!(info[2], Value::Nil);
    // DOCS leaves refused commands out.
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("get")
        .arg("monitor")
        .query(&mut con)
        .unwrap();
    let text = format!("{docs:?}");
    assert!(
        text.contains("Get the value of a key") || text.contains("Returns the string value"),
        "{text}"
    );
    assert!(!text.contains("monitor"), "{text}");
    // GETKEYS of a served command is the server's; of a refused one, Redis's error.
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("SET")
        .arg("k")
        .arg("v")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, ["k"]);
    let err = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MONITOR")
        .arg("x")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(
        err.to_string().contains("Invalid command specified"),
        "{err}"
    );

    // Commands learned from newer servers are listed when served, and not when refused.
    if server_has("hsetex") {
        assert!(list.iter().any(|n| n == "hsetex"));
    }
    if server_has("client|capa") {
        assert!(
            list.iter().any(|n| n == "client|capa"),
            "answered by slotgate"
        );
    }
    if server_has("client|import-source") {
        assert!(!list.iter().any(|n| n == "client|import-source"));
    }

    // RESP3: the same filtering on maps and sets.
    let mut con3 = redis::Client::open(format!("{url}?protocol=resp3"))
        .unwrap()
        .get_connection()
        .unwrap();
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("client")
        .query(&mut con3)
        .unwrap();
    let text = format!("{docs:?}");
    assert!(text.contains("client|setname"), "{text}");
    assert!(!text.contains("client|kill"), "{text}");
    let count3: usize = redis::cmd("COMMAND").arg("COUNT").query(&mut con3).unwrap();
    assert_eq!(count3, count);
}

#[test]
fn client_no_evict_and_no_touch_answer_for_the_client_connection() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{}/", proxy.port()))
        .unwrap()
        .get_connection()
        .unwrap();
    let client = |args: &[&str], con: &mut redis::Connection| {
        redis::cmd("CLIENT").arg(args).query::<Value>(con)
    };
    assert_eq!(client(&["NO-EVICT", "on"], &mut con).unwrap(), Value::Okay);
    assert_eq!(client(&["NO-EVICT", "OFF"], &mut con).unwrap(), Value::Okay);
    let err = client(&["NO-EVICT", "maybe"], &mut con).unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
    if server_has("client|no-touch") {
        assert_eq!(client(&["NO-TOUCH", "OFF"], &mut con).unwrap(), Value::Okay);
        let err = client(&["NO-TOUCH", "ON"], &mut con).unwrap_err();
        assert!(
            err.to_string()
                .contains("CLIENT NO-TOUCH ON is not supported by the proxy"),
            "{err}"
        );
        let err = client(&["NO-TOUCH", "x"], &mut con).unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
    } else {
        // Redis 7.0 has no NO-TOUCH: its own error.
        let err = client(&["NO-TOUCH", "OFF"], &mut con).unwrap_err();
        assert!(
            err.to_string().contains("unknown subcommand 'NO-TOUCH'"),
            "{err}"
        );
    }
    // The connection still serves.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

/// Where the servers' `COMMAND` entries that Redis 7.0 lacks are recorded, one file per
/// tested server; docs/compatibility-servers.md is generated from them (a unit test of the
/// engine's command table).
const FIXTURES: &str = "../crates/proxy/src/upstream/command_table/servers";

/// The names (`get`, `client|kill`) Redis 7.0 has: the built-in table's source.
fn redis_7_0_names() -> std::collections::HashSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/commands/gen/commands-7.0.json"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = std::collections::HashSet::new();
    for cmd in json["command_info"].as_array().unwrap() {
        names.insert(cmd["name"].as_str().unwrap().to_string());
        for sub in cmd["subcommands"].as_array().into_iter().flatten() {
            names.insert(sub["name"].as_str().unwrap().to_string());
        }
    }
    names
}

/// A RESP2 value as bytes (the shapes `COMMAND` uses).
fn encode(v: &slotgate_resp::Value, out: &mut Vec<u8>) {
    use slotgate_resp::Value as V;
    match v {
        V::Simple(s) => out.extend_from_slice(&[b"+", &s[..], b"\r\n"].concat()),
        V::Error(s) => out.extend_from_slice(&[b"-", &s[..], b"\r\n"].concat()),
        V::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        V::Bulk(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        V::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            items.iter().for_each(|i| encode(i, out));
        }
        V::Null => out.extend_from_slice(b"*-1\r\n"),
        other => panic!("unexpected in COMMAND: {other:?}"),
    }
}

fn entry_name_of(v: &slotgate_resp::Value) -> String {
    let name = v
        .as_array()
        .and_then(|f| f.first())
        .and_then(|n| n.as_bytes());
    String::from_utf8_lossy(name.expect("an entry's name")).to_ascii_lowercase()
}

#[test]
fn the_servers_commands_match_their_recorded_fixture() {
    use std::io::{Read, Write};
    let cluster = shared_cluster();
    let port = cluster.primaries()[0];
    let info = cluster.cli(port, &["INFO", "server"]);
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let server = match field("valkey_version:") {
        Some(v) => format!("valkey-{v}"),
        None => format!("redis-{}", field("redis_version:").unwrap()),
    };
    if server.starts_with("redis-7.0") {
        return; // the built-in table's own server: nothing to record
    }
    // The whole COMMAND reply, RESP2.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"*1\r\n$7\r\nCOMMAND\r\n").unwrap();
    let mut buf = Vec::new();
    let reply = loop {
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the node closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((v, _)) = slotgate_resp::parse_value(&buf).unwrap() {
            break v;
        }
    };
    // Entries Redis 7.0 lacks, or with subcommands it lacks; sorted so the file is stable.
    let known = redis_7_0_names();
    let mut entries: Vec<slotgate_resp::Value> = reply
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let subs = e
                .as_array()
                .and_then(|f| f.get(9))
                .and_then(|s| s.as_array());
            !known.contains(&entry_name_of(e))
                || subs
                    .into_iter()
                    .flatten()
                    .any(|s| !known.contains(&entry_name_of(s)))
        })
        .cloned()
        .collect();
    for e in &mut entries {
        if let slotgate_resp::Value::Array(fields) = e {
            if let Some(slotgate_resp::Value::Array(subs)) = fields.get_mut(9) {
                subs.sort_by_key(entry_name_of);
            }
        }
    }
    entries.sort_by_key(entry_name_of);
    // And the names themselves, one per line.
    let mut new_names: Vec<String> = Vec::new();
    for e in &entries {
        let subs = e
            .as_array()
            .and_then(|f| f.get(9))
            .and_then(|s| s.as_array());
        new_names.extend(
            std::iter::once(e)
                .chain(subs.into_iter().flatten())
                .map(entry_name_of)
                .filter(|n| !known.contains(n)),
        );
    }
    let mut recorded = Vec::new();
    encode(&slotgate_resp::Value::Array(entries), &mut recorded);
    let names = new_names
        .iter()
        .map(|n| format!("{n}\n"))
        .collect::<String>();
    let path = format!("{}/{FIXTURES}/{server}.resp", env!("CARGO_MANIFEST_DIR"));
    let names_path = format!("{}/{FIXTURES}/{server}.new", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("SLOTGATE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &recorded).unwrap();
        std::fs::write(&names_path, names).unwrap();
        return;
    }
    let Ok(fixture) = std::fs::read(&path) else {
        eprintln!("no fixture for {server}: record one with SLOTGATE_UPDATE_DOCS=1");
        return;
    };
    assert!(
        fixture == recorded,
        "{server}'s COMMAND differs from {path}: record it again with SLOTGATE_UPDATE_DOCS=1 \
         and regenerate docs/compatibility-servers.md"
    );
}
