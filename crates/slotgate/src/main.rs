//! The `slotgate` binary: command line, YAML configuration, logging and signals around the
//! engine in `slotgate-proxy`.

mod admin;
mod envoy;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLOTGATE_GIT_COMMIT"),
    ")"
);

/// slotgate: a Redis Cluster proxy. Clients see one plain Redis server.
#[derive(Parser, Debug)]
#[command(name = "slotgate", version = VERSION, about)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(long, env = "SLOTGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and print the effective configuration, secrets masked.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Convert an Envoy redis_proxy bootstrap (YAML or JSON) to a slotgate configuration.
    /// Exit 0, or 2 when something could not be carried over (listed on stderr).
    ImportEnvoy {
        /// The Envoy bootstrap file.
        file: PathBuf,
        /// Write the configuration here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print the hash slot of each key.
    Keyslot {
        /// Keys to hash.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Keyslot { keys }) => {
            for key in keys {
                println!("{key} {}", slotgate_cluster::slot(key.as_bytes()));
            }
            ExitCode::SUCCESS
        }
        Some(Command::ImportEnvoy { file, output }) => envoy::command(&file, output.as_deref()),
        Some(Command::CheckConfig { file }) => match settings::load(&file).and_then(|s| {
            settings::check_files(&s)?;
            slotgate_proxy::check_tls(&s.proxy)?;
            Ok(s)
        }) {
            Ok(s) => {
                print!("{}", s.describe());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("slotgate: {file:?}: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => {
            let Some(file) = cli.config else {
                eprintln!("slotgate: no configuration: pass --config FILE or set SLOTGATE_CONFIG");
                return ExitCode::from(2);
            };
            match run(&file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("slotgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(file: &std::path::Path) -> anyhow::Result<()> {
    let settings = settings::load(file).with_context(|| format!("loading {}", file.display()))?;
    settings::check_files(&settings)?;
    settings::init_logging(&settings.log)?;
    let grace = settings.proxy.shutdown_grace;
    let admin_listener = settings
        .admin
        .as_ref()
        .map(|a| admin::bind(a.listen))
        .transpose()?;
    // What runs, to name on SIGHUP the changed keys that need a restart.
    let running = settings.describe();
    let handle = slotgate_proxy::start(settings.proxy).context("starting the proxy")?;
    if let Some(listener) = admin_listener {
        admin::spawn(listener, std::sync::Arc::clone(handle.status()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = {
        let _in_runtime = rt.enter();
        StopSignals::install()?
    };
    rt.block_on(signals.next_stop(|| reload(file, &handle, &running)));
    let started = Instant::now();
    tracing::info!(grace = ?grace, clients = handle.client_count(), "shutting down");
    handle.shutdown();
    let deadline = started + grace;
    match rt.block_on(drain(&handle, &mut signals, deadline)) {
        Ending::Drained => tracing::info!(after = ?started.elapsed(), "exited: drained"),
        Ending::GracePassed(clients) => tracing::warn!(
            clients,
            "exited: shutdown_grace passed with {clients} clients open"
        ),
        Ending::SecondSignal(clients) => tracing::warn!(
            clients,
            after = ?started.elapsed(),
            "exited: second signal with {clients} clients open"
        ),
    }
    // Returning ends the process: the worker threads are not joined, so a client still open
    // (a BLPOP with no timeout, say) is closed by the exit itself, never later.
    Ok(())
}

/// How a shutdown ended; the process's last log line says which.
enum Ending {
    /// Every client closed and every worker returned within `shutdown_grace`.
    Drained,
    /// `shutdown_grace` passed with this many clients still open.
    GracePassed(usize),
    /// A second SIGTERM or SIGINT arrived while this many clients were still open.
    SecondSignal(usize),
}

/// Wait after [`slotgate_proxy::ProxyHandle::shutdown`] until the workers have returned,
/// `deadline` (the start of the shutdown plus `shutdown_grace`) passes, or a second stop
/// signal arrives, whichever is first. Checks the workers every 10 ms.
async fn drain(
    handle: &slotgate_proxy::ProxyHandle,
    signals: &mut StopSignals,
    deadline: Instant,
) -> Ending {
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        if handle.is_stopped() {
            return Ending::Drained;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ending::GracePassed(handle.client_count());
        }
        tokio::select! {
            _ = signals.next_stop(|| tracing::warn!("SIGHUP ignored: shutting down")) => {
                return Ending::SecondSignal(handle.client_count());
            }
            _ = tokio::time::sleep_until((now + DRAIN_POLL).min(deadline)) => {}
        }
    }
}

/// How often [`drain`] looks whether the workers have returned.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// SIGHUP: re-read the config file and apply what can change at run time (users, TLS
/// certificates), and reload the slot map; name the changed keys that need a restart
/// (compared with `running`, the configuration the process started with). A broken file is
/// logged and the old settings kept.
fn reload(file: &std::path::Path, handle: &slotgate_proxy::ProxyHandle, running: &str) {
    match settings::load(file) {
        Ok(new) => match handle.reload(&new.proxy) {
            Ok(()) => {
                tracing::info!(config = %file.display(), "SIGHUP: configuration reloaded");
                let keys = settings::restart_keys(running, &new.describe());
                if !keys.is_empty() {
                    tracing::warn!(
                        keys = keys.join(", "),
                        "SIGHUP: these keys changed but take effect only after a restart"
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused; keeping the old settings")
            }
        },
        Err(e) => tracing::error!(
            config = %file.display(),
            error = format!("{e:#}"),
            "SIGHUP: cannot load the configuration; keeping the old settings"
        ),
    }
}

/// The signals the process reacts to, installed once at start so that none is lost between
/// the first stop signal and the second.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Install the handlers (inside a tokio runtime).
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolve on the next SIGTERM or SIGINT; call `on_hup` for every SIGHUP meanwhile.
    /// Cancel-safe: a signal that arrives while nobody waits is seen by the next call.
    async fn next_stop(&mut self, on_hup: impl Fn()) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => on_hup(),
            }
        }
    }
}
