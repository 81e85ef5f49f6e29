use std::time::Duration;

use slotgate_cluster::NodeAddr;
use tokio::time::Instant;

use super::*;
use crate::testing::{reply, topology};

const A: &str = "127.0.0.1:7001";
const B: &str = "127.0.0.1:7002";

fn node(addr: &str) -> NodeAddr {
    NodeAddr::new(addr)
}

#[test]
fn moved_patches_the_map_and_redirects() {
    let (topo, metrics) = topology(&[(0, 16383, A)]);
    let mut attempts = Attempts::default();
    let verdict = attempts.judge(
        &reply("-MOVED 3999 127.0.0.1:7002\r\n"),
        &node(A),
        5,
        &topo,
        &metrics,
    );
    assert_eq!(
        verdict,
        Verdict::Redirect {
            target: node(B),
            asking: false
        }
    );
    assert_eq!(attempts.redirects(), 1);
    assert_eq!(topo.map().primary_for_slot(3999), Some(&node(B)));
    assert_eq!(topo.map().primary_for_slot(4000), Some(&node(A)));
}

#[test]
fn ask_redirects_with_asking_and_leaves_the_map() {
    let (topo, metrics) = topology(&[(0, 16383, A)]);
    let generation = topo.generation();
    let mut attempts = Attempts::default();
    let verdict = attempts.judge(
        &reply("-ASK 3999 127.0.0.1:7002\r\n"),
        &node(A),
        5,
        &topo,
        &metrics,
    );
    assert_eq!(
        verdict,
        Verdict::Redirect {
            target: node(B),
            asking: true
        }
    );
    assert_eq!(topo.generation(), generation, "ASK changes no map");
    assert_eq!(topo.map().primary_for_slot(3999), Some(&node(A)));
}

#[test]
fn an_empty_endpoint_means_the_node_that_answered() {
    let (topo, metrics) = topology(&[(0, 16383, A)]);
    let verdict =
        Attempts::default().judge(&reply("-MOVED 1 :7002\r\n"), &node(A), 5, &topo, &metrics);
    assert_eq!(
        verdict,
        Verdict::Redirect {
            target: node(B),
            asking: false
        }
    );
}

#[test]
fn the_redirect_limit_makes_the_redirect_final() {
    let (topo, metrics) = topology(&[(0, 16383, A)]);
    let mut attempts = Attempts::default();
    let moved = reply("-MOVED 1 127.0.0.1:7002\r\n");
    for _ in 0..3 {
        assert!(matches!(
            attempts.judge(&moved, &node(A), 3, &topo, &metrics),
            Verdict::Redirect { .. }
        ));
    }
    assert_eq!(
        attempts.judge(&moved, &node(A), 3, &topo, &metrics),
        Verdict::Final
    );
    assert_eq!(attempts.redirects(), 3);
}

#[test]
fn retryable_errors_and_final_ones() {
    let (topo, metrics) = topology(&[(0, 16383, A)]);
    let mut attempts = Attempts::default();
    let mut judge = |wire: &str| attempts.judge(&reply(wire), &node(A), 5, &topo, &metrics);
    assert_eq!(
        judge("-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
        Verdict::Retry(Retry::TryAgain)
    );
    assert_eq!(
        judge("-CLUSTERDOWN The cluster is down\r\n"),
        Verdict::Retry(Retry::ClusterDown)
    );
    assert_eq!(
        judge("-LOADING Redis is loading the dataset in memory\r\n"),
        Verdict::Retry(Retry::Loading)
    );
    assert_eq!(
        judge("-ERR wrong number of arguments for 'get' command\r\n"),
        Verdict::Final
    );
    assert_eq!(
        judge("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        Verdict::Final
    );
    assert_eq!(
        judge("-MOVED nonsense\r\n"),
        Verdict::Final,
        "an unparsable redirect is the answer"
    );
    assert_eq!(judge("+OK\r\n"), Verdict::Final);
    assert!(not_run(&reply("-TRYAGAIN x\r\n")));
    assert!(not_run(&reply("-ASK 1 127.0.0.1:1\r\n")));
    assert!(!not_run(&reply("-ERR x\r\n")));
    assert!(!not_run(&reply(":1\r\n")));
}

#[test]
fn retries_back_off_exponentially_within_the_deadline() {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(400);
    let (mut attempts, mut now, mut delays) = (Attempts::default(), start, Vec::new());
    while let Some(at) = attempts.retry_at(now, deadline) {
        delays.push((at - now).as_millis());
        now = at;
    }
    // 10, 20, 40, 80, 160 ms; the next 200 would end past 400 ms in all (310 + 200).
    assert_eq!(delays, [10, 20, 40, 80, 160]);
    let (mut attempts, far) = (Attempts::default(), start + Duration::from_secs(60));
    let capped: Vec<u128> = (0..8)
        .map(|_| (attempts.retry_at(start, far).unwrap() - start).as_millis())
        .collect();
    assert_eq!(capped, [10, 20, 40, 80, 160, 200, 200, 200]);
}

#[test]
fn only_reads_are_resent_after_a_loss_and_only_once() {
    assert!(may_resend_after_loss(true, false));
    assert!(!may_resend_after_loss(true, true));
    assert!(!may_resend_after_loss(false, false));
}
