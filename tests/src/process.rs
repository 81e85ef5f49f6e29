//! Child processes that cannot outlive the test process, and bounded runs of helper tools.
//!
//! Every long-lived process the kit starts (redis-server, slotgate) is paired with a small
//! `bash` watchdog whose stdin is a pipe held open by the test process. When the test process
//! goes away for any reason — normal exit without running destructors (a `static` shared
//! cluster), a panic in another thread, `SIGKILL` — the kernel closes the pipe, the watchdog's
//! `read` sees end-of-file and it `SIGKILL`s the child. The watchdog also exits on its own once
//! the child is gone, so it never signals a recycled pid. No polling of the parent, no `unsafe`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Watchdog body: `$1` is the guarded pid. `read -t 1` returns 1 on end-of-file (test process
/// gone) and >128 on timeout (re-check that the child still exists).
const WATCHDOG_SCRIPT: &str = r#"c=$1
while kill -0 "$c" 2>/dev/null; do
  read -r -t 1 _; rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then kill -9 "$c" 2>/dev/null; exit 0; fi
done"#;

/// Directory guard body: wait for end-of-file on stdin (test process gone), then remove `$1`.
const DIR_GUARD_SCRIPT: &str = r#"read -r _; sleep 1; rm -rf -- "$1""#;

/// Full path of `name` found on `PATH`, or `None`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Sends `signal` (a name such as `"KILL"`, `"STOP"`, `"TERM"`) to `pid` with `kill(1)`.
///
/// Returns whether `kill` succeeded (false if the process is gone).
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A process started by the kit, `SIGKILL`ed by a watchdog if the test process dies first.
///
/// Dropping it kills the process and reaps it.
#[derive(Debug)]
pub struct GuardedChild {
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    exited: Option<ExitStatus>,
}

// === impl GuardedChild ===

impl GuardedChild {
    /// Spawns `command` and its watchdog.
    ///
    /// # Errors
    /// If either process cannot be started (the main one is killed again if the watchdog
    /// fails).
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        let mut child = command.spawn()?;
        match spawn_guard(WATCHDOG_SCRIPT, &child.id().to_string()) {
            Ok(watchdog) => Ok(Self {
                child,
                watchdog: Some(watchdog),
                exited: None,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The real pid of the process (not the watchdog's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`"STOP"`, `"CONT"`, `"TERM"`, …) to the process.
    pub fn signal(&self, signal: &str) -> bool {
        self.exited.is_none() && send_signal(self.pid(), signal)
    }

    /// The exit status if the process has exited (reaping it), without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                self.disarm();
            }
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `SIGKILL`s the process (even if stopped) and reaps it. Idempotent.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        // Disarm first so the watchdog can never signal the pid after it is reaped.
        self.disarm();
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
        self.exited
    }

    /// Stops and reaps the watchdog.
    fn disarm(&mut self) {
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            drop(stdin);
        }
    }
}

impl Drop for GuardedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes a directory when the test process dies without running destructors.
///
/// Dropping the guard disarms it (the owner removes the directory itself).
#[derive(Debug)]
pub struct DirGuard {
    guard: Option<(Child, ChildStdin)>,
}

// === impl DirGuard ===

impl DirGuard {
    /// Arms a guard for `dir`.
    ///
    /// # Errors
    /// If `bash` cannot be started.
    pub fn arm(dir: &Path) -> io::Result<Self> {
        let guard = spawn_guard(DIR_GUARD_SCRIPT, &dir.to_string_lossy())?;
        Ok(Self { guard: Some(guard) })
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.guard.take() {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
        }
    }
}

/// Starts `bash -c SCRIPT _ ARG` with a pipe on stdin that only this process holds.
fn spawn_guard(script: &str, arg: &str) -> io::Result<(Child, ChildStdin)> {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("slotgate-test-watchdog")
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let stdin = child.stdin.take().expect("piped stdin");
    Ok((child, stdin))
}

/// What a bounded run of a helper tool produced.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Exit status; `None` if the run was killed at its deadline.
    pub status: Option<ExitStatus>,
    /// Everything written to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Captured {
    /// Whether the tool exited with status 0 before its deadline.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `command` to completion, capturing stdout and stderr, killing it at `timeout`.
///
/// # Errors
/// If the command cannot be started.
pub fn run_captured(command: &mut Command, timeout: Duration) -> io::Result<Captured> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = GuardedChild::spawn(command)?;
    let out = drain(child.child.stdout.take());
    let err = drain(child.child.stderr.take());
    let status = child.wait_timeout(timeout);
    if status.is_none() {
        child.kill();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Captured {
        status,
        stdout,
        stderr,
    })
}

/// Reads a pipe to its end on a thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The last `max_lines` lines of a text file, or a note that it cannot be read.
pub fn tail_file(path: &Path, max_lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(max_lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
