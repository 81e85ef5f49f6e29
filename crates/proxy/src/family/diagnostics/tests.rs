use bytes::{Bytes, BytesMut};

use super::*;

const A: &str = "10.0.0.1:6379";
const B: &str = "10.0.0.2:6379";

fn merged_in(shape: Shape, proto: Protocol, replies: &[&str]) -> String {
    let d = Diagnostics {
        shape,
        nodes: [A, B][..replies.len()]
            .iter()
            .map(|n| NodeAddr::new(n))
            .collect(),
        proto,
    };
    let replies: Vec<Bytes> = replies
        .iter()
        .map(|r| Bytes::copy_from_slice(r.as_bytes()))
        .collect();
    let mut out = BytesMut::new();
    write_merged(&d, &replies, &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

fn merged(shape: Shape, replies: &[&str]) -> String {
    merged_in(shape, Protocol::Resp2, replies)
}

/// A log entry as SLOWLOG GET sends it: id, timestamp, duration, arguments, peer, name.
fn entry(id: i64, at: i64, arg: &str) -> String {
    format!(
        "*6\r\n:{id}\r\n:{at}\r\n:5\r\n*1\r\n${}\r\n{arg}\r\n$15\r\n127.0.0.1:40000\r\n$0\r\n\r\n",
        arg.len()
    )
}

fn shape_of(name: &str, args: &[&str]) -> Option<Shape> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    Shape::of(name, &Request::from_args(&args))
}

#[test]
fn shapes_follow_the_arguments() {
    assert_eq!(
        shape_of("slowlog|get", &["SLOWLOG", "GET"]),
        Some(Shape::Log { limit: Some(10) })
    );
    assert_eq!(
        shape_of("slowlog|get", &["slowlog", "get", "3"]),
        Some(Shape::Log { limit: Some(3) })
    );
    assert_eq!(
        shape_of("slowlog|get", &["SLOWLOG", "GET", "-1"]),
        Some(Shape::Log { limit: None })
    );
    assert_eq!(
        shape_of("commandlog|get", &["COMMANDLOG", "GET", "2", "slow"]),
        Some(Shape::Log { limit: Some(2) })
    );
    assert_eq!(
        shape_of("latency|latest", &["LATENCY", "LATEST"]),
        Some(Shape::Latest)
    );
    assert_eq!(
        shape_of("latency|graph", &["LATENCY", "GRAPH", "command"]),
        Some(Shape::Text)
    );
    assert_eq!(shape_of("slowlog|len", &["SLOWLOG", "LEN"]), None);
    let req = |args: &[&str]| {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        slot_order(&Request::from_args(&args))
    };
    assert_eq!(
        req(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "10"]),
        SlotOrder::BySlot
    );
    assert_eq!(
        req(&[
            "CLUSTER",
            "SLOT-STATS",
            "orderby",
            "Key-Count",
            "limit",
            "5",
            "asc"
        ]),
        SlotOrder::ByMetric {
            metric: b"key-count".to_vec(),
            limit: 5,
            ascending: true
        }
    );
    assert_eq!(
        req(&["CLUSTER", "SLOT-STATS", "ORDERBY", "cpu-usec"]),
        SlotOrder::ByMetric {
            metric: b"cpu-usec".to_vec(),
            limit: usize::MAX,
            ascending: false
        }
    );
}

