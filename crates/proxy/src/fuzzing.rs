//! The whole request path under a fuzzer: any sequence of command lines, built from the real
//! command table's names and subcommands plus arbitrary arguments, driven through the
//! session's routing (auth-less), the routing families, the reply entries, the ops and the
//! upstream connections, against two scripted fake nodes on loopback ports that answer like
//! Redis might: plain replies, nested arrays, errors, MOVED and ASK to each other, TRYAGAIN,
//! CLUSTERDOWN, LOADING, NOSCRIPT, or a closed connection.
//!
//! Checked for every input: nothing panics; every request gets exactly one well-formed reply,
//! in order (a Pub/Sub request relayed to its link writes none; QUIT and protocol errors end
//! the connection); every frame slotgate sends a node is a well-formed RESP command.
//!
//! `fuzz/fuzz_targets/request_path.rs` calls [`request_path`]; a test runs the kept corpus
//! through it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_resp::{encode, ReplyScanner, RequestDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::Config;
use crate::runtime::context::{Shared, WorkerCtx};
use crate::session::client::ClientState;
use crate::session::dispatch::route_command;
use crate::session::entry::Entry;
use crate::telemetry::metrics::Metrics;
use crate::upstream::topology::Topology;

/// What a fake node does with one command: decided by the script bytes of the input.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Reply(u8),
    Close,
}

/// The answers still to give, shared by both fake nodes (when none is left: `+OK`).
type Script = Rc<RefCell<std::collections::VecDeque<Answer>>>;

