//! Transactions through slotgate against a real cluster: redis-rs atomic pipelines, the
//! exact bytes of MULTI/QUEUED/EXEC and of every error Redis gives, CROSSSLOT and refused
//! commands inside MULTI aborting EXEC, WATCH aborting EXEC when another client writes,
//! optimistic-locking loops that never lose an increment, transactions after their slot
//! moved (MOVED and ASK), and connections that go back to the pool clean.

use std::net::TcpStream;
use std::time::Duration;

use slotgate_tests::raw::bulk;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, unique_key_prefix, ClusterOptions, ProxyConfig,
    RedisCluster, Slotgate,
};

const EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";

/// slotgate in front of `cluster`, with an admin port.
fn proxy_on(cluster: &RedisCluster) -> Slotgate {
    ProxyConfig::new(&cluster.seeds()).admin().spawn()
}

fn conn(proxy: &Slotgate) -> redis::Connection {
    proxy.connection()
}

fn dedicated(proxy: &Slotgate) -> f64 {
    proxy.upstream_connections("dedicated")
}

/// A hash tag unique to this test run: keys `{tag}a`, `{tag}b` share a slot.
fn tag(name: &str) -> String {
    format!("{{{}}}", unique_key_prefix(name))
}

/// Bulk-string bytes of `s`.

#[test]
fn an_atomic_pipeline_on_one_slot_returns_its_results_and_writes_its_keys() {
    let cluster = shared_cluster();
    let proxy = proxy_on(cluster);
    let t = tag("tx:pipe");
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    let mut c = conn(&proxy);
    let (n, v): (i64, String) = redis::pipe()
        .atomic()
        .set(&a, "1")
        .ignore()
        .incr(&b, 5)
        .get(&a)
        .query(&mut c)
        .unwrap();
    assert_eq!((n, v.as_str()), (5, "1"));
    let got: (String, i64) = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(got, ("1".into(), 5));
    let owner = cluster.node_for_slot(slotgate_cluster::slot(a.as_bytes()));
    assert_eq!(cluster.cli(owner, &["GET", &a]), "1");
    assert_eq!(cluster.cli(owner, &["GET", &b]), "5");

    // A keyless transaction runs on some primary.
    let (pong, echo): (String, String) = redis::pipe()
        .atomic()
        .cmd("PING")
        .cmd("ECHO")
        .arg("hi")
        .query(&mut c)
        .unwrap();
    assert_eq!((pong.as_str(), echo.as_str()), ("PONG", "hi"));
}

#[test]
fn replies_are_byte_exact() {
    let proxy = proxy_on(shared_cluster());
    let t = tag("tx:bytes");
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    let mut r = RawConn::connect(proxy.port());
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"SET", a.as_bytes(), b"v"], b"+QUEUED\r\n");
    r.roundtrip(&[b"MULTI"], b"-ERR MULTI calls can not be nested\r\n");
    r.roundtrip(
        &[b"WATCH", a.as_bytes()],
        b"-ERR WATCH inside MULTI is not allowed\r\n",
    );
    r.roundtrip(&[b"INCR", b.as_bytes()], b"+QUEUED\r\n");
    r.roundtrip(&[b"GET", a.as_bytes()], b"+QUEUED\r\n");
    r.roundtrip(&[b"EXEC"], b"*3\r\n+OK\r\n:1\r\n$1\r\nv\r\n");
    r.roundtrip(&[b"EXEC"], b"-ERR EXEC without MULTI\r\n");
    r.roundtrip(&[b"DISCARD"], b"-ERR DISCARD without MULTI\r\n");
    r.roundtrip(&[b"UNWATCH"], b"+OK\r\n");
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"EXEC"], b"*0\r\n");
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"SET", a.as_bytes(), b"w"], b"+QUEUED\r\n");
    r.roundtrip(&[b"DISCARD"], b"+OK\r\n");
    r.roundtrip(&[b"GET", a.as_bytes()], b"$1\r\nv\r\n");

    // The whole transaction in one write: replies in order.
    let mut batch = Vec::new();
    for args in [
        vec!["MULTI"],
        vec!["INCR", &b],
        vec!["PING"],
        vec!["ECHO", "e"],
        vec!["GET", &a],
        vec!["EXEC"],
        vec!["GET", &b],
    ] {
        batch.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            batch.extend_from_slice(&bulk(arg));
        }
    }
    assert!(r.send(&batch));
    r.expect(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n:2\r\n+PONG\r\n$1\r\ne\r\n$1\r\nv\r\n$1\r\n2\r\n");

    // A blocking command inside MULTI does not block: Redis answers it as timed out.
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    let empty = format!("{t}empty");
    r.roundtrip(&[b"BLPOP", empty.as_bytes(), b"0"], b"+QUEUED\r\n");
    r.roundtrip(&[b"EXEC"], b"*1\r\n*-1\r\n");
}

