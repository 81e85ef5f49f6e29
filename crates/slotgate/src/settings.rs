//! The YAML configuration file (docs/configuration.md): parsed strictly (unknown keys are errors),
//! `${VAR}` expanded, units resolved, validated, and turned into the engine's [`Config`].

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use slotgate_proxy::{
    AdminCommands, CacheConfig, Config, LimitsConfig, ReadFrom, RestrictedScripts, SentinelConfig,
    TlsConfig, UpstreamConfig, UpstreamMode, UpstreamTlsConfig,
};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: String,
    #[serde(default)]
    plaintext_listen: Option<String>,
    #[serde(default)]
    tls: Option<FileTls>,
    #[serde(default)]
    admin: Option<FileAdmin>,
    upstream: FileUpstream,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    workers: usize,
    #[serde(default)]
    shutdown_grace: Option<String>,
    #[serde(default)]
    log: LogSettings,
    #[serde(default)]
    users: Vec<users::FileUser>,
    #[serde(default)]
    users_file: Option<String>,
    #[serde(default)]
    scripting: FileScripting,
    #[serde(default)]
    cache: FileCache,
}

/// `cache:` — the opt-in read cache.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    max_memory: Option<String>,
    #[serde(default)]
    max_ttl: Option<String>,
    #[serde(default)]
    keys: Option<Vec<String>>,
    #[serde(default)]
    max_value_size: Option<String>,
}

/// `scripting:` — script and function commands of restricted users.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScripting {
    /// `refuse` (default) or `allow`.
    #[serde(default)]
    restricted_users: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: String,
    key: String,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    handshake_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstreamTls {
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: String,
    #[serde(default)]
    metrics: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    seeds: Vec<String>,
    #[serde(default)]
    sentinels: Vec<String>,
    #[serde(default)]
    master_name: Option<String>,
    #[serde(default)]
    sentinel_username: Option<String>,
    #[serde(default)]
    sentinel_password: Option<String>,
    #[serde(default)]
    sentinel_tls: Option<FileUpstreamTls>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
    #[serde(default)]
    refresh_interval: Option<String>,
    #[serde(default)]
    connect_timeout: Option<String>,
    #[serde(default)]
    op_timeout: Option<String>,
    #[serde(default)]
    max_redirects: Option<u8>,
    #[serde(default)]
    connections_per_node: Option<usize>,
    #[serde(default)]
    read_from: Option<String>,
    #[serde(default)]
    max_replica_lag: Option<String>,
    #[serde(default)]
    tls: Option<FileUpstreamTls>,
    #[serde(default)]
    max_dedicated_per_node: Option<usize>,
    #[serde(default)]
    admin_commands: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    #[serde(default)]
    max_clients: Option<usize>,
    #[serde(default)]
    client_idle_timeout: Option<String>,
    #[serde(default)]
    max_request_bytes: Option<String>,
    #[serde(default)]
    max_pipeline: Option<usize>,
    #[serde(default)]
    auth_failure_delay: Option<String>,
    #[serde(default)]
    max_pubsub_backlog: Option<String>,
    #[serde(default)]
    max_client_output: Option<String>,
    #[serde(default)]
    client_output_soft: Option<String>,
    #[serde(default)]
    client_output_soft_timeout: Option<String>,
    #[serde(default)]
    max_buffered: Option<String>,
    #[serde(default)]
    max_tracked_keys: Option<usize>,
}

/// `log:` — level and format of the process's log lines (stderr).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_level() -> String {
    "info".into()
}
fn default_format() -> String {
    "text".into()
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: default_level(),
            format: default_format(),
        }
    }
}

/// `admin:` — the HTTP port for /metrics, /healthz, /readyz and /topology.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where the admin server listens.
    pub listen: SocketAddr,
}

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Settings {
    /// What the engine runs with.
    pub proxy: Config,
    /// The admin server (`None`: no admin port).
    pub admin: Option<AdminSettings>,
    /// Logging.
    pub log: LogSettings,
}

