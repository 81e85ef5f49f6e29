//! A Sentinel-managed deployment on loopback: one primary, two replicas and three
//! `redis-sentinel`s (the server binary run with `--sentinel`), every port from the OS. The
//! primary alone also stands in for a standalone server.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::cluster_server_binary;
use crate::ports::free_port;
use crate::probe::{self, Reply};
use crate::process::{DirGuard, GuardedChild};
use crate::wait_until;

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "mymaster";
/// `down-after-milliseconds` of the sentinels.
pub const DOWN_AFTER: Duration = Duration::from_millis(2000);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a [`SentinelGroup`].
#[derive(Clone, Default)]
pub struct SentinelOptions {
    /// `requirepass` of the sentinels (their own password).
    pub sentinel_password: Option<String>,
    /// The sentinels also listen with TLS (a `tls-port` serving this PKI's server
    /// certificate; clients need no certificate), beside their plaintext port. The group then
    /// runs the `redis-server` from PATH whatever `SLOTGATE_REDIS_SERVER` says.
    pub tls: Option<std::sync::Arc<crate::tls::TestPki>>,
}

struct Proc {
    port: u16,
    /// The TLS port of a sentinel started with [`SentinelOptions::tls`].
    tls_port: Option<u16>,
    child: Option<GuardedChild>,
}

/// One primary, two replicas, three sentinels; all killed on drop.
pub struct SentinelGroup {
    binary: PathBuf,
    dir: tempfile::TempDir,
    _guard: DirGuard,
    nodes: Mutex<Vec<Proc>>,
    sentinels: Mutex<Vec<Proc>>,
    options: SentinelOptions,
}

impl SentinelGroup {
    /// Start the deployment and wait until the sentinels know the primary, both replicas
    /// and each other.
    ///
    /// # Panics
    /// When a server cannot start or the group does not settle within 20 s.
    pub fn start(options: SentinelOptions) -> SentinelGroup {
        let dir = tempfile::Builder::new()
            .prefix("slotgate-sentinel-")
            .tempdir()
            .expect("tempdir");
        let guard = DirGuard::arm(dir.path()).expect("directory guard");
        // The Redis 8.2 and Valkey 8.1 builds the kit fetches have no TLS: sentinels that
        // speak TLS run on the `redis-server` from PATH (Redis 7.0, built with TLS).
        let binary = match options.tls {
            Some(_) => PathBuf::from("redis-server"),
            None => cluster_server_binary(),
        };
        let group = SentinelGroup {
            binary,
            _guard: guard,
            dir,
            nodes: Mutex::new(Vec::new()),
            sentinels: Mutex::new(Vec::new()),
            options,
        };
        let primary = group.spawn_node(None);
        for _ in 0..2 {
            group.spawn_node(Some(primary));
        }
        for _ in 0..3 {
            group.spawn_sentinel(primary);
        }
        let settled = wait_until(START_TIMEOUT, || {
            group.replicas_in_sync(primary) == 2
                && group.sentinel_ports().iter().all(|&s| {
                    group
                        .sentinel_query(s, &["SENTINEL", "SENTINELS", MASTER_NAME])
                        .map(|r| r.array().len() == 2)
                        .unwrap_or(false)
                        && group
                            .sentinel_query(s, &["SENTINEL", "REPLICAS", MASTER_NAME])
                            .map(|r| r.array().len() == 2)
                            .unwrap_or(false)
                })
        });
        assert!(
            settled,
            "the sentinel group did not settle in {START_TIMEOUT:?}"
        );
        group
    }

    fn spawn_node(&self, replica_of: Option<u16>) -> u16 {
        let port = free_port();
        let dir = self.dir.path().join(format!("node-{port}"));
        fs::create_dir_all(&dir).expect("node dir");
        let mut nodes = self.nodes.lock().unwrap();
        nodes.push(Proc {
            port,
            tls_port: None,
            child: None,
        });
        drop(nodes);
        self.start_node(port, replica_of);
        port
    }

