//! Every upstream node gone at once, then back, under load through slotgate: clients get a
//! clear error within `upstream.op_timeout` (never a hang), slotgate stays up, and it
//! serves again without a restart once the nodes return.
//!
//! Two ways to lose the whole cluster:
//! - killed (`SIGKILL`) and restarted: connections are refused; the nodes run with
//!   `appendonly yes` and `appendfsync always` so the cluster keeps every acknowledged write
//!   (without persistence a restarted cluster comes back empty);
//! - stalled (`SIGSTOP`) and continued: connections stay open but nothing answers (a hung
//!   host, a network partition that drops packets).
//!
//! One scenario runs at a time (the machine has 2 cores).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slotgate_tests::admin::http_get;
use slotgate_tests::{assert_eventually, cluster_under_load, ClusterOptions, Slotgate};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// slotgate's default `upstream.op_timeout`.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(300);

/// The status code of `GET path` on the admin port (panics if the admin port is gone:
/// slotgate must stay up).
fn status(admin: SocketAddr, path: &str) -> u16 {
    http_get(admin, path)
        .unwrap_or_else(|e| panic!("admin port gone during the outage: {path}: {e}"))
        .0
}

/// Polls `/healthz` and `/readyz` every 20 ms in a thread of its own, so what the admin port
/// says is seen at once, not only between two slow client commands.
struct AdminWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<AdminSample>>,
}

/// One poll: when, `/healthz` (`Err` if the admin port did not answer), `/readyz`.
#[derive(Debug, Clone)]
struct AdminSample {
    at: Instant,
    healthz: Result<u16, String>,
    readyz: Result<(u16, String), String>,
}

impl AdminWatch {
    fn start(admin: SocketAddr) -> AdminWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.push(AdminSample {
                    at: Instant::now(),
                    healthz: http_get(admin, "/healthz").map(|(code, _)| code),
                    readyz: http_get(admin, "/readyz"),
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        AdminWatch { stop, thread }
    }

    fn stop(self) -> Vec<AdminSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("admin watcher")
    }
}

/// Asserts `/healthz` answered 200 in every sample.
fn assert_always_healthy(samples: &[AdminSample]) {
    assert!(!samples.is_empty());
    for s in samples {
        assert_eq!(
            s.healthz,
            Ok(200),
            "/healthz during the outage: {:?}",
            s.healthz
        );
    }
}

/// One client command through slotgate, timed by the client.
#[derive(Debug)]
struct Probe {
    took: Duration,
    result: Result<(), String>,
}

/// A client that notices a hang: its reads give up after 3 × op_timeout.
struct Prober {
    conn: redis::Connection,
    n: u64,
    prefix: &'static str,
}

impl Prober {
    fn connect(proxy: &Slotgate, prefix: &'static str) -> Prober {
        let conn = redis::Client::open(proxy.url())
            .unwrap()
            .get_connection()
            .expect("connect through slotgate");
        conn.set_read_timeout(Some(OP_TIMEOUT * 3)).unwrap();
        Prober { conn, n: 0, prefix }
    }

    /// `SET` of a fresh key.
    fn set(&mut self) -> Probe {
        self.n += 1;
        let key = format!("{}{}", self.prefix, self.n);
        let start = Instant::now();
        let result = redis::cmd("SET")
            .arg(&key)
            .arg(self.n)
            .query::<()>(&mut self.conn)
            .map_err(|e| e.to_string());
        Probe {
            took: start.elapsed(),
            result,
        }
    }

    /// Sends `SET`s until one succeeds; returns when it did.
    fn until_success(&mut self, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if self.set().result.is_ok() {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "slotgate did not serve again");
        }
    }
}

/// Checks what clients saw while the cluster was away: every command failed (no hang) within
/// op_timeout, with a message containing one of `allowed` (lower case). Returns the distinct messages.
fn check_probes(probes: &[Probe], allowed: &[&str]) -> Vec<String> {
    assert!(!probes.is_empty(), "no command was tried during the outage");
    let mut messages: Vec<String> = Vec::new();
    for p in probes {
        let Err(message) = &p.result else {
            continue; // the command that straddled the nodes' return
        };
        assert!(
            p.took <= OP_TIMEOUT + SLACK,
            "an error took {:?} (op_timeout {OP_TIMEOUT:?}): {message}",
            p.took
        );
        assert!(
            allowed.iter().any(|a| message.to_lowercase().contains(a)),
            "unclear error during the outage: {message}"
        );
        let kind = message.split(':').next().unwrap_or("").to_string();
        if !messages.contains(&kind) {
            messages.push(kind);
        }
    }
    messages
}

