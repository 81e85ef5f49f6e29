//! The slotgate engine. A client's command flows
//! `worker` (accept) → `session` (decode, reply queue) → `dispatch` (command table, slot)
//! → `local` | `op` (one slot) | `split` (per-slot parts) | all-shard fan-out (`scan`:
//! one primary per call)
//! → `upstream` (multiplexed node connections) → back through the session's ordered queue.
//! `topology` keeps the slot map current. The binary (`crates/slotgate`) turns YAML and argv
//! into a [`Config`] and calls [`start`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod error;
mod family;
#[doc(hidden)]
pub mod fuzzing;
mod glob;
mod protocol;
pub mod replies;
mod runtime;
mod server;
mod session;
pub mod telemetry;
#[cfg(test)]
mod testing;
mod tls;
mod upstream;

pub use auth::acl;
pub use server::status;
pub use telemetry::metrics;
pub use upstream::topology;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

pub use auth::users::{PasswordCheck, RestrictedScripts, UserSpec};
pub use config::{
    AdminCommands, CacheConfig, Config, LimitsConfig, ReadFrom, SentinelConfig, TlsConfig,
    UpstreamConfig, UpstreamMode, UpstreamTlsConfig,
};
pub use error::ProxyError;
pub use metrics::Metrics;
pub use status::Status;
pub use topology::Topology;

/// A running proxy.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    plaintext_addr: Option<SocketAddr>,
    server_tls: Option<Arc<tls::ServerTls>>,
    topology: Arc<Topology>,
    status: Arc<Status>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    /// The script identities the current users need (removed from the nodes when a reload
    /// no longer needs them).
    script_identities: std::sync::Mutex<Vec<String>>,
}

/// The script identities `config`'s users need.
fn script_identities(config: &Config) -> Vec<String> {
    let secret = config.upstream.password.as_deref().unwrap_or("");
    family::restricted_scripts::identity_names(&config.users, config.restricted_scripts, secret)
}

impl ProxyHandle {
    /// The address the client listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the extra plaintext listener, when configured.
    pub fn plaintext_addr(&self) -> Option<SocketAddr> {
        self.plaintext_addr
    }

    /// The live topology.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The admin view (metrics, readiness, topology report).
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Reload the slot map now (SIGHUP), counted as a `manual` refresh.
    pub fn refresh_topology(&self) {
        self.topology
            .request_refresh(metrics::RefreshTrigger::Manual);
    }

    /// Apply the reloadable parts of `config` (SIGHUP): downstream users and TLS
    /// certificates. Established connections stay up; new handshakes and authentications
    /// use the new settings. Everything else in `config` is ignored (it needs a restart).
    ///
    /// # Errors
    /// When a new part cannot be used (the old one is kept).
    pub fn reload(&self, config: &Config) -> Result<(), ProxyError> {
        // Load the new certificates before touching anything, so a refused reload changes
        // nothing at all (neither users nor certificates).
        let new_tls = match (&self.server_tls, &config.tls) {
            (Some(current), Some(new)) => Some((current, tls::server_config(new)?)),
            (None, None) => None,
            _ => {
                tracing::warn!("turning TLS on or off needs a restart; TLS setting unchanged");
                None
            }
        };
        self.status
            .shared
            .users
            .reload(&config.users, config.restricted_scripts)
            .map_err(ProxyError::Config)?;
        if let Some((current, new)) = new_tls {
            current.install(new);
        }
        self.refresh_topology();
        self.prune_script_identities(config);
        Ok(())
    }

