//! `CLIENT TRACKING` (server-assisted client-side caching) end to end, differentially: each
//! scenario runs against a standalone redis-server the test starts (the reference) and
//! against slotgate in front of the shared cluster, and both must show the same
//! invalidations: the same keys, in the same order where Redis defines one, and nothing where
//! Redis sends nothing. Frames are read raw (RESP2 and RESP3), so a test sees every push and
//! where it falls among the replies.
//!
//! "Nothing else arrived" is never a timed wait: a *fence* key under the same hash tag (so on
//! the same node) is tracked, then written on that node after everything else; its
//! invalidation comes after every earlier one, and whatever arrived before it is the rest.
//!
//! The `redis` variants check each scenario against Redis, so a scenario's expectations are
//! Redis's own; the slotgate variants (`<scenario>::slotgate`, `*_slotgate`) run it through
//! slotgate. redis-py's client-side cache runs both ways too (`redis_py_client_side_cache`).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use slotgate_tests::clients::{self, Runtime};
use slotgate_tests::cluster::cluster_server_binary;
use slotgate_tests::process::{run_captured, GuardedChild};
use slotgate_tests::{
    free_port, shared_cluster, shared_proxy, unique_key_prefix, wait_until, ClusterOptions,
    ProxyConfig, RedisCluster, Slotgate,
};

/// How long an expected invalidation may take to arrive.
const DEADLINE: Duration = Duration::from_secs(5);
/// How long the rest of a frame may take once its first byte arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

// === RESP frames ===

/// One RESP2 or RESP3 frame, as sent (attributes are skipped).
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    /// `+OK`
    Simple(String),
    /// `-ERR …` without the `-`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3\r\nabc` (as text: these tests use text keys and values)
    Bulk(String),
    /// RESP3 `_`
    Null,
    /// RESP2 `$-1`
    NilBulk,
    /// RESP2 `*-1`
    NilArray,
    /// `*…`
    Array(Vec<Frame>),
    /// `~…`
    Set(Vec<Frame>),
    /// `%…`
    Map(Vec<(Frame, Frame)>),
    /// `>…`
    Push(Vec<Frame>),
    /// Doubles, booleans, big numbers, verbatim strings: the type byte and the line.
    Other(String),
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.to_string())
}

fn simple(s: &str) -> Frame {
    Frame::Simple(s.to_string())
}

/// Reads `n` frames.
fn parse_frames(r: &mut dyn BufRead, n: i64) -> std::io::Result<Vec<Frame>> {
    (0..n).map(|_| parse_frame(r)).collect()
}

/// Reads one frame (nested aggregates included).
fn parse_frame(r: &mut dyn BufRead) -> std::io::Result<Frame> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") || line.len() < 3 {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("truncated line {:?}", String::from_utf8_lossy(&line)),
        ));
    }
    line.truncate(line.len() - 2);
    let text = String::from_utf8_lossy(&line[1..]).into_owned();
    let len = || -> std::io::Result<i64> {
        text.parse().map_err(|_| {
            std::io::Error::new(ErrorKind::InvalidData, format!("bad length {text:?}"))
        })
    };
    Ok(match line[0] {
        b'+' => Frame::Simple(text),
        b'-' => Frame::Error(text),
        b':' => Frame::Int(len()?),
        b'_' => Frame::Null,
        b'$' if len()? < 0 => Frame::NilBulk,
        b'*' if len()? < 0 => Frame::NilArray,
        b'$' | b'=' => {
            let mut body = vec![0; len()? as usize + 2];
            r.read_exact(&mut body)?;
            body.truncate(body.len() - 2);
            if line[0] == b'$' {
                Frame::Bulk(String::from_utf8_lossy(&body).into_owned())
            } else {
                Frame::Other(format!("={}", String::from_utf8_lossy(&body)))
            }
        }
        b'*' => Frame::Array(parse_frames(r, len()?)?),
        b'~' => Frame::Set(parse_frames(r, len()?)?),
        b'>' => Frame::Push(parse_frames(r, len()?)?),
        b'%' => {
            let mut it = parse_frames(r, len()? * 2)?.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Frame::Map(pairs)
        }
        b'|' => {
            parse_frames(r, len()? * 2)?;
            parse_frame(r)?
        }
        other => Frame::Other(format!("{}{text}", other as char)),
    })
}

/// What one invalidation message says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inval {
    /// These keys changed.
    Keys(Vec<String>),
    /// Everything changed (null keys: a flush, or state the server lost).
    Flush,
}

/// The invalidation in `frame`: a RESP3 push `>2 invalidate keys|_` or a RESP2 Pub/Sub
/// `message` on `__redis__:invalidate`.
fn invalidation(frame: &Frame) -> Option<Inval> {
    let payload = match frame {
        Frame::Push(items) if items.len() == 2 && items[0] == bulk("invalidate") => &items[1],
        Frame::Array(items)
            if items.len() == 3
                && items[0] == bulk("message")
                && items[1] == bulk("__redis__:invalidate") =>
        {
            &items[2]
        }
        _ => return None,
    };
    match payload {
        Frame::Null | Frame::NilBulk | Frame::NilArray => Some(Inval::Flush),
        Frame::Array(keys) => Some(Inval::Keys(
            keys.iter()
                .map(|k| match k {
                    Frame::Bulk(b) => b.clone(),
                    other => panic!("invalidated key is not a bulk string: {other:?}"),
                })
                .collect(),
        )),
        other => panic!("invalidation payload {other:?}"),
    }
}

fn keys(list: &[&str]) -> Inval {
    Inval::Keys(list.iter().map(|k| k.to_string()).collect())
}

// === impl Conn ===

/// A TCP (slotgate, cluster nodes) or Unix-socket (the reference server) stream.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, d: Duration) {
        let d = Some(d.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Unix(s) => s.set_read_timeout(d),
        }
        .expect("set read timeout");
    }

    fn try_clone(&self) -> Stream {
        match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone().expect("clone stream")),
            Stream::Unix(s) => Stream::Unix(s.try_clone().expect("clone stream")),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A raw connection that keeps pushes which arrive while it waits for a reply, in order.
struct Conn {
    name: String,
    reader: BufReader<Stream>,
    writer: Stream,
    pushes: VecDeque<Frame>,
}

impl Conn {
    fn new(name: String, stream: Stream) -> Conn {
        Conn {
            name,
            reader: BufReader::new(stream.try_clone()),
            writer: stream,
            pushes: VecDeque::new(),
        }
    }

    fn send(&mut self, args: &[&str]) {
        let wire = slotgate_tests::probe::encode(args);
        self.writer
            .write_all(&wire)
            .unwrap_or_else(|e| panic!("{}: write {args:?}: {e}", self.name));
    }