#[test]
fn an_error_while_queueing_makes_exec_abort_and_nothing_is_written() {
    let cluster = shared_cluster();
    let proxy = proxy_on(cluster);
    let t = tag("tx:abort");
    let other = tag("tx:abort-other");
    let a = format!("{t}a");
    let far = (0..)
        .map(|i| format!("{other}{i}"))
        .find(|k| slotgate_cluster::slot(k.as_bytes()) != slotgate_cluster::slot(a.as_bytes()))
        .unwrap();
    let mut r = RawConn::connect(proxy.port());
    let cases: [(&[&[u8]], &[u8]); 7] = [
        (
            &[b"SET", far.as_bytes(), b"x"],
            b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        ),
        (
            &[b"FOO", b"bar"],
            b"-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n",
        ),
        (
            &[b"GET"],
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &[b"KEYS", b"*"],
            b"-ERR slotgate: command 'keys' cannot be used inside MULTI through the proxy\r\n",
        ),
        (&[b"SAVE"], b"-ERR Command not allowed inside a transaction\r\n"),
        (
            &[b"SUBSCRIBE", b"ch"],
            b"-ERR slotgate: command 'subscribe' cannot be used inside MULTI through the proxy\r\n",
        ),
        (
            &[b"CLIENT", b"SETNAME", b"x"],
            b"-ERR slotgate: command 'client|setname' cannot be used inside MULTI through the proxy\r\n",
        ),
    ];
    for (bad, reply) in cases {
        r.roundtrip(&[b"MULTI"], b"+OK\r\n");
        r.roundtrip(&[b"SET", a.as_bytes(), b"1"], b"+QUEUED\r\n");
        r.roundtrip(bad, reply);
        r.roundtrip(&[b"SET", a.as_bytes(), b"2"], b"+QUEUED\r\n");
        r.roundtrip(&[b"EXEC"], EXECABORT);
        r.roundtrip(&[b"GET", a.as_bytes()], b"$-1\r\n");
        r.roundtrip(&[b"GET", far.as_bytes()], b"$-1\r\n");
    }
    // The first keyed command fixes the slot even after keyless ones.
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"PING"], b"+QUEUED\r\n");
    r.roundtrip(&[b"SET", far.as_bytes(), b"1"], b"+QUEUED\r\n");
    r.roundtrip(
        &[b"SET", a.as_bytes(), b"1"],
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    );
    r.roundtrip(&[b"EXEC"], EXECABORT);
    r.roundtrip(&[b"GET", far.as_bytes()], b"$-1\r\n");
    let owner = cluster.node_for_slot(slotgate_cluster::slot(a.as_bytes()));
    assert_eq!(cluster.cli(owner, &["EXISTS", &a]), "0");

    // EXEC refused (wrong arity) discards the transaction, as Redis does; DISCARD refused
    // flags it.
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"SET", a.as_bytes(), b"1"], b"+QUEUED\r\n");
    r.roundtrip(
        &[b"EXEC", b"x"],
        b"-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n",
    );
    r.roundtrip(&[b"EXEC"], b"-ERR EXEC without MULTI\r\n");
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(
        &[b"DISCARD", b"x"],
        b"-ERR wrong number of arguments for 'discard' command\r\n",
    );
    r.roundtrip(&[b"EXEC"], EXECABORT);
    r.roundtrip(&[b"GET", a.as_bytes()], b"$-1\r\n");

    // RESET leaves MULTI.
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"SET", a.as_bytes(), b"1"], b"+QUEUED\r\n");
    r.roundtrip(&[b"RESET"], b"+RESET\r\n");
    r.roundtrip(&[b"EXEC"], b"-ERR EXEC without MULTI\r\n");
    r.roundtrip(&[b"GET", a.as_bytes()], b"$-1\r\n");
}

