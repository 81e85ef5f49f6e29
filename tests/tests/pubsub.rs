//! Pub/Sub through slotgate against a real cluster: messages published on any shard reach a
//! subscriber, exact RESP2 framing, subscribe-mode rules, subscriptions that survive their
//! upstream connection being killed, and a subscriber that does not read is cut off alone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use slotgate_tests::raw::bulk_text as bulk;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, ClusterOptions, ProxyConfig, RedisCluster, Slotgate,
};

fn publish(proxy: &Slotgate, channel: &str, message: &str) -> i64 {
    let mut c = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query(&mut c)
        .unwrap()
}

#[test]
fn subscribe_framing_and_subscribe_mode_rules() {
    let proxy = ProxyConfig::new(&shared_cluster().seeds()).spawn();
    let mut raw = RawConn::connect(proxy.port());
    raw.send_command(&[b"SUBSCRIBE", b"ps:a", b"ps:b"]);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!("*3\r\n{}{}:1\r\n", bulk("subscribe"), bulk("ps:a")).into_bytes()
    );
    assert_eq!(
        raw.read_reply().unwrap(),
        format!("*3\r\n{}{}:2\r\n", bulk("subscribe"), bulk("ps:b")).into_bytes()
    );
    // Only the Pub/Sub family, PING, QUIT and RESET in subscribe mode.
    raw.roundtrip(
        &[b"GET", b"x"],
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    );
    raw.roundtrip(&[b"PING"], b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");

    assert!(publish(&proxy, "ps:b", "hello") >= 1);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!("*3\r\n{}{}{}", bulk("message"), bulk("ps:b"), bulk("hello")).into_bytes()
    );

    raw.send_command(&[b"UNSUBSCRIBE"]);
    // Redis unsubscribes in its own order; the counts go 1 then 0.
    let first = raw.read_reply().unwrap();
    let second = raw.read_reply().unwrap();
    let mut channels = Vec::new();
    for (frame, count) in [(&first, 1), (&second, 0)] {
        let text = String::from_utf8(frame.clone()).unwrap();
        assert!(
            text.starts_with(&format!("*3\r\n{}", bulk("unsubscribe")))
                && text.ends_with(&format!(":{count}\r\n")),
            "{text:?}"
        );
        channels.push(text.contains("ps:a"));
    }
    channels.sort();
    assert_eq!(channels, vec![false, true], "both channels confirmed once");
    // Out of subscribe mode: ordinary commands again.
    raw.roundtrip(&[b"SET", b"ps:after", b"1"], b"+OK\r\n");
    raw.roundtrip(&[b"GET", b"ps:after"], b"$1\r\n1\r\n");
}

#[test]
fn messages_published_on_every_shard_reach_pattern_and_channel_subscribers() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let client = redis::Client::open(proxy.url()).unwrap();
    let mut sub = client.get_connection().unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.psubscribe("shard:*").unwrap();
    pubsub.subscribe("plain").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Channels whose names hash to every primary's slots: PUBLISH goes to some primary,
    // the cluster bus carries it to the node the subscription lives on.
    let owners = cluster.slot_owners();
    let mut channels: Vec<String> = Vec::new();
    for primary in cluster.primaries() {
        let ch = (0..)
            .map(|i| format!("shard:{i}"))
            .find(|c| owners[slotgate_cluster::slot(c.as_bytes()) as usize] == primary)
            .unwrap();
        channels.push(ch);
    }
    let mut c = client.get_connection().unwrap();
    for (i, ch) in channels.iter().enumerate() {
        let _: i64 = redis::cmd("PUBLISH").arg(ch).arg(i).query(&mut c).unwrap();
    }
    let _: i64 = redis::cmd("PUBLISH")
        .arg("plain")
        .arg("p")
        .query(&mut c)
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..channels.len() + 1 {
        let msg = pubsub.get_message().unwrap();
        seen.push((
            msg.get_channel_name().to_string(),
            msg.get_payload::<String>().unwrap(),
        ));
    }
    for (i, ch) in channels.iter().enumerate() {
        assert!(seen.contains(&(ch.clone(), i.to_string())), "{seen:?}");
    }
    assert!(seen.contains(&("plain".into(), "p".into())), "{seen:?}");
}

