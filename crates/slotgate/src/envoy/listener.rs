//! Envoy's listeners: the one whose filter chain holds the redis_proxy filter becomes
//! `listen` and `tls:`; its filter config goes to [`redis_proxy`](super::redis_proxy).

use serde_json::Value;

use super::core_v3::{address, typed_config};
use super::output::Converted;
use super::redis_proxy::{self, Route};
use super::report::{ImportError, Report};
use super::tls;
use super::tree::{items, Node};

/// What stands in for an address slotgate cannot listen on (a Unix socket).
const MISSING_ADDRESS: &str = "EDIT-ME: host:port";

/// Filter names of the redis_proxy filter, current and legacy.
const FILTER_NAMES: [&str; 2] = ["envoy.filters.network.redis_proxy", "envoy.redis_proxy"];

/// Where the redis_proxy filter sits: (listener, filter chain, filter) indexes.
type Position = (usize, usize, usize);

/// Converts the redis_proxy listener of `listeners` into `out`; returns the cluster its
/// filter routes to.
///
/// # Errors
/// No listener has the filter, or it is malformed.
pub fn convert(
    listeners: &Node<'_>,
    out: &mut Converted,
    report: &mut Report,
) -> Result<Route, ImportError> {
    let items = listeners.list()?;
    let positions: Vec<Option<(usize, usize)>> =
        items.iter().map(|l| redis_filter_in(l.value)).collect();
    let mut chosen: Option<Position> = None;
    for (i, (listener, at)) in items.iter().zip(&positions).enumerate() {
        match (at, chosen) {
            (Some((chain, filter)), None) => chosen = Some((i, *chain, *filter)),
            (Some(_), Some(_)) => report.lost(
                &listener.path,
                "another redis_proxy listener: slotgate converts the first; \
                    convert a copy with only this one for a second slotgate",
            ),
            (None, _) => report.note(&listener.path, "not a redis_proxy listener: ignored"),
        }
    }
    let Some((i, chain, filter)) = chosen else {
        return Err(listeners.error(format!("no listener runs the {} filter", FILTER_NAMES[0])));
    };
    listener(&items[i], (chain, filter), out, report)
}

/// The (filter chain, filter) of the first redis_proxy filter in a listener, read without
/// judging anything else.
fn redis_filter_in(listener: &Value) -> Option<(usize, usize)> {
    let chains = listener
        .get("filter_chains")
        .or_else(|| listener.get("filterChains"))?;
    items(chains).iter().enumerate().find_map(|(c, chain)| {
        let filters = items(chain.get("filters")?);
        filters.iter().position(is_redis_filter).map(|f| (c, f))
    })
}

fn is_redis_filter(filter: &Value) -> bool {
    let named = filter
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| FILTER_NAMES.contains(&n));
    let typed = filter
        .get("typed_config")
        .or_else(|| filter.get("typedConfig"))
        .is_some_and(|t| {
            ["@type", "type_url"].iter().any(|k| {
                t.get(k)
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.ends_with("redis_proxy.v3.RedisProxy"))
            })
        });
    named || typed
}