    /// The next frame; `Ok(None)` if nothing starts within `within`; `Err` when the peer
    /// closed or reset the connection.
    fn try_read(&mut self, within: Duration) -> std::io::Result<Option<Frame>> {
        if self.reader.buffer().is_empty() {
            self.reader.get_ref().set_read_timeout(within);
            match self.reader.fill_buf() {
                Ok([]) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        self.reader.get_ref().set_read_timeout(FRAME_TIMEOUT);
        parse_frame(&mut self.reader).map(Some)
    }

    /// The next frame, `None` if nothing starts within `within`.
    fn read(&mut self, within: Duration) -> Option<Frame> {
        self.try_read(within)
            .unwrap_or_else(|e| panic!("{}: read: {e}", self.name))
    }

    /// The next frame that is not a push (pushes are kept for [`Conn::next_push`]).
    fn reply(&mut self) -> Frame {
        loop {
            match self.read(FRAME_TIMEOUT) {
                Some(Frame::Push(p)) => self.pushes.push_back(Frame::Push(p)),
                Some(frame) => return frame,
                None => panic!("{}: no reply within {FRAME_TIMEOUT:?}", self.name),
            }
        }
    }

    fn call(&mut self, args: &[&str]) -> Frame {
        self.send(args);
        self.reply()
    }

    /// Sends several commands in one write.
    fn send_pipeline(&mut self, commands: &[&[&str]]) {
        let wire: Vec<u8> = commands
            .iter()
            .flat_map(|args| slotgate_tests::probe::encode(args))
            .collect();
        self.writer
            .write_all(&wire)
            .unwrap_or_else(|e| panic!("{}: write: {e}", self.name));
    }

    fn ok(&mut self, args: &[&str]) {
        let reply = self.call(args);
        assert_eq!(reply, simple("OK"), "{}: {args:?}", self.name);
    }

    /// The error text of `args`' reply.
    fn error(&mut self, args: &[&str]) -> String {
        match self.call(args) {
            Frame::Error(e) => e,
            other => panic!("{}: {args:?} answered {other:?}, not an error", self.name),
        }
    }

    /// The next push (RESP3) or Pub/Sub message (RESP2 subscriber), within `within`.
    fn next_push(&mut self, within: Duration) -> Option<Frame> {
        if let Some(p) = self.pushes.pop_front() {
            return Some(p);
        }
        self.read(within)
    }

    /// The next invalidation within `within`; any other push is a failure.
    fn next_invalidation(&mut self, within: Duration) -> Option<Inval> {
        let frame = self.next_push(within)?;
        let inval = invalidation(&frame);
        assert!(
            inval.is_some(),
            "{}: expected an invalidation, got {frame:?}",
            self.name
        );
        inval
    }

    /// The next invalidation; a failure if none arrives within [`DEADLINE`].
    fn expect_invalidation(&mut self, what: &str) -> Inval {
        self.next_invalidation(DEADLINE).unwrap_or_else(|| {
            panic!(
                "{}: no invalidation within {DEADLINE:?} ({what})",
                self.name
            )
        })
    }
}

// === impl Target ===

/// A standalone redis-server on a Unix socket in a directory of its own (and on a TCP port,
/// for clients that cache only over TCP, as redis-py does).
struct Reference {
    socket: PathBuf,
    port: u16,
    process: GuardedChild,
    _dir: tempfile::TempDir,
}

impl Reference {
    fn start() -> Reference {
        let dir = tempfile::Builder::new()
            .prefix("slotgate-tracking-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("redis.sock");
        let port = free_port();
        let mut cmd = Command::new(cluster_server_binary());
        cmd.args(["--port", &port.to_string(), "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = GuardedChild::spawn(&mut cmd).expect("start redis-server");
        assert!(
            wait_until(Duration::from_secs(10), || UnixStream::connect(&socket)
                .is_ok()),
            "redis-server did not listen on {} within 10 s",
            socket.display()
        );
        Reference {
            socket,
            port,
            process,
            _dir: dir,
        }
    }
}

/// Every slotgate variant holds this shared; the FLUSHALL scenario holds it alone, so it
/// flushes no data and sends no flush that another test of this binary is looking at.
static SHARED_CLUSTER_USE: RwLock<()> = RwLock::new(());

#[allow(dead_code)] // the guards are held, never read
enum ClusterUse {
    None,
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

enum Proxy {
    Shared(&'static Slotgate),
    Own(Slotgate),
}

enum Kind {
    Redis(Reference),
    Slotgate {
        proxy: Proxy,
        cluster: &'static RedisCluster,
    },
}

/// What a scenario runs against: the reference server, or slotgate and its cluster.
struct Target {
    kind: Kind,
    _use: ClusterUse,
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

impl Target {
    fn redis() -> Target {
        Target {
            kind: Kind::Redis(Reference::start()),
            _use: ClusterUse::None,
        }
    }

    fn slotgate() -> Target {
        let guard = SHARED_CLUSTER_USE.read().unwrap_or_else(|e| e.into_inner());
        Target {
            kind: Kind::Slotgate {
                proxy: Proxy::Shared(shared_proxy()),
                cluster: shared_cluster(),
            },
            _use: ClusterUse::Shared(guard),
        }
    }

    fn slotgate_alone() -> Target {
        let guard = SHARED_CLUSTER_USE
            .write()
            .unwrap_or_else(|e| e.into_inner());
        Target {
            kind: Kind::Slotgate {
                proxy: Proxy::Shared(shared_proxy()),
                cluster: shared_cluster(),
            },
            _use: ClusterUse::Alone(guard),
        }
    }

    /// slotgate with `config` (made for the shared cluster's seeds).
    fn slotgate_with(config: impl FnOnce(ProxyConfig) -> ProxyConfig) -> Target {
        let guard = SHARED_CLUSTER_USE.read().unwrap_or_else(|e| e.into_inner());
        let cluster = shared_cluster();
        Target {
            kind: Kind::Slotgate {
                proxy: Proxy::Own(config(ProxyConfig::new(&cluster.seeds())).spawn()),
                cluster,
            },
            _use: ClusterUse::Shared(guard),
        }
    }

    fn is_reference(&self) -> bool {
        matches!(self.kind, Kind::Redis(_))
    }

    fn proxy(&self) -> &Slotgate {
        match &self.kind {
            Kind::Slotgate {
                proxy: Proxy::Shared(p),
                ..
            } => p,
            Kind::Slotgate {
                proxy: Proxy::Own(p),
                ..
            } => p,
            Kind::Redis(_) => panic!("the reference has no proxy"),
        }
    }

    fn tcp(name: String, port: u16) -> Conn {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).ok();
        Conn::new(name, Stream::Tcp(stream))
    }

    fn unix(name: String, reference: &Reference) -> Conn {
        let stream = UnixStream::connect(&reference.socket).expect("connect to redis-server");
        Conn::new(name, Stream::Unix(stream))
    }

    fn label(&self, what: &str) -> String {
        let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let side = if self.is_reference() {
            "redis"
        } else {
            "slotgate"
        };
        format!("{side} {what} #{n}")
    }

    /// A fresh RESP2 client connection (to slotgate, or to the reference).
    fn connect(&self) -> Conn {
        let name = self.label("client");
        match &self.kind {
            Kind::Redis(r) => Self::unix(name, r),
            Kind::Slotgate { .. } => Self::tcp(name, self.proxy().port()),
        }
    }

    /// A fresh client connection after `HELLO 3`.
    fn resp3(&self) -> Conn {
        let mut c = self.connect();
        let hello = c.call(&["HELLO", "3"]);
        assert!(matches!(hello, Frame::Map(_)), "HELLO 3: {hello:?}");
        c
    }

    /// A fresh RESP3 connection as `user`.
    fn resp3_as(&self, user: &str, password: &str) -> Conn {
        let mut c = self.connect();
        let hello = c.call(&["HELLO", "3", "AUTH", user, password]);
        assert!(
            matches!(hello, Frame::Map(_)),
            "HELLO 3 AUTH {user}: {hello:?}"
        );
        c
    }

    /// A connection straight to the server that holds `key` (for the reference, the server).
    fn direct(&self, key: &str) -> Conn {
        let name = self.label("node writer");
        match &self.kind {
            Kind::Redis(r) => Self::unix(name, r),
            Kind::Slotgate { cluster, .. } => {
                let port = cluster.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
                Self::tcp(format!("{name} (:{port})"), port)
            }
        }
    }

    /// A writer for `key`: through the front (slotgate, or the reference) or on its node.
    fn writer(&self, on_node: bool, key: &str) -> Conn {
        if on_node {
            self.direct(key)
        } else {
            self.connect()
        }
    }
}

/// A hash tag no other test uses: `{name:pid:n}`.
fn tag(name: &str) -> String {
    format!("{{{}}}", unique_key_prefix(name).trim_end_matches(':'))
}

// === fences ===

/// How a fence key gets tracked.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Default or OPTOUT mode: a read.
    Read,
    /// OPTIN: `CLIENT CACHING yes`, then a read.
    OptIn,
    /// BCAST: nothing (the fence key is under the prefix).
    Bcast,
}

/// A fresh key under `prefix` (which starts with the scenario's hash tag).
fn fence_key(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}fence:{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Makes `tracker` track a new fence key under `prefix` and returns it.
fn arm_fence(tracker: &mut Conn, mode: Mode, prefix: &str) -> String {
    let key = fence_key(prefix);
    match mode {
        Mode::Read => {
            tracker.call(&["GET", &key]);
        }
        Mode::OptIn => {
            tracker.ok(&["CLIENT", "CACHING", "yes"]);
            tracker.call(&["GET", &key]);
        }
        Mode::Bcast => {}
    }
    key
}

/// Writes `key` on its node, then returns every invalidation `receiver` got before the one
/// naming `key` (and the other keys of that one).
fn fire_fence(t: &Target, receiver: &mut Conn, key: &str) -> Vec<Inval> {
    t.direct(key).ok(&["SET", key, "fence"]);
    invalidations_until(receiver, key)
}

/// Every invalidation `receiver` gets before the one naming `key` (and the other keys of
/// that one). A flush covers `key` too, and ends the wait: through slotgate a FLUSHALL is
/// reported by every primary, and a late report flushes a fence read after the first one.
fn invalidations_until(receiver: &mut Conn, key: &str) -> Vec<Inval> {
    let mut before = Vec::new();
    loop {
        match receiver.next_invalidation(DEADLINE) {
            None => panic!(
                "{}: the fence {key} was never invalidated; before it: {before:?}",
                receiver.name
            ),
            Some(Inval::Keys(list)) if list.iter().any(|k| k == key) => {
                let rest: Vec<String> = list.into_iter().filter(|k| k != key).collect();
                if !rest.is_empty() {
                    before.push(Inval::Keys(rest));
                }
                return before;
            }
            Some(Inval::Flush) => {
                before.push(Inval::Flush);
                return before;
            }
            Some(other) => before.push(other),
        }
    }
}

/// The invalidations `c` received so far (sent before a fence written now).
fn fence(t: &Target, c: &mut Conn, mode: Mode, prefix: &str) -> Vec<Inval> {
    let key = arm_fence(c, mode, prefix);
    fire_fence(t, c, &key)
}

/// Whether `inval` makes a cache drop `key`.
fn covers(inval: &Inval, key: &str) -> bool {
    match inval {
        Inval::Flush => true,
        Inval::Keys(list) => list.iter().any(|k| k == key),
    }
}

/// Pairs of tests: `<scenario>::redis` checks the scenario against Redis, and
/// `<scenario>::slotgate` runs it through slotgate.
macro_rules! differential {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn redis() {
                super::$scenario(&super::Target::redis());
            }

            #[test]
            fn slotgate() {
                super::$scenario(&super::Target::slotgate());
            }
        }
    )*};
}

differential!(
    default_mode,
    expiry,
    bcast_prefix,
    tracking_errors,
    optin_optout,
    resp2_redirect,
    tracking_info,
    noloop,
    ordering_on_node,
    ordering_through_front,
    many_clients,
);

// === scenarios ===

/// Default mode: a read is invalidated once by the next change, then forgotten; the same
/// whether the write comes through the front or straight on the key's node.
fn default_mode(t: &Target) {
    let tag = tag("default");
    let k = format!("{tag}k");
    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON"]);
    for on_node in [false, true] {
        let mut w = t.writer(on_node, &k);
        c.call(&["GET", &k]);
        w.ok(&["SET", &k, "v1"]);
        let push = c.next_push(DEADLINE).expect("an invalidation push");
        assert_eq!(
            push,
            Frame::Push(vec![bulk("invalidate"), Frame::Array(vec![bulk(&k)])]),
            "on_node={on_node}"
        );
        w.ok(&["SET", &k, "v2"]);
        assert_eq!(
            fence(t, &mut c, Mode::Read, &tag),
            vec![],
            "a second write without a new read (on_node={on_node})"
        );
        assert_eq!(c.call(&["GET", &k]), bulk("v2"));
        assert_eq!(w.call(&["DEL", &k]), Frame::Int(1));
        assert_eq!(c.expect_invalidation("DEL after a new read"), keys(&[&k]));
    }
}

/// A key read before its TTL ends is invalidated when it expires (active expiry).
fn expiry(t: &Target) {
    let tag = tag("expiry");
    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON"]);
    for on_node in [false, true] {
        let k = format!("{tag}k{on_node}");
        t.writer(on_node, &k).ok(&["SET", &k, "v", "PX", "300"]);
        assert_eq!(c.call(&["GET", &k]), bulk("v"), "read before it expires");
        let at = Instant::now();
        let inval = c.next_invalidation(Duration::from_secs(2));
        assert_eq!(
            inval,
            Some(keys(&[&k])),
            "expiry invalidation within 2 s (on_node={on_node}, {:?})",
            at.elapsed()
        );
    }
}

/// BCAST PREFIX: every change under the prefix, read or not; nothing outside it.
fn bcast_prefix(t: &Target) {
    let tag = tag("bcast");
    let p = format!("{tag}p:");
    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", &p]);
    for on_node in [false, true] {
        let inside = format!("{p}x");
        let outside = format!("{tag}q:x");
        let mut w = t.writer(on_node, &inside);
        w.ok(&["SET", &inside, "1"]);
        w.ok(&["SET", &outside, "1"]);
        w.ok(&["SET", &inside, "2"]);
        let got = fence(t, &mut c, Mode::Bcast, &p);
        let flat: Vec<String> = got
            .iter()
            .flat_map(|i| match i {
                Inval::Keys(k) => k.clone(),
                Inval::Flush => panic!("a flush in BCAST mode: {got:?}"),
            })
            .collect();
        assert_eq!(
            flat,
            vec![inside.clone(), inside.clone()],
            "two writes under the prefix, one outside (on_node={on_node})"
        );
    }
}

/// Wrongly shaped CLIENT TRACKING and CLIENT CACHING get Redis's exact error texts.
fn tracking_errors(t: &Target) {
    let cases: &[(&[&str], &str)] = &[
        (
            &["CLIENT", "TRACKING", "ON", "PREFIX", "p:"],
            "ERR PREFIX option requires BCAST mode to be enabled",
        ),
        (
            &[
                "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:", "PREFIX", "p:x",
            ],
            "ERR Prefix 'p:' overlaps with another provided prefix 'p:x'. \
             Prefixes for a single client must not overlap.",
        ),
        (
            &[
                "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:x", "PREFIX", "p:",
            ],
            "ERR Prefix 'p:x' overlaps with another provided prefix 'p:'. \
             Prefixes for a single client must not overlap.",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"],
            "ERR OPTIN and OPTOUT are not compatible with BCAST",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "OPTOUT", "BCAST"],
            "ERR OPTIN and OPTOUT are not compatible with BCAST",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"],
            "ERR You can't specify both OPTIN mode and OPTOUT mode",
        ),
        (
            &["CLIENT", "CACHING", "yes"],
            "ERR CLIENT CACHING can be called only when the client is in tracking mode \
             with OPTIN or OPTOUT mode enabled",
        ),
        (&["CLIENT", "TRACKING", "ON", "FOO"], "ERR syntax error"),
        (&["CLIENT", "TRACKING", "maybe"], "ERR syntax error"),
        (&["CLIENT", "TRACKING", "OFF", "FOO"], "ERR syntax error"),
        (
            &["CLIENT", "TRACKING", "ON", "REDIRECT"],
            "ERR syntax error",
        ),
        (&["CLIENT", "TRACKING", "ON", "PREFIX"], "ERR syntax error"),
        (
            &["CLIENT", "TRACKING", "ON", "REDIRECT", "abc"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "REDIRECT", "987654321"],
            "ERR The client ID you want redirect to does not exist",
        ),
        (
            &["CLIENT", "TRACKING"],
            "ERR wrong number of arguments for 'client|tracking' command",
        ),
        (
            &["CLIENT", "CACHING"],
            "ERR wrong number of arguments for 'client|caching' command",
        ),
        (
            &["CLIENT", "TRACKINGINFO", "x"],
            "ERR wrong number of arguments for 'client|trackinginfo' command",
        ),
        (
            &["CLIENT", "GETREDIR", "x"],
            "ERR wrong number of arguments for 'client|getredir' command",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(&t.resp3().error(args), expected, "{args:?}");
    }

    // Errors that depend on the mode already on.
    let mut optin = t.resp3();
    optin.ok(&["CLIENT", "TRACKING", "ON", "OPTIN"]);
    assert_eq!(
        optin.error(&["CLIENT", "CACHING", "no"]),
        "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."
    );
    assert_eq!(
        optin.error(&["CLIENT", "CACHING", "maybe"]),
        "ERR syntax error"
    );
    let mut optout = t.resp3();
    optout.ok(&["CLIENT", "TRACKING", "ON", "OPTOUT"]);
    assert_eq!(
        optout.error(&["CLIENT", "CACHING", "yes"]),
        "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."
    );
    let switch = "ERR You can't switch BCAST mode on/off before disabling tracking for this \
                  client, and then re-enabling it with a different mode.";
    let mut default = t.resp3();
    default.ok(&["CLIENT", "TRACKING", "ON"]);
    assert_eq!(
        default.error(&["CLIENT", "TRACKING", "ON", "BCAST"]),
        switch
    );
    let mut bcast = t.resp3();
    bcast.ok(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "p:"]);
    assert_eq!(bcast.error(&["CLIENT", "TRACKING", "ON"]), switch);
    // What Redis accepts: lowercase words, ON again in the same mode, OFF with options,
    // and RESP2 tracking without REDIRECT (whose invalidations Redis just drops).
    bcast.ok(&["CLIENT", "TRACKING", "on", "bcast", "prefix", "q:"]);
    bcast.ok(&["CLIENT", "TRACKING", "OFF", "BCAST"]);
    t.connect().ok(&["CLIENT", "TRACKING", "ON"]);
}

/// OPTIN tracks only the read right after `CLIENT CACHING yes`; OPTOUT tracks every read
/// but the one right after `CLIENT CACHING no`.
fn optin_optout(t: &Target) {
    let tag = tag("optin");
    let k = format!("{tag}k");
    let mut w = t.direct(&k);

    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON", "OPTIN"]);
    c.call(&["GET", &k]);
    w.ok(&["SET", &k, "1"]);
    assert_eq!(
        fence(t, &mut c, Mode::OptIn, &tag),
        vec![],
        "OPTIN, no CACHING"
    );
    c.ok(&["CLIENT", "CACHING", "yes"]);
    c.call(&["GET", &k]);
    w.ok(&["SET", &k, "2"]);
    assert_eq!(
        c.expect_invalidation("OPTIN after CACHING yes"),
        keys(&[&k])
    );
    // CACHING yes applies to the next command only, even one slotgate answers itself.
    c.ok(&["CLIENT", "CACHING", "yes"]);
    assert_eq!(c.call(&["PING"]), simple("PONG"));
    c.call(&["GET", &k]);
    w.ok(&["SET", &k, "3"]);
    assert_eq!(
        fence(t, &mut c, Mode::OptIn, &tag),
        vec![],
        "OPTIN: CACHING yes, PING, GET"
    );

    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON", "OPTOUT"]);
    c.call(&["GET", &k]);
    w.ok(&["SET", &k, "4"]);
    assert_eq!(c.expect_invalidation("OPTOUT read"), keys(&[&k]));
    c.ok(&["CLIENT", "CACHING", "no"]);
    c.call(&["GET", &k]);
    w.ok(&["SET", &k, "5"]);
    assert_eq!(
        fence(t, &mut c, Mode::Read, &tag),
        vec![],
        "OPTOUT after CACHING no"
    );
}

/// A RESP2 client redirects to a connection subscribed to `__redis__:invalidate`, which
/// gets Pub/Sub messages; GETREDIR and TRACKINGINFO name the redirect.
fn resp2_redirect(t: &Target) {
    let tag = tag("redirect");
    let k = format!("{tag}k");
    let mut b = t.connect();
    let Frame::Int(id) = b.call(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer")
    };
    let id = id.to_string();
    assert_eq!(
        b.call(&["SUBSCRIBE", "__redis__:invalidate"]),
        Frame::Array(vec![
            bulk("subscribe"),
            bulk("__redis__:invalidate"),
            Frame::Int(1)
        ])
    );
    let mut a = t.connect();
    a.ok(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id]);
    assert_eq!(
        a.call(&["CLIENT", "GETREDIR"]),
        Frame::Int(id.parse().unwrap())
    );
    assert_eq!(
        a.call(&["CLIENT", "TRACKINGINFO"]),
        Frame::Array(vec![
            bulk("flags"),
            Frame::Array(vec![bulk("on")]),
            bulk("redirect"),
            Frame::Int(id.parse().unwrap()),
            bulk("prefixes"),
            Frame::Array(vec![]),
        ])
    );
    a.call(&["GET", &k]);
    t.direct(&k).ok(&["SET", &k, "1"]);
    assert_eq!(
        b.next_push(DEADLINE),
        Some(Frame::Array(vec![
            bulk("message"),
            bulk("__redis__:invalidate"),
            Frame::Array(vec![bulk(&k)]),
        ])),
        "the redirect target's message"
    );
    assert!(a.pushes.is_empty(), "the RESP2 client got {:?}", a.pushes);
    let key = arm_fence(&mut a, Mode::Read, &tag);
    assert_eq!(fire_fence(t, &mut b, &key), vec![]);

    assert_eq!(
        t.connect()
            .error(&["CLIENT", "TRACKING", "ON", "REDIRECT", "987654321"]),
        "ERR The client ID you want redirect to does not exist"
    );
    a.ok(&["CLIENT", "TRACKING", "OFF"]);
    assert_eq!(a.call(&["CLIENT", "GETREDIR"]), Frame::Int(-1));
}

/// CLIENT TRACKINGINFO's shape in RESP2 and RESP3 for each mode, flags in Redis's order,
/// prefixes sorted.
fn tracking_info(t: &Target) {
    let info3 = |flags: &[&str], redirect: i64, prefixes: &[&str]| {
        Frame::Map(vec![
            (
                bulk("flags"),
                Frame::Set(flags.iter().map(|f| bulk(f)).collect()),
            ),
            (bulk("redirect"), Frame::Int(redirect)),
            (
                bulk("prefixes"),
                Frame::Array(prefixes.iter().map(|p| bulk(p)).collect()),
            ),
        ])
    };
    let mut c = t.connect();
    assert_eq!(
        c.call(&["CLIENT", "TRACKINGINFO"]),
        Frame::Array(vec![
            bulk("flags"),
            Frame::Array(vec![bulk("off")]),
            bulk("redirect"),
            Frame::Int(-1),
            bulk("prefixes"),
            Frame::Array(vec![]),
        ])
    );
    assert_eq!(c.call(&["CLIENT", "GETREDIR"]), Frame::Int(-1));

    // (options of CLIENT TRACKING ON, CLIENT CACHING argument, flags, prefixes)
    let cases: &[[&[&str]; 4]] = &[
        [&[], &[], &["on"], &[]],
        [&["BCAST"], &[], &["on", "bcast"], &[""]],
        [
            &["BCAST", "PREFIX", "b:", "PREFIX", "a:", "NOLOOP"],
            &[],
            &["on", "bcast", "noloop"],
            &["a:", "b:"],
        ],
        [&["OPTIN"], &["yes"], &["on", "optin", "caching-yes"], &[]],
        [
            &["OPTOUT", "NOLOOP"],
            &["no"],
            &["on", "optout", "caching-no", "noloop"],
            &[],
        ],
    ];
    for [options, caching, flags, prefixes] in cases {
        let mut c = t.resp3();
        let mut args = vec!["CLIENT", "TRACKING", "ON"];
        args.extend_from_slice(options);
        c.ok(&args);
        if let Some(yes_no) = caching.first() {
            c.ok(&["CLIENT", "CACHING", yes_no]);
        }
        assert_eq!(
            c.call(&["CLIENT", "TRACKINGINFO"]),
            info3(flags, 0, prefixes),
            "{options:?} {caching:?}"
        );
        assert_eq!(c.call(&["CLIENT", "GETREDIR"]), Frame::Int(0));
    }
}

/// NOLOOP: a client's own write is not sent back to it (and the key is forgotten all the
/// same); without NOLOOP it is, after the write's reply. slotgate is held to Redis's
/// NOLOOP; only the position of the own-write push relative to the write's reply is left
/// open for it (the push and the reply come from different node connections).
fn noloop(t: &Target) {
    let tag = tag("noloop");
    let k = format!("{tag}k");
    let mut w = t.direct(&k);

    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON", "NOLOOP"]);
    c.call(&["GET", &k]);
    c.ok(&["SET", &k, "own"]);
    w.ok(&["SET", &k, "other"]);
    assert_eq!(
        fence(t, &mut c, Mode::Read, &tag),
        vec![],
        "NOLOOP: own write, then another client's write without a new read"
    );
    c.call(&["GET", &k]);
    w.ok(&["SET", &k, "other2"]);
    assert_eq!(c.expect_invalidation("NOLOOP, another client"), keys(&[&k]));

    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON"]);
    c.call(&["GET", &k]);
    c.send(&["SET", &k, "own"]);
    let first = c.read(FRAME_TIMEOUT).expect("SET reply or push");
    if first == simple("OK") || t.is_reference() {
        assert_eq!(first, simple("OK"), "Redis answers the write first");
        assert_eq!(c.expect_invalidation("own write"), keys(&[&k]));
    } else {
        assert_eq!(invalidation(&first), Some(keys(&[&k])), "{first:?}");
        assert_eq!(c.reply(), simple("OK"));
    }
    assert_eq!(fence(t, &mut c, Mode::Read, &tag), vec![], "one only");

    let p = format!("{tag}b:");
    let b1 = format!("{p}1");
    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON", "BCAST", "NOLOOP", "PREFIX", &p]);
    c.ok(&["SET", &b1, "own"]);
    let own = fence(t, &mut c, Mode::Bcast, &p);
    if t.is_reference() {
        assert_eq!(own, vec![], "BCAST NOLOOP");
    } else {
        // slotgate cannot tell whose write a primary reports in BCAST mode: a NOLOOP client
        // may hear of its own write (docs/client-tracking.md), never miss another's.
        assert!(
            own.is_empty() || own == vec![keys(&[&b1])],
            "BCAST NOLOOP: {own:?}"
        );
    }
    w.ok(&["SET", &b1, "other"]);
    assert_eq!(c.expect_invalidation("BCAST, another client"), keys(&[&b1]));
}

fn ordering_on_node(t: &Target) {
    reads_never_outlive_writes(t, true);
}

fn ordering_through_front(t: &Target) {
    reads_never_outlive_writes(t, false);
}

/// A client that caches what it reads and drops what is invalidated, applying replies and
/// pushes in the order they arrive, never keeps a value older than the server's while two
/// writers race its reads.
fn reads_never_outlive_writes(t: &Target, on_node: bool) {
    const ROUNDS: usize = 300;
    const WRITERS: usize = 2;
    let tag = tag("order");
    let k = format!("{tag}k");
    let marker = format!("{tag}marker");
    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON"]);
    let mut side = t.direct(&k);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut go = Vec::new();
    let mut threads = Vec::new();
    for i in 0..WRITERS {
        let (tx, rx) = mpsc::channel::<usize>();
        go.push(tx);
        let mut w = t.writer(on_node, &k);
        let done = done_tx.clone();
        let k = k.clone();
        threads.push(std::thread::spawn(move || {
            while let Ok(round) = rx.recv() {
                // Spread the writes over the read's way through.
                for _ in 0..(round * 7919 + i * 104_729) % 20_000 {
                    std::hint::spin_loop();
                }
                w.ok(&["SET", &k, &format!("w{i}:{round}")]);
                done.send(()).unwrap();
            }
        }));
    }
    let mut cache: HashMap<String, Option<String>> = HashMap::new();
    for round in 0..ROUNDS {
        c.send_pipeline(&[&["GET", &marker], &["GET", &k]]);
        for tx in &go {
            tx.send(round).unwrap();
        }
        let mut owed = VecDeque::from([marker.clone(), k.clone()]);
        let mut marker_written = false;
        let mut marker_seen = false;
        while !(owed.is_empty() && marker_seen) {
            if owed.is_empty() && !marker_written {
                // Both reads answered: once the writers are done, the marker goes after them.
                for _ in 0..WRITERS {
                    done_rx
                        .recv_timeout(DEADLINE)
                        .expect("a writer acknowledges");
                }
                side.ok(&["SET", &marker, &round.to_string()]);
                marker_written = true;
            }
            let frame = c.read(DEADLINE).unwrap_or_else(|| {
                panic!("round {round}: stuck (replies owed for {owed:?}, marker written {marker_written})")
            });
            match invalidation(&frame) {
                Some(Inval::Flush) => cache.clear(),
                Some(Inval::Keys(list)) => {
                    for key in list {
                        marker_seen |= key == marker && marker_written;
                        cache.remove(&key);
                    }
                }
                None => {
                    let key = owed
                        .pop_front()
                        .unwrap_or_else(|| panic!("round {round}: unexpected {frame:?}"));
                    let value = match frame {
                        Frame::Bulk(v) => Some(v),
                        Frame::Null => None,
                        other => panic!("round {round}: GET answered {other:?}"),
                    };
                    cache.insert(key, value);
                }
            }
        }
        let server = match side.call(&["GET", &k]) {
            Frame::Bulk(v) => Some(v),
            other => panic!("GET {k} on its node: {other:?}"),
        };
        if let Some(cached) = cache.get(&k) {
            assert_eq!(
                cached, &server,
                "round {round}: the cache holds a value the server no longer has"
            );
        }
    }
    drop(go);
    for thread in threads {
        thread.join().unwrap();
    }
}

/// A write's invalidation comes before the reply of anything sent once the write was
/// answered (here a PING, which slotgate answers itself at once): on the writing connection
/// (Redis writes it right after the write's reply, in BCAST mode before the next command),
/// and on another connection that read the key. A client that applies replies and pushes
/// in arrival order, such as redis-py with `cache_config` (whose pooled connections share
/// one cache), then reads its own writes.
fn told_before_the_next_reply(t: &Target) {
    let tag = tag("next-reply");
    let mut writer = t.resp3();
    let mut reader = t.resp3();
    let mut bcast = t.resp3();
    writer.ok(&["CLIENT", "TRACKING", "ON"]);
    reader.ok(&["CLIENT", "TRACKING", "ON"]);
    bcast.ok(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", &tag]);
    for round in 0..50 {
        let k = format!("{tag}k{round}");
        writer.call(&["GET", &k]);
        reader.call(&["GET", &k]);
        for c in [&mut writer, &mut reader, &mut bcast] {
            c.pushes.clear();
        }
        let value = round.to_string();
        // The write and a PING in one packet: slotgate answers the PING itself as soon as
        // the write's reply is written; it must not overtake the invalidation.
        for (c, other) in [(&mut writer, None), (&mut bcast, Some(&mut reader))] {
            c.send_pipeline(&[&["SET", &k, &value], &["PING"]]);
            assert_eq!(c.reply(), simple("OK"));
            assert_eq!(c.reply(), simple("PONG"));
            if let Some(other) = other {
                assert_eq!(other.call(&["PING"]), simple("PONG"));
            }
        }
        for (who, c) in [
            ("writer", &mut writer),
            ("reader", &mut reader),
            ("bcast writer", &mut bcast),
        ] {
            assert!(
                c.pushes
                    .iter()
                    .any(|p| invalidation(p).is_some_and(|i| covers(&i, &k))),
                "{who}, round {round}: the invalidation of {k} came after the next reply \
                 ({:?})",
                c.pushes
            );
        }
    }
}

#[test]
fn told_before_the_next_reply_redis() {
    told_before_the_next_reply(&Target::redis());
}

/// One worker: the writer and the reader are served by the same thread, as two connections
/// of one application often are (with several, the reader hears of it from the primary's
/// report, about 0.1 ms later: docs/client-tracking.md).
#[test]
fn told_before_the_next_reply_slotgate() {
    told_before_the_next_reply(&Target::slotgate_with(|config| config.workers(1)));
}

/// redis-py's client-side cache (`protocol=3, cache_config=CacheConfig()`,
/// `tests/clients/python/client_side_cache.py`): its cached reads see its own writes at once
/// (pipelined too), and writes made directly on the node or by another pooled connection
/// once their invalidation arrives. redis-py caches
/// only for Redis 7.4 or later (HELLO's `server` and `version`), so against Redis 7.0 and
/// Valkey both sides check its refusal; the whole scenario runs against Redis 8.
fn redis_py_client_side_cache(t: &Target) {
    let tag = tag("redis-py");
    let mut direct = t.direct(&tag);
    let Frame::Map(hello) = direct.call(&["HELLO", "3"]) else {
        panic!("HELLO 3 on the node");
    };
    let field = |name: &str| {
        hello
            .iter()
            .find(|(k, _)| *k == bulk(name))
            .map(|(_, v)| v.clone())
    };
    let version: Vec<u32> = match field("version") {
        Some(Frame::Bulk(v)) => v.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
        other => panic!("HELLO version: {other:?}"),
    };
    let caches = field("server") == Some(bulk("redis")) && version >= vec![7, 4];
    let mut cmd = clients::script(Runtime::Python, "python/client_side_cache.py");
    match &t.kind {
        Kind::Redis(r) => cmd
            .env("SLOTGATE_PORT", r.port.to_string())
            .env("SLOTGATE_DIRECT_PORT", r.port.to_string()),
        Kind::Slotgate { cluster, .. } => {
            let node = cluster.node_for_slot(slotgate_cluster::slot(tag.as_bytes()));
            cmd.env("SLOTGATE_PORT", t.proxy().port().to_string())
                .env("SLOTGATE_DIRECT_PORT", node.to_string())
        }
    };
    cmd.env("SLOTGATE_PREFIX", &tag)
        .env("SLOTGATE_EXPECT", if caches { "cached" } else { "refused" });
    let out = run_captured(&mut cmd, Duration::from_secs(120)).expect("run python3");
    eprint!("{}", out.stdout);
    assert!(
        out.success(),
        "client_side_cache.py ({}): {:?}\n--- stdout\n{}--- stderr\n{}",
        t.label("redis-py"),
        out.status,
        out.stdout,
        out.stderr
    );
}

#[test]
fn redis_py_client_side_cache_redis() {
    redis_py_client_side_cache(&Target::redis());
}

#[test]
fn redis_py_client_side_cache_slotgate() {
    redis_py_client_side_cache(&Target::slotgate());
}

/// 50 clients read one key; one write invalidates it exactly once for each.
fn many_clients(t: &Target) {
    let tag = tag("many");
    let k = format!("{tag}k");
    let mut clients: Vec<Conn> = (0..50)
        .map(|_| {
            let mut c = t.resp3();
            c.ok(&["CLIENT", "TRACKING", "ON"]);
            c.call(&["GET", &k]);
            c
        })
        .collect();
    t.connect().ok(&["SET", &k, "1"]);
    let fence = fence_key(&tag);
    for c in &mut clients {
        c.call(&["GET", &fence]);
    }
    t.direct(&fence).ok(&["SET", &fence, "x"]);
    for (i, c) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        loop {
            match c.next_invalidation(DEADLINE) {
                Some(Inval::Keys(list)) if list.contains(&fence) => {
                    got.extend(list.into_iter().filter(|key| key != &fence));
                    break;
                }
                Some(Inval::Keys(list)) => got.extend(list),
                other => panic!("client {i}: {other:?} (before: {got:?})"),
            }
        }
        assert_eq!(got, vec![k.clone()], "client {i}");
    }
}

/// FLUSHALL on the key's node or through the front: a flush (null keys) for RESP3
/// clients, and `*3 message __redis__:invalidate $-1` for a RESP2 redirect target.
///
/// Through slotgate the report of the SET made just before the reads may come after them, so
/// the key may be invalidated before the flush; a FLUSHALL through slotgate reaches every
/// primary, so several flushes may arrive where Redis sends one.
fn flushall(t: &Target) {
    let tag = tag("flush");
    let k = format!("{tag}k");
    let mut c = t.resp3();
    c.ok(&["CLIENT", "TRACKING", "ON"]);
    let mut b = t.connect();
    let Frame::Int(id) = b.call(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID")
    };
    b.call(&["SUBSCRIBE", "__redis__:invalidate"]);
    let mut a = t.connect();
    a.ok(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id.to_string()]);

    // On the node.
    t.direct(&k).ok(&["SET", &k, "1"]);
    c.call(&["GET", &k]);
    a.call(&["GET", &k]);
    t.direct(&k).ok(&["FLUSHALL"]);
    for (conn, what) in [(&mut c, "RESP3"), (&mut b, "RESP2 redirect")] {
        let first = conn.expect_invalidation(what);
        if t.is_reference() {
            assert_eq!(first, Inval::Flush, "{what}");
        } else {
            // The report of the SET just before the reads may arrive after them: slotgate
            // may tell of `k` first (docs/client-tracking.md); the flush follows.
            let mut seen = vec![first];
            while seen.last() != Some(&Inval::Flush) {
                assert!(seen.len() < 3, "{what}: no flush: {seen:?}");
                seen.push(conn.expect_invalidation(what));
            }
        }
    }
    let rest_c = fence(t, &mut c, Mode::Read, &tag);
    let key = arm_fence(&mut a, Mode::Read, &tag);
    let rest_b = fire_fence(t, &mut b, &key);
    if t.is_reference() {
        assert_eq!((rest_c, rest_b), (vec![], vec![]), "one flush each");
    }

    // Through the front.
    c.call(&["GET", &k]);
    a.call(&["GET", &k]);
    t.connect().ok(&["FLUSHALL"]);
    assert_eq!(
        c.expect_invalidation("RESP3, FLUSHALL through the front"),
        Inval::Flush
    );
    assert_eq!(
        b.next_push(DEADLINE),
        Some(Frame::Array(vec![
            bulk("message"),
            bulk("__redis__:invalidate"),
            Frame::NilBulk
        ])),
        "RESP2 flush message"
    );
    let rest_c = fence(t, &mut c, Mode::Read, &tag);
    let key = arm_fence(&mut a, Mode::Read, &tag);
    let rest_b = fire_fence(t, &mut b, &key);
    if t.is_reference() {
        assert_eq!((rest_c, rest_b), (vec![], vec![]), "one flush each");
    } else {
        for rest in [rest_c, rest_b] {
            assert!(rest.iter().all(|i| *i == Inval::Flush), "{rest:?}");
        }
    }
}

#[test]
fn flushall_redis() {
    flushall(&Target::redis());
}

#[test]
fn flushall_slotgate() {
    flushall(&Target::slotgate_alone());
}

/// A user whose key pattern is `~{tag}app:*`: reads it may not make are refused and not
/// tracked, but BCAST delivers every key name under its prefix, readable or not (Redis 7.0
/// checks neither the prefixes nor the invalidated keys against the user's key patterns).
fn restricted_user(t: &Target, tag: &str) {
    let mine = format!("{tag}app:1");
    let other = format!("{tag}other:1");
    let mut w = t.direct(&mine);

    let mut c = t.resp3_as("app", "pw");
    c.ok(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", tag]);
    w.ok(&["SET", &mine, "1"]);
    w.ok(&["SET", &other, "1"]);
    let got = fence(t, &mut c, Mode::Bcast, tag);
    assert_eq!(got, vec![keys(&[&mine]), keys(&[&other])]);
    let mut c = t.resp3_as("app", "pw");
    c.ok(&[
        "CLIENT",
        "TRACKING",
        "ON",
        "BCAST",
        "PREFIX",
        &format!("{tag}other:"),
    ]);
    w.ok(&["SET", &other, "2"]);
    assert_eq!(
        c.expect_invalidation("a prefix the user cannot read"),
        keys(&[&other])
    );

    let mut c = t.resp3_as("app", "pw");
    c.ok(&["CLIENT", "TRACKING", "ON"]);
    match c.call(&["GET", &other]) {
        Frame::Error(e) if e.starts_with("NOPERM") => {}
        reply => panic!("GET of a key the user may not read: {reply:?}"),
    }
    w.ok(&["SET", &other, "3"]);
    let fence_key = arm_fence(&mut c, Mode::Read, &format!("{tag}app:"));
    assert_eq!(fire_fence(t, &mut c, &fence_key), vec![], "a refused read");
}

#[test]
fn restricted_user_redis() {
    let tag = tag("acl");
    let t = Target::redis();
    let rules = format!("~{tag}app:*");
    let reply = t
        .connect()
        .call(&["ACL", "SETUSER", "app", "on", ">pw", &rules, "+@all", "&*"]);
    assert_eq!(reply, simple("OK"));
    restricted_user(&t, &tag);
}

#[test]
fn restricted_user_slotgate() {
    let tag = tag("acl");
    let t = Target::slotgate_with(|config| {
        config.user("default", "pw", "+@all ~* &*").user(
            "app",
            "pw",
            &format!("+@all ~{tag}app:* &*"),
        )
    });
    restricted_user(&t, &tag);
}

// === slotgate only ===

/// slotgate's resident memory in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A BCAST client that never reads while 100k invalidations (about 50 MB) happen: the
/// server's memory stays bounded, other clients are served throughout, and the slow client
/// is either disconnected or, when it reads again, finds a flush among what it gets. Redis
/// (with `client-output-buffer-limit normal 1mb 256kb 60`) disconnects it.
fn slow_tracking_client(t: &Target, pid: u32) {
    const BATCHES: usize = 100;
    const BATCH: usize = 1000;
    let tag = tag("slow");
    let mut slow = t.resp3();
    slow.ok(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", &tag]);
    let mut other = t.resp3();
    let filler = "x".repeat(480);
    let keys: Vec<String> = (0..BATCH).map(|i| format!("{tag}{filler}{i}")).collect();
    let wire: Vec<u8> = keys
        .iter()
        .flat_map(|key| slotgate_tests::probe::encode(&["SET", key, "1"]))
        .collect();
    let mut w = t.direct(&keys[0]);
    let before = rss(pid);
    let mut peak = before;
    for batch in 0..BATCHES {
        w.writer.write_all(&wire).unwrap();
        for _ in 0..BATCH {
            assert_eq!(w.reply(), simple("OK"));
        }
        peak = peak.max(rss(pid));
        if batch % 10 == 0 {
            let key = format!("{tag}other");
            let at = Instant::now();
            other.ok(&["SET", &key, &batch.to_string()]);
            assert_eq!(other.call(&["GET", &key]), bulk(&batch.to_string()));
            assert!(
                at.elapsed() < Duration::from_secs(2),
                "another client waited {:?} during the flood",
                at.elapsed()
            );
        }
    }
    assert!(
        peak < before + (48 << 20),
        "the RSS grew from {} MiB to {} MiB for one client that does not read",
        before >> 20,
        peak >> 20
    );
    let mut received = 0usize;
    let outcome = loop {
        match slow.try_read(DEADLINE) {
            Err(_) => break "disconnected",
            Ok(None) => panic!(
                "the slow client was neither disconnected nor sent a flush; it read \
                 {received} invalidations of {} and then nothing for {DEADLINE:?}",
                BATCHES * BATCH
            ),
            Ok(Some(frame)) => match invalidation(&frame) {
                Some(Inval::Flush) => break "flushed",
                Some(Inval::Keys(list)) => received += list.len(),
                None => panic!("slow client got {frame:?}"),
            },
        }
    };
    eprintln!("slow tracking client: {outcome} after {received} invalidations");
    if t.is_reference() {
        assert_eq!(outcome, "disconnected");
    }
    assert_eq!(t.connect().call(&["PING"]), simple("PONG"));
}

#[test]
fn slow_tracking_client_redis() {
    let t = Target::redis();
    let reply = t.connect().call(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "normal 1mb 256kb 60",
    ]);
    assert_eq!(reply, simple("OK"));
    let Kind::Redis(reference) = &t.kind else {
        unreachable!()
    };
    slow_tracking_client(&t, reference.process.pid());
}

#[test]
fn slow_tracking_client_slotgate() {
    let t = Target::slotgate_with(|config| {
        config
            .limit("max_client_output", "1mb")
            .limit("client_output_soft", "256kb")
    });
    slow_tracking_client(&t, t.proxy().pid());
}

/// Waits until `c` gets an invalidation that drops `key` (a flush, or one naming it).
fn expect_dropped(c: &mut Conn, key: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_invalidation(left) {
            Some(inval) if covers(&inval, key) => return,
            Some(inval) => seen.push(inval),
            None => panic!("{what}: {key} was never invalidated (got {seen:?})"),
        }
    }
}

/// When the node a client read from loses its tracking state or the key (a reshard moving the
/// key's slot, a failover to its replica, a restart, slotgate's connections to it killed), the
/// client gets a flush or the keys it read there; after a new read, a write on whichever node
/// serves the key now is invalidated again.
#[test]
fn lost_node_state_is_invalidated_slotgate() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let tag = tag("lost");
    let k = format!("{tag}k");
    let connect = |name: &str| Target::tcp(name.to_string(), proxy.port());
    let mut c = connect("tracking client");
    assert!(matches!(c.call(&["HELLO", "3"]), Frame::Map(_)));
    c.ok(&["CLIENT", "TRACKING", "ON"]);
    let mut w = connect("writer");
    w.ok(&["SET", &k, "0"]);
    let slot = slotgate_cluster::slot(k.as_bytes());

