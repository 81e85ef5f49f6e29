//! Input a careless or hostile client sends: arguments in the wrong number or shape.
//!
//! - Commands whose arguments come in groups (MSET key-value pairs, HSET field-value pairs,
//!   ZADD score-member pairs, XADD field-value pairs, GEOADD triples) with an incomplete
//!   group get exactly what one redis-server answers, whether or not their keys span
//!   slots, and the connection stays usable.
//! - A bounded wire-level fuzz run: random well-framed commands built from the command table
//!   (names, subcommands, keywords, keys in several slots, numbers, odd bytes) over many
//!   connections through the real binary; no panic may appear in its log or in
//!   `slotgate_panics_total`, and slotgate still answers afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use slotgate_commands::{flag, BeginSearch, Command};
use slotgate_resp::ReplyScanner;
use slotgate_tests::admin::scrape;
use slotgate_tests::raw::RawConn;
use slotgate_tests::standalone::RedisServer;
use slotgate_tests::{shared_cluster, unique_key_prefix, ProxyConfig, Reply, Slotgate};

fn proxy() -> &'static Slotgate {
    static PROXY: OnceLock<Slotgate> = OnceLock::new();
    PROXY.get_or_init(|| {
        ProxyConfig::new(&shared_cluster().seeds())
            .admin()
            .workers(2)
            .spawn()
    })
}

/// A reply as RESP2 bytes, to compare a redis-server answer with slotgate's raw bytes.
fn resp_bytes(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Status(s) => format!("+{s}\r\n").into_bytes(),
        Reply::Error(e) => format!("-{e}\r\n").into_bytes(),
        Reply::Int(n) => format!(":{n}\r\n").into_bytes(),
        Reply::Bulk(None) => b"$-1\r\n".to_vec(),
        Reply::Bulk(Some(v)) => {
            let mut out = format!("${}\r\n", v.len()).into_bytes();
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
            out
        }
        Reply::Array(None) => b"*-1\r\n".to_vec(),
        Reply::Array(Some(items)) => {
            let mut out = format!("*{}\r\n", items.len()).into_bytes();
            for item in items {
                out.extend(resp_bytes(item));
            }
            out
        }
    }
}