#[test]
fn a_write_by_another_client_after_watch_aborts_exec() {
    let proxy = proxy_on(shared_cluster());
    let t = tag("tx:watch");
    let k = format!("{t}k");
    let mut a = RawConn::connect(proxy.port());
    let mut b = conn(&proxy);
    let _: () = redis::cmd("SET")
        .arg(&k)
        .arg("start")
        .query(&mut b)
        .unwrap();

    a.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    let _: () = redis::cmd("SET")
        .arg(&k)
        .arg("other")
        .query(&mut b)
        .unwrap();
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"SET", k.as_bytes(), b"mine"], b"+QUEUED\r\n");
    a.roundtrip(&[b"EXEC"], b"*-1\r\n");
    let v: String = redis::cmd("GET").arg(&k).query(&mut b).unwrap();
    assert_eq!(v, "other");

    // Without interference it succeeds, WATCHed key or not in the transaction.
    a.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    a.roundtrip(&[b"GET", k.as_bytes()], b"$5\r\nother\r\n");
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"SET", k.as_bytes(), b"mine"], b"+QUEUED\r\n");
    a.roundtrip(&[b"EXEC"], b"*1\r\n+OK\r\n");
    let v: String = redis::cmd("GET").arg(&k).query(&mut b).unwrap();
    assert_eq!(v, "mine");

    // WATCH, MULTI, EXEC pipelined in one write run in order.
    let mut batch = Vec::new();
    for args in [
        vec!["WATCH", &k],
        vec!["MULTI"],
        vec!["GET", &k],
        vec!["EXEC"],
    ] {
        batch.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            batch.extend_from_slice(&bulk(arg));
        }
    }
    assert!(a.send(&batch));
    a.expect(b"+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n$4\r\nmine\r\n");

    // Watched keys must share the transaction's slot.
    let far = (0..)
        .map(|i| format!("{}{i}", tag("tx:watch-far")))
        .find(|f| slotgate_cluster::slot(f.as_bytes()) != slotgate_cluster::slot(k.as_bytes()))
        .unwrap();
    let crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    a.roundtrip(&[b"WATCH", k.as_bytes(), far.as_bytes()], crossslot);
    a.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    a.roundtrip(&[b"WATCH", far.as_bytes()], crossslot);
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"GET", far.as_bytes()], crossslot);
    a.roundtrip(&[b"EXEC"], EXECABORT);

    // UNWATCH and RESET forget the WATCH.
    for forget in [&b"UNWATCH"[..], b"RESET"] {
        a.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
        assert!(a.send_command(&[forget]));
        assert!(a.read_line().unwrap().starts_with(b"+"));
        let _: () = redis::cmd("SET").arg(&k).arg("b").query(&mut b).unwrap();
        a.roundtrip(&[b"MULTI"], b"+OK\r\n");
        a.roundtrip(&[b"SET", k.as_bytes(), b"a"], b"+QUEUED\r\n");
        a.roundtrip(&[b"EXEC"], b"*1\r\n+OK\r\n");
    }
}

