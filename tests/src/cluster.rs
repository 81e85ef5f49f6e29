//! Real Redis Clusters on loopback for end-to-end tests.
//!
//! [`RedisCluster::start`] launches `redis-server` processes on OS-given ports in a temporary
//! directory, joins them with `redis-cli --cluster create` and waits until every node agrees
//! on all 16384 slots and every replica is in sync. Fault helpers (kill, stop, restart,
//! reshard, failover) and topology helpers (add a node as a primary or a replica, rebalance,
//! drain a node, delete it) drive the same tools an operator would (`redis-cli --cluster`). All methods take `&self`, so a
//! cluster can be shared between the tests of one binary ([`shared_cluster`]).
//!
//! With [`ClusterOptions::tls`] every node listens on a plaintext `port` *and* a `tls-port`,
//! and the nodes talk to each other over TLS (`tls-cluster yes`, `tls-replication yes`). The
//! kit keeps using the plaintext ports for everything it does itself, so all helpers work
//! unchanged; tests point clients at [`RedisCluster::tls_seeds`]. What Redis 7.0 does there
//! (checked with the real redis-server 7.0.15):
//! - `CLUSTER SLOTS`, `CLUSTER NODES` and `MOVED`/`ASK` redirects name the *TLS* ports to a
//!   client connected over TLS and the *plaintext* ports to a plaintext client (`CLUSTER
//!   SHARDS` lists both, as `port` and `tls-port`). So a client that found the cluster through
//!   a TLS seed stays on TLS ports, and the kit, asking over plaintext, sees plaintext ports.
//! - The cluster bus listens on `tls-port + 10000` when `tls-cluster` is on, unless
//!   `cluster-port` is set. The kit sets `cluster-port` to `port + 10000`, the port
//!   [`crate::free_cluster_port`] reserved, so a `CLUSTER MEET ip port` with the plaintext port
//!   finds the bus as it does without TLS.
//! - A replica's `INFO replication` `master_port` is its primary's TLS port
//!   (`tls-replication yes`); the kit maps it back.
//! - `MIGRATE` goes over TLS to the port it is given: a plaintext `redis-cli --cluster
//!   reshard` passes plaintext ports and fails on the first slot holding keys ("IOERR error or
//!   timeout connecting to the client"), so [`RedisCluster::reshard`] runs `redis-cli --tls`
//!   against the TLS ports.
//! - Nodes present a certificate to each other and check it even with `tls-auth-clients
//!   optional`; a certificate whose extended key usage is only `serverAuth` is refused as a
//!   client certificate ("unsupported certificate"), so the nodes present the
//!   [`TestPki`] client certificate (`tls-client-cert-file`) when they connect out.

mod topology;

pub use topology::{parse_cluster_nodes, NodeEntry, SlotOwners, SLOT_COUNT};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::{free_cluster_port, free_port, CLUSTER_BUS_OFFSET};
use crate::probe::{self, Reply};
use crate::process::{find_binary, run_captured, send_signal, tail_file, DirGuard, GuardedChild};
use crate::tls::TestPki;

/// Timeout for one probe of a node.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a started or restarted node may take to answer `PING`.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fresh cluster may take to converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `redis-cli` invocation may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Shape of a cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of primaries (at least 3: `redis-cli --cluster create` requires it).
    pub primaries: usize,
    /// Replicas per primary.
    pub replicas_per_primary: usize,
    /// `cluster-node-timeout` in milliseconds: how fast a dead primary is replaced.
    pub node_timeout_ms: u64,
    /// Further `redis-server` arguments, e.g. `["--requirepass", "secret"]`.
    pub extra_args: Vec<String>,
    /// Also listen on a `tls-port` and speak TLS between nodes (see the module docs);
    /// `None` (the default): plaintext only.
    pub tls: Option<ClusterTls>,
    /// ACL users created on every node besides `default` (which stays `nopass`: the kit
    /// itself connects as `default`). Each is the words of one `user` directive, e.g.
    /// `"proxy on >secret ~* &* +@all"`; they are split on whitespace into separate
    /// arguments (redis-server refuses one quoted argument: "Spaces not allowed in ACL
    /// usernames"), so passwords cannot contain spaces.
    pub acl_users: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            primaries: 3,
            replicas_per_primary: 1,
            node_timeout_ms: 2000,
            extra_args: Vec::new(),
            tls: None,
            acl_users: Vec::new(),
        }
    }
}

/// TLS settings of a test cluster ([`ClusterOptions::tls`]).
#[derive(Clone)]
pub struct ClusterTls {
    /// Certificates: the nodes serve `server_cert`, trust `ca` and present `client_cert`
    /// when they connect to each other.
    pub pki: Arc<TestPki>,
    /// `tls-auth-clients`: `"optional"` (the default: a client may present a certificate,
    /// which must then be valid), `"yes"` (clients must) or `"no"`.
    pub auth_clients: &'static str,
}

// === impl ClusterTls ===

impl ClusterTls {
    /// TLS with `pki`'s certificates and `tls-auth-clients optional`.
    pub fn new(pki: Arc<TestPki>) -> ClusterTls {
        ClusterTls {
            pki,
            auth_clients: "optional",
        }
    }

