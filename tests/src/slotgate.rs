//! The real `slotgate` binary as a child process of a test.
//!
//! [`Slotgate::spawn`] writes a YAML config to a temporary file, runs `slotgate --config FILE`
//! with stdout and stderr going to a log file, and returns once the listen address answers
//! `PING` with `+PONG` (or `-NOAUTH` when the config has `users:`). The binary is
//! `$SLOTGATE_BIN` if set, else `slotgate` next to the test binary's `deps/` directory
//! (`target/<profile>/slotgate`), so `cargo build --workspace --bins` must run before
//! `cargo test` (scripts/test.sh does).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{send_signal, DirGuard, GuardedChild};

/// How long slotgate may take to answer `PING` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A minimal config (docs/configuration.md): listen on `127.0.0.1:listen_port`, upstream cluster seeds,
/// log level info.
/// ([`crate::ProxyConfig`] builds richer ones.)
pub fn slotgate_config(seeds: &[String], listen_port: u16) -> String {
    crate::ProxyConfig::new(seeds)
        .listen_port(listen_port)
        .yaml()
}

/// Path of the slotgate binary: `$SLOTGATE_BIN`, else `target/<profile>/slotgate` derived
/// from the running test binary (`target/<profile>/deps/<test>`).
///
/// # Panics
/// If the binary does not exist.
pub fn slotgate_bin() -> PathBuf {
    let path = match std::env::var_os("SLOTGATE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let mut dir = exe
                .parent()
                .expect("test binary has a directory")
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir.join(format!("slotgate{}", std::env::consts::EXE_SUFFIX))
        }
    };
    assert!(
        path.is_file(),
        "slotgate binary not found at {}: build it with cargo build -p slotgate \
         (or set SLOTGATE_BIN)",
        path.display()
    );
    path
}

/// The `listen:` address of a slotgate YAML config (top-level key, quoted or not; a
/// `${VAR}` in it is read from this process's environment, as slotgate would from its own).
///
/// # Panics
/// If there is no parseable top-level `listen:` line.
pub fn listen_addr_of(config_yaml: &str) -> SocketAddr {
    config_yaml
        .lines()
        .find_map(|line| line.strip_prefix("listen:"))
        .map(|v| {
            let v = v
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\'']);
            expand_env(v)
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `listen: \"IP:PORT\"` line in config:\n{config_yaml}"))
}

