//! The metrics registry (the names are a public API; `docs/metrics.md` documents each).
//!
//! Two kinds of instruments:
//! - rare events (accepts, redirects, retries, upstream errors, refreshes) go straight to the
//!   shared prometheus counters — an atomic add each;
//! - per-command and per-upstream-request instruments live in each worker's
//!   [`WorkerMetrics`] (plain thread-local counters and [`LocalLatency`] histograms), resolved once
//!   per command index and node, and flushed into the shared registry once a second and
//!   before every scrape.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::local::LocalIntCounter;
use prometheus::{
    Counter, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use slotgate_cluster::NodeAddr;
use slotgate_commands::COMMAND_COUNT;
use tokio::sync::watch;

use crate::telemetry::latency::{LatencyVec, LocalLatency};

/// Histogram buckets for client-observed and upstream latency: 50 µs to 5 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// The command index used for names the command table does not know.
pub(crate) const UNKNOWN_COMMAND: u16 = COMMAND_COUNT as u16;

/// How long a scrape waits for workers to flush their thread-local instruments.
const FLUSH_WAIT: Duration = Duration::from_millis(250);

/// How one client command ended, as `slotgate_commands_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmdResult {
    /// A non-error reply.
    Ok = 0,
    /// An error reply (from Redis or from the proxy).
    Error = 1,
    /// A non-error reply after following at least one MOVED/ASK redirect.
    Redirected = 2,
    /// `op_timeout` passed before the cluster answered.
    Timeout = 3,
}

const RESULT_LABELS: [&str; 4] = ["ok", "error", "redirected", "timeout"];

/// Kinds of `slotgate_upstream_errors_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UpstreamError {
    /// A TCP connect (or the AUTH after it) failed.
    Connect,
    /// An established connection broke.
    Io,
    /// A command to this node hit `op_timeout`.
    Timeout,
    /// The node sent something that is not RESP.
    Protocol,
}

impl UpstreamError {
    fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Io => "io",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// Reasons of `slotgate_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// `-TRYAGAIN` (multi-key command during a migration).
    TryAgain = 0,
    /// `-CLUSTERDOWN`.
    ClusterDown = 1,
    /// `-LOADING`.
    Loading = 2,
    /// A read-only command resent after its connection broke.
    ReadonlyIo = 3,
    /// The node could not be reached; retried after a refresh.
    Unreachable = 4,
}

const RETRY_LABELS: [&str; 5] = [
    "tryagain",
    "clusterdown",
    "loading",
    "readonly_io",
    "unreachable",
];

/// Why the slot map was reloaded (`slotgate_topology_refreshes_total{trigger}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTrigger {
    /// `refresh_interval` passed.
    Periodic = 0,
    /// A node answered `-MOVED`.
    Moved = 1,
    /// An upstream failure (unreachable node, broken connection, `-CLUSTERDOWN`).
    Error = 2,
    /// An operator asked (SIGHUP).
    Manual = 3,
}

const TRIGGER_LABELS: [&str; 4] = ["periodic", "moved", "error", "manual"];

/// Outcome of one refresh (`slotgate_topology_refreshes_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshResult {
    /// A map was loaded and swapped in.
    Ok = 0,
    /// No node gave a usable map.
    Error = 1,
    /// A map was loaded but not swapped in (it would uncover slots whose owners answer).
    Rejected = 2,
}

const REFRESH_RESULT_LABELS: [&str; 3] = ["ok", "error", "rejected"];

