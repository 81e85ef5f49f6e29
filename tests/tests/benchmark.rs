//! redis-benchmark's whole default test list through slotgate must run clean: it stops at
//! the first error reply, so one wrong reply anywhere fails the run.

use std::sync::Mutex;
use std::time::Duration;

use slotgate_tests::{redis_benchmark_with_timeout, shared_proxy, Slotgate};

fn proxy() -> &'static Slotgate {
    shared_proxy()
}

/// Every test of the default list reported a rate and nothing else was printed as an error.
/// Runs one at a time: three full suites at once on two cores would only measure contention.
fn assert_full_run(args: &[&str]) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let outcome = redis_benchmark_with_timeout(proxy().port(), args, Duration::from_secs(600));
    outcome.assert_clean();
    for test in [
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "RPUSH",
        "LPOP",
        "RPOP",
        "SADD",
        "HSET",
        "SPOP",
        "ZADD",
        "ZPOPMIN",
        "LRANGE_100 (first 100 elements)",
        "LRANGE_600 (first 600 elements)",
        "MSET (10 keys)",
    ] {
        let rps = outcome
            .rps(test)
            .unwrap_or_else(|| panic!("{test} missing from {args:?}: {outcome:?}"));
        assert!(rps > 0.0, "{test}: {rps}");
    }
}

#[test]
fn default_suite() {
    assert_full_run(&["-q", "-n", "100000", "-r", "100000"]);
}

#[test]
fn default_suite_pipelined() {
    assert_full_run(&["-q", "-n", "100000", "-r", "100000", "-P", "16"]);
}

#[test]
fn default_suite_500_clients() {
    assert_full_run(&["-q", "-n", "100000", "-r", "100000", "-c", "500"]);
}
