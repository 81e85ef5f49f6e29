//! Making an instrument and registering it in one step. Registration fails only for a
//! duplicate or malformed name, a bug the first test that builds the registry catches.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::telemetry::latency::LatencyVec;

/// A counter family with `labels`, registered.
pub(crate) fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

/// A gauge family with `labels`, registered.
pub(crate) fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(v.clone()))
        .expect("unique metric");
    v
}

/// A counter without labels, registered.
pub(crate) fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

/// A gauge without labels, registered.
pub(crate) fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// A latency histogram family with one label, registered.
pub(crate) fn latency_vec(registry: &Registry, name: &str, help: &str, label: &str) -> LatencyVec {
    let h = LatencyVec::new(name, help, label);
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}