fn listener(
    node: &Node<'_>,
    (chain_at, filter_at): (usize, usize),
    out: &mut Converted,
    report: &mut Report,
) -> Result<Route, ImportError> {
    let mut obj = node.obj()?;
    obj.take("name");
    let addr = obj.require("address")?;
    out.listen = match address(&addr, report)? {
        Some(listen) => listen,
        None => MISSING_ADDRESS.to_string(),
    };
    let mut route = None;
    for (i, chain) in obj.require("filter_chains")?.list()?.iter().enumerate() {
        if i == chain_at {
            route = Some(filter_chain(chain, filter_at, out, report)?);
        } else {
            report.lost(
                &chain.path,
                "another filter chain: slotgate serves every connection to listen the same way",
            );
        }
    }
    if let Some(filters) = obj.take("listener_filters") {
        listener_filters(&filters, report)?;
    }
    obj.note_each(
        report,
        &[
            (
                "stat_prefix",
                "slotgate's metrics have fixed names (docs/metrics.md)",
            ),
            (
                "per_connection_buffer_limit_bytes",
                "slotgate bounds buffers per client and per process (limits.*)",
            ),
            ("socket_options", "slotgate sets its own socket options"),
            (
                "connection_balance_config",
                "slotgate spreads clients over its workers itself",
            ),
            (
                "enable_reuse_port",
                "slotgate spreads clients over its workers itself",
            ),
            (
                "reuse_port",
                "slotgate spreads clients over its workers itself",
            ),
            (
                "drain_type",
                "slotgate drains on SIGTERM within shutdown_grace",
            ),
            (
                "access_log",
                "slotgate logs errors and refusals, not every connection",
            ),
            ("traffic_direction", "not used by slotgate"),
            ("tcp_backlog_size", "slotgate uses the system's backlog"),
            ("metadata", "not used by slotgate"),
            (
                "listener_filters_timeout",
                "no listener filters in slotgate",
            ),
            (
                "continue_on_listener_filters_timeout",
                "no listener filters in slotgate",
            ),
        ],
    );
    obj.finish(report);
    route.ok_or_else(|| node.error("the redis_proxy filter chain was not found"))
}

fn listener_filters(node: &Node<'_>, report: &mut Report) -> Result<(), ImportError> {
    for filter in node.list()? {
        let name = match filter.obj()?.take("name") {
            Some(n) => n.str()?.to_string(),
            None => String::new(),
        };
        if name.ends_with("tls_inspector") {
            report.note(&filter.path, "slotgate needs no TLS inspector");
        } else {
            report.lost(
                &filter.path,
                format!("listener filter {name:?}: slotgate has no equivalent"),
            );
        }
    }
    Ok(())
}

fn filter_chain(
    node: &Node<'_>,
    filter_at: usize,
    out: &mut Converted,
    report: &mut Report,
) -> Result<Route, ImportError> {
    let mut obj = node.obj()?;
    let mut route = None;
    for (i, filter) in obj.require("filters")?.list()?.iter().enumerate() {
        if i == filter_at {
            route = Some(redis_filter(filter, out, report)?);
        } else {
            let name = filter
                .value
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("unnamed");
            report.lost(
                &filter.path,
                format!(
                    "filter {name:?} also ran on these connections: slotgate has no equivalent"
                ),
            );
        }
    }
    if let Some(socket) = obj.take("transport_socket") {
        out.tls = tls::listener_tls(&socket, report)?;
    }
    if let Some(t) = obj.take("transport_socket_connect_timeout") {
        let timeout = t.duration()?;
        report.literal_only(&t.path, &timeout, "tls.handshake_timeout");
        match &mut out.tls {
            Some(tls) => tls.handshake_timeout = Some(timeout),
            None => report.note(&t.path, "plaintext listener: no handshake to time"),
        }
    }
    obj.lose_each(
        report,
        &[(
            "filter_chain_match",
            "the chain was chosen by filter_chain_match: slotgate serves \
                every connection to listen the same way",
        )],
    );
    for skipped in ["name", "metadata"] {
        obj.take(skipped);
    }
    obj.finish(report);
    route.ok_or_else(|| node.error("the redis_proxy filter was not found"))
}

fn redis_filter(
    node: &Node<'_>,
    out: &mut Converted,
    report: &mut Report,
) -> Result<Route, ImportError> {
    let mut obj = node.obj()?;
    obj.take("name");
    let config = obj
        .take("typed_config")
        .or_else(|| obj.take("config"))
        .ok_or_else(|| node.error("the redis_proxy filter has no typed_config"))?;
    obj.finish(report);
    let (_, config) = typed_config(&config, report)?;
    redis_proxy::convert(config, out, report)
}
