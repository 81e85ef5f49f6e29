//! The engine's runtime configuration: already validated, with units resolved. The binary
//! builds it from YAML (`crates/slotgate`); tests build it directly. The engine never reads
//! files or argv itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::users::{RestrictedScripts, UserSpec};

/// Everything the engine needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the client listener binds (port 0 picks a free port; see `ProxyHandle::local_addr`).
    /// It speaks TLS when [`Config::tls`] is set.
    pub listen: SocketAddr,
    /// An extra plaintext listener (e.g. on loopback for health checks) beside a TLS `listen`.
    pub plaintext_listen: Option<SocketAddr>,
    /// TLS for clients on `listen`.
    pub tls: Option<TlsConfig>,
    /// How to reach the cluster.
    pub upstream: UpstreamConfig,
    /// Per-client and global limits.
    pub limits: LimitsConfig,
    /// Number of worker threads (event loops); 0 means one per core.
    pub workers: usize,
    /// How long SIGTERM waits for in-flight commands before closing connections.
    pub shutdown_grace: Duration,
    /// Count per-command and per-request metrics (`admin.metrics`; connection, topology and
    /// process metrics are always kept).
    pub metrics: bool,
    /// Downstream users (`users:`): empty means clients need not authenticate. Reloadable
    /// (`ProxyHandle::reload`), except that turning authentication on or off needs a restart.
    pub users: Vec<UserSpec>,
    /// Whether users with narrower than full key or channel access may run scripts and
    /// functions (`scripting.restricted_users`). Reloadable with the users.
    pub restricted_scripts: RestrictedScripts,
    /// The opt-in read cache (`cache:`, see `docs/cache.md`).
    pub cache: CacheConfig,
}

/// `cache:` — answers documented single-key reads from a per-worker cache that the servers'
/// reports of changed keys invalidate (see `docs/cache.md`).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Off unless set.
    pub enabled: bool,
    /// Bytes the cache may hold for the whole process (split evenly over the workers).
    pub max_memory: usize,
    /// The longest an entry is served after it was filled.
    pub max_ttl: Duration,
    /// Glob patterns (Redis's syntax) of the keys whose reads are cached.
    pub keys: Vec<String>,
    /// Replies larger than this are not stored.
    pub max_value_size: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            max_memory: 64 * 1024 * 1024,
            max_ttl: Duration::from_secs(60),
            keys: vec!["*".to_string()],
            max_value_size: 64 * 1024,
        }
    }
}

/// Client-facing TLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
    /// A client that has not finished its handshake by then is disconnected.
    pub handshake_timeout: Duration,
}

/// TLS towards the cluster nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// PEM CA bundle that signed the nodes' certificates (default: the system's).
    pub ca: Option<PathBuf>,
    /// Name to verify in every node's certificate (default: the node's host as the cluster
    /// reports it).
    pub server_name: Option<String>,
    /// Client certificate for nodes that require one (`tls-auth-clients yes`).
    pub cert: Option<PathBuf>,
    /// Key of `cert`.
    pub key: Option<PathBuf>,
}

/// What stands behind slotgate (`upstream.mode`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamMode {
    /// A Redis Cluster: the slot map comes from `CLUSTER SLOTS` of the seeds.
    #[default]
    Cluster,
    /// One server (the only seed), whatever its role says.
    Standalone,
    /// A primary and its replicas managed by Sentinel: the sentinels name the primary.
    Sentinel(SentinelConfig),
}

impl UpstreamMode {
    /// Every key lives on one primary (standalone and sentinel modes): keys of one command
    /// need not share a hash slot, and numbered databases exist.
    pub fn one_primary(&self) -> bool {
        !matches!(self, UpstreamMode::Cluster)
    }

    /// The name `upstream.mode` gives it.
    pub fn name(&self) -> &'static str {
        match self {
            UpstreamMode::Cluster => "cluster",
            UpstreamMode::Standalone => "standalone",
            UpstreamMode::Sentinel(_) => "sentinel",
        }
    }
}

/// Where read-only commands go (`upstream.read_from`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadFrom {
    /// Every command to the primary.
    #[default]
    Primary,
    /// Read-only commands to a replica that is up and not too far behind; the primary when
    /// there is none.
    PreferReplica,
    /// Read-only commands to a replica only (an error when none can be read from).
    Replica,
}

impl ReadFrom {
    /// The name `upstream.read_from` gives it.
    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Primary => "primary",
            ReadFrom::PreferReplica => "prefer-replica",
            ReadFrom::Replica => "replica",
        }
    }
}

/// Whether node administration commands reach the nodes (`upstream.admin_commands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCommands {
    /// CONFIG SET/RESETSTAT/REWRITE, SAVE, BGSAVE, BGREWRITEAOF and LASTSAVE fan out to the
    /// nodes, and CONFIG GET asks the primaries, for users whose ACL rules allow them.
    Acl,
    /// They are refused (CONFIG GET answers a harmless fixed set).
    Deny,
}

impl AdminCommands {
    /// The name `upstream.admin_commands` gives it.
    pub fn name(self) -> &'static str {
        match self {
            AdminCommands::Acl => "acl",
            AdminCommands::Deny => "deny",
        }
    }
}

