//! What slotgate reports about itself: the Prometheus registry and the per-worker instruments
//! ([`metrics`]), latency histograms ([`latency`]), rate-limited log lines ([`logs`]) and the
//! panic net ([`panics`]). Everything else may use these; they use nothing above them.

pub(crate) mod latency;
pub(crate) mod logs;
pub mod metrics;
pub(crate) mod panics;
