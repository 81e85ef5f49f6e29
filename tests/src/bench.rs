//! Running `redis-benchmark` as a client and reading what it reports.
//!
//! redis-benchmark 7.0 prints one result line per test (`-q`: `SET: 51020.41 requests per
//! second, p50=0.487 msec`; `--csv`: `"SET","51020.41",…`), progress updates separated by `\r`,
//! and, on the first error reply, `Error from server: <error>` on stderr before exiting with
//! status 1. It spins forever when it cannot connect, so every run has a deadline.

use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::process::{find_binary, run_captured};

/// Deadline of [`redis_benchmark`].
pub const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Substrings that mark a line of redis-benchmark output as an error.
const ERROR_MARKERS: &[&str] = &[
    "ERR",
    "Error",
    "error",
    "WRONGTYPE",
    "MOVED ",
    "ASK ",
    "NOAUTH",
    "NOPERM",
    "WRONGPASS",
    "CROSSSLOT",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "LOADING",
    "NOPROTO",
    "Connection refused",
    "Connection reset",
    "Could not connect",
    "Server closed",
    "I/O error",
];

/// What one redis-benchmark run reported.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// Exit status; `None` if killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Raw stdout.
    pub stdout: String,
    /// Raw stderr.
    pub stderr: String,
    /// (test name, requests per second) for each completed test, in order.
    pub results: Vec<(String, f64)>,
}

// === impl BenchOutcome ===

impl BenchOutcome {
    /// Output lines (stdout then stderr, split on `\n` and `\r`) that look like errors.
    pub fn error_lines(&self) -> Vec<String> {
        output_lines(&self.stdout)
            .chain(output_lines(&self.stderr))
            .filter(|line| ERROR_MARKERS.iter().any(|m| line.contains(m)))
            .map(str::to_string)
            .collect()
    }

    /// Whether the run was killed at its deadline.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// Requests per second of the test called `name` (as printed, e.g. `"SET"`, `"PING_INLINE"`).
    pub fn rps(&self, name: &str) -> Option<f64> {
        self.results
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, rps)| rps)
    }

    /// Exited 0 in time, reported at least one result, printed no error line.
    pub fn is_clean(&self) -> bool {
        self.status.is_some_and(|s| s.success())
            && !self.results.is_empty()
            && self.error_lines().is_empty()
    }

    /// Panics with the whole output unless [`BenchOutcome::is_clean`].
    ///
    /// # Panics
    /// If the run was not clean.
    pub fn assert_clean(&self) {
        assert!(
            self.is_clean(),
            "redis-benchmark not clean: status {:?}, errors {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.error_lines(),
            self.stdout,
            self.stderr
        );
    }
}

fn output_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

/// Runs `redis-benchmark -p PORT ARGS…` (e.g. `["-q", "-n", "100000", "-P", "16"]`) with a
/// 120 s deadline.
///
/// # Panics
/// If redis-benchmark is not installed or cannot start.
pub fn redis_benchmark(port: u16, args: &[&str]) -> BenchOutcome {
    redis_benchmark_with_timeout(port, args, BENCH_TIMEOUT)
}

/// [`redis_benchmark`] with an explicit deadline (the process is killed when it passes).
///
/// # Panics
/// If redis-benchmark is not installed or cannot start.
pub fn redis_benchmark_with_timeout(port: u16, args: &[&str], timeout: Duration) -> BenchOutcome {
    let bin = find_binary("redis-benchmark").unwrap_or_else(|| {
        panic!("redis-benchmark not found: apt-get install redis-server redis-tools")
    });
    let mut cmd = Command::new(bin);
    cmd.arg("-p").arg(port.to_string()).args(args);
    let out = run_captured(&mut cmd, timeout).expect("run redis-benchmark");
    let results = parse_results(&out.stdout);
    BenchOutcome {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
        results,
    }
}

/// Parses `-q` and `--csv` result lines; progress lines are ignored.
pub fn parse_results(stdout: &str) -> Vec<(String, f64)> {
    output_lines(stdout).filter_map(parse_result_line).collect()
}

fn parse_result_line(line: &str) -> Option<(String, f64)> {
    if let Some(before) = line
        .split(" requests per second")
        .next()
        .filter(|b| b.len() < line.len())
    {
        let (name, rps) = before.rsplit_once(": ")?;
        return Some((name.trim().to_string(), rps.trim().parse().ok()?));
    }
    let fields: Vec<&str> = line.split("\",\"").collect();
    if line.starts_with('"') && fields.len() >= 2 && fields[0] != "\"test" {
        let rps = fields[1].trim_matches('"').parse().ok()?;
        return Some((fields[0].trim_start_matches('"').to_string(), rps));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quiet_and_csv_output() {
        let quiet = " PING_INLINE: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r \
                     PING_INLINE: 38461.54 requests per second, p50=0.503 msec\n\
                     lpush k a: 50000.00 requests per second, p50=0.615 msec\n";
        assert_eq!(
            parse_results(quiet),
            vec![
                ("PING_INLINE".to_string(), 38461.54),
                ("lpush k a".to_string(), 50000.0)
            ]
        );
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"55555.56\",\"0.491\"\n";
        assert_eq!(parse_results(csv), vec![("SET".to_string(), 55555.56)]);
    }
}