    /// Sets `tls-auth-clients` (`"no"`, `"optional"` or `"yes"`).
    pub fn auth_clients(mut self, mode: &'static str) -> ClusterTls {
        assert!(
            matches!(mode, "no" | "optional" | "yes"),
            "tls-auth-clients takes no, optional or yes, not {mode:?}"
        );
        self.auth_clients = mode;
        self
    }

    /// The `redis-server` arguments for a node with TLS port `tls_port` and plaintext port
    /// `port`.
    fn server_args(&self, port: u16, tls_port: u16) -> Vec<String> {
        let pki = &self.pki;
        let path = |p: &Path| p.display().to_string();
        [
            ("--tls-port", tls_port.to_string()),
            ("--tls-cert-file", path(&pki.server_cert)),
            ("--tls-key-file", path(&pki.server_key)),
            ("--tls-client-cert-file", path(&pki.client_cert)),
            ("--tls-client-key-file", path(&pki.client_key)),
            ("--tls-ca-cert-file", path(&pki.ca)),
            ("--tls-auth-clients", self.auth_clients.to_string()),
            ("--tls-cluster", "yes".to_string()),
            ("--tls-replication", "yes".to_string()),
            // The bus port the kit reserved, not tls-port + 10000 (Redis's default with
            // tls-cluster on).
            ("--cluster-port", (port + CLUSTER_BUS_OFFSET).to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }

    /// `redis-cli` arguments to talk TLS to a node (trusting the CA, presenting the client
    /// certificate so `tls-auth-clients yes` lets it in).
    fn cli_args(&self) -> Vec<String> {
        let pki = &self.pki;
        vec![
            "--tls".to_string(),
            "--cacert".to_string(),
            pki.ca.display().to_string(),
            "--cert".to_string(),
            pki.client_cert.display().to_string(),
            "--key".to_string(),
            pki.client_key.display().to_string(),
        ]
    }
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("pki", &self.pki.dir())
            .field("auth_clients", &self.auth_clients)
            .finish()
    }
}

/// Whether a node's process is meant to be serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Running,
    Stopped,
    Killed,
}

/// One `redis-server` of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    /// The `tls-port`, when the cluster has TLS.
    tls_port: Option<u16>,
    dir: PathBuf,
    process: Option<GuardedChild>,
    state: NodeState,
}

/// A running Redis Cluster of real `redis-server` processes on 127.0.0.1.
///
/// Dropping it kills every node and removes its directory. If the test process exits without
/// dropping it, watchdogs kill the nodes and remove the directory.
#[derive(Debug)]
pub struct RedisCluster {
    options: ClusterOptions,
    nodes: Mutex<Vec<Node>>,
    redis_server: PathBuf,
    redis_cli: PathBuf,
    _dir_guard: DirGuard,
    /// Removes the certificates' directory if the process exits without dropping the
    /// cluster (e.g. a cluster kept in a `static`, which also keeps its [`TestPki`]).
    _pki_guard: Option<DirGuard>,
    dir: TempDir,
}

/// The cluster shared by all tests of one test binary (started on first use, default options).
///
/// Only for tests that do not change topology; isolate data with a key prefix
/// ([`crate::unique_key_prefix`]).
pub fn shared_cluster() -> &'static RedisCluster {
    static SHARED: OnceLock<RedisCluster> = OnceLock::new();
    SHARED.get_or_init(|| RedisCluster::start(ClusterOptions::default()))
}

/// The server the kit's clusters run: `$SLOTGATE_REDIS_SERVER` (a `redis-server` or
/// `valkey-server` binary, e.g. Redis 8.2 or Valkey 8.1; see `scripts/servers.sh`), else
/// `redis-server` from `PATH`. `redis-cli` always comes from `PATH`.
pub fn cluster_server_binary() -> PathBuf {
    match std::env::var_os("SLOTGATE_REDIS_SERVER") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "SLOTGATE_REDIS_SERVER={} is not a file",
                path.display()
            );
            path
        }
        None => require_binary("redis-server"),
    }
}

/// Path of a required tool, or a panic telling how to install it.
fn require_binary(name: &str) -> PathBuf {
    find_binary(name)
        .unwrap_or_else(|| panic!("{name} not found: apt-get install redis-server redis-tools"))
}

/// Polls `check` until it returns `Ok` or `timeout` passes; returns the last error.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
    }
}

/// The value of `field:` in `INFO`-style text.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// What one healthy node says about the cluster.
#[derive(Debug, PartialEq, Eq)]
struct NodeView {
    /// Slot ranges and their owners.
    slots: SlotOwners,
    /// Running replica port → primary port.
    replicas: BTreeMap<u16, u16>,
}