/// How to find the primary through Sentinel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentinelConfig {
    /// `host:port` of the sentinels, asked in order.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> …`).
    pub master_name: String,
    /// ACL user for the sentinels (their own, not the data nodes').
    pub username: Option<String>,
    /// Password for the sentinels (`requirepass` in sentinel.conf).
    pub password: Option<String>,
    /// TLS towards the sentinels.
    pub tls: Option<UpstreamTlsConfig>,
}

/// Upstream (cluster) settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Cluster, standalone or sentinel.
    pub mode: UpstreamMode,
    /// `host:port` of nodes to ask for the slot map at start (standalone: the server;
    /// sentinel: unused).
    pub seeds: Vec<String>,
    /// ACL user the proxy authenticates as on every upstream connection.
    pub username: Option<String>,
    /// Password for `username` (or for `requirepass` when no username is set).
    pub password: Option<String>,
    /// How often the slot map is reloaded even when nothing seems to change.
    pub refresh_interval: Duration,
    /// Deadline for one TCP connect to a node.
    pub connect_timeout: Duration,
    /// Deadline for one command, redirects and retries included.
    pub op_timeout: Duration,
    /// Most MOVED/ASK redirects followed for one command.
    pub max_redirects: u8,
    /// Multiplexed connections per node per worker.
    pub connections_per_node: usize,
    /// Speak TLS to the nodes.
    pub tls: Option<UpstreamTlsConfig>,
    /// Most dedicated connections (blocking commands) per node per worker.
    pub max_dedicated_per_node: usize,
    /// Where read-only commands go.
    pub read_from: ReadFrom,
    /// A replica further behind its primary than this is not read from.
    pub max_replica_lag: Duration,
    /// Node administration through the proxy; `None`: `acl` when users are configured,
    /// else `deny` (see [`Config::admin_commands`]).
    pub admin_commands: Option<AdminCommands>,
}

/// Limits that protect the proxy from clients.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Most client connections at once; more are refused with Redis's error.
    pub max_clients: usize,
    /// Close a client connection idle this long (`None`: never).
    pub client_idle_timeout: Option<Duration>,
    /// Largest bulk argument a client may send (like `proto-max-bulk-len`).
    pub max_request_bytes: usize,
    /// Commands one client may have in flight before the proxy stops reading from it.
    pub max_pipeline: usize,
    /// Bytes of Pub/Sub messages that may wait for a subscriber that does not read them;
    /// beyond that it is disconnected (like Redis's pubsub `client-output-buffer-limit`).
    pub max_pubsub_backlog: usize,
    /// Bytes of replies slotgate may hold for one client (arrived, not yet written to it);
    /// past it the client is closed (like Redis's `client-output-buffer-limit` hard limit).
    pub max_client_output: usize,
    /// At this many bytes held for a client, slotgate stops forwarding its requests until it
    /// reads (backpressure); a client held at or past it for
    /// [`LimitsConfig::client_output_soft_timeout`] is closed.
    pub client_output_soft: usize,
    /// How long a client may stay at or past the soft mark.
    pub client_output_soft_timeout: Duration,
    /// Bytes of requests and replies buffered for all clients together; past it new
    /// commands are refused with `-OOM`.
    pub max_buffered: usize,
    /// After 3 consecutive failed AUTHs on a connection, each further AUTH reply waits this
    /// long (zero: never).
    pub auth_failure_delay: Duration,
    /// Keys read by `CLIENT TRACKING` clients that a worker remembers; past it a key is
    /// invalidated for its readers and forgotten (like Redis's `tracking-table-max-keys`).
    pub max_tracked_keys: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            mode: UpstreamMode::Cluster,
            seeds: Vec::new(),
            username: None,
            password: None,
            refresh_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_secs(2),
            max_redirects: 5,
            connections_per_node: 1,
            tls: None,
            max_dedicated_per_node: 1024,
            read_from: ReadFrom::Primary,
            max_replica_lag: Duration::from_secs(1),
            admin_commands: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_clients: 10_000,
            client_idle_timeout: None,
            max_request_bytes: 512 * 1024 * 1024,
            max_pipeline: 1024,
            max_pubsub_backlog: 32 * 1024 * 1024,
            max_client_output: 32 * 1024 * 1024,
            client_output_soft: 8 * 1024 * 1024,
            client_output_soft_timeout: Duration::from_secs(60),
            max_buffered: 1024 * 1024 * 1024,
            auth_failure_delay: Duration::from_secs(1),
            max_tracked_keys: 1_000_000,
        }
    }
}

impl Config {
    /// A configuration with every default, listening on `listen`, seeded with `seeds`.
    pub fn new(listen: SocketAddr, seeds: Vec<String>) -> Config {
        Config {
            listen,
            plaintext_listen: None,
            tls: None,
            upstream: UpstreamConfig {
                seeds,
                ..UpstreamConfig::default()
            },
            limits: LimitsConfig::default(),
            workers: 0,
            shutdown_grace: Duration::from_secs(10),
            metrics: true,
            users: Vec::new(),
            restricted_scripts: RestrictedScripts::default(),
            cache: CacheConfig::default(),
        }
    }

