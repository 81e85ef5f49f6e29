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
        // A connection setting on a connection slotgate shares: refused, not forwarded.
        let err = redis::cmd("CLIENT")
            .arg("CAPA")
            .arg("redirect")
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
        assert!(!list.iter().any(|n| n == "client|capa"));
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