/// `text` with every `${VAR}` replaced by the variable's value (left as it is when unset).
fn expand_env(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 2..start + len];
        match std::env::var(name) {
            Ok(value) => out.push_str(&value),
            Err(_) => out.push_str(&rest[start..=start + len]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// How to start slotgate; see [`Slotgate::builder`].
#[derive(Debug, Clone)]
pub struct SlotgateBuilder {
    config_yaml: String,
    bin: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    wait_ready: bool,
}

// === impl SlotgateBuilder ===

impl SlotgateBuilder {
    /// Runs this binary instead of [`slotgate_bin`].
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// Adds a command-line argument after `--config FILE`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for the process (e.g. for `${VAR}` in the config).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Whether to wait for `PING` → `+PONG` on the listen address (default true). Turn off
    /// for TLS listeners or to observe a failing start with [`Slotgate::wait_exit`].
    pub fn wait_ready(mut self, wait: bool) -> Self {
        self.wait_ready = wait;
        self
    }

    /// Starts the process; see [`Slotgate::try_spawn`].
    ///
    /// # Errors
    /// If it exits or does not answer `PING` within 10 s; the message includes its log.
    pub fn try_spawn(self) -> Result<Slotgate, String> {
        let addr = listen_addr_of(&self.config_yaml);
        let bin = self.bin.unwrap_or_else(slotgate_bin);
        let dir = tempfile::Builder::new()
            .prefix("slotgate-proxy-")
            .tempdir()
            .expect("tempdir");
        let dir_guard = DirGuard::arm(dir.path()).expect("start bash (directory guard)");
        let config_path = dir.path().join("slotgate.yaml");
        fs::write(&config_path, &self.config_yaml).expect("write config");
        let log_path = dir.path().join("slotgate.log");
        let log = File::create(&log_path).expect("create log file");
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&config_path)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let process =
            GuardedChild::spawn(&mut cmd).map_err(|e| format!("start {}: {e}", bin.display()))?;
        let mut slotgate = Slotgate {
            process,
            addr,
            config_path,
            log_path,
            _dir_guard: dir_guard,
            _dir: dir,
        };
        if self.wait_ready {
            slotgate.wait_ready(READY_TIMEOUT)?;
        }
        Ok(slotgate)
    }

    /// Starts the process; see [`Slotgate::spawn`].
    ///
    /// # Panics
    /// As [`Slotgate::spawn`].
    pub fn spawn(self) -> Slotgate {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A running `slotgate` process; killed (`SIGKILL`) on drop.
#[derive(Debug)]
pub struct Slotgate {
    process: GuardedChild,
    addr: SocketAddr,
    config_path: PathBuf,
    log_path: PathBuf,
    _dir_guard: DirGuard,
    _dir: TempDir,
}

// === impl Slotgate ===

impl Slotgate {
    /// A builder for a process running `config_yaml`.
    pub fn builder(config_yaml: &str) -> SlotgateBuilder {
        SlotgateBuilder {
            config_yaml: config_yaml.to_string(),
            bin: None,
            args: Vec::new(),
            env: Vec::new(),
            wait_ready: true,
        }
    }

    /// Starts `slotgate --config FILE` with `config_yaml` and waits until its `listen:`
    /// address answers `PING` with `+PONG`.
    ///
    /// # Panics
    /// If the binary is missing, or the process exits or is not ready within 10 s (the
    /// message includes its log).
    pub fn spawn(config_yaml: &str) -> Slotgate {
        Self::builder(config_yaml).spawn()
    }

    /// Like [`Slotgate::spawn`], returning the failure (with the log) instead of panicking.
    ///
    /// # Errors
    /// If the process cannot start, exits, or is not ready within 10 s.
    pub fn try_spawn(config_yaml: &str) -> Result<Slotgate, String> {
        Self::builder(config_yaml).try_spawn()
    }

    /// Polls until a fresh connection gets `+PONG` for `PING`.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("not tried");
        while Instant::now() < deadline {
            if let Some(status) = self.process.try_wait() {
                return Err(format!(
                    "slotgate exited during start-up ({status}); log:\n{}",
                    self.log()
                ));
            }
            match ping(self.addr) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "slotgate not ready on {} after {timeout:?} ({last}); log:\n{}",
            self.addr,
            self.log()
        ))
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT/` for redis-rs.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// The `admin.listen` address of its config, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        let text = std::fs::read_to_string(&self.config_path).ok()?;
        let mut in_admin = false;
        for line in text.lines() {
            if line.starts_with("admin:") {
                in_admin = true;
            } else if !line.starts_with(' ') {
                in_admin = false;
            } else if in_admin {
                if let Some(v) = line.trim().strip_prefix("listen:") {
                    return v.trim().trim_matches('"').parse().ok();
                }
            }
        }
        None
    }

    /// A new redis-rs connection to it.
    ///
    /// # Panics
    /// When it does not accept the connection.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("valid url")
            .get_connection()
            .expect("connect to slotgate")
    }

    /// Open upstream connections of `kind` (`multiplexed` or `dedicated`), from `/metrics`.
    pub fn upstream_connections(&self, kind: &str) -> f64 {
        self.scrape().sum(
            "slotgate_upstream_connections",
            &[&format!("kind=\"{kind}\"")],
        )
    }

    /// One scrape of its `/metrics`.
    ///
    /// # Panics
    /// When the config has no admin port or the scrape fails.
    pub fn scrape(&self) -> crate::admin::Scrape {
        crate::admin::scrape(self.admin_addr().expect("config has an admin: section"))
    }

    /// The real pid of the slotgate process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Path of the config file it runs (rewrite it, then [`Slotgate::signal`] `"HUP"`).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything it wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, `"STOP"`, …); false if it is gone.
    pub fn signal(&self, signal: &str) -> bool {
        send_signal(self.pid(), signal)
    }

    /// Sends `SIGTERM` (graceful shutdown).
    pub fn sigterm(&self) -> bool {
        self.signal("TERM")
    }

    /// Waits up to `timeout` for the process to exit; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_timeout(timeout)
    }

    /// Exit status if it has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.process.try_wait()
    }
}

/// One `PING` on a fresh connection; `Ok` on `+PONG`, or on `-NOAUTH` when the config has
/// `users:` (the proxy is up; it wants AUTH first).
fn ping(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    if reply == "+PONG\r\n" || reply == "-NOAUTH Authentication required.\r\n" {
        Ok(())
    } else {
        Err(format!("PING answered {reply:?}"))
    }
}

/// One slotgate with the default configuration in front of the test binary's
/// [`crate::shared_cluster`], started on first use and shared by every test of the binary
/// (isolate data with [`crate::unique_key_prefix`]).
pub fn shared_proxy() -> &'static Slotgate {
    static PROXY: std::sync::OnceLock<Slotgate> = std::sync::OnceLock::new();
    PROXY.get_or_init(|| {
        Slotgate::spawn(&slotgate_config(
            &crate::shared_cluster().seeds(),
            crate::free_port(),
        ))
    })
}