#[test]
fn incomplete_argument_groups_get_redis_answers_and_keep_the_connection() {
    let p = unique_key_prefix("groups");
    // `a`/`b` hash to different slots; `{t}a`/`{t}b` to one.
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    assert_ne!(
        slotgate_cluster::slot(a.as_bytes()),
        slotgate_cluster::slot(b.as_bytes()),
        "the test needs keys in two slots"
    );
    let (ta, tb) = (format!("{p}{{t}}a"), format!("{p}{{t}}b"));
    let (h, z, s, g) = (
        format!("{p}h"),
        format!("{p}z"),
        format!("{p}s"),
        format!("{p}g"),
    );
    let cases: Vec<Vec<&str>> = vec![
        vec!["MSET", &a, "1", &b],
        vec!["MSET", &ta, "1", &tb],
        vec!["MSET", &a, "1", &b, "2", &ta],
        vec!["MSETNX", &a, "1", &b],
        vec!["MSETNX", &ta, "1", &tb],
        vec!["HSET", &h, "f"],
        vec!["HSET", &h, "f", "v", "g"],
        vec!["HMSET", &h, "f", "v", "g"],
        vec!["ZADD", &z, "1"],
        vec!["ZADD", &z, "1", "m", "2"],
        vec!["ZADD", &z, "NX", "1"],
        vec!["XADD", &s, "*", "f"],
        vec!["XADD", &s, "*", "f", "v", "g"],
        vec!["XADD", &s, "MAXLEN", "10", "*", "f"],
        vec!["GEOADD", &g, "1", "2"],
        vec!["GEOADD", &g, "1", "2", "m", "3"],
        vec!["GEOADD", &g, "NX", "1", "2"],
        // Complete groups still work (and create the keys the cases above use).
        vec!["MSET", &a, "1", &b, "2"],
        vec!["HSET", &h, "f", "v"],
        vec!["ZADD", &z, "1", "m"],
        vec!["GEOADD", &g, "1", "2", "m"],
    ];
    let server = RedisServer::start();
    let mut direct = server.connect();
    let mut c = RawConn::connect(proxy().port());
    for case in &cases {
        let expected = resp_bytes(&direct.call(case));
        let args: Vec<&[u8]> = case.iter().map(|x| x.as_bytes()).collect();
        assert!(c.send_command(&args), "send {case:?}");
        let got = c
            .read_reply()
            .unwrap_or_else(|| panic!("no reply to {case:?}"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{case:?}: slotgate and redis-server differ"
        );
        // The connection is still usable after each.
        c.roundtrip(&[b"PING"], b"+PONG\r\n");
    }
    // The ones that must be errors are: the case list is not vacuous.
    let mut error = |args: &[&str]| matches!(direct.call(args), Reply::Error(_));
    assert!(error(&["MSET", &a, "1", &b]));
    assert!(error(&["HSET", &h, "f"]));
    assert!(error(&["ZADD", &z, "1"]));
    assert!(error(&["XADD", &s, "*", "f"]));
    assert!(error(&["GEOADD", &g, "1", "2"]));
    assert_eq!(scrape_panics(), 0.0, "log:\n{}", proxy().log());
}

fn scrape_panics() -> f64 {
    scrape(proxy().admin_addr().expect("admin port")).get("slotgate_panics_total")
}

// === wire-level fuzz ===

/// xorshift64*: small, seedable, good enough to pick arguments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Commands the fuzz may send: every command and subcommand of the table except those that
/// change the server itself (`admin`: CONFIG SET, SHUTDOWN, DEBUG, ACL SETUSER, CLIENT
/// KILL …), wipe or move the data other tests read, or connect to other hosts (MIGRATE).
fn fuzz_commands() -> Vec<(&'static Command, Vec<&'static str>)> {
    const NEVER: &[&str] = &["flushall", "flushdb", "migrate", "swapdb", "shutdown"];
    let mut out = Vec::new();
    let mut add = |cmd: &'static Command, words: Vec<&'static str>| {
        if !cmd.has_flag(flag::ADMIN) && !NEVER.contains(&cmd.name) {
            out.push((cmd, words));
        }
    };
    for cmd in slotgate_commands::all() {
        if cmd.subcommands.is_empty() {
            add(cmd, vec![cmd.name]);
        } else {
            for sub in cmd.subcommands {
                let (container, name) = sub.name.split_once('|').unwrap_or((cmd.name, sub.name));
                add(sub, vec![container, name]);
            }
        }
    }
    out
}

/// One random command line: a table command, usually with an argument count its arity
/// allows, arguments drawn from keys in several slots, numbers, the command's own key-spec
/// keywords, common option words and odd bytes.
fn random_command(
    rng: &mut Rng,
    commands: &[(&'static Command, Vec<&'static str>)],
    p: &str,
) -> Vec<Vec<u8>> {
    const WORDS: &[&str] = &[
        "EX",
        "PX",
        "NX",
        "XX",
        "GT",
        "LT",
        "CH",
        "INCR",
        "KEEPTTL",
        "GET",
        "WITHSCORES",
        "LIMIT",
        "COUNT",
        "MATCH",
        "TYPE",
        "BLOCK",
        "STREAMS",
        "BY",
        "STORE",
        "ASC",
        "DESC",
        "ALPHA",
        "MAXLEN",
        "MINID",
        "~",
        "=",
        "*",
        "$",
        ">",
        "+",
        "-",
        "0-0",
        "KEYS",
        "WEIGHTS",
        "AGGREGATE",
        "SUM",
        "LEFT",
        "RIGHT",
        "BEFORE",
        "AFTER",
        "FIELDS",
        "ID",
        "SETNAME",
        "AUTH",
        "default",
        "ON",
        "OFF",
        "YES",
        "NO",
        "RANK",
        "MAXLEN",
        "NOMKSTREAM",
        "IDX",
        "LEN",
        "MINMATCHLEN",
        "WITHMATCHLEN",
        "BYLEX",
        "BYSCORE",
        "REV",
        "WITHCODE",
        "FULL",
        "JUSTID",
        "FORCE",
        "RETRYCOUNT",
        "IDLE",
        "TIME",
        "MKSTREAM",
        "ENTRIESREAD",
        "SCHEDULE",
    ];
    const NUMBERS: &[&str] = &[
        "0",
        "1",
        "2",
        "3",
        "-1",
        "-2",
        "10",
        "100",
        "1.5",
        "-0.5",
        "inf",
        "-inf",
        "+inf",
        "nan",
        "99999999999999999999",
        "-99999999999999999999",
        "1e3",
        "0x10",
        "007",
        " 1",
        "",
    ];
    const SCRIPTS: &[&str] = &[
        "return 1",
        "return redis.call('get', KEYS[1])",
        "return {1, 'a', {2, false}}",
        "return redis.error_reply('E')",
        "error('boom')",
        "#!lua name=fz\nredis.register_function('f', function(k, a) return 1 end)",
    ];
    let (cmd, words) = rng.pick(commands);
    let mut line: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
    let min = cmd.arity.unsigned_abs() as usize;
    let argc = match rng.below(10) {
        0 => rng.below(8) + 1,                    // any count, often wrong
        1..=6 => min.max(line.len()),             // the least the arity allows
        _ if cmd.arity < 0 => min + rng.below(9), // more, for variadic commands
        _ => min.max(line.len()),
    }
    .min(24);
    let keywords: Vec<&str> = cmd
        .key_specs
        .iter()
        .filter_map(|s| match s.begin {
            BeginSearch::Keyword { keyword, .. } => Some(keyword),
            _ => None,
        })
        .collect();
    while line.len() < argc {
        let arg: Vec<u8> = match rng.below(12) {
            0..=3 => format!("{p}k{}", rng.below(6)).into_bytes(), // keys in several slots
            4 => format!("{p}{{h}}k{}", rng.below(3)).into_bytes(), // keys in one slot
            5 | 6 => rng.pick(NUMBERS).as_bytes().to_vec(),
            7 | 8 => rng.pick(WORDS).as_bytes().to_vec(),
            9 if !keywords.is_empty() => rng.pick(&keywords).as_bytes().to_vec(),
            9 => rng.pick(SCRIPTS).as_bytes().to_vec(),
            10 => (0..rng.below(12)).map(|_| rng.next() as u8).collect(),
            _ => rng
                .pick(&["*", "", "\r\n", "{", "}", "{}", "\0"])
                .as_bytes()
                .to_vec(),
        };
        line.push(arg);
    }
    line
}

/// How long the fuzz runs: `SLOTGATE_WIRE_FUZZ_SECS`, default 20.
fn fuzz_duration() -> Duration {
    let secs = std::env::var("SLOTGATE_WIRE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

#[test]
fn random_well_framed_commands_never_panic() {
    let proxy = proxy();
    let port = proxy.port();
    let seed = std::env::var("SLOTGATE_WIRE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("wire fuzz seed {seed} (SLOTGATE_WIRE_FUZZ_SEED={seed} repeats it)");
    let commands = Arc::new(fuzz_commands());
    let prefix = unique_key_prefix("fuzz");
    let end = Instant::now() + fuzz_duration();
    let frames = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let (commands, prefix) = (Arc::clone(&commands), prefix.clone());
            let (frames, connections) = (Arc::clone(&frames), Arc::clone(&connections));
            std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_add(t.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
                let mut sink = vec![0u8; 64 * 1024];
                while Instant::now() < end {
                    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
                    let batch = 1 + rng.below(16);
                    let mut wire = Vec::new();
                    for _ in 0..batch {
                        wire.extend(slotgate_tests::probe::encode(&random_command(
                            &mut rng, &commands, &prefix,
                        )));
                    }
                    if stream.write_all(&wire).is_err() {
                        continue;
                    }
                    frames.fetch_add(batch as u64, Ordering::Relaxed);
                    // Read until every request has a reply, the connection closes (QUIT), or
                    // replies stop for the read timeout (a blocking command); the next batch
                    // opens a new connection.
                    let (mut buf, mut scanner, mut replies) =
                        (BytesMut::new(), ReplyScanner::new(), 0);
                    while replies < batch {
                        match stream.read(&mut sink) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&sink[..n]),
                        }
                        loop {
                            match scanner.scan(&mut buf) {
                                Ok(Some(_)) => replies += 1,
                                Ok(None) => break,
                                Err(e) => {
                                    panic!("seed {seed}: slotgate sent a malformed reply: {e}")
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (frames, connections) = (
        frames.load(Ordering::Relaxed),
        connections.load(Ordering::Relaxed),
    );
    eprintln!("wire fuzz: {frames} frames over {connections} connections");
    assert!(
        frames > 1000,
        "the fuzz sent too little to mean anything: {frames} frames"
    );
    let mut c = RawConn::connect(port);
    c.roundtrip(&[b"PING"], b"+PONG\r\n");
    let log = proxy.log();
    assert!(
        !log.contains("panic"),
        "seed {seed}: slotgate logged a panic:\n{}",
        log.lines()
            .filter(|l| l.contains("panic"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(scrape_panics(), 0.0, "seed {seed}");
}
