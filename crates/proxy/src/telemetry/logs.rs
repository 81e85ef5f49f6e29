//! Rate-limited log lines: at most one line per class of event per second, so a client
//! flood or a flapping node cannot flood the log. The line that gets through says how many
//! were suppressed since the previous one. Log lines never carry secrets or values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Classes of repeatable events, each limited on its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Class {
    /// A client broke the protocol (or a decoder limit).
    ProtocolError = 0,
    /// A client was refused at `max_clients`.
    MaxClients = 1,
    /// `accept` failed (EMFILE and friends).
    AcceptFailed = 2,
    /// A connect to a node failed.
    UpstreamConnect = 3,
    /// An established upstream connection broke.
    UpstreamLost = 4,
    /// A slot map refresh failed.
    RefreshFailed = 5,
    /// A client's TLS handshake failed or timed out.
    TlsHandshake = 6,
    /// A client's AUTH (or HELLO AUTH) failed.
    AuthFailed = 7,
    /// A client that did not read its replies was closed.
    ClientNotReading = 8,
    /// A node refused to create or authenticate a restricted user's script identity.
    ScriptIdentity = 9,
}

const CLASSES: usize = 10;

struct Limiter {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

static LIMITERS: [Limiter; CLASSES] = [const {
    Limiter {
        last_second: AtomicU64::new(0),
        suppressed: AtomicU64::new(0),
    }
}; CLASSES];

/// Run `log` (passing how many lines of this class were suppressed since the last one)
/// unless a line of `class` was already logged this second.
pub(crate) fn limited(class: Class, log: impl FnOnce(u64)) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if admit(&LIMITERS[class as usize], now) {
        log(LIMITERS[class as usize]
            .suppressed
            .swap(0, Ordering::Relaxed));
    }
}

fn admit(l: &Limiter, now: u64) -> bool {
    let last = l.last_second.load(Ordering::Relaxed);
    if now > last
        && l.last_second
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        return true;
    }
    l.suppressed.fetch_add(1, Ordering::Relaxed);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second_and_the_rest_counted() {
        let l = Limiter {
            last_second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        };
        assert!(admit(&l, 100));
        assert!(!admit(&l, 100));
        assert!(!admit(&l, 100));
        assert_eq!(l.suppressed.load(Ordering::Relaxed), 2);
        assert!(admit(&l, 101));
        assert!(!admit(&l, 100), "a clock step back admits nothing new");
    }
}
