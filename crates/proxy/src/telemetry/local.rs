//! One worker's thread-local instruments: per-command counters and latency histograms,
//! per-node request counters and histograms, resolved on first use and flushed into the
//! shared registry about once a second and before every scrape, so counting a command takes
//! no lock and no atomic operation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use prometheus::local::LocalIntCounter;
use slotgate_cluster::NodeAddr;
use slotgate_commands::COMMAND_COUNT;

use crate::telemetry::latency::LocalLatency;
use crate::telemetry::metrics::{
    CacheResult, CmdResult, Metrics, CACHE_RESULT_LABELS, RESULT_LABELS,
};

/// One command's thread-local instruments, resolved on first use.
struct CommandHandles {
    counts: [Option<LocalIntCounter>; 4],
    duration: LocalLatency,
}

/// Thread-local per-node request instruments, shared by a worker's connections to a node.
pub(crate) struct NodeMetrics {
    requests: LocalIntCounter,
    duration: LocalLatency,
}

impl NodeMetrics {
    /// `n` requests written in one batch.
    #[inline]
    pub fn requests(&self, n: u64) {
        self.requests.inc_by(n);
    }

    /// One reply arrived `ns` nanoseconds after its request was written.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        self.duration.observe_ns(ns);
    }

    fn flush(&self) {
        self.requests.flush();
        self.duration.flush();
    }
}

impl Drop for NodeMetrics {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One worker's thread-local instruments.
pub(crate) struct WorkerMetrics {
    shared: Arc<Metrics>,
    /// `slotgate_cache_requests_total`, by [`CacheResult`].
    cache: [LocalIntCounter; 3],
    commands: RefCell<Vec<Option<Box<CommandHandles>>>>,
    nodes: RefCell<HashMap<NodeAddr, Weak<NodeMetrics>>>,
}

impl WorkerMetrics {
    pub fn new(shared: Arc<Metrics>) -> WorkerMetrics {
        let mut commands = Vec::new();
        commands.resize_with(COMMAND_COUNT + 1, || None);
        let cache =
            CACHE_RESULT_LABELS.map(|r| shared.cache_requests.with_label_values(&[r]).local());
        WorkerMetrics {
            cache,
            shared,
            commands: RefCell::new(commands),
            nodes: RefCell::new(HashMap::new()),
        }
    }

    /// The shared registry.
    #[inline]
    pub fn shared(&self) -> &Metrics {
        &self.shared
    }

    /// The shared registry, to keep.
    pub fn shared_arc(&self) -> &Arc<Metrics> {
        &self.shared
    }

    /// Count one finished client command: `cmd` is a command table index or
    /// [`UNKNOWN_COMMAND`].
    #[inline]
    pub fn command(&self, cmd: u16, result: CmdResult, elapsed_ns: u64) {
        if !self.shared.enabled {
            return;
        }
        let mut commands = self.commands.borrow_mut();
        let Some(slot) = commands.get_mut(cmd as usize) else {
            return;
        };
        let handles = slot.get_or_insert_with(|| {
            Box::new(CommandHandles {
                counts: [None, None, None, None],
                duration: self.shared.command_duration.local(command_label(cmd)),
            })
        });
        handles.counts[result as usize]
            .get_or_insert_with(|| {
                self.shared
                    .commands
                    .with_label_values(&[command_label(cmd), RESULT_LABELS[result as usize]])
                    .local()
            })
            .inc();
        handles.duration.observe_ns(elapsed_ns);
    }

    /// Count one cacheable read (kept even when per-command metrics are off: one add).
    #[inline]
    pub fn cache_request(&self, result: CacheResult) {
        self.cache[result as usize].inc();
    }

    /// The request instruments for `node` (`None` when metrics are disabled).
    pub fn node(&self, node: &NodeAddr) -> Option<Rc<NodeMetrics>> {
        if !self.shared.enabled {
            return None;
        }
        let mut nodes = self.nodes.borrow_mut();
        if let Some(m) = nodes.get(node).and_then(Weak::upgrade) {
            return Some(m);
        }
        // Its error counters exist from its first request, at zero.
        self.shared.init_node_errors(node);
        let m = Rc::new(NodeMetrics {
            requests: self
                .shared
                .upstream_requests
                .with_label_values(&[node.as_str()])
                .local(),
            duration: self.shared.upstream_duration.local(node.as_str()),
        });
        nodes.insert(node.clone(), Rc::downgrade(&m));
        Some(m)
    }

    /// Move everything counted on this thread into the shared registry.
    pub fn flush(&self) {
        self.cache.iter().for_each(LocalIntCounter::flush);
        for h in self.commands.borrow().iter().flatten() {
            for c in h.counts.iter().flatten() {
                c.flush();
            }
            h.duration.flush();
        }
        self.nodes
            .borrow_mut()
            .retain(|_, weak| match weak.upgrade() {
                Some(m) => {
                    m.flush();
                    true
                }
                None => false,
            });
    }
}

/// The `command` label for a table index: the lowercase Redis name (`get`, `config|get`).
pub(crate) fn command_label(cmd: u16) -> &'static str {
    if (cmd as usize) < COMMAND_COUNT {
        slotgate_commands::by_index(cmd).name
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::UNKNOWN_COMMAND;

    #[test]
    fn worker_counts_reach_the_registry_only_after_a_flush() {
        let m = Arc::new(Metrics::new(true));
        let w = WorkerMetrics::new(Arc::clone(&m));
        let get = slotgate_commands::lookup_name(b"get").unwrap().index;
        for _ in 0..3 {
            w.command(get, CmdResult::Ok, 120_000);
        }
        w.command(UNKNOWN_COMMAND, CmdResult::Error, 10_000);
        let before = m.encode();
        assert!(
            !before.contains("command=\"get\",result=\"ok\"} 3"),
            "{before}"
        );
        w.flush();
        let text = m.encode();
        assert!(
            text.contains("slotgate_commands_total{command=\"get\",result=\"ok\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("slotgate_commands_total{command=\"unknown\",result=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "slotgate_command_duration_seconds_bucket{command=\"get\",le=\"0.00025\"} 3"
        ));
        assert!(
            !text.contains("result=\"timeout\""),
            "unused results stay absent"
        );
    }

    #[test]
    fn disabled_metrics_count_no_commands() {
        let m = Arc::new(Metrics::new(false));
        let w = WorkerMetrics::new(Arc::clone(&m));
        w.command(0, CmdResult::Ok, 1_000);
        w.flush();
        assert!(!m.encode().contains("slotgate_commands_total{"));
        assert!(w.node(&NodeAddr::new("127.0.0.1:1")).is_none());
    }
}