#[test]
fn log_entries_are_newest_first_and_cut_to_the_count() {
    let a = format!("*2\r\n{}{}", entry(7, 300, "a7"), entry(6, 100, "a6"));
    let b = format!("*2\r\n{}{}", entry(2, 200, "b2"), entry(1, 50, "b1"));
    let got = merged(Shape::Log { limit: Some(3) }, &[&a, &b]);
    assert_eq!(
        got,
        format!(
            "*3\r\n{}{}{}",
            entry(7, 300, "a7"),
            entry(2, 200, "b2"),
            entry(6, 100, "a6")
        )
    );
    let all = merged(Shape::Log { limit: None }, &[&a, &b]);
    assert!(all.starts_with("*4\r\n") && all.ends_with(&entry(1, 50, "b1")));
    // Within one second, each primary's own order (newest first) is kept.
    let a = format!("*2\r\n{}{}", entry(9, 100, "a9"), entry(8, 100, "a8"));
    let b = format!("*1\r\n{}", entry(3, 100, "b3"));
    let got = merged(Shape::Log { limit: Some(10) }, &[&a, &b]);
    let order: Vec<usize> = ["a9", "a8", "b3"]
        .iter()
        .map(|arg| got.find(arg).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{got}");
    assert_eq!(merged(Shape::Log { limit: Some(0) }, &[&a, &b]), "*0\r\n");
}

#[test]
fn a_primary_error_is_the_reply_and_odd_shapes_are_reported() {
    let err = "-ERR count should be greater than or equal to -1\r\n";
    assert_eq!(merged(Shape::Log { limit: None }, &[err, err]), err);
    let ok = format!("*1\r\n{}", entry(1, 1, "x"));
    let unreachable = "-ERR slotgate: upstream 10.0.0.2:6379 is unreachable\r\n";
    assert_eq!(merged(Shape::Latest, &["*0\r\n", unreachable]), unreachable);
    assert_eq!(
        merged(Shape::Log { limit: None }, &[&ok, ":3\r\n"]),
        String::from_utf8_lossy(replies::UNEXPECTED_REPLY)
    );
    let blob = "!21\r\nERR No samples found!\r\n";
    assert_eq!(
        merged_in(Shape::History, Protocol::Resp3, &[blob, "*0\r\n"]),
        blob
    );
}

#[test]
fn latest_keeps_the_last_sample_and_the_largest_max() {
    let a = "*2\r\n*4\r\n$7\r\ncommand\r\n:100\r\n:12\r\n:40\r\n*4\r\n$4\r\nfork\r\n:90\r\n:3\r\n:3\r\n";
    let b = "*1\r\n*4\r\n$7\r\ncommand\r\n:120\r\n:5\r\n:30\r\n";
    assert_eq!(
        merged(Shape::Latest, &[a, b]),
        "*2\r\n*4\r\n$7\r\ncommand\r\n:120\r\n:5\r\n:40\r\n*4\r\n$4\r\nfork\r\n:90\r\n:3\r\n:3\r\n"
    );
    // Valkey's sum and count are added.
    let a = "*1\r\n*6\r\n$7\r\ncommand\r\n:100\r\n:12\r\n:40\r\n:52\r\n:2\r\n";
    let b = "*1\r\n*6\r\n$7\r\ncommand\r\n:100\r\n:15\r\n:15\r\n:15\r\n:1\r\n";
    assert_eq!(
        merged(Shape::Latest, &[a, b]),
        "*1\r\n*6\r\n$7\r\ncommand\r\n:100\r\n:15\r\n:40\r\n:67\r\n:3\r\n"
    );
}

#[test]
fn history_is_by_timestamp_one_sample_a_second() {
    let a = "*2\r\n*2\r\n:10\r\n:5\r\n*2\r\n:30\r\n:7\r\n";
    let b = "*2\r\n*2\r\n:20\r\n:9\r\n*2\r\n:30\r\n:8\r\n";
    assert_eq!(
        merged(Shape::History, &[a, b]),
        "*3\r\n*2\r\n:10\r\n:5\r\n*2\r\n:20\r\n:9\r\n*2\r\n:30\r\n:8\r\n"
    );
    let many = |from: i64| {
        let mut s = format!("*{HISTORY_LEN}\r\n");
        for t in from..from + HISTORY_LEN as i64 {
            s.push_str(&format!("*2\r\n:{t}\r\n:1\r\n"));
        }
        s
    };
    let got = merged(Shape::History, &[&many(0), &many(1000)]);
    assert!(got.starts_with(&format!("*{HISTORY_LEN}\r\n*2\r\n:1000\r\n")));
}

#[test]
fn cumulative_histograms_are_added_bucket_by_bucket() {
    // One primary: 2 calls ≤ 8 µs, 5 ≤ 32; the other: 1 ≤ 16, 4 ≤ 32, 6 ≤ 64.
    let a: &[(i64, i64)] = &[(8, 2), (32, 5)];
    let b: &[(i64, i64)] = &[(16, 1), (32, 4), (64, 6)];
    assert_eq!(
        sum_cumulative(&[a, b]),
        [(8, 2), (16, 3), (32, 9), (64, 11)]
    );
    assert_eq!(sum_cumulative(&[a]), a);
    assert!(sum_cumulative(&[]).is_empty());
}

#[test]
fn histograms_merge_per_command_in_either_protocol() {
    let resp2_a = "*4\r\n$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:2\r\n$14\r\nhistogram_usec\r\n*2\r\n:8\r\n:2\r\n$3\r\nget\r\n*4\r\n$5\r\ncalls\r\n:1\r\n$14\r\nhistogram_usec\r\n*2\r\n:4\r\n:1\r\n";
    let resp2_b = "*2\r\n$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:3\r\n$14\r\nhistogram_usec\r\n*4\r\n:4\r\n:1\r\n:16\r\n:3\r\n";
    assert_eq!(
        merged(Shape::Histogram, &[resp2_a, resp2_b]),
        "*4\r\n$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:5\r\n$14\r\nhistogram_usec\r\n*6\r\n:4\r\n:1\r\n:8\r\n:3\r\n:16\r\n:5\r\n$3\r\nget\r\n*4\r\n$5\r\ncalls\r\n:1\r\n$14\r\nhistogram_usec\r\n*2\r\n:4\r\n:1\r\n"
    );
    let resp3_a =
        "%1\r\n$3\r\nset\r\n%2\r\n$5\r\ncalls\r\n:2\r\n$14\r\nhistogram_usec\r\n%1\r\n:8\r\n:2\r\n";
    let resp3_b =
        "%1\r\n$3\r\nset\r\n%2\r\n$5\r\ncalls\r\n:1\r\n$14\r\nhistogram_usec\r\n%1\r\n:8\r\n:1\r\n";
    assert_eq!(
        merged_in(Shape::Histogram, Protocol::Resp3, &[resp3_a, resp3_b]),
        "%1\r\n$3\r\nset\r\n%2\r\n$5\r\ncalls\r\n:3\r\n$14\r\nhistogram_usec\r\n%1\r\n:8\r\n:3\r\n"
    );
}

#[test]
fn text_comes_per_primary_under_its_address() {
    let a = "$9\r\nall good\n\r\n";
    let b = "=11\r\ntxt:spikes\n\r\n";
    let resp2 = merged(Shape::Text, &[a, b]);
    let text = format!("# {A}\nall good\n\n# {B}\nspikes\n");
    assert_eq!(resp2, format!("${}\r\n{text}\r\n", text.len()));
    let resp3 = merged_in(Shape::Text, Protocol::Resp3, &[a, b]);
    assert_eq!(resp3, format!("={}\r\ntxt:{text}\r\n", text.len() + 4));
    // GRAPH: a primary without samples says so under its address; none with samples is
    // the primaries' error.
    let none = "-ERR No samples available for event 'command'\r\n";
    let got = merged(Shape::Text, &[a, none]);
    assert!(
        got.ends_with(&format!(
            "# {B}\nERR No samples available for event 'command'\n\r\n"
        )),
        "{got}"
    );
    assert_eq!(merged(Shape::Text, &[none, none]), none);
}

fn slot(n: i64, keys: i64) -> String {
    format!("*2\r\n:{n}\r\n*2\r\n$9\r\nkey-count\r\n:{keys}\r\n")
}

#[test]
fn slot_stats_in_slot_order_or_by_metric() {
    let a = format!("*2\r\n{}{}", slot(0, 3), slot(1, 0));
    let b = format!("*2\r\n{}{}", slot(9000, 5), slot(8192, 3));
    assert_eq!(
        merged(Shape::SlotStats(SlotOrder::BySlot), &[&b, &a]),
        format!(
            "*4\r\n{}{}{}{}",
            slot(0, 3),
            slot(1, 0),
            slot(8192, 3),
            slot(9000, 5)
        )
    );
    let by = |limit, ascending| {
        Shape::SlotStats(SlotOrder::ByMetric {
            metric: b"key-count".to_vec(),
            limit,
            ascending,
        })
    };
    assert_eq!(
        merged(by(3, false), &[&a, &b]),
        format!("*3\r\n{}{}{}", slot(9000, 5), slot(0, 3), slot(8192, 3))
    );
    assert_eq!(
        merged(by(usize::MAX, true), &[&a, &b]),
        format!(
            "*4\r\n{}{}{}{}",
            slot(1, 0),
            slot(0, 3),
            slot(8192, 3),
            slot(9000, 5)
        )
    );
    // RESP3: the statistics are maps, passed on as the node sent them.
    let m = "*1\r\n*2\r\n:5\r\n%1\r\n$9\r\nkey-count\r\n:1\r\n";
    let got = merged_in(by(1, false), Protocol::Resp3, &[m, "*0\r\n"]);
    assert_eq!(got, m);
}