impl Settings {
    /// The effective configuration as YAML-ish text, secrets masked.
    pub fn describe(&self) -> String {
        let p = &self.proxy;
        let u = &p.upstream;
        let mut s = String::new();
        let _ = writeln!(s, "listen: \"{}\"", p.listen);
        if let Some(pl) = &p.plaintext_listen {
            let _ = writeln!(s, "plaintext_listen: \"{pl}\"");
        }
        if let Some(t) = &p.tls {
            let _ = writeln!(
                s,
                "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n  handshake_timeout: {:?}",
                t.cert.display(),
                t.key.display(),
                t.client_ca
                    .as_ref()
                    .map(|c| c.display().to_string())
                    .unwrap_or_else(|| "none".into()),
                t.handshake_timeout
            );
        }
        if let Some(a) = &self.admin {
            let _ = writeln!(
                s,
                "admin:\n  listen: \"{}\"\n  metrics: {}",
                a.listen, p.metrics
            );
        }
        let _ = writeln!(s, "upstream:\n  mode: {}", u.mode.name());
        if let UpstreamMode::Sentinel(sc) = &u.mode {
            let _ = writeln!(
                s,
                "  sentinels: {:?}\n  master_name: {}",
                sc.sentinels, sc.master_name
            );
            if let Some(user) = &sc.username {
                let _ = writeln!(s, "  sentinel_username: {user}");
            }
            if sc.password.is_some() {
                let _ = writeln!(s, "  sentinel_password: \"********\"");
            }
            if let Some(t) = &sc.tls {
                let _ = writeln!(s, "  sentinel_tls: {}", describe_tls(t));
            }
        } else {
            let _ = writeln!(s, "  seeds: {:?}", u.seeds);
        }
        if let Some(user) = &u.username {
            let _ = writeln!(s, "  username: {user}");
        }
        if u.password.is_some() {
            let _ = writeln!(s, "  password: \"********\"");
        }
        let _ = writeln!(
            s,
            "  refresh_interval: {:?}\n  connect_timeout: {:?}\n  op_timeout: {:?}\n  max_redirects: {}\n  connections_per_node: {}\n  read_from: {}\n  max_replica_lag: {:?}",
            u.refresh_interval, u.connect_timeout, u.op_timeout, u.max_redirects, u.connections_per_node,
            u.read_from.name(), u.max_replica_lag
        );
        let _ = writeln!(s, "  max_dedicated_per_node: {}", u.max_dedicated_per_node);
        let _ = writeln!(s, "  admin_commands: {}", p.admin_commands().name());
        if let Some(t) = &u.tls {
            let _ = writeln!(s, "  tls: {}", describe_tls(t));
        }
        let l = &p.limits;
        let _ = writeln!(
            s,
            "limits:\n  max_clients: {}\n  client_idle_timeout: {}\n  max_request_bytes: {}\n  max_pipeline: {}",
            l.max_clients,
            l.client_idle_timeout.map(|d| format!("{d:?}")).unwrap_or_else(|| "0s".into()),
            l.max_request_bytes,
            l.max_pipeline
        );
        let _ = writeln!(s, "  auth_failure_delay: {:?}", l.auth_failure_delay);
        let _ = writeln!(s, "  max_pubsub_backlog: {}", l.max_pubsub_backlog);
        let _ = writeln!(s, "  max_tracked_keys: {}", l.max_tracked_keys);
        let _ = writeln!(
            s,
            "  max_client_output: {}\n  client_output_soft: {}\n  client_output_soft_timeout: {:?}\n  max_buffered: {}",
            l.max_client_output, l.client_output_soft, l.client_output_soft_timeout, l.max_buffered
        );
        let c = &p.cache;
        let _ = writeln!(
            s,
            "cache:\n  enabled: {}\n  max_memory: {}\n  max_ttl: {:?}\n  keys: {:?}\n  max_value_size: {}",
            c.enabled, c.max_memory, c.max_ttl, c.keys, c.max_value_size
        );
        users::describe(&mut s, &p.users);
        let _ = writeln!(
            s,
            "scripting:\n  restricted_users: {}",
            match p.restricted_scripts {
                RestrictedScripts::Mirror => "mirror",
                RestrictedScripts::Refuse => "refuse",
                RestrictedScripts::Allow => "allow # scripts run unchecked for restricted users",
            }
        );
        let _ = writeln!(s, "workers: {} # effective {}", p.workers, p.worker_count());
        let _ = writeln!(s, "shutdown_grace: {:?}", p.shutdown_grace);
        let _ = writeln!(
            s,
            "log: {{ level: {}, format: {} }}",
            self.log.level, self.log.format
        );
        s
    }
}

/// An upstream TLS block on one line.
fn describe_tls(t: &UpstreamTlsConfig) -> String {
    let show = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    };
    format!(
        "{{ ca: {}, server_name: {}, cert: {}, key: {} }}",
        show(&t.ca),
        t.server_name.as_deref().unwrap_or("(node host)"),
        show(&t.cert),
        show(&t.key)
    )
}