    /// Worker count with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// `upstream.admin_commands` with its default resolved: `acl` when users are configured
    /// (their ACL rules decide who may run them), `deny` when there are none (anyone could).
    pub fn admin_commands(&self) -> AdminCommands {
        self.upstream
            .admin_commands
            .unwrap_or(if self.users.is_empty() {
                AdminCommands::Deny
            } else {
                AdminCommands::Acl
            })
    }

    /// The keys `upstream.mode` needs, and only those.
    /// The cache's fill race is decided per connection (a read and a write for one key
    /// travel one connection in order), and replicas report no change slotgate links to:
    /// the cache needs one connection per node and reads from the primaries.
    fn validate_cache(&self) -> Result<(), String> {
        let c = &self.cache;
        if !c.enabled {
            return Ok(());
        }
        if c.max_memory == 0 || c.max_ttl.is_zero() {
            return Err("cache.max_memory and cache.max_ttl must be above 0".into());
        }
        if self.upstream.connections_per_node != 1 {
            return Err("cache.enabled needs upstream.connections_per_node: 1".into());
        }
        if self.upstream.read_from != ReadFrom::Primary {
            return Err("cache.enabled needs upstream.read_from: primary".into());
        }
        Ok(())
    }

    fn validate_mode(&self) -> Result<(), String> {
        let u = &self.upstream;
        let host_ports = |key: &str, list: &[String]| -> Result<(), String> {
            match list.iter().find(|s| !s.contains(':')) {
                Some(s) => Err(format!("{key}: {s:?} is not host:port")),
                None => Ok(()),
            }
        };
        match &u.mode {
            UpstreamMode::Cluster if u.seeds.is_empty() => {
                Err("upstream.seeds: at least one seed node is required".into())
            }
            UpstreamMode::Standalone if u.seeds.len() != 1 => Err(format!(
                "upstream.seeds: standalone mode takes exactly one server, got {}",
                u.seeds.len()
            )),
            UpstreamMode::Cluster | UpstreamMode::Standalone => {
                host_ports("upstream.seeds", &u.seeds)
            }
            UpstreamMode::Sentinel(s) => {
                if !u.seeds.is_empty() {
                    return Err(
                        "upstream.seeds: sentinel mode takes upstream.sentinels, not seeds \
                                (the sentinels name the primary)"
                            .into(),
                    );
                }
                if s.sentinels.is_empty() {
                    return Err(
                        "upstream.sentinels: sentinel mode needs at least one sentinel".into(),
                    );
                }
                if s.master_name.is_empty() {
                    return Err(
                        "upstream.master_name: sentinel mode needs the name the sentinels \
                                monitor the primary under"
                            .into(),
                    );
                }
                if s.username.is_some() && s.password.is_none() {
                    return Err(
                        "upstream.sentinel_username needs upstream.sentinel_password".into(),
                    );
                }
                host_ports("upstream.sentinels", &s.sentinels)
            }
        }
    }

    /// Check invariants the YAML schema cannot express.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_mode()?;
        if self.upstream.max_dedicated_per_node == 0 {
            return Err("upstream.max_dedicated_per_node must be at least 1".into());
        }
        if self.upstream.connections_per_node == 0 {
            return Err("upstream.connections_per_node must be at least 1".into());
        }
        if self.upstream.op_timeout.is_zero() || self.upstream.connect_timeout.is_zero() {
            return Err("upstream.op_timeout and upstream.connect_timeout must be above 0".into());
        }
        if self.upstream.refresh_interval < Duration::from_millis(100) {
            return Err("upstream.refresh_interval must be at least 100ms".into());
        }
        if self.limits.max_pipeline == 0 || self.limits.max_clients == 0 {
            return Err("limits.max_pipeline and limits.max_clients must be at least 1".into());
        }
        self.validate_cache()?;
        crate::auth::users::validate_users(&self.users)?;
        let l = &self.limits;
        if l.client_output_soft < 1024 || l.client_output_soft > l.max_client_output {
            return Err(
                "limits.client_output_soft must be at least 1kb and at most limits.max_client_output"
                    .into(),
            );
        }
        if l.client_output_soft_timeout.is_zero() {
            return Err("limits.client_output_soft_timeout must be above 0".into());
        }
        if l.max_buffered < 1024 * 1024 {
            return Err("limits.max_buffered must be at least 1mb".into());
        }
        if self.limits.max_request_bytes < 1024 {
            return Err("limits.max_request_bytes must be at least 1kb".into());
        }
        if self.plaintext_listen.is_some() && self.tls.is_none() {
            return Err("plaintext_listen needs tls (listen is plaintext already)".into());
        }
        if self.plaintext_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err("plaintext_listen must differ from listen".into());
        }
        if let Some(t) = &self.upstream.tls {
            if t.cert.is_some() != t.key.is_some() {
                return Err("upstream.tls: cert and key go together".into());
            }
        }
        if self.upstream.password.is_none() && self.upstream.username.is_some() {
            return Err("upstream.username needs upstream.password".into());
        }
        Ok(())
    }
}
