//! Pub/Sub order and counts against a real cluster: one publisher's messages reach every
//! subscriber through slotgate in publish order, over many channels, through SUBSCRIBE and
//! PSUBSCRIBE, on both workers; PUBLISH counts the subscribers connected through slotgate
//! like one server; both hold across a manual failover of the node that carries Pub/Sub.

use std::io::Write;
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, unique_key_prefix, ClusterOptions, ProxyConfig,
    RedisCluster, Slotgate,
};

const CHANNELS: usize = 20;
const MESSAGES: usize = 1000;

fn proxy_on(cluster: &RedisCluster) -> Slotgate {
    ProxyConfig::new(&cluster.seeds()).workers(2).spawn()
}

fn proxy() -> &'static Slotgate {
    static PROXY: OnceLock<Slotgate> = OnceLock::new();
    PROXY.get_or_init(|| proxy_on(shared_cluster()))
}

fn channel(prefix: &str, i: usize) -> String {
    format!("{prefix}ch{}", i % CHANNELS)
}

/// A subscriber connection: SUBSCRIBE to every channel, or PSUBSCRIBE to `prefix*`.
fn subscriber(port: u16, prefix: &str, pattern: bool) -> RawConn {
    let mut c = RawConn::connect(port);
    if pattern {
        let p = format!("{prefix}*");
        assert!(c.send_command(&[b"PSUBSCRIBE", p.as_bytes()]));
        c.read_reply().expect("psubscribe confirmation");
    } else {
        let names: Vec<String> = (0..CHANNELS).map(|i| channel(prefix, i)).collect();
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(names.iter().map(|n| n.as_bytes()));
        assert!(c.send_command(&args));
        for _ in 0..CHANNELS {
            c.read_reply().expect("subscribe confirmation");
        }
    }
    c
}

/// The sequence number carried by a message or pmessage frame (`<round>:<seq>`).
fn sequence(frame: &[u8]) -> (usize, usize) {
    let text = String::from_utf8_lossy(frame);
    let payload = text
        .trim_end_matches("\r\n")
        .rsplit("\r\n")
        .next()
        .unwrap_or_default();
    let (round, seq) = payload.split_once(':').unwrap_or(("x", "x"));
    (
        round.parse().unwrap_or(usize::MAX),
        seq.parse().unwrap_or(usize::MAX),
    )
}

/// Publish `count` messages `round:seq` over the channels on one connection, pipelined in
/// batches of 100; returns PUBLISH's replies.
fn publish_all(port: u16, prefix: &str, round: usize, count: usize) -> Vec<i64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut counts = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(100) {
        let mut wire = Vec::new();
        for &seq in batch {
            let (ch, msg) = (channel(prefix, seq), format!("{round}:{seq}"));
            wire.extend(slotgate_tests::probe::encode(&["PUBLISH", &ch, &msg]));
        }
        stream.write_all(&wire).unwrap();
        for _ in batch {
            match slotgate_tests::probe::read_reply(&mut reader).expect("PUBLISH reply") {
                slotgate_tests::Reply::Int(n) => counts.push(n),
                other => panic!("PUBLISH answered {other:?}"),
            }
        }
    }
    counts
}

/// Read `count` messages from `sub` and check they came in publish order.
fn expect_in_order(sub: &mut RawConn, round: usize, count: usize, who: &str) {
    let mut last = None;
    for i in 0..count {
        let frame = sub
            .read_reply()
            .unwrap_or_else(|| panic!("{who}: message {i} of round {round} never came"));
        let (r, seq) = sequence(&frame);
        assert_eq!(r, round, "{who}: {}", String::from_utf8_lossy(&frame));
        if let Some(prev) = last {
            assert!(
                seq > prev,
                "{who}: message {seq} came after {prev} (round {round})"
            );
        }
        last = Some(seq);
    }
    assert_eq!(
        last,
        Some(count - 1),
        "{who}: every message of the round came"
    );
}