/// The process-wide registry and the shared instruments.
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    pub(crate) client_connections: IntGauge,
    pub(crate) client_connections_limit: IntGauge,
    pub(crate) connections_accepted: IntCounter,
    pub(crate) connections_rejected_limit: IntCounter,
    connections_tls_error: IntCounter,
    auth_failures: IntCounterVec,
    commands: IntCounterVec,
    command_duration: LatencyVec,
    upstream_requests: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_connections: IntGaugeVec,
    upstream_duration: LatencyVec,
    redirects_moved: IntCounter,
    redirects_ask: IntCounter,
    retries: Vec<IntCounter>,
    refreshes: IntCounterVec,
    pub(crate) slots_covered: IntGauge,
    pub(crate) topology_nodes: IntGaugeVec,
    pub(crate) last_refresh: Gauge,
    pub(crate) ready: IntGauge,
    process: ProcessMetrics,
    /// Per upstream connection: when its oldest unanswered request was written
    /// ([`mono_ms`]; 0: none), for readiness.
    pending: Mutex<Vec<(NodeAddr, std::sync::Weak<AtomicU64>)>>,
    flush: watch::Sender<u64>,
    acks: Mutex<Vec<Arc<AtomicU64>>>,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn latency_vec(registry: &Registry, name: &str, help: &str, label: &str) -> LatencyVec {
    let h = LatencyVec::new(name, help, label);
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

impl Metrics {
    /// A registry with every slotgate instrument. With `enabled` false the per-command and
    /// per-request instruments are not updated (the benchmark's "metrics off" baseline);
    /// connection, topology and process figures still are.
    pub fn new(enabled: bool) -> Metrics {
        let r = Registry::new();
        let connections_total = counter_vec(
            &r,
            "slotgate_client_connections_total",
            "Client connections by outcome of the accept.",
            &["result"],
        );
        let redirects = counter_vec(
            &r,
            "slotgate_redirects_total",
            "MOVED and ASK redirects followed.",
            &["kind"],
        );
        let retries = counter_vec(
            &r,
            "slotgate_retries_total",
            "Commands sent again after a retryable failure.",
            &["reason"],
        );
        let build_info = gauge_vec(
            &r,
            "slotgate_build_info",
            "Always 1; the version label says which slotgate runs.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let last_refresh = Gauge::new(
            "slotgate_topology_last_refresh_timestamp_seconds",
            "Unix time of the last successful slot map refresh (0: never).",
        )
        .expect("valid metric");
        r.register(Box::new(last_refresh.clone()))
            .expect("unique metric");
        r.register(Box::new(crate::telemetry::panics::PANICS.clone()))
            .expect("unique metric");
        let (flush, _) = watch::channel(0);
        Metrics {
            enabled,
            client_connections: int_gauge(
                &r,
                "slotgate_client_connections",
                "Client connections open now.",
            ),
            client_connections_limit: int_gauge(
                &r,
                "slotgate_client_connections_limit",
                "limits.max_clients: connections beyond it are refused.",
            ),
            connections_accepted: connections_total.with_label_values(&["accepted"]),
            connections_rejected_limit: connections_total.with_label_values(&["rejected_limit"]),
            connections_tls_error: connections_total.with_label_values(&["tls_error"]),
            auth_failures: counter_vec(
                &r,
                "slotgate_auth_failures_total",
                "Failed client authentications and permission refusals.",
                &["reason"],
            ),
            commands: counter_vec(
                &r,
                "slotgate_commands_total",
                "Client commands answered, by command and result.",
                &["command", "result"],
            ),
            command_duration: latency_vec(
                &r,
                "slotgate_command_duration_seconds",
                "Time from reading a command to having its reply ready, in the proxy.",
                "command",
            ),
            upstream_requests: counter_vec(
                &r,
                "slotgate_upstream_requests_total",
                "Requests written to each cluster node.",
                &["node"],
            ),
            upstream_errors: counter_vec(
                &r,
                "slotgate_upstream_errors_total",
                "Failures talking to each cluster node.",
                &["node", "kind"],
            ),
            upstream_connections: gauge_vec(
                &r,
                "slotgate_upstream_connections",
                "Established connections to each cluster node.",
                &["node", "kind"],
            ),
            upstream_duration: latency_vec(
                &r,
                "slotgate_upstream_duration_seconds",
                "Time from writing a request to a node to reading its reply.",
                "node",
            ),
            redirects_moved: redirects.with_label_values(&["moved"]),
            redirects_ask: redirects.with_label_values(&["ask"]),
            retries: RETRY_LABELS
                .iter()
                .map(|l| retries.with_label_values(&[l]))
                .collect(),
            refreshes: counter_vec(
                &r,
                "slotgate_topology_refreshes_total",
                "Slot map refreshes by trigger and result.",
                &["trigger", "result"],
            ),
            slots_covered: int_gauge(
                &r,
                "slotgate_topology_slots_covered",
                "Slots with a primary in the current map (16384 when healthy).",
            ),
            topology_nodes: gauge_vec(
                &r,
                "slotgate_topology_nodes",
                "Nodes in the current slot map by role.",
                &["role"],
            ),
            last_refresh,
            ready: int_gauge(
                &r,
                "slotgate_ready",
                "1 when /readyz answers 200: all slots covered, every primary connected.",
            ),
            process: ProcessMetrics::register(&r),
            pending: Mutex::new(Vec::new()),
            registry: r,
            flush,
            acks: Mutex::new(Vec::new()),
        }
    }

    /// Whether per-command instruments are updated.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Count a client whose TLS handshake failed.
    pub fn tls_error(&self) {
        self.connections_tls_error.inc();
    }

    /// Count a failed authentication or a permission refusal (`reason`: a short fixed word).
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub(crate) fn redirect(&self, ask: bool) {
        if ask {
            self.redirects_ask.inc()
        } else {
            self.redirects_moved.inc()
        }
    }

    pub(crate) fn retry(&self, reason: Retry) {
        self.retries[reason as usize].inc();
    }

    pub(crate) fn upstream_error(&self, node: &NodeAddr, kind: UpstreamError) {
        self.upstream_errors
            .with_label_values(&[node.as_str(), kind.label()])
            .inc();
    }

    /// One more (`delta` 1) or one fewer (`delta` -1) live connection to `node`.
    pub(crate) fn upstream_connection(&self, node: &NodeAddr, delta: i64) {
        self.upstream_connections
            .with_label_values(&[node.as_str(), "multiplexed"])
            .add(delta);
    }

    /// One more (`delta` 1) or one fewer (`delta` -1) dedicated connection to `node`.
    pub(crate) fn dedicated_connection(&self, node: &NodeAddr, delta: i64) {
        self.upstream_connections
            .with_label_values(&[node.as_str(), "dedicated"])
            .add(delta);
    }

    /// A new upstream connection's "oldest unanswered request" slot (see [`mono_ms`]).
    pub(crate) fn pending_slot(&self, node: &NodeAddr) -> Arc<AtomicU64> {
        let slot = Arc::new(AtomicU64::new(0));
        if let Ok(mut all) = self.pending.lock() {
            all.retain(|(_, w)| w.strong_count() > 0);
            all.push((node.clone(), Arc::downgrade(&slot)));
        }
        slot
    }

    /// Whether some connection to `node` has had a request unanswered for `longer` (the
    /// node is stalled or cut off without its connections closing).
    pub(crate) fn node_stalled(&self, node: &NodeAddr, longer: Duration) -> bool {
        let now = mono_ms(std::time::Instant::now());
        let limit = longer.as_millis() as u64;
        self.pending.lock().is_ok_and(|all| {
            all.iter().filter(|(n, _)| n == node).any(|(_, w)| {
                w.upgrade().is_some_and(|slot| {
                    let since = slot.load(Ordering::Relaxed);
                    since != 0 && now.saturating_sub(since) > limit
                })
            })
        })
    }

    /// Live multiplexed connections to `node`, across workers.
    pub(crate) fn live_connections(&self, node: &NodeAddr) -> i64 {
        self.upstream_connections
            .get_metric_with_label_values(&[node.as_str(), "multiplexed"])
            .map(|g| g.get())
            .unwrap_or(0)
    }

    /// Count one refresh.
    pub fn refresh(&self, trigger: RefreshTrigger, result: RefreshResult) {
        self.refreshes
            .with_label_values(&[
                TRIGGER_LABELS[trigger as usize],
                REFRESH_RESULT_LABELS[result as usize],
            ])
            .inc();
    }

    /// A new worker's flush channel: the worker flushes whenever the value changes and
    /// stores the value it flushed for into the returned counter.
    pub(crate) fn register_worker(&self) -> (watch::Receiver<u64>, Arc<AtomicU64>) {
        let ack = Arc::new(AtomicU64::new(0));
        if let Ok(mut acks) = self.acks.lock() {
            acks.push(Arc::clone(&ack));
        }
        (self.flush.subscribe(), ack)
    }

    /// Ask every worker to flush and wait (at most [`FLUSH_WAIT`]) until they did.
    pub(crate) async fn flush_workers(&self) {
        let mut target = 0;
        self.flush.send_modify(|epoch| {
            *epoch += 1;
            target = *epoch;
        });
        let acks: Vec<Arc<AtomicU64>> = self.acks.lock().map(|a| a.clone()).unwrap_or_default();
        let give_up = tokio::time::Instant::now() + FLUSH_WAIT;
        while acks.iter().any(|a| a.load(Ordering::Acquire) < target)
            && tokio::time::Instant::now() < give_up
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The registry in Prometheus text format (call [`Metrics::flush_workers`] first).
    pub(crate) fn encode(&self) -> String {
        self.process.update();
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

/// Milliseconds of `at` since the first call (process-wide, monotonic); never 0.
pub(crate) fn mono_ms(at: std::time::Instant) -> u64 {
    ns_to_ms(mono_ns(at))
}

/// A [`mono_ns`] reading as [`mono_ms`] would give it.
#[inline]
pub(crate) fn ns_to_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// Nanoseconds of `at` since the first call (process-wide, monotonic; the same base as
/// [`mono_ms`]), at least a second. Hot paths convert once per batch and subtract integers:
/// subtracting two `Instant`s costs about 60 instructions (seconds and nanoseconds are
/// normalised).
pub(crate) fn mono_ns(at: std::time::Instant) -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| at - Duration::from_secs(1));
    at.saturating_duration_since(base).as_nanos() as u64
}

/// One command's thread-local instruments, resolved on first use.
struct CommandHandles {
    counts: [Option<LocalIntCounter>; 4],
    duration: LocalLatency,
}

/// Thread-local per-node request instruments, shared by a worker's connections to a node.
pub(crate) struct NodeMetrics {
    requests: LocalIntCounter,
    duration: LocalLatency,
}

impl NodeMetrics {
    /// `n` requests written in one batch.
    #[inline]
    pub fn requests(&self, n: u64) {
        self.requests.inc_by(n);
    }

    /// One reply arrived `ns` nanoseconds after its request was written.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        self.duration.observe_ns(ns);
    }

    fn flush(&self) {
        self.requests.flush();
        self.duration.flush();
    }
}

impl Drop for NodeMetrics {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One worker's thread-local instruments.
pub(crate) struct WorkerMetrics {
    shared: Arc<Metrics>,
    commands: RefCell<Vec<Option<Box<CommandHandles>>>>,
    nodes: RefCell<HashMap<NodeAddr, Weak<NodeMetrics>>>,
}

impl WorkerMetrics {
    pub fn new(shared: Arc<Metrics>) -> WorkerMetrics {
        let mut commands = Vec::new();
        commands.resize_with(COMMAND_COUNT + 1, || None);
        WorkerMetrics {
            shared,
            commands: RefCell::new(commands),
            nodes: RefCell::new(HashMap::new()),
        }
    }

    /// The shared registry.
    #[inline]
    pub fn shared(&self) -> &Metrics {
        &self.shared
    }

    /// The shared registry, to keep.
    pub fn shared_arc(&self) -> &Arc<Metrics> {
        &self.shared
    }

    /// Count one finished client command: `cmd` is a command table index or
    /// [`UNKNOWN_COMMAND`].
    #[inline]
    pub fn command(&self, cmd: u16, result: CmdResult, elapsed_ns: u64) {
        if !self.shared.enabled {
            return;
        }
        let mut commands = self.commands.borrow_mut();
        let Some(slot) = commands.get_mut(cmd as usize) else {
            return;
        };
        let handles = slot.get_or_insert_with(|| {
            Box::new(CommandHandles {
                counts: [None, None, None, None],
                duration: self.shared.command_duration.local(command_label(cmd)),
            })
        });
        handles.counts[result as usize]
            .get_or_insert_with(|| {
                self.shared
                    .commands
                    .with_label_values(&[command_label(cmd), RESULT_LABELS[result as usize]])
                    .local()
            })
            .inc();
        handles.duration.observe_ns(elapsed_ns);
    }

    /// The request instruments for `node` (`None` when metrics are disabled).
    pub fn node(&self, node: &NodeAddr) -> Option<Rc<NodeMetrics>> {
        if !self.shared.enabled {
            return None;
        }
        let mut nodes = self.nodes.borrow_mut();
        if let Some(m) = nodes.get(node).and_then(Weak::upgrade) {
            return Some(m);
        }
        let m = Rc::new(NodeMetrics {
            requests: self
                .shared
                .upstream_requests
                .with_label_values(&[node.as_str()])
                .local(),
            duration: self.shared.upstream_duration.local(node.as_str()),
        });
        nodes.insert(node.clone(), Rc::downgrade(&m));
        Some(m)
    }

    /// Move everything counted on this thread into the shared registry.
    pub fn flush(&self) {
        for h in self.commands.borrow().iter().flatten() {
            for c in h.counts.iter().flatten() {
                c.flush();
            }
            h.duration.flush();
        }
        self.nodes
            .borrow_mut()
            .retain(|_, weak| match weak.upgrade() {
                Some(m) => {
                    m.flush();
                    true
                }
                None => false,
            });
    }
}

/// The `command` label for a table index: the lowercase Redis name (`get`, `config|get`).
pub(crate) fn command_label(cmd: u16) -> &'static str {
    if (cmd as usize) < COMMAND_COUNT {
        slotgate_commands::by_index(cmd).name
    } else {
        "unknown"
    }
}

/// `process_*` from `/proc/self` (Linux), read at scrape time.
struct ProcessMetrics {
    cpu: Counter,
    cpu_seen: Mutex<f64>,
    resident: IntGauge,
    virtual_mem: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
}

impl ProcessMetrics {
    fn register(r: &Registry) -> ProcessMetrics {
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )
        .expect("valid metric");
        r.register(Box::new(cpu.clone())).expect("unique metric");
        let start = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )
        .expect("valid metric");
        r.register(Box::new(start.clone())).expect("unique metric");
        start.set(process_start_time().unwrap_or(0.0));
        ProcessMetrics {
            cpu,
            cpu_seen: Mutex::new(0.0),
            resident: int_gauge(
                r,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_mem: int_gauge(
                r,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: int_gauge(r, "process_open_fds", "Number of open file descriptors."),
            max_fds: int_gauge(
                r,
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            threads: int_gauge(r, "process_threads", "Number of OS threads in the process."),
        }
    }

    fn update(&self) {
        if let Some(stat) = read_stat() {
            if let Ok(mut seen) = self.cpu_seen.lock() {
                if stat.cpu_seconds > *seen {
                    self.cpu.inc_by(stat.cpu_seconds - *seen);
                    *seen = stat.cpu_seconds;
                }
            }
            self.virtual_mem.set(stat.vsize as i64);
            self.threads.set(stat.threads as i64);
        }
        if let Some(rss) = resident_bytes() {
            self.resident.set(rss as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max as i64);
        }
    }
}

struct Stat {
    cpu_seconds: f64,
    threads: u64,
    vsize: u64,
    start_ticks: u64,
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Fields of `/proc/self/stat` (see proc(5)); the command name may contain spaces, so
/// fields are counted after its closing parenthesis.
fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) as f64 / TICKS_PER_SECOND,
        threads: num(20)?,
        start_ticks: num(22)?,
        vsize: num(23)?,
    })
}