/// The keys that differ between two configurations (as [`Settings::describe`] prints them)
/// and take effect only after a restart: everything except `users`, `users_file`,
/// `scripting` and the TLS certificate files, which SIGHUP applies.
pub fn restart_keys(running: &str, new: &str) -> Vec<String> {
    let (a, b) = (flatten(running), flatten(new));
    let mut out: Vec<String> = Vec::new();
    for key in a.iter().chain(b.iter()).map(|(k, _)| k) {
        let reloadable = ["users", "scripting", "tls.cert", "tls.key", "tls.client_ca"]
            .iter()
            .any(|r| key == r || key.starts_with(&format!("{r}.")));
        let same = a.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            == b.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        if !reloadable && !same && !out.contains(key) {
            out.push(key.clone());
        }
    }
    out
}

/// `key: value` lines, indented two spaces per level, as dotted keys and their values.
fn flatten(text: &str) -> Vec<(String, String)> {
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let indent = (line.len() - line.trim_start().len()) / 2;
        let line = line.trim().trim_start_matches("- ");
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        path.truncate(indent);
        path.push(key.trim().to_string());
        out.push((path.join("."), value.trim().to_string()));
    }
    out
}

/// Read, parse and validate a configuration file.
///
/// # Errors
/// Unreadable file, YAML errors (with line), unknown keys, bad units or values.
pub fn load(path: &Path) -> anyhow::Result<Settings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        bail!(
            "the file is empty: it needs at least `listen` and `upstream` (see \
             docs/configuration.md, and config/*.yaml for examples)"
        );
    }
    parse(&text).map_err(|e| anyhow!(in_file(&format!("{e:#}"), path)))
}

/// A parse error as the user should read it: the YAML library calls the text `<input>`
/// (it is the file) and suggests one of its own options (which slotgate does not expose).
fn in_file(message: &str, path: &Path) -> String {
    message
        .replace("<input>", &path.display().to_string())
        .replace(
            ", set DuplicateKeyPolicy in Options if acceptable",
            " (each key once)",
        )
}