    fn start_node(&self, port: u16, replica_of: Option<u16>) {
        let dir = self.dir.path().join(format!("node-{port}"));
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("log"));
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = GuardedChild::spawn(&mut cmd).expect("start redis-server");
        let mut nodes = self.nodes.lock().unwrap();
        let proc = nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("known node");
        proc.child = Some(child);
        drop(nodes);
        assert!(
            wait_until(Duration::from_secs(10), || self
                .query(port, &["PING"])
                .is_ok()),
            "redis-server on {port} did not answer"
        );
    }

    fn spawn_sentinel(&self, primary: u16) {
        let port = free_port();
        let dir = self.dir.path().join(format!("sentinel-{port}"));
        fs::create_dir_all(&dir).expect("sentinel dir");
        let conf = dir.join("sentinel.conf");
        let mut text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\nlogfile {}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {}\n\
             sentinel failover-timeout {MASTER_NAME} 10000\n\
             sentinel parallel-syncs {MASTER_NAME} 2\n",
            dir.display(),
            dir.join("log").display(),
            DOWN_AFTER.as_millis()
        );
        if let Some(pw) = &self.options.sentinel_password {
            text.push_str(&format!("requirepass {pw}\n"));
        }
        let tls_port = self.options.tls.as_ref().map(|pki| {
            let tls_port = free_port();
            text.push_str(&format!(
                "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\n",
                pki.server_cert.display(),
                pki.server_key.display(),
                pki.ca.display()
            ));
            tls_port
        });
        fs::write(&conf, text).expect("write sentinel.conf");
        let mut cmd = Command::new(&self.binary);
        cmd.arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = GuardedChild::spawn(&mut cmd).expect("start redis-server --sentinel");
        self.sentinels.lock().unwrap().push(Proc {
            port,
            tls_port,
            child: Some(child),
        });
        assert!(
            wait_until(Duration::from_secs(10), || self
                .sentinel_query(port, &["PING"])
                .is_ok()),
            "sentinel on {port} did not answer"
        );
    }

    /// `host:port` of every sentinel.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinel_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// `host:port` of every sentinel's TLS port ([`SentinelOptions::tls`]).
    ///
    /// # Panics
    /// Without TLS.
    pub fn sentinel_tls_addrs(&self) -> Vec<String> {
        self.sentinels
            .lock()
            .unwrap()
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.tls_port.expect("sentinels without TLS")))
            .collect()
    }

    /// Ports of the sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.port)
            .collect()
    }

    /// Ports of the data nodes (the first started as primary).
    pub fn nodes(&self) -> Vec<u16> {
        self.nodes.lock().unwrap().iter().map(|n| n.port).collect()
    }

    /// The node whose ROLE is master (the first, when several claim it).
    ///
    /// # Panics
    /// When none does.
    pub fn primary(&self) -> u16 {
        self.nodes()
            .into_iter()
            .find(|&p| self.role(p).as_deref() == Some("master"))
            .expect("a node whose ROLE is master")
    }

    /// The port the sentinels name as primary (asked of the first sentinel that answers).
    pub fn sentinels_primary(&self) -> Option<u16> {
        self.sentinel_ports().into_iter().find_map(|s| {
            let r = self
                .sentinel_query(s, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
                .ok()?;
            r.array().get(1)?.text()?.parse().ok()
        })
    }

    /// `ROLE`'s first word for the node on `port` (`master`, `slave`), `None` if it does not
    /// answer.
    pub fn role(&self, port: u16) -> Option<String> {
        self.query(port, &["ROLE"]).ok()?.array().first()?.text()
    }

    /// Replicas of `primary` with `master_link_status:up`.
    pub fn replicas_in_sync(&self, primary: u16) -> usize {
        self.nodes()
            .into_iter()
            .filter(|&p| p != primary)
            .filter(|&p| {
                self.query(p, &["INFO", "replication"])
                    .map(|r| {
                        let text = r.string();
                        text.contains(&format!("master_port:{primary}"))
                            && text.contains("master_link_status:up")
                    })
                    .unwrap_or(false)
            })
            .count()
    }

    /// One command to the data node on `port`.
    ///
    /// # Errors
    /// When it does not answer within 500 ms.
    pub fn query(&self, port: u16, args: &[&str]) -> Result<Reply, String> {
        probe::query(port, args, PROBE_TIMEOUT)
    }

    /// One command to the sentinel on `port` (authenticated when it has a password).
    ///
    /// # Errors
    /// When it does not answer within 500 ms.
    pub fn sentinel_query(&self, port: u16, args: &[&str]) -> Result<Reply, String> {
        match &self.options.sentinel_password {
            None => probe::query(port, args, PROBE_TIMEOUT),
            Some(pw) => probe::query_authed(port, pw, args, PROBE_TIMEOUT),
        }
    }

    /// `SENTINEL FAILOVER` on the first sentinel; returns once the sentinels name a new
    /// primary whose ROLE is master, and its port.
    ///
    /// # Panics
    /// When that takes more than 30 s.
    pub fn failover(&self) -> u16 {
        let old = self.sentinels_primary().expect("sentinels name a primary");
        let first = self.sentinel_ports()[0];
        let reply = self
            .sentinel_query(first, &["SENTINEL", "FAILOVER", MASTER_NAME])
            .expect("SENTINEL FAILOVER");
        assert_eq!(reply, Reply::Status("OK".into()), "SENTINEL FAILOVER");
        self.wait_new_primary(old, Duration::from_secs(30))
    }

    /// Wait until the sentinels name a primary other than `old` and its ROLE says master.
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub fn wait_new_primary(&self, old: u16, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.sentinels_primary() {
                if p != old && self.role(p).as_deref() == Some("master") {
                    return p;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no new primary after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `SIGKILL` the data node on `port`.
    pub fn kill_node(&self, port: u16) {
        let mut nodes = self.nodes.lock().unwrap();
        let proc = nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("known node");
        if let Some(mut child) = proc.child.take() {
            child.kill();
        }
    }

    /// Start a killed node again, with its old command line: a former primary comes back
    /// as a primary (empty, no persistence) until the sentinels convert it.
    pub fn restart_node(&self, port: u16) {
        self.start_node(port, None);
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for list in [&self.sentinels, &self.nodes] {
            if let Ok(mut list) = list.lock() {
                for p in list.iter_mut() {
                    if let Some(mut c) = p.child.take() {
                        c.kill();
                    }
                }
            }
        }
    }
}