fn process_start_time() -> Option<f64> {
    let stat = read_stat()?;
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    Some(btime + stat.start_ticks as f64 / TICKS_PER_SECOND)
}

fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_spaces_in_the_name() {
        let text = "1234 (slot gate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    5000 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 5000);
        assert_eq!(s.vsize, 123_456_789);
    }

    #[test]
    fn worker_counts_reach_the_registry_only_after_a_flush() {
        let m = Arc::new(Metrics::new(true));
        let w = WorkerMetrics::new(Arc::clone(&m));
        let get = slotgate_commands::lookup_name(b"get").unwrap().index;
        for _ in 0..3 {
            w.command(get, CmdResult::Ok, 120_000);
        }
        w.command(UNKNOWN_COMMAND, CmdResult::Error, 10_000);
        let before = m.encode();
        assert!(
            !before.contains("command=\"get\",result=\"ok\"} 3"),
            "{before}"
        );
        w.flush();
        let text = m.encode();
        assert!(
            text.contains("slotgate_commands_total{command=\"get\",result=\"ok\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("slotgate_commands_total{command=\"unknown\",result=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "slotgate_command_duration_seconds_bucket{command=\"get\",le=\"0.00025\"} 3"
        ));
        assert!(
            !text.contains("result=\"timeout\""),
            "unused results stay absent"
        );
    }

    #[test]
    fn disabled_metrics_count_no_commands() {
        let m = Arc::new(Metrics::new(false));
        let w = WorkerMetrics::new(Arc::clone(&m));
        w.command(0, CmdResult::Ok, 1_000);
        w.flush();
        assert!(!m.encode().contains("slotgate_commands_total{"));
        assert!(w.node(&NodeAddr::new("127.0.0.1:1")).is_none());
    }

    #[test]
    fn process_metrics_are_read() {
        let m = Metrics::new(true);
        let text = m.encode();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("slotgate_build_info{version=\""));
    }
}