/// Checks one running node's own health and returns its view of the cluster (see
/// [`RedisCluster::health`]).
fn node_view(port: u16, running: &[u16], total: usize) -> Result<NodeView, String> {
    let info = probe::query_text(port, &["CLUSTER", "INFO"], PROBE_TIMEOUT)?;
    if info_field(&info, "cluster_state").as_deref() != Some("ok") {
        return Err(format!("node {port}: cluster_state is not ok"));
    }
    if info_field(&info, "cluster_known_nodes") != Some(total.to_string()) {
        return Err(format!("node {port}: does not know all {total} nodes yet"));
    }
    let nodes = probe::query_text(port, &["CLUSTER", "NODES"], PROBE_TIMEOUT)?;
    let entries = parse_cluster_nodes(&nodes);
    let troubled =
        |e: &&NodeEntry| running.contains(&e.port) && (e.is_failing() || e.is_unsettled());
    if let Some(bad) = entries.iter().find(troubled) {
        return Err(format!(
            "node {port} sees node {} as {:?}",
            bad.port, bad.flags
        ));
    }
    if entries.iter().any(|e| e.migrating) {
        return Err(format!("node {port}: a slot is migrating"));
    }
    let slots = topology::slot_map(&entries);
    if !topology::covers_all_slots(&slots) {
        return Err(format!("node {port}: slots not all covered: {slots:?}"));
    }
    if let Some(&(_, _, owner)) = slots.iter().find(|(_, _, owner)| !running.contains(owner)) {
        return Err(format!(
            "node {port}: slots owned by non-running node {owner}"
        ));
    }
    let mut replicas = topology::replica_map(&entries);
    replicas.retain(|r, _| running.contains(r));
    let repl = probe::query_text(port, &["INFO", "replication"], PROBE_TIMEOUT)?;
    if info_field(&repl, "role").as_deref() == Some("slave")
        && info_field(&repl, "master_link_status").as_deref() != Some("up")
    {
        return Err(format!("replica {port}: master link is not up"));
    }
    Ok(NodeView { slots, replicas })
}

// === impl RedisCluster ===

impl RedisCluster {
    /// Starts `primaries × (1 + replicas_per_primary)` nodes and waits until the cluster has
    /// converged (see [`RedisCluster::health`]).
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is missing, if a node does not start, or if the
    /// cluster does not converge within 30 s. Node logs are included in the message.
    pub fn start(options: ClusterOptions) -> RedisCluster {
        assert!(
            options.primaries >= 3,
            "redis-cli --cluster create needs at least 3 primaries"
        );
        let redis_server = cluster_server_binary();
        let redis_cli = require_binary("redis-cli");
        let dir = tempfile::Builder::new()
            .prefix("slotgate-cluster-")
            .tempdir()
            .expect("tempdir");
        let dir_guard = DirGuard::arm(dir.path()).expect("start bash (directory guard)");
        let pki_guard = options
            .tls
            .as_ref()
            .map(|tls| DirGuard::arm(tls.pki.dir()).expect("start bash (directory guard)"));
        let count = options.primaries * (1 + options.replicas_per_primary);
        let nodes = (0..count)
            .map(|_| {
                let port = free_cluster_port();
                let tls_port = options.tls.as_ref().map(|_| free_port());
                let dir = dir.path().join(format!("node-{port}"));
                fs::create_dir_all(&dir).expect("create node dir");
                Node {
                    port,
                    tls_port,
                    dir,
                    process: None,
                    state: NodeState::Killed,
                }
            })
            .collect();
        let cluster = RedisCluster {
            options,
            nodes: Mutex::new(nodes),
            redis_server,
            redis_cli,
            _dir_guard: dir_guard,
            _pki_guard: pki_guard,
            dir,
        };
        let ports = cluster.nodes();
        for &port in &ports {
            cluster.spawn_node(port);
        }
        for &port in &ports {
            cluster.wait_node_answers(port);
        }
        cluster.create();
        cluster.wait_healthy(CONVERGE_TIMEOUT);
        cluster
    }

    /// `redis-cli --cluster create … --cluster-replicas R --cluster-yes`.
    fn create(&self) {
        let mut cmd = Command::new(&self.redis_cli);
        cmd.arg("--cluster").arg("create");
        cmd.args(self.seeds());
        cmd.arg("--cluster-replicas")
            .arg(self.options.replicas_per_primary.to_string());
        cmd.arg("--cluster-yes");
        let out = run_captured(&mut cmd, CLI_TIMEOUT).expect("run redis-cli");
        if !out.success() || out.stdout.contains("[ERR]") {
            panic!(
                "redis-cli --cluster create failed ({:?}):\n{}\n{}\n{}",
                out.status,
                out.stdout,
                out.stderr,
                self.logs()
            );
        }
    }