    let events: [(&str, &dyn Fn()); 4] = [
        // The key's slot moves (MIGRATE takes the key from the old primary).
        ("reshard", &|| {
            cluster.move_slot_away(slot);
        }),
        ("failover", &|| {
            let primary = cluster.node_for_slot(slot);
            cluster.failover(cluster.replicas_of(primary)[0]);
        }),
        ("restart", &|| {
            cluster.restart_node(cluster.node_for_slot(slot));
            cluster.wait_healthy(Duration::from_secs(30));
        }),
        ("killed connections", &|| {
            let primary = cluster.node_for_slot(slot);
            for kind in ["normal", "pubsub"] {
                cluster
                    .query(primary, &["CLIENT", "KILL", "TYPE", kind])
                    .unwrap();
            }
        }),
    ];
    // A fence on the key's node: what arrived before it is everything sent so far.
    let fence = |c: &mut Conn| {
        let key = arm_fence(c, Mode::Read, &tag);
        let port = cluster.node_for_slot(slot);
        Target::tcp(format!("node :{port}"), port).ok(&["SET", &key, "fence"]);
        invalidations_until(c, &key)
    };
    // A read, retried while the cluster settles after an event.
    let read = |c: &mut Conn, what: &str| {
        assert!(
            wait_until(Duration::from_secs(10), || !matches!(
                c.call(&["GET", &k]),
                Frame::Error(_)
            )),
            "{what}: {k} cannot be read"
        );
    };
    for (what, event) in events {
        read(&mut c, what);
        event();
        expect_dropped(&mut c, &k, what);
        // Tracking works again: after a read (and whatever else the event sent), one write
        // is one invalidation of the key, and nothing more.
        read(&mut c, what);
        let leftovers = fence(&mut c);
        assert!(
            leftovers.iter().all(|i| covers(i, &k)),
            "{what}: after the event: {leftovers:?}"
        );
        read(&mut c, what);
        assert!(
            wait_until(Duration::from_secs(10), || w.call(&["SET", &k, what])
                == simple("OK")),
            "{what}: {k} cannot be written again"
        );
        assert_eq!(
            c.expect_invalidation(&format!("{what}: a write after a new read")),
            keys(&[&k])
        );
        assert_eq!(fence(&mut c), vec![], "{what}: one invalidation only");
    }
}
