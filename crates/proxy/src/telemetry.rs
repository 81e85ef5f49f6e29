//! What slotgate reports about itself: the Prometheus registry ([`metrics`]), each worker's
//! thread-local instruments ([`local`]), latency histograms ([`latency`]), the process's own
//! figures ([`process`]), the hot path's clock ([`clock`]), rate-limited log lines ([`logs`])
//! and the panic net ([`panics`]). Everything else may use these; they use nothing above them.

pub(crate) mod clock;
pub(crate) mod latency;
pub(crate) mod local;
pub(crate) mod logs;
pub mod metrics;
pub(crate) mod panics;
pub(crate) mod process;
pub(crate) mod registry;
