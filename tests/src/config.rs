//! A typed builder for slotgate configurations, so suites say what they configure instead of
//! assembling YAML strings: `ProxyConfig::new(&cluster.seeds()).workers(2).admin().spawn()`.
//! It writes the YAML the binary reads (docs/configuration.md); [`ProxyConfig::raw`] adds
//! lines for anything it has no method for.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tls::TestPki;
use crate::{Slotgate, SlotgateBuilder};

/// One downstream user (`users:`).
#[derive(Debug, Clone)]
struct User {
    name: String,
    /// `password: "..."`, `password_sha256: "..."` or `password: "${VAR}"` as written.
    secret: (&'static str, String),
    rules: String,
}

/// TLS on `listen` (`tls:`).
#[derive(Debug, Clone)]
struct TlsListener {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    handshake_timeout: Option<Duration>,
}

/// A slotgate configuration under construction.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    listen_port: u16,
    plaintext_port: Option<u16>,
    tls: Option<TlsListener>,
    seeds: Vec<String>,
    admin_port: Option<u16>,
    admin_metrics: Option<bool>,
    workers: Option<usize>,
    log_level: &'static str,
    log_format: Option<&'static str>,
    upstream: Vec<(&'static str, String)>,
    /// `upstream.tls.<key>: <value>` lines; `Some` makes the upstream connections TLS.
    upstream_tls: Option<Vec<(&'static str, String)>>,
    limits: Vec<(&'static str, String)>,
    /// `cache.<key>: <value>` lines; the section is written when any is set.
    cache: Vec<(&'static str, String)>,
    users: Vec<User>,
    restricted_scripts: Option<&'static str>,
    raw: String,
    /// Environment of the process (not part of the YAML).
    env: Vec<(String, String)>,
}

/// `d` as a config duration (`250ms`).
fn duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// `path` as a quoted YAML string.
fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

// === impl ProxyConfig ===

impl ProxyConfig {
    /// Listen on a free loopback port, in front of the nodes `seeds`, log level info.
    pub fn new(seeds: &[String]) -> ProxyConfig {
        ProxyConfig {
            listen_port: crate::free_port(),
            plaintext_port: None,
            tls: None,
            seeds: seeds.to_vec(),
            admin_port: None,
            admin_metrics: None,
            workers: None,
            log_level: "info",
            log_format: None,
            upstream: Vec::new(),
            upstream_tls: None,
            limits: Vec::new(),
            users: Vec::new(),
            restricted_scripts: None,
            cache: Vec::new(),
            raw: String::new(),
            env: Vec::new(),
        }
    }

    /// Listen on `port` instead.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = port;
        self
    }

    /// `listen` speaks TLS (`tls:`) with `pki`'s server certificate and key; with `mtls`,
    /// clients must present a certificate signed by `pki`'s CA (`tls.client_ca`).
    pub fn tls(mut self, pki: &TestPki, mtls: bool) -> Self {
        self.tls = Some(TlsListener {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: mtls.then(|| pki.ca.clone()),
            handshake_timeout: None,
        });
        self
    }

    /// `tls.handshake_timeout`.
    ///
    /// # Panics
    /// Unless [`ProxyConfig::tls`] came first.
    pub fn tls_handshake_timeout(mut self, d: Duration) -> Self {
        self.tls
            .as_mut()
            .expect("tls_handshake_timeout after tls")
            .handshake_timeout = Some(d);
        self
    }

    /// `plaintext_listen` on loopback `port`: plain TCP beside a TLS `listen`.
    pub fn plaintext_listen(mut self, port: u16) -> Self {
        self.plaintext_port = Some(port);
        self
    }

    /// An admin port on a free loopback port.
    pub fn admin(mut self) -> Self {
        self.admin_port = Some(crate::free_port());
        self
    }

    /// `admin.metrics` (per-command and per-upstream-request metrics; on by default). Written
    /// under `admin:`, so only with [`ProxyConfig::admin`].
    pub fn admin_metrics(mut self, on: bool) -> Self {
        self.admin_metrics = Some(on);
        self
    }

    /// `workers: n`.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// `log.level`.
    pub fn log_level(mut self, level: &'static str) -> Self {
        self.log_level = level;
        self
    }

    /// `log.format`: `text` or `json`.
    pub fn log_format(mut self, format: &'static str) -> Self {
        self.log_format = Some(format);
        self
    }

    /// `upstream.op_timeout`.
    pub fn op_timeout(self, d: Duration) -> Self {
        self.upstream_key("op_timeout", duration(d))
    }

    /// `upstream.refresh_interval`.
    pub fn refresh_interval(self, d: Duration) -> Self {
        self.upstream_key("refresh_interval", duration(d))
    }

    /// `upstream.max_dedicated_per_node`.
    pub fn max_dedicated_per_node(self, n: usize) -> Self {
        self.upstream_key("max_dedicated_per_node", n.to_string())
    }

    /// `limits.max_pipeline`.
    pub fn max_pipeline(self, n: usize) -> Self {
        self.limit("max_pipeline", n.to_string())
    }

    /// `limits.max_clients`.
    pub fn max_clients(self, n: usize) -> Self {
        self.limit("max_clients", n.to_string())
    }

    /// `limits.auth_failure_delay`.
    pub fn auth_failure_delay(self, d: Duration) -> Self {
        self.limit("auth_failure_delay", duration(d))
    }

    /// `limits.<key>: <value>` for any other limit (`"max_pubsub_backlog", "256kb"`).
    pub fn limit(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.limits.push((key, value.into()));
        self
    }

    /// In front of a standalone server (`upstream.mode: standalone`) at `addr`.
    pub fn standalone(addr: &str) -> ProxyConfig {
        ProxyConfig::new(&[addr.to_string()]).upstream_key("mode", "standalone")
    }

    /// In front of the primary the `sentinels` monitor as `master_name`
    /// (`upstream.mode: sentinel`).
    pub fn sentinel(sentinels: &[String], master_name: &str) -> ProxyConfig {
        let list: Vec<String> = sentinels.iter().map(|s| format!("\"{s}\"")).collect();
        ProxyConfig::new(&[])
            .upstream_key("mode", "sentinel")
            .upstream_key("sentinels", format!("[{}]", list.join(", ")))
            .upstream_key("master_name", master_name)
    }

    /// `upstream.<key>: <value>` for any other upstream setting.
    pub fn upstream_key(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.upstream.push((key, value.into()));
        self
    }

    /// `upstream.username` and `upstream.password`: the ACL user slotgate connects as.
    pub fn upstream_auth(self, username: &str, password: &str) -> Self {
        self.upstream_key("username", username)
            .upstream_key("password", format!("\"{password}\""))
    }

    /// `upstream.tls.ca`: TLS to every node, trusting the CA in `ca`.
    pub fn upstream_tls(self, ca: &Path) -> Self {
        self.upstream_tls_key("ca", quoted(ca))
    }

    /// `upstream.tls.server_name`: the name every node's certificate must carry.
    pub fn upstream_tls_server_name(self, name: &str) -> Self {
        self.upstream_tls_key("server_name", format!("\"{name}\""))
    }

    /// `upstream.tls.cert` and `upstream.tls.key`: the client certificate slotgate presents.
    pub fn upstream_tls_client_cert(self, cert: &Path, key: &Path) -> Self {
        self.upstream_tls_key("cert", quoted(cert))
            .upstream_tls_key("key", quoted(key))
    }

    fn upstream_tls_key(mut self, key: &'static str, value: String) -> Self {
        self.upstream_tls
            .get_or_insert_with(Vec::new)
            .push((key, value));
        self
    }

    /// A user with a clear-text password (`${VAR}` is kept for the binary to expand).
    pub fn user(mut self, name: &str, password: &str, rules: &str) -> Self {
        self.users.push(User {
            name: name.into(),
            secret: ("password", password.into()),
            rules: rules.into(),
        });
        self
    }

    /// A user whose password is given as its SHA-256 (64 hex digits).
    pub fn user_sha256(mut self, name: &str, sha256: &str, rules: &str) -> Self {
        self.users.push(User {
            name: name.into(),
            secret: ("password_sha256", sha256.into()),
            rules: rules.into(),
        });
        self
    }

    /// `scripting.restricted_users`: `refuse` or `allow`.
    pub fn restricted_scripts(mut self, policy: &'static str) -> Self {
        self.restricted_scripts = Some(policy);
        self
    }

    /// YAML lines appended as they are (top-level keys the builder has no method for).
    pub fn raw(mut self, yaml: &str) -> Self {
        self.raw.push_str(yaml);
        if !yaml.ends_with('\n') {
            self.raw.push('\n');
        }
        self
    }

    /// An environment variable for the process, e.g. the value of a `${VAR}` password. Not
    /// part of [`ProxyConfig::yaml`]: only [`ProxyConfig::builder`] and [`ProxyConfig::spawn`]
    /// pass it on.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `cache.<key>: <value>` (the read cache; `enabled: true` turns it on).
    pub fn cache(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.cache.push((key, value.into()));
        self
    }

    /// The admin address, when [`ProxyConfig::admin`] was asked for.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// The YAML file.
    pub fn yaml(&self) -> String {
        let mut y = String::new();
        let seeds: Vec<String> = self.seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let _ = writeln!(y, "listen: \"127.0.0.1:{}\"", self.listen_port);
        if let Some(port) = self.plaintext_port {
            let _ = writeln!(y, "plaintext_listen: \"127.0.0.1:{port}\"");
        }
        if let Some(tls) = &self.tls {
            let _ = writeln!(
                y,
                "tls:\n  cert: {}\n  key: {}",
                quoted(&tls.cert),
                quoted(&tls.key)
            );
            if let Some(ca) = &tls.client_ca {
                let _ = writeln!(y, "  client_ca: {}", quoted(ca));
            }
            if let Some(d) = tls.handshake_timeout {
                let _ = writeln!(y, "  handshake_timeout: {}", duration(d));
            }
        }
        y.push_str("upstream:\n");
        if !seeds.is_empty() {
            let _ = writeln!(y, "  seeds: [{}]", seeds.join(", "));
        }
        for (key, value) in &self.upstream {
            let _ = writeln!(y, "  {key}: {value}");
        }
        if let Some(tls) = &self.upstream_tls {
            y.push_str("  tls:\n");
            for (key, value) in tls {
                let _ = writeln!(y, "    {key}: {value}");
            }
        }
        if !self.limits.is_empty() {
            y.push_str("limits:\n");
            for (key, value) in &self.limits {
                let _ = writeln!(y, "  {key}: {value}");
            }
        }
        if !self.cache.is_empty() {
            y.push_str("cache:\n");
            for (key, value) in &self.cache {
                let _ = writeln!(y, "  {key}: {value}");
            }
        }
        if let Some(port) = self.admin_port {
            let _ = writeln!(y, "admin:\n  listen: \"127.0.0.1:{port}\"");
            if let Some(on) = self.admin_metrics {
                let _ = writeln!(y, "  metrics: {on}");
            }
        }
        if let Some(n) = self.workers {
            let _ = writeln!(y, "workers: {n}");
        }
        if !self.users.is_empty() {
            y.push_str("users:\n");
            for u in &self.users {
                let _ = writeln!(
                    y,
                    "  - name: \"{}\"\n    {}: \"{}\"\n    rules: \"{}\"",
                    u.name, u.secret.0, u.secret.1, u.rules
                );
            }
        }
        if let Some(policy) = self.restricted_scripts {
            let _ = writeln!(y, "scripting:\n  restricted_users: {policy}");
        }
        match self.log_format {
            Some(format) => {
                let _ = writeln!(y, "log: {{ level: {}, format: {format} }}", self.log_level);
            }
            None => {
                let _ = writeln!(y, "log: {{ level: {} }}", self.log_level);
            }
        }
        y.push_str(&self.raw);
        y
    }

    /// A [`Slotgate::builder`] for this configuration, with its [`ProxyConfig::env`].
    pub fn builder(&self) -> SlotgateBuilder {
        self.env
            .iter()
            .fold(Slotgate::builder(&self.yaml()), |b, (key, value)| {
                b.env(key, value)
            })
    }

    /// Start the real binary with this configuration (see [`Slotgate::spawn`]).
    pub fn spawn(&self) -> Slotgate {
        self.builder().spawn()
    }
}