#[test]
fn optimistic_locking_loses_no_increment() {
    let proxy = proxy_on(shared_cluster());
    let key = format!("{}counter", tag("tx:cas"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, key) = (proxy.url(), key.clone());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..50 {
                    let _: () = redis::transaction(&mut c, &[&key], |c, pipe| {
                        let n: Option<i64> = redis::cmd("GET").arg(&key).query(c)?;
                        pipe.set(&key, n.unwrap_or(0) + 1).ignore().query(c)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = conn(&proxy);
    let n: i64 = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
    assert_eq!(n, 200);
}

#[test]
fn connections_go_back_clean_and_leaving_clients_leave_no_state() {
    let proxy = proxy_on(shared_cluster());
    let t = tag("tx:clean");
    let k = format!("{t}k");
    let mut a = RawConn::connect(proxy.port());
    let mut b = conn(&proxy);

    // Aborted by WATCH, then a DISCARD, then an UNWATCH: each time the next transaction
    // on the same client (same worker, so the same pool) must not inherit a WATCH, even
    // though the key it watched keeps changing.
    a.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    let _: () = redis::cmd("SET").arg(&k).arg("1").query(&mut b).unwrap();
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"SET", k.as_bytes(), b"a"], b"+QUEUED\r\n");
    a.roundtrip(&[b"EXEC"], b"*-1\r\n");
    let _: () = redis::cmd("SET").arg(&k).arg("2").query(&mut b).unwrap();
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"SET", k.as_bytes(), b"a"], b"+QUEUED\r\n");
    a.roundtrip(&[b"EXEC"], b"*1\r\n+OK\r\n");

    a.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"DISCARD"], b"+OK\r\n");
    let _: () = redis::cmd("SET").arg(&k).arg("3").query(&mut b).unwrap();
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"SET", k.as_bytes(), b"b"], b"+QUEUED\r\n");
    a.roundtrip(&[b"EXEC"], b"*1\r\n+OK\r\n");

    a.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    a.roundtrip(&[b"UNWATCH"], b"+OK\r\n");
    let _: () = redis::cmd("SET").arg(&k).arg("4").query(&mut b).unwrap();
    a.roundtrip(&[b"MULTI"], b"+OK\r\n");
    a.roundtrip(&[b"SET", k.as_bytes(), b"c"], b"+QUEUED\r\n");
    a.roundtrip(&[b"EXEC"], b"*1\r\n+OK\r\n");

    // Many other clients meanwhile: transactions behave normally.
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (url, key) = (proxy.url(), format!("{t}other{i}"));
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for j in 0..20i64 {
                    let (n,): (i64,) = redis::pipe().atomic().incr(&key, 1).query(&mut c).unwrap();
                    assert_eq!(n, j + 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // Clients that leave in the middle of MULTI, with a WATCH pinned: their connections
    // close, and nothing they queued is written.
    let mut leaving = Vec::new();
    for i in 0..10 {
        let mut r = RawConn::connect(proxy.port());
        let key = format!("{t}left{i}");
        r.roundtrip(&[b"WATCH", key.as_bytes()], b"+OK\r\n");
        r.roundtrip(&[b"MULTI"], b"+OK\r\n");
        r.roundtrip(&[b"SET", key.as_bytes(), b"x"], b"+QUEUED\r\n");
        leaving.push(r);
    }
    // Each holds a connection (new, or taken from the idle pool); none goes back to it.
    let held = dedicated(&proxy);
    assert!(held >= 10.0, "WATCH holds no connection: {held}");
    drop(leaving);
    assert_eventually!(
        dedicated(&proxy) <= held - 10.0,
        Duration::from_secs(5),
        "pinned connections not closed: {} (was {held})",
        dedicated(&proxy)
    );
    for i in 0..10 {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(format!("{t}left{i}"))
            .query(&mut b)
            .unwrap();
        assert_eq!(exists, 0);
    }
    // A client that half-closes after EXEC still gets the EXEC reply.
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    let key = format!("{t}halfclose");
    let mut batch = b"*1\r\n$5\r\nMULTI\r\n".to_vec();
    batch.extend_from_slice(
        format!(
            "*2\r\n$4\r\nINCR\r\n{}",
            String::from_utf8(bulk(&key)).unwrap()
        )
        .as_bytes(),
    );
    batch.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
    std::io::Write::write_all(&mut s, &batch).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut s, &mut got).unwrap();
    assert_eq!(got, "+OK\r\n+QUEUED\r\n*1\r\n:1\r\n");
}

