//! Blocking commands through slotgate against a real cluster: released by another client's
//! push, their own timeout honoured (not `op_timeout`), a disconnect releases the upstream
//! connection, a reshard under a blocked client is followed, the per-node cap is enforced,
//! and many blocked clients do not slow anybody else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, ClusterOptions, ProxyConfig, RedisCluster, Slotgate,
};

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

#[test]
fn blpop_is_released_by_a_push_from_another_client() {
    let proxy = proxy_on(shared_cluster());
    let waiter = {
        let url = proxy.url();
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let start = Instant::now();
            let got: (String, String) = redis::cmd("BLPOP")
                .arg("blk:queue")
                .arg(0)
                .query(&mut c)
                .unwrap();
            (got, start.elapsed())
        })
    };
    shared_cluster().wait_blocked("blk:queue");
    // Other commands on other connections are not held up meanwhile.
    let mut c = conn(&proxy);
    let t = Instant::now();
    let _: () = redis::cmd("SET")
        .arg("blk:other")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert!(t.elapsed() < Duration::from_millis(100));
    let _: i64 = redis::cmd("RPUSH")
        .arg("blk:queue")
        .arg("job-1")
        .query(&mut c)
        .unwrap();
    let ((key, value), waited) = waiter.join().unwrap();
    assert_eq!((key.as_str(), value.as_str()), ("blk:queue", "job-1"));
    // It blocked (the node reported it) and got the element pushed afterwards.
    assert!(waited > Duration::ZERO);

    // XREAD BLOCK released by XADD, BZPOPMIN by ZADD, BLMOVE within one slot.
    let url = proxy.url();
    let xread = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let v: redis::Value = redis::cmd("XREAD")
            .arg(&["BLOCK", "0", "STREAMS", "blk:stream", "$"])
            .query(&mut c)
            .unwrap();
        format!("{v:?}")
    });
    let url = proxy.url();
    let bz = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let v: (String, String, f64) = redis::cmd("BZPOPMIN")
            .arg("blk:z")
            .arg(0)
            .query(&mut c)
            .unwrap();
        v
    });
    shared_cluster().wait_blocked("blk:stream");
    shared_cluster().wait_blocked("blk:z");
    let _: String = redis::cmd("XADD")
        .arg(&["blk:stream", "*", "field", "value-x"])
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg(&["blk:z", "1.5", "member-z"])
        .query(&mut c)
        .unwrap();
    assert!(xread.join().unwrap().contains("value-x"));
    assert_eq!(bz.join().unwrap(), ("blk:z".into(), "member-z".into(), 1.5));

    let _: i64 = redis::cmd("RPUSH")
        .arg(&["{blk}src", "a"])
        .query(&mut c)
        .unwrap();
    let moved: String = redis::cmd("BLMOVE")
        .arg(&["{blk}src", "{blk}dst", "LEFT", "RIGHT", "1"])
        .query(&mut c)
        .unwrap();
    assert_eq!(moved, "a");
    let mut raw = RawConn::connect(proxy.port());
    raw.roundtrip(
        &[b"BLMOVE", b"blk:a", b"blk:b", b"LEFT", b"RIGHT", b"1"],
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    );
}

#[test]
fn the_commands_own_timeout_applies_not_op_timeout() {
    // op_timeout 500ms; BLPOP with a 2 s timeout must wait its 2 s and answer nil.
    let proxy = ProxyConfig::new(&shared_cluster().seeds())
        .admin()
        .op_timeout(Duration::from_millis(500))
        .spawn();
    let mut raw = RawConn::connect(proxy.port());
    let start = Instant::now();
    raw.roundtrip(&[b"BLPOP", b"blk:empty", b"2"], b"*-1\r\n");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "BLPOP 2 answered after {took:?}"
    );
    let start = Instant::now();
    raw.roundtrip(
        &[
            b"XREAD",
            b"BLOCK",
            b"1000",
            b"STREAMS",
            b"blk:nostream",
            b"$",
        ],
        b"*-1\r\n",
    );
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[test]
fn a_client_leaving_while_blocked_releases_its_upstream_connection() {
    // A cluster of its own: the nodes' CLIENT LIST must show only this test's clients.
    let cluster = &RedisCluster::start(ClusterOptions::default());
    let proxy = proxy_on(cluster);
    let base = dedicated(&proxy);
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        let key = format!("blk:leave:{i}");
        write!(
            s,
            "*3\r\n$5\r\nBLPOP\r\n${}\r\n{key}\r\n$1\r\n0\r\n",
            key.len()
        )
        .unwrap();
        clients.push(s);
    }
    assert_eventually!(
        dedicated(&proxy) >= base + 5.0,
        Duration::from_secs(5),
        "blocked clients do not hold dedicated connections"
    );
    let blocked_on_nodes = || -> usize {
        cluster
            .primaries()
            .iter()
            .map(|&p| {
                cluster
                    .cli(p, &["CLIENT", "LIST"])
                    .lines()
                    .filter(|l| l.contains("cmd=blpop") && l.contains("flags=b"))
                    .count()
            })
            .sum()
    };
    assert_eq!(blocked_on_nodes(), 5);
    drop(clients);
    assert_eventually!(
        blocked_on_nodes() == 0,
        Duration::from_secs(5),
        "nodes still block for clients that left"
    );
    assert_eventually!(
        dedicated(&proxy) <= base,
        Duration::from_secs(5),
        "dedicated connections not released: {} (was {base})",
        dedicated(&proxy)
    );
}