    /// In the background, remove from the nodes the script identities this process used
    /// before the reload and its users no longer need (see
    /// `family::restricted_scripts::remove_identities`). Identities other slotgate instances use, or
    /// that an earlier process left, are not touched.
    fn prune_script_identities(&self, config: &Config) {
        let now = script_identities(config);
        let Ok(mut current) = self.script_identities.lock() else {
            return;
        };
        let old = std::mem::replace(&mut *current, now.clone());
        drop(current);
        let gone: Vec<String> = old.into_iter().filter(|n| !now.contains(n)).collect();
        if gone.is_empty() {
            return;
        }
        let (topology, cfg) = (Arc::clone(&self.topology), config.upstream.clone());
        let spawned = std::thread::Builder::new()
            .name("slotgate-acl-prune".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let removed = rt.block_on(family::restricted_scripts::remove_identities(
                    &topology, &cfg, &gone,
                ));
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "removed the ACL users of scripts whose users changed"
                    );
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start pruning old script identities");
        }
    }

    /// Begin a graceful shutdown: stop accepting, let sessions finish what they read. Each
    /// worker closes the sessions still open `shutdown_grace` after this; the caller decides
    /// how long to wait for that (see [`ProxyHandle::is_stopped`]).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Clients connected now, across all workers (during a shutdown: those not yet closed).
    pub fn client_count(&self) -> usize {
        self.status.shared.client_count()
    }

    /// Whether every worker and the topology refresher have returned (after
    /// [`ProxyHandle::shutdown`]: every client is closed). Does not block.
    pub fn is_stopped(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Wait until every worker has stopped (after [`ProxyHandle::shutdown`]), however long
    /// that takes.
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Start the proxy: load the slot map (waiting up to a few seconds for a first answer), bind
/// the listeners and start the workers and the topology refresher.
///
/// # Errors
/// [`ProxyError::Config`] for an invalid config, [`ProxyError::Bind`] when the listen address
/// is unusable, [`ProxyError::UpstreamAuth`] when the cluster refuses the credentials,
/// [`ProxyError::UpstreamTls`] when a node's certificate does not verify.
pub fn start(config: Config) -> Result<ProxyHandle, ProxyError> {
    config.validate().map_err(ProxyError::Config)?;
    telemetry::panics::install_hook();
    let server_tls = config
        .tls
        .as_ref()
        .map(tls::ServerTls::new)
        .transpose()?
        .map(Arc::new);
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new(config.metrics));
    let upstream_tls = config
        .upstream
        .tls
        .as_ref()
        .map(tls::UpstreamTls::new)
        .transpose()?
        .map(Arc::new);
    let sentinel_tls = match &config.upstream.mode {
        UpstreamMode::Sentinel(s) => s.tls.as_ref().map(tls::UpstreamTls::new).transpose()?,
        _ => None,
    }
    .map(Arc::new);
    let topology = Arc::new(Topology::new(
        config.upstream.clone(),
        Arc::clone(&metrics),
        upstream_tls,
        sentinel_tls,
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let refresher_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match refresher_rt.block_on(initial_refresh(&topology)) {
        Ok(()) => {}
        Err(e @ (ProxyError::UpstreamAuth { .. } | ProxyError::UpstreamTls { .. })) => {
            return Err(e)
        }
        Err(e) => tracing::warn!(error = %e, "no slot map yet; will keep trying"),
    }

    let workers = config.worker_count();
    let listeners = server::worker::bind_listeners(config.listen, workers).map_err(|source| {
        ProxyError::Bind {
            addr: config.listen.to_string(),
            source,
        }
    })?;
    let local_addr = listeners[0].local_addr()?;
    let mut plaintext: Vec<Option<std::net::TcpListener>> = match config.plaintext_listen {
        Some(addr) => server::worker::bind_listeners(addr, workers)
            .map_err(|source| ProxyError::Bind {
                addr: addr.to_string(),
                source,
            })?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..workers).map(|_| None).collect(),
    };
    let plaintext_addr = match &plaintext[0] {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let shared = Arc::new(runtime::context::Shared::new(
        Arc::clone(&metrics),
        server_tls.clone(),
        config.limits.max_buffered,
    ));
    shared
        .users
        .install(&config.users, config.restricted_scripts);
    let status = Arc::new(Status {
        metrics: Arc::clone(&metrics),
        topology: Arc::clone(&topology),
        shared: Arc::clone(&shared),
        max_clients: config.limits.max_clients,
        op_timeout: config.upstream.op_timeout,
        shutdown: shutdown_rx.clone(),
    });

    let mut threads = Vec::with_capacity(workers + 1);
    {
        let topology = Arc::clone(&topology);
        let rx = shutdown_rx.clone();
        threads.push(
            std::thread::Builder::new()
                .name("slotgate-topology".into())
                .spawn(move || refresher_rt.block_on(topology.run_refresher(rx)))?,
        );
    }
    for (i, listener) in listeners.into_iter().enumerate() {
        let plain = plaintext[i].take();
        let (cfg, topo, shared, rx) = (
            Arc::clone(&config),
            Arc::clone(&topology),
            Arc::clone(&shared),
            shutdown_rx.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name(format!("slotgate-worker-{i}"))
                .spawn(move || {
                    if let Err(e) =
                        server::worker::run_worker(cfg, topo, shared, listener, plain, rx)
                    {
                        tracing::error!(worker = i, error = %e, "worker failed");
                    }
                })?,
        );
    }
    tracing::info!(
        listen = %local_addr,
        tls = server_tls.is_some(),
        plaintext_listen = ?plaintext_addr,
        workers,
        "slotgate listening"
    );
    Ok(ProxyHandle {
        local_addr,
        plaintext_addr,
        server_tls,
        topology,
        status,
        shutdown: shutdown_tx,
        threads,
        script_identities: std::sync::Mutex::new(script_identities(&config)),
    })
}

/// Load every certificate, key and CA file `config` names, as [`start`] would, without
/// starting anything (`slotgate check-config`).
///
/// # Errors
/// [`ProxyError::Tls`] naming the file that cannot be used.
pub fn check_tls(config: &Config) -> Result<(), ProxyError> {
    if let Some(t) = &config.tls {
        tls::server_config(t)?;
    }
    if let Some(t) = &config.upstream.tls {
        tls::UpstreamTls::new(t)?;
    }
    if let UpstreamMode::Sentinel(SentinelConfig { tls: Some(t), .. }) = &config.upstream.mode {
        tls::UpstreamTls::new(t)?;
    }
    Ok(())
}

/// First map load: retry for up to five seconds so a proxy started together with its
/// cluster comes up serving.
async fn initial_refresh(topology: &Topology) -> Result<(), ProxyError> {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let result = topology.refresh().await;
        topology.count_refresh(metrics::RefreshTrigger::Periodic, result.is_ok());
        match result {
            Ok(()) => return Ok(()),
            Err(e @ (ProxyError::UpstreamAuth { .. } | ProxyError::UpstreamTls { .. })) => {
                return Err(e)
            }
            Err(e) if tokio::time::Instant::now() >= give_up => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
