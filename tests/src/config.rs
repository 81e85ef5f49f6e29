//! A typed builder for slotgate configurations, so suites say what they configure instead of
//! assembling YAML strings: `ProxyConfig::new(&cluster.seeds()).workers(2).admin().spawn()`.
//! It writes the YAML the binary reads (docs/configuration.md); [`ProxyConfig::raw`] adds
//! lines for anything it has no method for.

use std::fmt::Write as _;
use std::time::Duration;

use crate::{Slotgate, SlotgateBuilder};

/// One downstream user (`users:`).
#[derive(Debug, Clone)]
struct User {
    name: String,
    /// `password: "..."`, `password_sha256: "..."` or `password: "${VAR}"` as written.
    secret: (&'static str, String),
    rules: String,
}

/// A slotgate configuration under construction.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    listen_port: u16,
    seeds: Vec<String>,
    admin_port: Option<u16>,
    workers: Option<usize>,
    log_level: &'static str,
    upstream: Vec<(&'static str, String)>,
    limits: Vec<(&'static str, String)>,
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

// === impl ProxyConfig ===

impl ProxyConfig {
    /// Listen on a free loopback port, in front of the nodes `seeds`, log level info.
    pub fn new(seeds: &[String]) -> ProxyConfig {
        ProxyConfig {
            listen_port: crate::free_port(),
            seeds: seeds.to_vec(),
            admin_port: None,
            workers: None,
            log_level: "info",
            upstream: Vec::new(),
            limits: Vec::new(),
            users: Vec::new(),
            restricted_scripts: None,
            raw: String::new(),
            env: Vec::new(),
        }
    }

    /// Listen on `port` instead.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = port;
        self
    }

    /// An admin port on a free loopback port.
    pub fn admin(mut self) -> Self {
        self.admin_port = Some(crate::free_port());
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

    /// `upstream.<key>: <value>` for any other upstream setting.
    pub fn upstream_key(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.upstream.push((key, value.into()));
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

    /// The admin address, when [`ProxyConfig::admin`] was asked for.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// The YAML file.
    pub fn yaml(&self) -> String {
        let mut y = String::new();
        let seeds: Vec<String> = self.seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let _ = writeln!(y, "listen: \"127.0.0.1:{}\"", self.listen_port);
        let _ = writeln!(y, "upstream:\n  seeds: [{}]", seeds.join(", "));
        for (key, value) in &self.upstream {
            let _ = writeln!(y, "  {key}: {value}");
        }
        if !self.limits.is_empty() {
            y.push_str("limits:\n");
            for (key, value) in &self.limits {
                let _ = writeln!(y, "  {key}: {value}");
            }
        }
        if let Some(port) = self.admin_port {
            let _ = writeln!(y, "admin:\n  listen: \"127.0.0.1:{port}\"");
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
        let _ = writeln!(y, "log: {{ level: {} }}", self.log_level);
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
