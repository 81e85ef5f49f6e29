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
        !known.is_empty(),
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
        // Its tips ask for the smallest answer of every primary (agg_min), a merge slotgate
        // has no rule for: refused clearly rather than answered by one primary.
        let err = redis::cmd("WAITAOF")
            .arg(0)
            .arg(0)
            .arg(0)
            .query::<Value>(&mut con)
            .unwrap_err();
        assert!(
            err.to_string().contains("not supported by the proxy"),
            "{err}"
        );
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
