//! slotgate's test kit: real `redis-server` clusters, the real `slotgate` binary and real
//! `redis-benchmark` runs, for the end-to-end suites in `tests/tests/`.
//!
//! Everything here uses real processes on OS-given loopback ports (never fixed ports), waits
//! for conditions with deadlines (never a bare sleep), and cleans up after itself even when a
//! test binary exits without running destructors (see [`process`]). A missing `redis-server`
//! is a panic telling how to install it, never a skipped test.
//!
//! ```no_run
//! use slotgate_tests::{shared_cluster, ProxyConfig};
//! let cluster = shared_cluster();
//! let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
//! assert_eq!(cluster.cli(proxy.port(), &["PING"]), "PONG");
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod load;
pub mod ports;
pub mod probe;
pub mod process;
pub mod promtool;
pub mod raw;
pub mod sentinel;
pub mod slotgate;
pub mod standalone;
pub mod tls;

pub use bench::{redis_benchmark, redis_benchmark_with_timeout, BenchOutcome};
pub use cluster::{shared_cluster, ClusterOptions, RedisCluster};
pub use config::ProxyConfig;
pub use load::{cluster_under_load, Load, LoadReport};
pub use ports::{free_cluster_port, free_port};
pub use probe::Reply;
pub use slotgate::{shared_proxy, slotgate_bin, slotgate_config, Slotgate, SlotgateBuilder};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Interval at which [`wait_until`] and [`assert_eventually!`] re-check their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Re-checks `condition` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Asserts that a condition becomes true within a timeout, polling every 20 ms.
///
/// ```
/// use std::time::Duration;
/// use slotgate_tests::assert_eventually;
/// let start = std::time::Instant::now();
/// assert_eventually!(start.elapsed() > Duration::from_millis(50), Duration::from_secs(5));
/// assert_eventually!(true, Duration::from_secs(1), "with a message: {}", 42);
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr $(,)?) => {
        $crate::assert_eventually!($cond, $timeout, "condition never held")
    };
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        if !$crate::wait_until(timeout, || $cond) {
            panic!(
                "assert_eventually!({}) failed after {:?}: {}",
                stringify!($cond),
                timeout,
                format_args!($($msg)+)
            );
        }
    }};
}

/// A key prefix no other caller gets: `"NAME:PID:N:"` (no hash tag, so keys under it still
/// spread over all slots). Tests sharing a cluster put all their keys under their own prefix.
pub fn unique_key_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