thread_local! {
    /// A fake node decoded a frame that is not a well-formed command (checked after a run:
    /// the node's task cannot fail the run itself).
    static MALFORMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A scripted node: accepts connections and answers every command it decodes. A frame it
/// cannot decode is a bug in slotgate (it only sends what it means to), so it panics.
async fn fake_node(script: Script, other: Rc<RefCell<String>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::task::spawn_local(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (script, other) = (Rc::clone(&script), Rc::clone(&other));
            tokio::task::spawn_local(async move {
                let mut decoder = RequestDecoder::new(Default::default());
                let mut buf = BytesMut::new();
                loop {
                    loop {
                        let req = match decoder.decode(&mut buf) {
                            Ok(Some(req)) => req,
                            Ok(None) => break,
                            Err(_) => {
                                MALFORMED.with(|m| m.set(true));
                                return;
                            }
                        };
                        let name = req.arg(0).to_ascii_uppercase();
                        let answer = if name == b"ASKING" {
                            Answer::Reply(0)
                        } else {
                            script.borrow_mut().pop_front().unwrap_or(Answer::Reply(0))
                        };
                        let bytes = match answer {
                            Answer::Reply(kind) => reply_bytes(kind, &other.borrow()),
                            Answer::Close => return,
                        };
                        if stream.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

/// The reply of kind `kind` (its low bits pick one; the rest pick a slot for redirects).
fn reply_bytes(kind: u8, other: &str) -> Vec<u8> {
    let slot = u16::from(kind) * 64;
    match kind % 14 {
        0 => b"+OK\r\n".to_vec(),
        1 => b":1\r\n".to_vec(),
        2 => b"$3\r\nabc\r\n".to_vec(),
        3 => b"$-1\r\n".to_vec(),
        4 => b"*2\r\n$1\r\na\r\n$-1\r\n".to_vec(),
        5 => b"*2\r\n*1\r\n:1\r\n*2\r\n$1\r\nx\r\n*0\r\n".to_vec(),
        6 => b"-ERR fuzz\r\n".to_vec(),
        7 => format!("-MOVED {slot} {other}\r\n").into_bytes(),
        8 => format!("-ASK {slot} {other}\r\n").into_bytes(),
        9 => b"-TRYAGAIN fuzz\r\n".to_vec(),
        10 => b"-CLUSTERDOWN fuzz\r\n".to_vec(),
        11 => b"-LOADING fuzz\r\n".to_vec(),
        12 => b"-NOSCRIPT fuzz\r\n".to_vec(),
        _ => b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n".to_vec(),
    }
}

/// The fuzzing world of one thread: a runtime, two fake nodes, a worker context.
struct World {
    rt: tokio::runtime::Runtime,
    local: tokio::task::LocalSet,
    ctx: Rc<WorkerCtx>,
    script: Script,
    nodes: [String; 2],
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        let script: Script = Rc::default();
        let (to_b, to_a) = (
            Rc::new(RefCell::new(String::new())),
            Rc::new(RefCell::new(String::new())),
        );
        let (a, b) = local.block_on(&rt, async {
            let a = fake_node(Rc::clone(&script), Rc::clone(&to_b)).await;
            let b = fake_node(Rc::clone(&script), Rc::clone(&to_a)).await;
            (a, b)
        });
        *to_b.borrow_mut() = b.clone();
        *to_a.borrow_mut() = a.clone();
        let mut cfg = Config::new("127.0.0.1:0".parse().expect("addr"), vec![a.clone()]);
        cfg.upstream.op_timeout = Duration::from_millis(200);
        cfg.upstream.max_redirects = 3;
        let metrics = Arc::new(Metrics::new(true));
        let topology = Topology::new(cfg.upstream.clone(), Arc::clone(&metrics), None, None);
        let shared = Arc::new(Shared::new(metrics, None, 1 << 30));
        let ctx = Rc::new(WorkerCtx::new(Arc::new(cfg), Arc::new(topology), shared));
        World {
            rt,
            local,
            ctx,
            script,
            nodes: [a, b],
        }
    }

    /// Slots 0..8191 on node A, the rest on B.
    fn reset_map(&self) {
        let wire = format!(
            "*2\r\n*3\r\n:0\r\n:8191\r\n*2\r\n$9\r\n127.0.0.1\r\n:{}\r\n*3\r\n:8192\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:{}\r\n",
            port(&self.nodes[0]),
            port(&self.nodes[1])
        );
        let (value, _) = slotgate_resp::parse_value(wire.as_bytes())
            .expect("valid")
            .expect("complete");
        let map =
            slotgate_cluster::SlotMap::from_cluster_slots(&value, "127.0.0.1:1").expect("map");
        self.ctx.topology.install_map(map);
    }
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("0", |(_, p)| p)
}

/// Commands the fuzzer may send: every command and subcommand but those that wait without
/// bound on a fake node (WAIT counts replicas that never acknowledge).
fn names() -> &'static [Vec<&'static str>] {
    static NAMES: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut out = Vec::new();
        for cmd in slotgate_commands::all() {
            if matches!(cmd.name, "wait" | "waitaof") {
                continue;
            }
            out.push(vec![cmd.name]);
            for sub in cmd.subcommands {
                let (container, name) = sub.name.split_once('|').unwrap_or((cmd.name, sub.name));
                out.push(vec![container, name]);
            }
        }
        out
    })
}

/// Run one input: the first byte's half picks how many script bytes follow (the fake nodes'
/// answers, in order); the rest is command lines separated by `\n`, arguments by spaces, the
/// first byte of each line picking the command from the table.
pub fn request_path(data: &[u8]) {
    crate::telemetry::panics::install_hook();
    thread_local! {
        static WORLD: World = World::new();
    }
    WORLD.with(|world| world.run(data));
}

impl World {
    fn run(&self, data: &[u8]) {
        let Some((&head, rest)) = data.split_first() else {
            return;
        };
        let n_script = usize::from(head % 32).min(rest.len());
        let (script_bytes, lines) = rest.split_at(n_script);
        {
            let mut script = self.script.borrow_mut();
            script.clear();
            script.extend(script_bytes.iter().map(|&b| {
                if b == 0xff {
                    Answer::Close
                } else {
                    Answer::Reply(b)
                }
            }));
        }
        self.reset_map();
        let mut wires = Vec::new();
        for line in lines.split(|&b| b == b'\n').take(16) {
            let [a, b, args @ ..] = line else {
                continue;
            };
            let names = names();
            let name = &names[usize::from(u16::from_le_bytes([*a, *b])) % names.len()];
            let mut argv: Vec<&[u8]> = name.iter().map(|n| n.as_bytes()).collect();
            argv.extend(
                args.split(|&b| b == b' ')
                    .filter(|a| !a.is_empty())
                    .take(12),
            );
            let mut wire = BytesMut::new();
            encode::command(&mut wire, &argv);
            wires.push(wire.freeze());
        }
        if wires.is_empty() {
            return;
        }
        let ctx = Rc::clone(&self.ctx);
        let panics = crate::telemetry::panics::PANICS.get();
        self.local
            .block_on(&self.rt, async move { drive(&ctx, wires).await });
        assert!(
            !MALFORMED.with(|m| m.replace(false)),
            "slotgate sent a node a malformed frame"
        );
        assert_eq!(
            crate::telemetry::panics::PANICS.get(),
            panics,
            "a task panicked (see the message above)"
        );
    }
}

/// Route every request like a session and drive its entry to its reply, in order.
async fn drive(ctx: &WorkerCtx, wires: Vec<Bytes>) {
    let peer = "127.0.0.1:9".parse().expect("addr");
    let mut client = ClientState::new(1, peer, peer, None, ctx.client_budget());
    let mut decoder = RequestDecoder::new(Default::default());
    let mut input = BytesMut::new();
    for wire in &wires {
        input.extend_from_slice(wire);
    }
    let mut queue = Vec::new();
    while let Ok(Some(req)) = decoder.decode(&mut input) {
        let deadline = Instant::now() + ctx.cfg.upstream.op_timeout;
        let mut index = 0;
        let entry = route_command(ctx, &mut client, req, deadline, &mut index);
        let closes = matches!(entry, Entry::Close(_));
        queue.push(entry);
        if closes {
            break;
        }
    }
    assert!(
        input.is_empty() || matches!(queue.last(), Some(Entry::Close(_))),
        "every request routed"
    );
    for mut entry in queue {
        let started = Instant::now();
        loop {
            if entry.poll_sync(ctx, Instant::now()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "an entry never finished"
            );
            let due = entry.deadline();
            tokio::select! {
                (index, event) = entry.next_event() => entry.on_event(ctx, index, event),
                () = sleep_until_opt(due) => entry.on_timeout(ctx, Instant::now()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let relayed = matches!(entry, Entry::Relayed);
        let mut out = BytesMut::new();
        let (_, close) = entry.write_reply(&mut out);
        if relayed {
            assert!(out.is_empty(), "a relayed request writes nothing itself");
        } else {
            let mut frames = out.clone();
            let mut scanner = ReplyScanner::new();
            match scanner.scan(&mut frames) {
                Ok(Some(_)) => {}
                other => panic!("not one reply: {other:?} in {out:?}"),
            }
            assert!(frames.is_empty(), "more than one reply: {out:?}");
        }
        if close {
            break;
        }
    }
    // Let the connections' tasks and links settle before the next input.
    drop(client);
    tokio::task::yield_now().await;
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