/// Every error the load saw falls between `from` and `to`, with a message from `allowed`.
fn check_load_errors(
    report: &slotgate_tests::LoadReport,
    from: Instant,
    to: Instant,
    allowed: &[&str],
) {
    for e in &report.errors {
        assert!(
            e.at >= from && e.at <= to,
            "an error outside the outage ({:?} after it began, recovered {:?}): {e:?}",
            e.at.saturating_duration_since(from),
            to.duration_since(from)
        );
        assert!(
            allowed.iter().any(|a| e.message.to_lowercase().contains(a)),
            "unclear error: {e:?}"
        );
    }
}

#[test]
fn all_nodes_killed_and_restarted() {
    let _serial = serial();
    let options = ClusterOptions {
        // `always`: the AOF is written and synced before the reply leaves. With the default
        // `everysec`, Redis postpones the write while a background fsync is still running
        // but replies anyway, and a SIGKILL then loses acknowledged writes (seen here: a
        // primary came back with 1 of its ~80 keys).
        extra_args: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..ClusterOptions::default()
    };
    let (cluster, proxy, load) = cluster_under_load(options, "okill:");
    let admin = proxy.admin_addr().unwrap();
    assert_eventually!(status(admin, "/readyz") == 200, Duration::from_secs(10));
    let mut prober = Prober::connect(&proxy, "okill-probe:");
    assert!(prober.set().result.is_ok());

    let nodes = cluster.nodes();
    let killed_at = Instant::now();
    for &port in &nodes {
        cluster.kill_node(port);
    }
    let watch = AdminWatch::start(admin);
    let mut probes = Vec::new();
    while killed_at.elapsed() < Duration::from_secs(5) {
        probes.push(prober.set());
    }
    let samples = watch.stop();
    assert_always_healthy(&samples);
    let first_503 = samples
        .iter()
        .find(|s| matches!(s.readyz, Ok((503, _))))
        .unwrap_or_else(|| panic!("/readyz never answered 503 with every node dead: {samples:?}"));
    let not_ready_at = first_503.at.duration_since(killed_at);
    let readyz_during = first_503.readyz.clone().unwrap();
    let last = samples.last().unwrap();
    assert!(
        matches!(last.readyz, Ok((503, _))),
        "/readyz back to 200 with every node dead: {:?}",
        last.readyz
    );

    let restarting = Instant::now();
    for &port in &nodes {
        cluster.restart_node(port);
    }
    let returned_at = Instant::now();
    let first_success = prober.until_success(Duration::from_secs(20));
    cluster.wait_healthy(Duration::from_secs(30));
    let healthy_at = Instant::now();
    assert_eventually!(
        status(admin, "/readyz") == 200,
        Duration::from_secs(10),
        "/readyz not 200 after the nodes returned: {:?}",
        http_get(admin, "/readyz")
    );
    let ready_at = Instant::now();
    let before = load.acked_count();
    assert_eventually!(
        load.acked_count() > before + 500,
        Duration::from_secs(10),
        "the load did not resume"
    );
    let report = load.stop();

    // Lower case: redis-rs shows `-CLUSTERDOWN …` as `ClusterDown: …`.
    let allowed = [
        "clusterdown",
        "tryagain",
        "may have been executed",
        "loading",
    ];
    let messages = check_probes(&probes, &allowed);
    check_load_errors(&report, killed_at, first_success + SLACK, &allowed);
    assert!(
        not_ready_at <= Duration::from_secs(1),
        "/readyz took {not_ready_at:?} to turn 503"
    );
    // appendonly yes: the cluster kept every acknowledged write across the kill.
    report.assert_no_lost_writes(&proxy.url());
    let recovery = first_success.duration_since(returned_at);
    eprintln!(
        "all nodes killed: {} probes failed in {:?}..{:?} each ({messages:?}); /readyz 503 after {not_ready_at:?} ({}), /healthz 200 throughout; \
         restarts took {:?}; first success {recovery:?} after the last node answered PING, cluster healthy {:?} after, /readyz 200 {:?} after; \
         load: {} errors, {} writes, {} reads, 0 lost",
        probes.iter().filter(|p| p.result.is_err()).count(),
        probes.iter().map(|p| p.took).min().unwrap(),
        probes.iter().map(|p| p.took).max().unwrap(),
        readyz_during.1.trim(),
        returned_at.duration_since(restarting),
        healthy_at.duration_since(returned_at),
        ready_at.duration_since(returned_at),
        report.errors.len(),
        report.acked.len(),
        report.reads,
    );
    // A restarted primary keeps cluster_state:fail for 2 s (CLUSTER_WRITABLE_DELAY): that
    // part is the cluster's. slotgate may add at most a second to it.
    assert!(
        recovery <= Duration::from_secs(3),
        "slotgate served again only {recovery:?} after the nodes returned"
    );
}