#[test]
fn a_transaction_follows_its_slot_when_it_moves() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    // No periodic refresh during the test: the proxy's map stays stale until a redirect.
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .refresh_interval(Duration::from_secs(600))
        .spawn();
    let from = cluster.primaries()[0];
    let to = cluster.primaries()[1];
    // `reshard` moves a primary's lowest slots first.
    let lowest_of = |port: u16| -> u16 {
        let owners = cluster.slot_owners();
        (0..16384u16).find(|&s| owners[s as usize] == port).unwrap()
    };
    let tag_in = |slot: u16, name: &str| -> String {
        (0..)
            .map(|i| format!("{{tx:{name}:{i}}}"))
            .find(|k| slotgate_cluster::slot(k.as_bytes()) == slot)
            .unwrap()
    };
    let moved = || {
        proxy
            .scrape()
            .sum("slotgate_redirects_total", &[r#"kind="moved""#])
    };
    let mut c = conn(&proxy);

    // MOVED: the slot moved after the proxy learnt the map.
    let t = tag_in(lowest_of(from), "moved");
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    let (n,): (i64,) = redis::pipe().atomic().incr(&a, 1).query(&mut c).unwrap();
    assert_eq!(n, 1);
    cluster.reshard(from, to, 10);
    let before = moved();
    let (n, ok): (i64, String) = redis::pipe()
        .atomic()
        .incr(&a, 1)
        .set(&b, "x")
        .query(&mut c)
        .unwrap();
    assert_eq!((n, ok.as_str()), (2, "OK"));
    assert!(moved() > before, "the transaction was not redirected");
    assert_eq!(cluster.cli(to, &["GET", &a]), "2");
    assert_eq!(cluster.cli(to, &["GET", &b]), "x");

    // The slot moves between WATCH and EXEC: EXEC answers nil (nothing ran); a retry
    // WATCHes on the new owner and succeeds.
    let t = tag_in(lowest_of(from), "watch-moved");
    let k = format!("{t}k");
    let mut r = RawConn::connect(proxy.port());
    r.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    cluster.reshard(from, to, 10);
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"SET", k.as_bytes(), b"v"], b"+QUEUED\r\n");
    r.roundtrip(&[b"EXEC"], b"*-1\r\n");
    assert_eq!(cluster.cli(to, &["EXISTS", &k]), "0");
    r.roundtrip(&[b"WATCH", k.as_bytes()], b"+OK\r\n");
    r.roundtrip(&[b"MULTI"], b"+OK\r\n");
    r.roundtrip(&[b"SET", k.as_bytes(), b"v"], b"+QUEUED\r\n");
    r.roundtrip(&[b"EXEC"], b"*1\r\n+OK\r\n");
    assert_eq!(cluster.cli(to, &["GET", &k]), "v");

    // ASK: the slot is half-way through a migration and the keys already moved. The
    // transaction runs on the importing node after ASKING.
    let slot = lowest_of(from);
    let t = tag_in(slot, "ask");
    let (a, b) = (format!("{t}a"), format!("{t}b"));
    let (_, _): (String, String) = redis::pipe()
        .atomic()
        .set(&a, "1")
        .set(&b, "2")
        .query(&mut c)
        .unwrap();
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let slot_s = slot.to_string();
    assert_eq!(
        cluster.cli(to, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id]),
        "OK"
    );
    assert_eq!(
        cluster.cli(from, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id]),
        "OK"
    );
    let to_s = to.to_string();
    assert_eq!(
        cluster.cli(
            from,
            &[
                "MIGRATE",
                "127.0.0.1",
                &to_s,
                "",
                "0",
                "5000",
                "KEYS",
                &a,
                &b
            ]
        ),
        "OK"
    );
    let asked = || {
        proxy
            .scrape()
            .sum("slotgate_redirects_total", &[r#"kind="ask""#])
    };
    let before = asked();
    let (n, v): (i64, String) = redis::pipe()
        .atomic()
        .incr(&a, 10)
        .get(&b)
        .query(&mut c)
        .unwrap();
    assert_eq!((n, v.as_str()), (11, "2"));
    assert!(asked() > before, "the transaction was not sent with ASKING");
    for port in [to, from] {
        assert_eq!(
            cluster.cli(port, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]),
            "OK"
        );
    }
    assert_eq!(cluster.cli(to, &["GET", &a]), "11");
}