#[test]
fn subscriptions_survive_their_upstream_connection_being_killed() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let mut raw = RawConn::connect(proxy.port());
    raw.send_command(&[b"SUBSCRIBE", b"survive"]);
    raw.read_reply().unwrap();
    raw.send_command(&[b"PSUBSCRIBE", b"surv*"]);
    raw.read_reply().unwrap();

    for round in 0..3 {
        // Kill every pub/sub connection on every node (the link is on one of them).
        for port in cluster.primaries() {
            cluster.cli(port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
        // The link subscribes again on a primary; messages flow once it has.
        let msg = format!("after-kill-{round}");
        assert_eventually!(
            publish(&proxy, "survive", &msg) >= 2,
            Duration::from_secs(5),
            "round {round}: nobody subscribed again"
        );
        // The client sees no confirmation again, only messages (channel and pattern).
        let mut frames = Vec::new();
        while frames.len() < 2 {
            let f = String::from_utf8(raw.read_reply().unwrap()).unwrap();
            if f.contains(&msg) {
                frames.push(f);
            } else {
                assert!(
                    f.starts_with("*3\r\n$7\r\nmessage") || f.starts_with("*4\r\n$8\r\npmessage"),
                    "round {round}: unexpected frame {f:?}"
                );
            }
        }
        assert!(frames.iter().any(|f| f.starts_with("*3\r\n$7\r\nmessage")));
        assert!(frames.iter().any(|f| f.starts_with("*4\r\n$8\r\npmessage")));
    }
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_alone() {
    let proxy = ProxyConfig::new(&shared_cluster().seeds())
        .admin()
        .limit("max_pubsub_backlog", "256kb")
        .spawn();
    // A subscriber that never reads.
    let mut lazy = TcpStream::connect(proxy.addr()).unwrap();
    lazy.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nflood\r\n")
        .unwrap();
    // A well-behaved one on another channel.
    let mut good = RawConn::connect(proxy.port());
    good.send_command(&[b"SUBSCRIBE", b"calm"]);
    good.read_reply().unwrap();
    // The lazy one is subscribed once the node counts it.
    assert_eventually!(
        {
            let mut c = RawConn::connect(proxy.port());
            c.send_command(&[b"PUBSUB", b"NUMSUB", b"flood"]);
            c.read_reply().unwrap() == b"*2\r\n$5\r\nflood\r\n:1\r\n"
        },
        Duration::from_secs(5)
    );

    let payload = "x".repeat(16 * 1024);
    let mut c = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    // Several MB: more than the socket buffers and the 256 KiB backlog together.
    for _ in 0..600 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("flood")
            .arg(&payload)
            .query(&mut c)
            .unwrap();
    }
    let _: i64 = redis::cmd("PUBLISH")
        .arg("calm")
        .arg("still here")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        good.read_reply().unwrap(),
        format!(
            "*3\r\n{}{}{}",
            bulk("message"),
            bulk("calm"),
            bulk("still here")
        )
        .into_bytes()
    );
    // The lazy subscriber's connection was closed: reading drains what was sent, then EOF.
    lazy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        match lazy.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("lazy subscriber not disconnected ({total} bytes read): {e}"),
        }
    }
    assert!(total < 600 * payload.len(), "got everything: {total} bytes");
    assert!(proxy.log().contains("does not read its messages"));
    assert_eq!(
        proxy
            .scrape()
            .get("slotgate_client_closes_total{reason=\"pubsub_backlog\"}"),
        1.0
    );
}

fn channel_on(cluster: &RedisCluster, owner: u16, prefix: &str) -> String {
    let owners = cluster.slot_owners();
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|c| owners[slotgate_cluster::slot(c.as_bytes()) as usize] == owner)
        .unwrap()
}