#[test]
fn all_nodes_stalled_and_continued() {
    let _serial = serial();
    // A stall shorter than cluster-node-timeout: the cluster itself sees no failure and
    // fails nothing over when the nodes continue; what is measured is slotgate alone.
    let options = ClusterOptions {
        node_timeout_ms: 5000,
        ..ClusterOptions::default()
    };
    let (cluster, proxy, load) = cluster_under_load(options, "ostop:");
    let admin = proxy.admin_addr().unwrap();
    assert_eventually!(status(admin, "/readyz") == 200, Duration::from_secs(10));
    let mut prober = Prober::connect(&proxy, "ostop-probe:");
    assert!(prober.set().result.is_ok());

    let nodes = cluster.nodes();
    let stopped_at = Instant::now();
    for &port in &nodes {
        cluster.stop_node(port);
    }
    let watch = AdminWatch::start(admin);
    let mut probes = Vec::new();
    while stopped_at.elapsed() < Duration::from_millis(3500) {
        probes.push(prober.set());
    }
    let samples = watch.stop();
    assert_always_healthy(&samples);
    let mut readyz_seen: Vec<u16> = Vec::new();
    for s in &samples {
        let code = s.readyz.as_ref().map_or(0, |(code, _)| *code);
        if !readyz_seen.contains(&code) {
            readyz_seen.push(code);
        }
    }
    // Commands wait op_timeout (2 s) on the stalled nodes: once a request has waited that
    // long, /readyz must say the primaries do not answer.
    let stalled_503 = samples.iter().find(|s| {
        s.at.duration_since(stopped_at) > Duration::from_millis(2100)
            && matches!(&s.readyz, Ok((503, body)) if body.contains("has not answered"))
    });
    assert!(
        stalled_503.is_some(),
        "/readyz never said 503 while every node was stalled: {readyz_seen:?}"
    );
    for &port in &nodes {
        cluster.cont_node(port);
    }
    let returned_at = Instant::now();
    let first_success = prober.until_success(Duration::from_secs(20));
    cluster.wait_healthy(Duration::from_secs(30));
    let before = load.acked_count();
    assert_eventually!(
        load.acked_count() > before + 500,
        Duration::from_secs(10),
        "the load did not resume"
    );
    let report = load.stop();

    let allowed = ["tryagain", "clusterdown", "may have been executed"];
    let messages = check_probes(&probes, &allowed);
    check_load_errors(&report, stopped_at, first_success + SLACK, &allowed);
    report.assert_no_lost_writes(&proxy.url());
    let failed: Vec<&Probe> = probes.iter().filter(|p| p.result.is_err()).collect();
    assert!(
        !failed.is_empty(),
        "no command failed while every node was stopped"
    );
    // A write that timed out was already on its way to the node: it runs when the node
    // continues. Count how many of the load's failed SETs the cluster nevertheless holds.
    let mut direct = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let failed_sets: Vec<&String> = report
        .errors
        .iter()
        .filter(|e| e.op == "SET")
        .map(|e| &e.key)
        .collect();
    let executed = failed_sets
        .iter()
        .filter(|k| {
            redis::cmd("EXISTS")
                .arg(k.as_str())
                .query::<u64>(&mut direct)
                .unwrap()
                == 1
        })
        .count();
    let recovery = first_success.duration_since(returned_at);
    eprintln!(
        "all nodes stopped: {} probes failed after {:?}..{:?} ({messages:?}); /readyz answered {readyz_seen:?} during the stall, /healthz 200; \
         first success {recovery:?} after SIGCONT; load: {} errors ({} failed SETs, {executed} of them executed by the cluster after it continued), \
         {} writes, {} reads, 0 lost",
        failed.len(),
        failed.iter().map(|p| p.took).min().unwrap(),
        failed.iter().map(|p| p.took).max().unwrap(),
        report.errors.len(),
        failed_sets.len(),
        report.acked.len(),
        report.reads,
    );
    assert!(
        recovery <= Duration::from_secs(1),
        "slotgate served again only {recovery:?} after the nodes continued"
    );
}