    /// Starts the `redis-server` for `port` in its directory (keeping `nodes.conf`).
    fn spawn_node(&self, port: u16) {
        let mut nodes = self.lock();
        let node = nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("known port");
        let dir = node.dir.display().to_string();
        let tls_args = match (&self.options.tls, node.tls_port) {
            (Some(tls), Some(tls_port)) => tls.server_args(port, tls_port),
            _ => Vec::new(),
        };
        let mut cmd = Command::new(&self.redis_server);
        cmd.args(["--port", &port.to_string()])
            .args([
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args([
                "--cluster-node-timeout",
                &self.options.node_timeout_ms.to_string(),
            ])
            .args(["--save", "", "--appendonly", "no", "--dir", &dir])
            .args(["--pidfile", &format!("{dir}/redis.pid")])
            .args(["--logfile", &format!("{dir}/redis.log")])
            // Replicas sync at once instead of after the 5 s diskless default delay.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--enable-debug-command", "local"])
            .args(&tls_args);
        for user in &self.options.acl_users {
            cmd.arg("--user").args(user.split_whitespace());
        }
        cmd.args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = GuardedChild::spawn(&mut cmd)
            .unwrap_or_else(|e| panic!("start {}: {e}", self.redis_server.display()));
        node.process = Some(child);
        node.state = NodeState::Running;
    }

    /// Waits until the node on `port` answers `PING` (`LOADING` counts as not yet).
    fn wait_node_answers(&self, port: u16) {
        let result = poll(NODE_START_TIMEOUT, || {
            if let Some(status) = self.with_node(port, |n| n.process.as_mut()?.try_wait()) {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            match probe::query(port, &["PING"], PROBE_TIMEOUT)? {
                Reply::Status(s) if s == "PONG" => Ok(()),
                other => Err(format!("PING on port {port}: {other:?}")),
            }
        });
        if let Err(e) = result {
            panic!(
                "{e}\nlog of node {port}:\n{}",
                tail_file(&self.log_path(port), 40)
            );
        }
    }

    /// Locks the node table, surviving a panic in another test.
    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the node for `port`.
    ///
    /// # Panics
    /// If `port` is not a node of this cluster.
    fn with_node<T>(&self, port: u16, f: impl FnOnce(&mut Node) -> T) -> T {
        let mut nodes = self.lock();
        let node = nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"));
        f(node)
    }

    /// Ports of nodes whose process is running (not killed, not stopped).
    fn running(&self) -> Vec<u16> {
        self.lock()
            .iter()
            .filter(|n| n.state == NodeState::Running)
            .map(|n| n.port)
            .collect()
    }

    /// The temporary directory holding every node's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the log file of the node on `port`.
    pub fn log_path(&self, port: u16) -> PathBuf {
        self.with_node(port, |n| n.dir.join("redis.log"))
    }

    /// The last lines of every node's log, for panic messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for port in self.nodes() {
            let _ = writeln!(
                out,
                "--- node {port} ---\n{}",
                tail_file(&self.log_path(port), 15)
            );
        }
        out
    }

    /// `"127.0.0.1:port"` of every node, in creation order.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// `"127.0.0.1:tls-port"` of every node, in creation order (what a client that speaks
    /// TLS to the cluster is given as seeds).
    ///
    /// # Panics
    /// If the cluster was started without [`ClusterOptions::tls`].
    pub fn tls_seeds(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .map(|p| format!("127.0.0.1:{}", self.require_tls_port(p)))
            .collect()
    }

    /// The `tls-port` of the node whose plaintext port is `port` (`None` without TLS).
    ///
    /// # Panics
    /// If `port` is not a node of this cluster.
    pub fn tls_port(&self, port: u16) -> Option<u16> {
        self.with_node(port, |n| n.tls_port)
    }

    /// The plaintext port of the node listening on `port`, which may be its plaintext port
    /// or its TLS port; `None` if no node has that port.
    pub fn plain_port(&self, port: u16) -> Option<u16> {
        self.lock()
            .iter()
            .find(|n| n.port == port || n.tls_port == Some(port))
            .map(|n| n.port)
    }

    /// The certificates of a TLS cluster.
    pub fn pki(&self) -> Option<&Arc<TestPki>> {
        self.options.tls.as_ref().map(|t| &t.pki)
    }

    fn require_tls_port(&self, port: u16) -> u16 {
        self.tls_port(port)
            .unwrap_or_else(|| panic!("the cluster has no TLS (ClusterOptions::tls is None)"))
    }

    /// Ports of every node, in creation order, whatever their state.
    pub fn nodes(&self) -> Vec<u16> {
        self.lock().iter().map(|n| n.port).collect()
    }

    /// Ports of running nodes that report `role:master` right now.
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes_with_role("master")
    }

    /// Ports of running nodes that report `role:slave` right now.
    pub fn replicas(&self) -> Vec<u16> {
        self.nodes_with_role("slave")
    }

    fn nodes_with_role(&self, role: &str) -> Vec<u16> {
        self.running()
            .into_iter()
            .filter(|&port| {
                probe::query_text(port, &["INFO", "replication"], PROBE_TIMEOUT)
                    .is_ok_and(|info| info_field(&info, "role").as_deref() == Some(role))
            })
            .collect()
    }