#[test]
fn one_publishers_messages_arrive_in_order_on_every_worker() {
    let proxy = proxy();
    let prefix = unique_key_prefix("order");
    // Six subscribers spread over the two workers (the kernel picks), half by pattern.
    let mut subs: Vec<(RawConn, String)> = (0..6)
        .map(|i| {
            let pattern = i % 2 == 1;
            let kind = if pattern { "psubscribe" } else { "subscribe" };
            (
                subscriber(proxy.port(), &prefix, pattern),
                format!("{kind} #{i}"),
            )
        })
        .collect();
    for round in 0..50 {
        let counts = publish_all(proxy.port(), &prefix, round, MESSAGES);
        // Every PUBLISH reached all six subscribers: like one server, not 1, 0, 1, 0 ...
        assert!(
            counts.iter().all(|&n| n == 6),
            "round {round}: PUBLISH counted {:?}",
            counts
                .iter()
                .filter(|&&n| n != 6)
                .take(5)
                .collect::<Vec<_>>()
        );
        for (sub, who) in &mut subs {
            expect_in_order(sub, round, MESSAGES, who);
        }
    }
}

#[test]
fn publish_counts_like_one_server_with_zero_one_and_three_subscribers() {
    let proxy = proxy();
    let prefix = unique_key_prefix("count");
    let count = |n_pub: usize| -> Vec<i64> {
        (0..n_pub)
            .map(|_| {
                let mut c = RawConn::connect(proxy.port());
                let ch = format!("{prefix}only");
                assert!(c.send_command(&[b"PUBLISH", ch.as_bytes(), b"m"]));
                let reply = c.read_reply().unwrap();
                String::from_utf8_lossy(&reply[1..reply.len() - 2])
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(count(10), vec![0; 10]);
    let ch = format!("{prefix}only");
    let mut subs = Vec::new();
    for expected in [1i64, 3] {
        while subs.len() < expected as usize {
            let mut c = RawConn::connect(proxy.port());
            assert!(c.send_command(&[b"SUBSCRIBE", ch.as_bytes()]));
            c.read_reply().unwrap();
            subs.push(c);
        }
        assert_eq!(count(10), vec![expected; 10]);
    }
}

#[test]
fn order_and_counts_hold_across_a_manual_failover_of_the_pubsub_node() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = proxy_on(&cluster);
    let prefix = unique_key_prefix("fo");
    let mut subs: Vec<RawConn> = (0..2)
        .map(|i| subscriber(proxy.port(), &prefix, i == 1))
        .collect();
    // The node that carries slotgate's Pub/Sub is the owner of slot 0.
    let home = cluster.node_for_slot(0);
    let replica = cluster.replicas_of(home)[0];
    let port = proxy.port();
    let publisher_prefix = prefix.clone();
    let publisher = std::thread::spawn(move || {
        let mut counts = Vec::new();
        let started = Instant::now();
        let mut round = 0;
        while started.elapsed() < Duration::from_secs(6) {
            counts.extend(publish_all(port, &publisher_prefix, round, 100));
            round += 1;
        }
        (round, counts)
    });
    std::thread::sleep(Duration::from_millis(500)); // let publishing start before the failover
    cluster.failover(replica);
    assert_eventually!(cluster.node_for_slot(0) == replica, Duration::from_secs(10));
    let (rounds, _) = publisher.join().unwrap();
    // Every subscriber saw the messages it got in publish order (a few around the switch may
    // be missing: Pub/Sub is at most once).
    for (i, sub) in subs.iter_mut().enumerate() {
        let mut last = (0, 0);
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(frame) = sub.read_reply() else { break };
            let seq = sequence(&frame);
            assert!(
                seq > last || got == 0,
                "subscriber {i}: {seq:?} after {last:?}"
            );
            last = seq;
            got += 1;
            if seq == (rounds - 1, 99) {
                break;
            }
        }
        assert!(
            got > rounds * 50,
            "subscriber {i} got only {got} messages of {}",
            rounds * 100
        );
    }
    // The links followed the new primary: PUBLISH counts both subscribers again.
    let counted = || publish_all(port, &prefix, 9999, 1)[0];
    assert_eventually!(counted() == 2, Duration::from_secs(10));
}