/// Every certificate, key and CA file the configuration names is readable; the error names
/// the key (`tls.cert: cannot read …`). `check-config` and start-up call it before loading
/// the files' contents.
///
/// # Errors
/// The first file that cannot be read.
pub fn check_files(settings: &Settings) -> anyhow::Result<()> {
    let p = &settings.proxy;
    let mut files: Vec<(&str, &Path)> = Vec::new();
    if let Some(t) = &p.tls {
        files.push(("tls.cert", &t.cert));
        files.push(("tls.key", &t.key));
        if let Some(ca) = &t.client_ca {
            files.push(("tls.client_ca", ca));
        }
    }
    let upstream_tls = |t: &UpstreamTlsConfig, keys: [&'static str; 3]| {
        let mut out: Vec<(&'static str, PathBuf)> = Vec::new();
        for (key, path) in keys.into_iter().zip([&t.ca, &t.cert, &t.key]) {
            if let Some(path) = path {
                out.push((key, path.clone()));
            }
        }
        out
    };
    let mut owned: Vec<(&'static str, PathBuf)> = Vec::new();
    if let Some(t) = &p.upstream.tls {
        owned.extend(upstream_tls(
            t,
            ["upstream.tls.ca", "upstream.tls.cert", "upstream.tls.key"],
        ));
    }
    if let UpstreamMode::Sentinel(SentinelConfig { tls: Some(t), .. }) = &p.upstream.mode {
        owned.extend(upstream_tls(
            t,
            [
                "upstream.sentinel_tls.ca",
                "upstream.sentinel_tls.cert",
                "upstream.sentinel_tls.key",
            ],
        ));
    }
    files.extend(owned.iter().map(|(k, p)| (*k, p.as_path())));
    for (key, path) in files {
        std::fs::File::open(path)
            .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    }
    Ok(())
}

/// Parse and validate configuration text.
pub fn parse(text: &str) -> anyhow::Result<Settings> {
    let file: FileConfig = serde_saphyr::from_str(text).map_err(|e| anyhow!("{e}"))?;
    let listen = env_addr(&file.listen).context("listen")?;
    let admin = file
        .admin
        .as_ref()
        .map(|a| -> anyhow::Result<AdminSettings> {
            Ok(AdminSettings {
                listen: env_addr(&a.listen).context("admin.listen")?,
            })
        })
        .transpose()?;
    if let Some(a) = &admin {
        if a.listen == listen && listen.port() != 0 {
            bail!(
                "admin.listen: {} is also the client listen address",
                a.listen
            );
        }
    }
    let upstream = resolve_upstream(file.upstream)?;
    let limits = resolve_limits(file.limits)?;
    let cache = resolve_cache(file.cache)?;
    let tls = resolve_tls(file.tls)?;
    let plaintext_listen = file
        .plaintext_listen
        .as_deref()
        .map(|a| env_addr(a).context("plaintext_listen"))
        .transpose()?;
    let proxy = Config {
        listen,
        plaintext_listen,
        tls,
        upstream,
        limits,
        workers: file.workers,
        shutdown_grace: opt_duration(
            file.shutdown_grace,
            Duration::from_secs(10),
            "shutdown_grace",
        )?,
        // Per-command metrics only mean something when someone can scrape them.
        metrics: file
            .admin
            .as_ref()
            .is_some_and(|a| a.metrics.unwrap_or(true)),
        users: users::resolve(file.users, file.users_file.as_deref())?,
        restricted_scripts: match file.scripting.restricted_users.as_deref() {
            None | Some("mirror") => RestrictedScripts::Mirror,
            Some("refuse") => RestrictedScripts::Refuse,
            Some("allow") => RestrictedScripts::Allow,
            Some(other) => {
                bail!("scripting.restricted_users: expected mirror|refuse|allow, got {other:?}")
            }
        },
        cache,
    };
    proxy.validate().map_err(|e| anyhow!(e))?;
    if !["error", "warn", "info", "debug", "trace"].contains(&file.log.level.as_str()) {
        bail!(
            "log.level: expected error|warn|info|debug|trace, got {:?}",
            file.log.level
        );
    }
    if !["text", "json"].contains(&file.log.format.as_str()) {
        bail!("log.format: expected text|json, got {:?}", file.log.format);
    }
    Ok(Settings {
        proxy,
        admin,
        log: file.log,
    })
}

/// `upstream:` resolved: variables expanded, the password read, durations parsed.
fn resolve_upstream(mut up: FileUpstream) -> anyhow::Result<UpstreamConfig> {
    let mode = resolve_mode(&mut up)?;
    let read_from = match up.read_from.as_deref() {
        None | Some("primary") => ReadFrom::Primary,
        Some("prefer-replica") => ReadFrom::PreferReplica,
        Some("replica") => ReadFrom::Replica,
        Some(other) => {
            bail!("upstream.read_from: expected primary|prefer-replica|replica, got {other:?}")
        }
    };
    let admin_commands = match up.admin_commands.as_deref() {
        None => None,
        Some("acl") => Some(AdminCommands::Acl),
        Some("deny") => Some(AdminCommands::Deny),
        Some(other) => bail!("upstream.admin_commands: expected acl|deny, got {other:?}"),
    };
    let password = match (up.password, up.password_file) {
        (Some(_), Some(_)) => bail!("upstream: give password or password_file, not both"),
        (Some(p), None) => Some(expand_env(&p).context("upstream.password")?),
        (None, Some(f)) => Some(
            std::fs::read_to_string(expand_env(&f).context("upstream.password_file")?)
                .with_context(|| format!("upstream.password_file: cannot read {f}"))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        (None, None) => None,
    };
    let defaults = UpstreamConfig::default();
    let upstream = UpstreamConfig {
        mode,
        seeds: up
            .seeds
            .iter()
            .map(|s| expand_env(s))
            .collect::<Result<_, _>>()
            .context("upstream.seeds")?,
        username: up
            .username
            .map(|u| expand_env(&u))
            .transpose()
            .context("upstream.username")?,
        password,
        refresh_interval: opt_duration(
            up.refresh_interval,
            defaults.refresh_interval,
            "upstream.refresh_interval",
        )?,
        connect_timeout: opt_duration(
            up.connect_timeout,
            defaults.connect_timeout,
            "upstream.connect_timeout",
        )?,
        op_timeout: opt_duration(up.op_timeout, defaults.op_timeout, "upstream.op_timeout")?,
        max_redirects: up.max_redirects.unwrap_or(defaults.max_redirects),
        connections_per_node: up
            .connections_per_node
            .unwrap_or(defaults.connections_per_node),
        max_dedicated_per_node: up
            .max_dedicated_per_node
            .unwrap_or(defaults.max_dedicated_per_node),
        tls: up
            .tls
            .map(|t| upstream_tls(t, "upstream.tls"))
            .transpose()?,
        read_from,
        max_replica_lag: opt_duration(
            up.max_replica_lag,
            defaults.max_replica_lag,
            "upstream.max_replica_lag",
        )?,
        admin_commands,
    };
    Ok(upstream)
}

/// An upstream TLS block (`upstream.tls` or `upstream.sentinel_tls`, named `key`), `${VAR}`
/// expanded.
fn upstream_tls(t: FileUpstreamTls, key: &str) -> anyhow::Result<UpstreamTlsConfig> {
    let path = |p: Option<String>, field: &str| {
        p.as_deref()
            .map(env_path)
            .transpose()
            .with_context(|| format!("{key}.{field}"))
    };
    Ok(UpstreamTlsConfig {
        ca: path(t.ca, "ca")?,
        server_name: t
            .server_name
            .as_deref()
            .map(expand_env)
            .transpose()
            .with_context(|| format!("{key}.server_name"))?,
        cert: path(t.cert, "cert")?,
        key: path(t.key, "key")?,
    })
}

/// A file path with `${VAR}` expanded.
fn env_path(p: &str) -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(expand_env(p)?))
}

/// `upstream.mode` and the keys only sentinel mode takes (taken out of `up`).
fn resolve_mode(up: &mut FileUpstream) -> anyhow::Result<UpstreamMode> {
    let sentinel_keys = !up.sentinels.is_empty()
        || up.master_name.is_some()
        || up.sentinel_username.is_some()
        || up.sentinel_password.is_some()
        || up.sentinel_tls.is_some();
    let mode = up.mode.as_deref().unwrap_or("cluster");
    match mode {
        "cluster" | "standalone" if sentinel_keys => bail!(
            "upstream: sentinels, master_name and sentinel_* belong to mode: sentinel, not {mode}"
        ),
        "cluster" => Ok(UpstreamMode::Cluster),
        "standalone" => Ok(UpstreamMode::Standalone),
        "sentinel" => Ok(UpstreamMode::Sentinel(SentinelConfig {
            sentinels: std::mem::take(&mut up.sentinels)
                .iter()
                .map(|s| expand_env(s))
                .collect::<Result<_, _>>()
                .context("upstream.sentinels")?,
            master_name: up
                .master_name
                .take()
                .map(|m| expand_env(&m))
                .transpose()
                .context("upstream.master_name")?
                .unwrap_or_default(),
            username: up
                .sentinel_username
                .take()
                .map(|u| expand_env(&u))
                .transpose()
                .context("upstream.sentinel_username")?,
            password: up
                .sentinel_password
                .take()
                .map(|p| expand_env(&p))
                .transpose()
                .context("upstream.sentinel_password")?,
            tls: up
                .sentinel_tls
                .take()
                .map(|t| upstream_tls(t, "upstream.sentinel_tls"))
                .transpose()?,
        })),
        other => bail!("upstream.mode: expected cluster|standalone|sentinel, got {other:?}"),
    }
}

/// `cache:` resolved, defaults filled in.
fn resolve_cache(c: FileCache) -> anyhow::Result<CacheConfig> {
    let d = CacheConfig::default();
    let size = |value: Option<String>, default: usize, key: &str| -> anyhow::Result<usize> {
        match value {
            Some(s) => parse_size(&s).with_context(|| key.to_string()),
            None => Ok(default),
        }
    };
    Ok(CacheConfig {
        enabled: c.enabled,
        max_memory: size(c.max_memory, d.max_memory, "cache.max_memory")?,
        max_ttl: opt_duration(c.max_ttl, d.max_ttl, "cache.max_ttl")?,
        keys: match c.keys {
            Some(keys) if keys.is_empty() => bail!("cache.keys: at least one pattern"),
            Some(keys) => keys,
            None => d.keys,
        },
        max_value_size: size(c.max_value_size, d.max_value_size, "cache.max_value_size")?,
    })
}

/// `limits:` resolved, defaults filled in.
fn resolve_limits(limits: FileLimits) -> anyhow::Result<LimitsConfig> {
    let ld = LimitsConfig::default();
    let idle = opt_duration(
        limits.client_idle_timeout,
        Duration::ZERO,
        "limits.client_idle_timeout",
    )?;
    let size = |value: Option<String>, default: usize, key: &str| -> anyhow::Result<usize> {
        match value {
            Some(s) => parse_size(&s).with_context(|| key.to_string()),
            None => Ok(default),
        }
    };
    let limits = LimitsConfig {
        max_client_output: size(
            limits.max_client_output,
            ld.max_client_output,
            "limits.max_client_output",
        )?,
        client_output_soft: size(
            limits.client_output_soft,
            ld.client_output_soft,
            "limits.client_output_soft",
        )?,
        client_output_soft_timeout: opt_duration(
            limits.client_output_soft_timeout,
            ld.client_output_soft_timeout,
            "limits.client_output_soft_timeout",
        )?,
        max_buffered: size(limits.max_buffered, ld.max_buffered, "limits.max_buffered")?,
        max_clients: limits.max_clients.unwrap_or(ld.max_clients),
        client_idle_timeout: (!idle.is_zero()).then_some(idle),
        max_request_bytes: match limits.max_request_bytes {
            Some(s) => parse_size(&s).context("limits.max_request_bytes")?,
            None => ld.max_request_bytes,
        },
        max_pipeline: limits.max_pipeline.unwrap_or(ld.max_pipeline),
        max_tracked_keys: match limits.max_tracked_keys {
            Some(0) => anyhow::bail!("limits.max_tracked_keys: must be at least 1"),
            Some(n) => n,
            None => ld.max_tracked_keys,
        },
        max_pubsub_backlog: match limits.max_pubsub_backlog {
            Some(s) => parse_size(&s).context("limits.max_pubsub_backlog")?,
            None => ld.max_pubsub_backlog,
        },
        auth_failure_delay: opt_duration(
            limits.auth_failure_delay,
            ld.auth_failure_delay,
            "limits.auth_failure_delay",
        )?,
    };
    Ok(limits)
}

/// `tls:` resolved (`None`: plaintext).
fn resolve_tls(tls: Option<FileTls>) -> anyhow::Result<Option<TlsConfig>> {
    tls.map(|t| -> anyhow::Result<TlsConfig> {
        Ok(TlsConfig {
            cert: env_path(&t.cert).context("tls.cert")?,
            key: env_path(&t.key).context("tls.key")?,
            client_ca: t
                .client_ca
                .as_deref()
                .map(env_path)
                .transpose()
                .context("tls.client_ca")?,
            handshake_timeout: opt_duration(
                t.handshake_timeout,
                Duration::from_secs(5),
                "tls.handshake_timeout",
            )?,
        })
    })
    .transpose()
}

/// A `host:port` with `${VAR}` expanded, resolved.
fn env_addr(s: &str) -> anyhow::Result<SocketAddr> {
    resolve_addr(&expand_env(s)?)
}

fn resolve_addr(s: &str) -> anyhow::Result<SocketAddr> {
    s.to_socket_addrs()
        .with_context(|| format!("{s:?} is not host:port"))?
        .next()
        .ok_or_else(|| anyhow!("{s:?} resolves to no address"))
}

fn opt_duration(v: Option<String>, default: Duration, field: &str) -> anyhow::Result<Duration> {
    match v {
        Some(s) => parse_duration(&s).with_context(|| field.to_string()),
        None => Ok(default),
    }
}

/// `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"0s"`: a number and a unit (required).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| anyhow!("{s:?} needs a unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)"),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        bail!("{s:?} is out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Redis-style sizes: `"512mb"`, `"64kb"`, `"1gb"`, `"1000"`, `"10k"` (k/m/g = 1000ⁿ, kb/mb/gb = 1024ⁿ).
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let n: u64 = num.parse().map_err(|_| anyhow!("{s:?} is not a size"))?;
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1_000_000,
        "mb" => 1024 * 1024,
        "g" => 1_000_000_000,
        "gb" => 1024 * 1024 * 1024,
        _ => bail!("{s:?}: unknown unit {unit:?} (use b, kb, mb, gb)"),
    };
    n.checked_mul(mult)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| anyhow!("{s:?} is too large"))
}

/// Expand `${VAR}` from the environment; an unset variable is an error.
pub fn expand_env(s: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("unclosed ${{ in {s:?}"))?;
        let name = &after[..end];
        let value =
            std::env::var(name).map_err(|_| anyhow!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Install the tracing subscriber for `log`.
pub fn init_logging(log: &LogSettings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow!("cannot install logger: {e}"))
}

mod users;

#[cfg(test)]
mod tests;