    /// The real pid of the `redis-server` on `port` (`None` if killed).
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.with_node(port, |n| {
            (n.state != NodeState::Killed).then(|| n.process.as_ref().map(GuardedChild::pid))?
        })
    }

    /// The node id of the node on `port` (`CLUSTER MYID`).
    ///
    /// # Panics
    /// If the node does not answer.
    pub fn node_id(&self, port: u16) -> String {
        probe::query_text(port, &["CLUSTER", "MYID"], PROBE_TIMEOUT)
            .unwrap_or_else(|e| panic!("CLUSTER MYID: {e}"))
    }

    /// The primary port owning each of the 16384 slots (index = slot), from one
    /// `CLUSTER NODES` of the first running node that knows all of them. Use this rather than
    /// [`RedisCluster::node_for_slot`] in loops: each of those calls asks the cluster again.
    ///
    /// # Panics
    /// When no running node knows an owner for every slot.
    pub fn slot_owners(&self) -> Vec<u16> {
        for port in self.running() {
            let Ok(text) = probe::query_text(port, &["CLUSTER", "NODES"], PROBE_TIMEOUT) else {
                continue;
            };
            let map = topology::slot_map(&parse_cluster_nodes(&text));
            let owners: Option<Vec<u16>> = (0..SLOT_COUNT as u16)
                .map(|slot| topology::port_for_slot(&map, slot))
                .collect();
            if let Some(owners) = owners {
                return owners;
            }
        }
        panic!("no running node knows the owner of every slot");
    }

    /// Waits until the primary owning `key` reports a blocked client (a BLPOP or the like
    /// is waiting there), at most 10 s.
    ///
    /// # Panics
    /// When none shows up in time.
    pub fn wait_blocked(&self, key: &str) {
        let node = self.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
        let blocked = || {
            self.cli(node, &["INFO", "clients"])
                .lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        assert!(
            crate::wait_until(std::time::Duration::from_secs(10), || blocked() > 0),
            "no client blocked on {node} (the owner of {key}) within 10 s"
        );
    }

    /// The value of `key` read straight from the primary that owns its slot (not through
    /// slotgate); `None` when the key does not exist.
    ///
    /// # Panics
    /// When the node does not answer with a bulk string.
    pub fn get(&self, key: &str) -> Option<String> {
        let node = self.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
        match self.query(node, &["GET", key]) {
            Ok(crate::Reply::Bulk(v)) => v.map(|v| String::from_utf8_lossy(&v).into_owned()),
            other => panic!("GET {key} on {node}: {other:?}"),
        }
    }

    /// Port of the primary serving `slot`, as the first running node answering sees it.
    ///
    /// # Panics
    /// If no running node answers or none knows an owner for the slot.
    pub fn node_for_slot(&self, slot: u16) -> u16 {
        for port in self.running() {
            let Ok(text) = probe::query_text(port, &["CLUSTER", "NODES"], PROBE_TIMEOUT) else {
                continue;
            };
            let map = topology::slot_map(&parse_cluster_nodes(&text));
            if let Some(owner) = topology::port_for_slot(&map, slot) {
                return owner;
            }
        }
        panic!("no running node knows the owner of slot {slot}");
    }

    /// Sends one command to the node on `port` with the kit's own small client.
    ///
    /// # Errors
    /// If the node cannot be reached or does not answer within 500 ms (an error reply is
    /// `Ok(Reply::Error(..))`).
    pub fn query(&self, port: u16, args: &[&str]) -> Result<Reply, String> {
        probe::query(port, args, PROBE_TIMEOUT)
    }

    /// Runs `redis-cli -p PORT ARGS…` and returns its stdout without the final newline.
    ///
    /// Pass `-c` first in `args` to follow redirects. Error replies come back as text
    /// (redis-cli prints e.g. `ERR …` and still exits 0 when stdout is not a terminal).
    ///
    /// # Panics
    /// If redis-cli cannot run, exits non-zero or runs longer than 60 s.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.redis_cli);
        cmd.arg("-p").arg(port.to_string()).args(args);
        let out = run_captured(&mut cmd, CLI_TIMEOUT).expect("run redis-cli");
        if !out.success() {
            panic!(
                "redis-cli -p {port} {args:?} failed ({:?}): {}{}",
                out.status, out.stdout, out.stderr
            );
        }
        let mut stdout = out.stdout;
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        stdout
    }

    /// Runs `redis-cli --tls … -p TLS_PORT ARGS…` against the TLS port of the node whose
    /// plaintext port is `port` (trusting the CA, presenting the client certificate) and
    /// returns its stdout without the final newline, like [`RedisCluster::cli`].
    ///
    /// # Panics
    /// Without TLS, or as [`RedisCluster::cli`].
    pub fn cli_tls(&self, port: u16, args: &[&str]) -> String {
        let tls = self.options.tls.as_ref().expect("the cluster has no TLS");
        let tls_port = self.require_tls_port(port);
        let mut cmd = Command::new(&self.redis_cli);
        cmd.args(tls.cli_args())
            .arg("-p")
            .arg(tls_port.to_string())
            .args(args);
        let out = run_captured(&mut cmd, CLI_TIMEOUT).expect("run redis-cli");
        if !out.success() {
            panic!(
                "redis-cli --tls -p {tls_port} {args:?} failed ({:?}): {}{}",
                out.status, out.stdout, out.stderr
            );
        }
        let mut stdout = out.stdout;
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        stdout
    }

    /// Why the cluster is not healthy, or `Ok` if it is.
    ///
    /// Healthy means, looking only at running nodes: each reports `cluster_state:ok` and
    /// knows every node; none sees a running node as failing or still in handshake; no slot
    /// is migrating; all agree on the owner of all 16384 slots (each a running primary) and on
    /// who replicates whom; each replica reports `master_link_status:up`.
    ///
    /// # Errors
    /// A description of the first problem found.
    pub fn health(&self) -> Result<(), String> {
        let running = self.running();
        let total = self.lock().len();
        let mut first: Option<(u16, NodeView)> = None;
        for &port in &running {
            let view = node_view(port, &running, total)?;
            match &first {
                Some((first_port, seen)) if seen.slots != view.slots => {
                    return Err(format!("nodes {first_port} and {port} disagree on slots"));
                }
                Some((first_port, seen)) if seen.replicas != view.replicas => {
                    return Err(format!(
                        "nodes {first_port} and {port} disagree on replicas"
                    ));
                }
                Some(_) => {}
                None => first = Some((port, view)),
            }
        }
        match first {
            Some(_) => Ok(()),
            None => Err("no node is running".to_string()),
        }
    }

    /// Waits until [`RedisCluster::health`] is `Ok`.
    ///
    /// # Panics
    /// At `timeout`, with the last problem and the node logs.
    pub fn wait_healthy(&self, timeout: Duration) {
        if let Err(e) = poll(timeout, || self.health()) {
            panic!(
                "cluster not healthy after {timeout:?}: {e}\n{}",
                self.logs()
            );
        }
    }

    /// Moves `nslots` slots from the primary on `from_port` to the primary on `to_port` with
    /// `redis-cli --cluster reshard`, then waits until the cluster is healthy again.
    ///
    /// With TLS, redis-cli speaks TLS to the TLS ports: it passes the ports it sees to
    /// `MIGRATE`, which a node with `tls-cluster yes` always sends over TLS.
    ///
    /// # Panics
    /// If the cluster is not healthy first, redis-cli fails, or the cluster does not settle.
    pub fn reshard(&self, from_port: u16, to_port: u16, nslots: u32) {
        self.wait_healthy(CONVERGE_TIMEOUT);
        let (from, to) = (self.node_id(from_port), self.node_id(to_port));
        let nslots = nslots.to_string();
        self.cluster_tool(
            "reshard",
            from_port,
            &[
                "--cluster-from",
                &from,
                "--cluster-to",
                &to,
                "--cluster-slots",
                &nslots,
                "--cluster-yes",
            ],
        );
        self.wait_healthy(CONVERGE_TIMEOUT);
    }

    /// Moves the one slot `slot` to the primary on `to_port` the way `redis-cli --cluster
    /// reshard` does it: `SETSLOT IMPORTING` / `MIGRATING`, `MIGRATE` of every key in it
    /// (`CLUSTER GETKEYSINSLOT`), then `SETSLOT NODE` on every primary, the new owner first; waits until the cluster
    /// is healthy again. Use it when a test needs a given key's slot to move
    /// ([`RedisCluster::reshard`] moves whichever slots redis-cli picks).
    ///
    /// # Panics
    /// If the slot is already on `to_port`, or a step fails.
    pub fn move_slot(&self, slot: u16, to_port: u16) {
        self.wait_healthy(CONVERGE_TIMEOUT);
        let from_port = self.node_for_slot(slot);
        assert_ne!(from_port, to_port, "slot {slot} is already on {to_port}");
        let (from_id, to_id) = (self.node_id(from_port), self.node_id(to_port));
        let slot_s = slot.to_string();
        let setslot = |port: u16, state: &str, id: &str| {
            let out = self.cli(port, &["CLUSTER", "SETSLOT", &slot_s, state, id]);
            assert_eq!(out, "OK", "CLUSTER SETSLOT {slot} {state} on {port}");
        };
        setslot(to_port, "IMPORTING", &from_id);
        setslot(from_port, "MIGRATING", &to_id);
        let to_s = to_port.to_string();
        loop {
            let keys = self.cli(from_port, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &to_s, "", "0", "5000", "KEYS"];
            migrate.extend(&keys);
            assert_eq!(self.cli(from_port, &migrate), "OK", "MIGRATE {keys:?}");
        }
        // The new owner first, then the old one, then the rest (as redis-cli does).
        let others = self
            .primaries()
            .into_iter()
            .filter(|&p| p != to_port && p != from_port);
        for port in [to_port, from_port].into_iter().chain(others) {
            setslot(port, "NODE", &to_id);
        }
        self.wait_healthy(CONVERGE_TIMEOUT);
        assert_eq!(self.node_for_slot(slot), to_port, "slot {slot} moved");
    }

    /// [`RedisCluster::move_slot`] to another primary than the one serving `slot` now;
    /// returns the new owner's port.
    pub fn move_slot_away(&self, slot: u16) -> u16 {
        let from = self.node_for_slot(slot);
        let to = self.primaries().into_iter().find(|&p| p != from);
        let to = to.expect("another primary");
        self.move_slot(slot, to);
        to
    }

    /// `redis-cli --cluster rebalance` (with `--cluster-use-empty-masters` when
    /// `use_empty_masters`: primaries without slots, e.g. one just added with
    /// [`RedisCluster::add_node`], receive their share), then waits until the cluster is
    /// healthy again. Returns redis-cli's output (one `Moving slot …` line per slot moved).
    ///
    /// # Panics
    /// If the cluster is not healthy first, redis-cli fails, or the cluster does not settle.
    pub fn rebalance(&self, use_empty_masters: bool) -> String {
        self.wait_healthy(CONVERGE_TIMEOUT);
        let entry = self.primaries()[0];
        let mut args = vec!["--cluster-yes"];
        if use_empty_masters {
            args.push("--cluster-use-empty-masters");
        }
        let out = self.cluster_tool("rebalance", entry, &args);
        self.wait_healthy(CONVERGE_TIMEOUT);
        out
    }

    /// Moves every slot of the primary on `port` to the other primaries, spread evenly, with
    /// `redis-cli --cluster rebalance --cluster-weight ID=0` (the operator's way to empty a
    /// node before [`RedisCluster::del_node`]), then waits until the cluster is healthy.
    ///
    /// Redis 7.0 (`cluster-allow-replica-migration yes`, the default) turns a primary that
    /// lost its last slot into a replica of the node that took it, and moves its replicas
    /// along: afterwards the node on `port` is usually a replica.
    ///
    /// # Panics
    /// As [`RedisCluster::rebalance`], or if the node still owns slots afterwards.
    pub fn drain_node(&self, port: u16) -> String {
        self.wait_healthy(CONVERGE_TIMEOUT);
        let weight = format!("{}=0", self.node_id(port));
        let entry = self
            .primaries()
            .into_iter()
            .find(|&p| p != port)
            .expect("another primary");
        let out = self.cluster_tool(
            "rebalance",
            entry,
            &["--cluster-weight", &weight, "--cluster-yes"],
        );
        self.wait_healthy(CONVERGE_TIMEOUT);
        let left = self.slot_owners().iter().filter(|&&o| o == port).count();
        assert_eq!(left, 0, "node {port} still owns {left} slots:\n{out}");
        out
    }

    /// Starts a new node with the same options as the others (OS-given ports, its own
    /// directory), joins it to the cluster as an empty primary with
    /// `redis-cli --cluster add-node`, waits until the cluster is healthy and returns its port.
    /// Give it slots with [`RedisCluster::rebalance`]`(true)` or [`RedisCluster::reshard`].
    ///
    /// # Panics
    /// If the node does not start, redis-cli fails, or the cluster does not settle.
    pub fn add_node(&self) -> u16 {
        self.join_new_node(None)
    }

    /// Like [`RedisCluster::add_node`], joining the new node as a replica of the primary on
    /// `primary_port` (`--cluster-slave --cluster-master-id ID`); returns once it is in sync.
    ///
    /// # Panics
    /// As [`RedisCluster::add_node`].
    pub fn add_replica(&self, primary_port: u16) -> u16 {
        self.join_new_node(Some(primary_port))
    }

    fn join_new_node(&self, primary: Option<u16>) -> u16 {
        self.wait_healthy(CONVERGE_TIMEOUT);
        let existing = *self.running().first().expect("a running node");
        let port = free_cluster_port();
        let tls_port = self.options.tls.as_ref().map(|_| free_port());
        let dir = self.dir.path().join(format!("node-{port}"));
        fs::create_dir_all(&dir).expect("create node dir");
        self.lock().push(Node {
            port,
            tls_port,
            dir,
            process: None,
            state: NodeState::Killed,
        });
        self.spawn_node(port);
        self.wait_node_answers(port);
        let new = format!("127.0.0.1:{port}");
        let existing_addr = format!("127.0.0.1:{existing}");
        let mut args = vec![new.as_str(), existing_addr.as_str()];
        let primary_id = primary.map(|p| self.node_id(p));
        if let Some(id) = &primary_id {
            args.extend(["--cluster-slave", "--cluster-master-id", id]);
        }
        // Plaintext ports: add-node only talks to the nodes (CLUSTER MEET on the plaintext
        // port reaches the bus port the kit set), it migrates nothing.
        self.run_cli_cluster("add-node", &args, None);
        self.wait_healthy(CONVERGE_TIMEOUT);
        port
    }

    /// Removes the node on `port` from the cluster with `redis-cli --cluster del-node` (the
    /// others `CLUSTER FORGET` it; its replicas, if any, are moved to another primary),
    /// `SIGKILL`s its process and drops it from the kit: it is no longer in
    /// [`RedisCluster::nodes`] and no longer counted by [`RedisCluster::health`]. Waits until
    /// the rest is healthy.
    ///
    /// # Panics
    /// If the node still owns slots (redis-cli refuses: empty it with
    /// [`RedisCluster::drain_node`] first), or as [`RedisCluster::add_node`].
    pub fn del_node(&self, port: u16) {
        self.wait_healthy(CONVERGE_TIMEOUT);
        let id = self.node_id(port);
        let entry = self
            .running()
            .into_iter()
            .find(|&p| p != port)
            .expect("another running node");
        let entry = format!("127.0.0.1:{entry}");
        self.run_cli_cluster("del-node", &[entry.as_str(), id.as_str()], None);
        self.kill_node(port);
        self.lock().retain(|n| n.port != port);
        self.wait_healthy(CONVERGE_TIMEOUT);
    }

    /// The primary the replica on `port` follows right now (`INFO replication`), `None` if it
    /// is not a replica or does not answer.
    pub fn primary_of(&self, port: u16) -> Option<u16> {
        let info = probe::query_text(port, &["INFO", "replication"], PROBE_TIMEOUT).ok()?;
        if info_field(&info, "role").as_deref() != Some("slave") {
            return None;
        }
        let primary: u16 = info_field(&info, "master_port")?.parse().ok()?;
        // With tls-replication the replica names its primary's TLS port.
        Some(self.plain_port(primary).unwrap_or(primary))
    }

    /// Running replicas of the primary on `primary_port`.
    pub fn replicas_of(&self, primary_port: u16) -> Vec<u16> {
        self.replicas()
            .into_iter()
            .filter(|&r| self.primary_of(r) == Some(primary_port))
            .collect()
    }

    /// `redis-cli --cluster SUBCOMMAND 127.0.0.1:ENTRY ARGS…` for commands that move slots
    /// (`MIGRATE` follows the ports redis-cli sees, so with TLS it runs against the TLS
    /// ports); returns its stdout.
    fn cluster_tool(&self, subcommand: &str, entry_port: u16, args: &[&str]) -> String {
        let (entry, tls) = match &self.options.tls {
            Some(tls) => (self.require_tls_port(entry_port), Some(tls)),
            None => (entry_port, None),
        };
        let entry = format!("127.0.0.1:{entry}");
        let mut all = vec![entry.as_str()];
        all.extend_from_slice(args);
        self.run_cli_cluster(subcommand, &all, tls)
    }

    /// Runs `redis-cli [TLS options] --cluster SUBCOMMAND ARGS…`; panics if it fails or
    /// prints `[ERR]`.
    fn run_cli_cluster(&self, subcommand: &str, args: &[&str], tls: Option<&ClusterTls>) -> String {
        let mut cmd = Command::new(&self.redis_cli);
        if let Some(tls) = tls {
            cmd.args(tls.cli_args());
        }
        cmd.args(["--cluster", subcommand]).args(args);
        let out = run_captured(&mut cmd, CLI_TIMEOUT).expect("run redis-cli");
        if !out.success() || out.stdout.contains("[ERR]") {
            panic!(
                "redis-cli --cluster {subcommand} {args:?} failed ({:?}):\n{}\n{}\n{}",
                out.status,
                out.stdout,
                out.stderr,
                self.logs()
            );
        }
        out.stdout
    }

    /// `SIGKILL`s the node on `port` (no-op if already killed). Its directory is kept.
    pub fn kill_node(&self, port: u16) {
        self.with_node(port, |n| {
            if let Some(process) = n.process.as_mut() {
                process.kill();
            }
            n.process = None;
            n.state = NodeState::Killed;
        });
    }

    /// `SIGSTOP`s the node on `port`: it keeps its sockets but answers nothing.
    ///
    /// # Panics
    /// If the node is not running.
    pub fn stop_node(&self, port: u16) {
        self.signal_node(port, "STOP", NodeState::Running, NodeState::Stopped);
    }

    /// `SIGCONT`s a node stopped with [`RedisCluster::stop_node`].
    ///
    /// # Panics
    /// If the node is not stopped.
    pub fn cont_node(&self, port: u16) {
        self.signal_node(port, "CONT", NodeState::Stopped, NodeState::Running);
    }

    fn signal_node(&self, port: u16, signal: &str, from: NodeState, to: NodeState) {
        self.with_node(port, |n| {
            assert_eq!(
                n.state, from,
                "node {port} must be {from:?} to send SIG{signal}"
            );
            let pid = n.process.as_ref().map(GuardedChild::pid).expect("process");
            assert!(send_signal(pid, signal), "kill -{signal} {pid} failed");
            n.state = to;
        });
    }

    /// Kills the node on `port` if it is running or stopped, starts it again with the same
    /// directory and `nodes.conf`, and waits until it answers `PING`.
    ///
    /// Call [`RedisCluster::wait_healthy`] to wait until it has rejoined.
    ///
    /// Nodes run without persistence (`--save "" --appendonly no`): a restarted primary
    /// comes back empty unless the cluster was started with
    /// `extra_args: ["--appendonly", "yes", "--appendfsync", "always"]` (later arguments
    /// win), which keeps every acknowledged write across a `SIGKILL`: the AOF is written
    /// and synced before the reply is sent. With `appendfsync everysec` Redis postpones the
    /// write (up to 2 s) while a background fsync runs, replies anyway, and a `SIGKILL`
    /// loses those writes.
    pub fn restart_node(&self, port: u16) {
        self.kill_node(port);
        self.spawn_node(port);
        self.wait_node_answers(port);
    }

    /// Runs `CLUSTER FAILOVER` on the replica on `replica_port`, waits until it is a primary
    /// and its old primary a replica, then until the cluster is healthy.
    ///
    /// # Panics
    /// If the node is not a replica, refuses, or the switch does not happen in time.
    pub fn failover(&self, replica_port: u16) {
        let info = probe::query_text(replica_port, &["INFO", "replication"], PROBE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            info_field(&info, "role").as_deref(),
            Some("slave"),
            "{replica_port} is not a replica"
        );
        let old_primary: u16 = info_field(&info, "master_port")
            .and_then(|p| p.parse().ok())
            .expect("master_port in INFO replication");
        // With tls-replication the replica names its primary's TLS port.
        let old_primary = self.plain_port(old_primary).unwrap_or(old_primary);
        match probe::query(replica_port, &["CLUSTER", "FAILOVER"], PROBE_TIMEOUT) {
            Ok(Reply::Status(s)) if s == "OK" => {}
            other => panic!("CLUSTER FAILOVER on {replica_port}: {other:?}"),
        }
        let timeout = Duration::from_millis(self.options.node_timeout_ms * 2) + CONVERGE_TIMEOUT;
        let switched = poll(timeout, || {
            let role = |port| {
                probe::query_text(port, &["INFO", "replication"], PROBE_TIMEOUT)
                    .map(|info| info_field(&info, "role").unwrap_or_default())
            };
            let old_running = self.running().contains(&old_primary);
            if role(replica_port)? == "master" && (!old_running || role(old_primary)? == "slave") {
                Ok(())
            } else {
                Err(format!(
                    "failover of {old_primary} to {replica_port} not done"
                ))
            }
        });
        if let Err(e) = switched {
            panic!("{e}\n{}", self.logs());
        }
        self.wait_healthy(CONVERGE_TIMEOUT);
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.lock().iter_mut() {
            if let Some(process) = node.process.as_mut() {
                process.kill();
            }
        }
    }
}
