//! The `slotgate` binary: command line, YAML configuration, logging and signals around the
//! engine in `slotgate-proxy`.

mod admin;
mod envoy;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// slotgate: a Redis Cluster proxy. Clients see one plain Redis server.
#[derive(Parser, Debug)]
#[command(name = "slotgate", version, about)]
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
    settings::init_logging(&settings.log)?;
    let grace = settings.proxy.shutdown_grace;
    let admin_listener = settings
        .admin
        .as_ref()
        .map(|a| admin::bind(a.listen))
        .transpose()?;
    let handle = slotgate_proxy::start(settings.proxy).context("starting the proxy")?;
    if let Some(listener) = admin_listener {
        admin::spawn(listener, std::sync::Arc::clone(handle.status()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(wait_for_stop_signal(|| reload(file, &handle)))?;
    tracing::info!(grace = ?grace, "shutting down");
    handle.shutdown();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        handle.join();
        let _ = done_tx.send(());
    });
    rt.block_on(async {
        tokio::select! {
            _ = tokio::task::spawn_blocking(move || done_rx.recv_timeout(grace + Duration::from_secs(1))) => {}
            _ = wait_for_stop_signal(|| {}) => tracing::warn!("second signal: exiting now"),
        }
    });
    Ok(())
}

/// SIGHUP: re-read the config file and apply what can change at run time (users, TLS
/// certificates), and reload the slot map. A broken file is logged and the old settings kept.
fn reload(file: &std::path::Path, handle: &slotgate_proxy::ProxyHandle) {
    match settings::load(file) {
        Ok(new) => match handle.reload(&new.proxy) {
            Ok(()) => tracing::info!(config = %file.display(), "SIGHUP: configuration reloaded"),
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

/// Resolve on SIGTERM or SIGINT; call `on_hup` for every SIGHUP meanwhile.
async fn wait_for_stop_signal(on_hup: impl Fn()) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => on_hup(),
        }
    }
}
