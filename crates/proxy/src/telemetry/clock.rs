//! A cheap monotonic clock for the hot path: nanoseconds (and milliseconds) since a
//! process-wide base, so a batch converts its `Instant` once and later steps subtract
//! integers.

use std::time::Duration;

/// Milliseconds of `at` since the first call (process-wide, monotonic); never 0.
pub(crate) fn mono_ms(at: std::time::Instant) -> u64 {
    ns_to_ms(mono_ns(at))
}

/// A [`mono_ns`] reading as [`mono_ms`] would give it.
#[inline]
pub(crate) fn ns_to_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// Nanoseconds of `at` since the first call (process-wide, monotonic; the same base as
/// [`mono_ms`]), at least a second. Hot paths convert once per batch and subtract integers:
/// subtracting two `Instant`s costs about 60 instructions (seconds and nanoseconds are
/// normalised).
pub(crate) fn mono_ns(at: std::time::Instant) -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| at - Duration::from_secs(1));
    at.saturating_duration_since(base).as_nanos() as u64
}