fn spublish(proxy: &Slotgate, channel: &str, message: &str) -> i64 {
    let mut c = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SPUBLISH")
        .arg(channel)
        .arg(message)
        .query(&mut c)
        .unwrap()
}

#[test]
fn shard_channels_on_several_primaries_with_the_clients_total_count() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let primaries = cluster.primaries();
    let (a, b) = (
        channel_on(cluster, primaries[0], "sh:a:"),
        channel_on(cluster, primaries[1], "sh:b:"),
    );
    let mut raw = RawConn::connect(proxy.port());
    raw.send_command(&[b"SSUBSCRIBE", a.as_bytes()]);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!("*3\r\n{}{}:1\r\n", bulk("ssubscribe"), bulk(&a)).into_bytes()
    );
    // The second channel lives on another primary; the count is the client's total.
    raw.send_command(&[b"SSUBSCRIBE", b.as_bytes()]);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!("*3\r\n{}{}:2\r\n", bulk("ssubscribe"), bulk(&b)).into_bytes()
    );
    // Channels of one call must share a slot.
    raw.roundtrip(
        &[b"SSUBSCRIBE", a.as_bytes(), b.as_bytes()],
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    );
    assert_eq!(spublish(&proxy, &b, "to-b"), 1);
    assert_eq!(spublish(&proxy, &a, "to-a"), 1);
    let mut got = vec![
        String::from_utf8(raw.read_reply().unwrap()).unwrap(),
        String::from_utf8(raw.read_reply().unwrap()).unwrap(),
    ];
    got.sort();
    assert_eq!(
        got,
        vec![
            format!("*3\r\n{}{}{}", bulk("smessage"), bulk(&a), bulk("to-a")),
            format!("*3\r\n{}{}{}", bulk("smessage"), bulk(&b), bulk("to-b")),
        ]
    );
    raw.send_command(&[b"SUNSUBSCRIBE"]);
    let mut counts = vec![
        String::from_utf8(raw.read_reply().unwrap()).unwrap(),
        String::from_utf8(raw.read_reply().unwrap()).unwrap(),
    ];
    counts.sort();
    assert!(counts.iter().any(|f| f.ends_with(":1\r\n")), "{counts:?}");
    assert!(counts.iter().any(|f| f.ends_with(":0\r\n")), "{counts:?}");
    raw.roundtrip(&[b"SET", b"sh:after", b"1"], b"+OK\r\n");
}

#[test]
fn ssubscribe_survives_a_reshard_of_its_slot() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let owners = cluster.slot_owners();
    let from = cluster.primaries()[0];
    let to = cluster.primaries()[1];
    // A channel in the first slot `from` owns (reshard moves the lowest slots first).
    let first_slot = (0..16384u16).find(|&s| owners[s as usize] == from).unwrap();
    let channel = (0..)
        .map(|i| format!("rs:ch:{i}"))
        .find(|c| slotgate_cluster::slot(c.as_bytes()) == first_slot)
        .unwrap();
    let mut raw = RawConn::connect(proxy.port());
    raw.send_command(&[b"SSUBSCRIBE", channel.as_bytes()]);
    raw.read_reply().unwrap();
    assert_eq!(spublish(&proxy, &channel, "before"), 1);
    assert!(String::from_utf8(raw.read_reply().unwrap())
        .unwrap()
        .ends_with(&bulk("before")));

    cluster.reshard(from, to, 10);
    assert_eq!(cluster.slot_owners()[first_slot as usize], to);
    // The subscription moves with the slot: a message published after the reshard arrives,
    // and the client saw no unsubscribe.
    assert_eventually!(
        spublish(&proxy, &channel, "after") == 1,
        Duration::from_secs(5),
        "nobody subscribed on the new owner"
    );
    let next = String::from_utf8(raw.read_reply().unwrap()).unwrap();
    assert!(
        next.starts_with(&format!("*3\r\n{}", bulk("smessage"))) && next.contains("after"),
        "{next:?}"
    );
}
