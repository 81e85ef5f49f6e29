//! `process_*` metrics read from `/proc/self` at scrape time (Linux): CPU, memory, file
//! descriptors, threads, start time. The `process` feature of the `prometheus` crate would
//! pull in `procfs` for these few lines.

use std::sync::Mutex;

use prometheus::{Counter, Gauge, IntGauge, Registry};

use crate::telemetry::registry::int_gauge;

/// `process_*` from `/proc/self` (Linux), read at scrape time.
pub(crate) struct ProcessMetrics {
    cpu: Counter,
    cpu_seen: Mutex<f64>,
    resident: IntGauge,
    virtual_mem: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
}

impl ProcessMetrics {
    pub fn register(r: &Registry) -> ProcessMetrics {
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )
        .expect("valid metric");
        r.register(Box::new(cpu.clone())).expect("unique metric");
        let start = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )
        .expect("valid metric");
        r.register(Box::new(start.clone())).expect("unique metric");
        start.set(process_start_time().unwrap_or(0.0));
        ProcessMetrics {
            cpu,
            cpu_seen: Mutex::new(0.0),
            resident: int_gauge(
                r,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_mem: int_gauge(
                r,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: int_gauge(r, "process_open_fds", "Number of open file descriptors."),
            max_fds: int_gauge(
                r,
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            threads: int_gauge(r, "process_threads", "Number of OS threads in the process."),
        }
    }

    pub fn update(&self) {
        if let Some(stat) = read_stat() {
            if let Ok(mut seen) = self.cpu_seen.lock() {
                if stat.cpu_seconds > *seen {
                    self.cpu.inc_by(stat.cpu_seconds - *seen);
                    *seen = stat.cpu_seconds;
                }
            }
            self.virtual_mem.set(stat.vsize as i64);
            self.threads.set(stat.threads as i64);
        }
        if let Some(rss) = resident_bytes() {
            self.resident.set(rss as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max as i64);
        }
    }
}

struct Stat {
    cpu_seconds: f64,
    threads: u64,
    vsize: u64,
    start_ticks: u64,
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Fields of `/proc/self/stat` (see proc(5)); the command name may contain spaces, so
/// fields are counted after its closing parenthesis.
fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) as f64 / TICKS_PER_SECOND,
        threads: num(20)?,
        start_ticks: num(22)?,
        vsize: num(23)?,
    })
}

fn process_start_time() -> Option<f64> {
    let stat = read_stat()?;
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    Some(btime + stat.start_ticks as f64 / TICKS_PER_SECOND)
}

fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_spaces_in_the_name() {
        let text = "1234 (slot gate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    5000 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 5000);
        assert_eq!(s.vsize, 123_456_789);
    }

    #[test]
    fn process_metrics_are_read() {
        let m = crate::telemetry::metrics::Metrics::new(true);
        let text = m.encode();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("slotgate_build_info{version=\""));
    }
}
