//! The client libraries of `tests/clients/` (redis-py, ioredis, node-redis, BullMQ) for the
//! suites that run them: `tests/clients/install.sh` installs the pinned versions into the
//! build tree (`TARGET/clients/`) once per test binary, and [`script`] makes the command that
//! runs one of the scripts there with them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::run_captured;

/// `pip install` and `npm ci` on a fresh machine.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Which interpreter runs a client script.
#[derive(Clone, Copy, Debug)]
pub enum Runtime {
    /// `python3`, with redis-py on `PYTHONPATH`.
    Python,
    /// `node`, with ioredis, node-redis and BullMQ on `NODE_PATH`.
    Node,
}

impl Runtime {
    /// The interpreter's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Python => "python3",
            Runtime::Node => "node",
        }
    }
}

/// `tests/clients/`.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The cargo target directory the running test binary was built in
/// (`TARGET/<profile>/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test binary directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.pop();
    dir
}

/// Runs `tests/clients/install.sh` once per test binary; the directory it installed into.
///
/// # Panics
/// When the install fails (with its output).
pub fn installed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir();
        let script = scripts_dir().join("install.sh");
        let out = run_captured(
            Command::new("bash")
                .arg(&script)
                .env("CARGO_TARGET_DIR", &target),
            INSTALL_TIMEOUT,
        )
        .expect("run bash");
        assert!(
            out.success(),
            "{} failed ({:?}):\n{}\n{}",
            script.display(),
            out.status,
            out.stdout,
            out.stderr
        );
        target.join("clients")
    })
}

/// The command running `tests/clients/<script>` under `runtime` with the installed libraries
/// (installing them first if this test binary has not yet); add arguments and environment.
pub fn script(runtime: Runtime, script: &str) -> Command {
    let libs = installed();
    let mut cmd = Command::new(runtime.name());
    match runtime {
        Runtime::Python => {
            cmd.env("PYTHONPATH", libs.join("python"))
                .env("PYTHONDONTWRITEBYTECODE", "1");
        }
        Runtime::Node => {
            cmd.env("NODE_PATH", libs.join("node/node_modules"));
        }
    }
    cmd.arg(scripts_dir().join(script));
    cmd
}