#[test]
fn the_per_node_cap_is_enforced() {
    let proxy = ProxyConfig::new(&shared_cluster().seeds())
        .admin()
        .workers(1)
        .max_dedicated_per_node(3)
        .spawn();
    // All on one slot, so on one node.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        s.write_all(b"*3\r\n$5\r\nBLPOP\r\n$9\r\n{cap}list\r\n$1\r\n0\r\n")
            .unwrap();
        held.push(s);
    }
    assert_eventually!(dedicated(&proxy) >= 3.0, Duration::from_secs(5));
    let mut raw = RawConn::connect(proxy.port());
    let line = {
        raw.send_command(&[b"BLPOP", b"{cap}list", b"0"]);
        String::from_utf8(raw.read_line().unwrap()).unwrap()
    };
    assert!(
        line.starts_with("-ERR slotgate: 3 dedicated connections to 127.0.0.1:")
            && line.contains("max_dedicated_per_node"),
        "{line}"
    );
    // Releasing one makes room again.
    let mut c = conn(&proxy);
    let _: i64 = redis::cmd("RPUSH")
        .arg(&["{cap}list", "x"])
        .query(&mut c)
        .unwrap();
    let mut buf = Vec::new();
    let mut released = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut chunk = [0u8; 64];
        if let Ok(n) = s.read(&mut chunk) {
            if n > 0 {
                released += 1;
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    assert_eq!(released, 1, "{:?}", String::from_utf8_lossy(&buf));
    assert_eventually!(
        {
            let mut raw = RawConn::connect(proxy.port());
            raw.send_command(&[b"BLPOP", b"{cap}list", b"0.1"]);
            raw.read_line().as_deref() == Some(b"*-1\r\n".as_slice())
        },
        Duration::from_secs(5),
        "a released slot was not reused"
    );
}

#[test]
fn a_thousand_blocked_clients_do_not_slow_anyone_else() {
    let proxy = proxy_on(shared_cluster());
    let mut blocked = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        let key = format!("blk:many:{i}");
        write!(
            s,
            "*3\r\n$5\r\nBLPOP\r\n${}\r\n{key}\r\n$1\r\n0\r\n",
            key.len()
        )
        .unwrap();
        blocked.push((s, key));
    }
    assert_eventually!(
        dedicated(&proxy) >= 1000.0,
        Duration::from_secs(20),
        "only {} dedicated connections",
        dedicated(&proxy)
    );
    // Latency of ordinary commands meanwhile.
    let mut c = conn(&proxy);
    let mut lat = Vec::new();
    for i in 0..2000 {
        let t = Instant::now();
        let _: () = redis::cmd("SET")
            .arg(format!("blk:fast:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let p99 = lat[lat.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(10),
        "p99 {p99:?} with 1000 blocked clients"
    );
    // Every blocked client gets its element.
    for (_, key) in &blocked {
        let _: i64 = redis::cmd("RPUSH").arg(key).arg("v").query(&mut c).unwrap();
    }
    for (s, key) in &mut blocked {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let expect = format!("*2\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len());
        let mut got = vec![0u8; expect.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), expect);
    }
    eprintln!("1000 blocked clients: SET p99 {p99:?}");
}

#[test]
fn a_reshard_under_a_blocked_client_is_followed() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = proxy_on(&cluster);
    let owners = cluster.slot_owners();
    let from = cluster.primaries()[0];
    let to = cluster.primaries()[1];
    // A key in the first slot `from` owns: `reshard` moves a primary's lowest slots first.
    let first_slot = (0..16384u16).find(|&s| owners[s as usize] == from).unwrap();
    let key = (0..)
        .map(|i| format!("blk:rs:{i}"))
        .find(|k| slotgate_cluster::slot(k.as_bytes()) == first_slot)
        .unwrap();
    let waiter = {
        let (url, key) = (proxy.url(), key.clone());
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let got: (String, String) = redis::cmd("BLPOP").arg(&key).arg(0).query(&mut c).unwrap();
            got
        })
    };
    cluster.wait_blocked(&key);
    cluster.reshard(from, to, 10);
    assert_eq!(cluster.slot_owners()[first_slot as usize], to);
    let mut c = conn(&proxy);
    let _: i64 = redis::cmd("RPUSH")
        .arg(&key)
        .arg("after-reshard")
        .query(&mut c)
        .unwrap();
    assert_eq!(waiter.join().unwrap(), (key, "after-reshard".into()));
}
