//! Test fixtures shared by the engine's unit tests: a topology with a given slot map, the
//! metrics registry, reply frames.

use std::sync::Arc;

use bytes::BytesMut;
use slotgate_cluster::SlotMap;
use slotgate_resp::{Reply, ReplyScanner};

use crate::config::UpstreamConfig;
use crate::telemetry::metrics::Metrics;
use crate::upstream::topology::Topology;

/// A slot map from `(first slot, last slot, "host:port")` ranges, as `CLUSTER SLOTS` would
/// give it.
pub(crate) fn slot_map(ranges: &[(u16, u16, &str)]) -> SlotMap {
    let mut wire = format!("*{}\r\n", ranges.len());
    for (first, last, addr) in ranges {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        wire.push_str(&format!(
            "*3\r\n:{first}\r\n:{last}\r\n*2\r\n${}\r\n{host}\r\n:{port}\r\n",
            host.len()
        ));
    }
    let (value, _) = slotgate_resp::parse_value(wire.as_bytes())
        .expect("valid RESP")
        .expect("complete");
    SlotMap::from_cluster_slots(&value, "127.0.0.1:1").expect("a valid slot map")
}

/// A topology serving `ranges` (see [`slot_map`]), never refreshed, and its metrics.
pub(crate) fn topology(ranges: &[(u16, u16, &str)]) -> (Arc<Topology>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(true));
    let topology = Topology::new(UpstreamConfig::default(), Arc::clone(&metrics), None, None);
    topology.install_map(slot_map(ranges));
    (Arc::new(topology), metrics)
}

/// A client's output budget with the default limits, in a process budget of its own.
pub(crate) fn budget() -> std::rc::Rc<crate::runtime::budget::OutputBudget> {
    use crate::runtime::budget::{OutputBudget, ProcessBudget, WorkerBudget};
    let limits = crate::config::LimitsConfig::default();
    let worker = WorkerBudget::new(Arc::new(ProcessBudget::new(limits.max_buffered)));
    OutputBudget::new(&worker, limits.client_output_soft, limits.max_client_output)
}

/// One reply frame from its RESP bytes.
pub(crate) fn reply(wire: &str) -> Reply {
    let mut buf = BytesMut::from(wire.as_bytes());
    ReplyScanner::new()
        .scan(&mut buf)
        .expect("valid RESP")
        .expect("a whole frame")
}

/// `(connection number, arguments)` of every command a [`FakeNode`] read, in order.
pub(crate) type Seen = std::rc::Rc<std::cell::RefCell<Vec<(usize, Vec<String>)>>>;

/// What a [`FakeNode`] does with one command it read.
pub(crate) enum Answer {
    /// Write these bytes.
    Reply(Vec<u8>),
    /// Close the connection without answering (the command may have run).
    Close,
    /// Never answer (a hung node).
    Silence,
}

/// A scripted Redis node on a loopback port: it accepts any number of connections and
/// answers every command (a RESP array) with what its script says. Runs on the current
/// `LocalSet`; every command it read is kept, in order, with the connection's number.
pub(crate) struct FakeNode {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// `(connection number, arguments)` of every command read, in order.
    pub seen: Seen,
}

/// Start a [`FakeNode`] answering with `script(args)`.
pub(crate) async fn fake_node(script: impl FnMut(&[String]) -> Answer + 'static) -> FakeNode {
    use std::cell::RefCell;
    use std::rc::Rc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Seen = Rc::default();
    let script = Rc::new(RefCell::new(script));
    let log = Rc::clone(&seen);
    tokio::task::spawn_local(async move {
        let mut conn_no = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            conn_no += 1;
            let (script, log, no) = (Rc::clone(&script), Rc::clone(&log), conn_no);
            tokio::task::spawn_local(async move {
                let mut decoder = slotgate_resp::RequestDecoder::new(Default::default());
                let mut buf = BytesMut::new();
                loop {
                    while let Ok(Some(req)) = decoder.decode(&mut buf) {
                        let args: Vec<String> = req
                            .args()
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect();
                        log.borrow_mut().push((no, args.clone()));
                        let answer = (script.borrow_mut())(&args);
                        match answer {
                            Answer::Reply(bytes) => {
                                if stream.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Answer::Close => return,
                            Answer::Silence => {}
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
    FakeNode { addr, seen }
}

impl FakeNode {
    /// How many connections the commands read so far came over.
    pub fn connections(&self) -> usize {
        let mut conns: Vec<usize> = self.seen.borrow().iter().map(|(c, _)| *c).collect();
        conns.sort_unstable();
        conns.dedup();
        conns.len()
    }

    /// The commands read so far, each as its arguments joined by spaces.
    pub fn commands(&self) -> Vec<String> {
        self.seen
            .borrow()
            .iter()
            .map(|(_, a)| a.join(" "))
            .collect()
    }
}

/// A worker context whose slot map is `ranges` (see [`slot_map`]), with `op_timeout` and
/// at most 3 redirects; nothing is connected yet.
pub(crate) fn worker_ctx(
    ranges: &[(u16, u16, &str)],
    op_timeout: std::time::Duration,
) -> crate::runtime::context::WorkerCtx {
    let seeds = ranges.iter().map(|(_, _, a)| a.to_string()).collect();
    let mut cfg = crate::config::Config::new("127.0.0.1:0".parse().unwrap(), seeds);
    cfg.upstream.op_timeout = op_timeout;
    cfg.upstream.max_redirects = 3;
    let metrics = Arc::new(Metrics::new(true));
    let topology = Topology::new(cfg.upstream.clone(), Arc::clone(&metrics), None, None);
    topology.install_map(slot_map(ranges));
    let shared = Arc::new(crate::runtime::context::Shared::new(metrics, None, 1 << 30));
    crate::runtime::context::WorkerCtx::new(Arc::new(cfg), Arc::new(topology), shared)
}

/// Route each command line through the session's dispatcher for `client` and drive its
/// reply-queue entry to the end, as the session does: the replies, in order.
pub(crate) async fn replies_of(
    ctx: &crate::runtime::context::WorkerCtx,
    client: &mut crate::session::client::ClientState,
    lines: &[&[&str]],
) -> Vec<String> {
    use tokio::time::Instant;
    let mut out = Vec::new();
    for line in lines {
        let req = slotgate_resp::Request::from_args(line);
        let deadline = Instant::now() + ctx.cfg.upstream.op_timeout;
        let mut index = 0;
        let mut entry =
            crate::session::dispatch::route_command(ctx, client, req, deadline, &mut index);
        while !entry.poll_sync(ctx, Instant::now()) {
            let due = entry.deadline();
            tokio::select! {
                (i, event) = entry.next_event() => entry.on_event(ctx, i, event),
                () = async {
                    match due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => entry.on_timeout(ctx, Instant::now()),
            }
        }
        let mut buf = BytesMut::new();
        entry.write_reply(&mut buf);
        out.push(String::from_utf8_lossy(&buf).into_owned());
    }
    out
}

/// Runs `test` on a current-thread runtime inside a `LocalSet` (the worker's connections are
/// local tasks).
pub(crate) fn local<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, test());
}
