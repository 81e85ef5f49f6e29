//! `INFO [section …]`: slotgate's own sections (`server`, `clients`, `slotgate`) and the
//! sections that describe the data (`memory`, `persistence`, `stats`, `cpu`, `errorstats`,
//! `commandstats`, `latencystats`, `keyspace`) merged over every primary, in Redis's order.
//! Section names as Redis takes them: none or `default`, `all`, `everything`, or any list.
//!
//! Merging: the keyspace is summed per database ([`crate::family::keyspace`]); in the other
//! sections integer fields are summed (counters and sizes: the cluster's total), other values
//! come from the first primary that reported them; in `commandstats`, `errorstats` and
//! `latencystats` lines (`cmdstat_get:calls=…,usec=…`) integer fields are summed,
//! `usec_per_call` is recomputed from the sums and other fractional fields (latency
//! percentiles) are the largest. A primary that does not answer is left out and counted
//! (`slotgate_primaries_unanswered:N`, only then).

use bytes::{Bytes, BytesMut};
use slotgate_resp::{encode, parse_value, Request};
use tokio::time::Instant;

use crate::family::keyspace;
use crate::protocol::{Dialect, Protocol};
use crate::runtime::context::WorkerCtx;
use crate::session::client::ClientState;
use crate::session::entry::{Entry, Fanout};
use crate::session::merge::{Merge, WholeMerge};
use crate::session::op::Op;

/// The sections taken from the primaries, in Redis's order.
const NODE_SECTIONS: [&str; 8] = [
    "memory",
    "persistence",
    "stats",
    "cpu",
    "errorstats",
    "commandstats",
    "latencystats",
    "keyspace",
];
/// Those `INFO` and `INFO default` include.
const DEFAULT_NODE_SECTIONS: [&str; 6] = [
    "memory",
    "persistence",
    "stats",
    "cpu",
    "errorstats",
    "keyspace",
];

/// What an INFO reply is made of besides the primaries' sections.
#[derive(Debug)]
pub(crate) struct InfoParts {
    /// slotgate's sections before the primaries' (`server`, `clients`).
    head: String,
    /// slotgate's sections after them (`slotgate`).
    tail: String,
    /// The primaries' sections asked for, in order.
    sections: Vec<&'static str>,
    proto: Protocol,
}

/// Answer `INFO`: at once when only slotgate's sections are asked for, else after every
/// primary answered `INFO <sections>`.
pub(crate) fn route(
    ctx: &WorkerCtx,
    client: &ClientState,
    req: &Request,
    deadline: Instant,
) -> Entry {
    let asked = Asked::of(req);
    let parts = InfoParts {
        head: head(ctx, &asked),
        tail: tail(ctx, &asked),
        sections: asked.node_sections(),
        proto: client.proto,
    };
    let primaries = ctx.routes.serving_primaries();
    if parts.sections.is_empty() || primaries.is_empty() {
        let mut out = BytesMut::new();
        write(&parts, &[], &mut out);
        return Entry::Ready(out.freeze());
    }
    let mut args: Vec<&[u8]> = vec![b"INFO"];
    args.extend(parts.sections.iter().map(|s| s.as_bytes()));
    let mut wire = BytesMut::new();
    encode::command(&mut wire, &args);
    let wire = wire.freeze();
    // Parsed here, never passed on: RESP2 connections suffice.
    let (dialect, budget) = (Dialect::RESP2, &client.budget);
    let ops = Op::to_each(ctx, primaries, &wire, true, deadline, dialect, budget);
    Entry::Fanout(Box::new(Fanout {
        ops,
        merge: Merge::Whole(Box::new(parts)),
    }))
}

/// The section names of one `INFO` call, lower-cased.
struct Asked(Vec<String>);

impl Asked {
    fn of(req: &Request) -> Asked {
        Asked(
            req.args()
                .skip(1)
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect(),
        )
    }

    /// Whether slotgate's own section `name` is included.
    fn wants(&self, name: &str) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|w| w == name || matches!(w.as_str(), "all" | "everything" | "default"))
    }

    /// The primaries' sections included, in Redis's order.
    fn node_sections(&self) -> Vec<&'static str> {
        let everything = self.0.iter().any(|w| w == "all" || w == "everything");
        let default = self.0.is_empty() || self.0.iter().any(|w| w == "default");
        NODE_SECTIONS
            .into_iter()
            .filter(|s| {
                everything
                    || (default && DEFAULT_NODE_SECTIONS.contains(s))
                    || self.0.iter().any(|w| w == s)
            })
            .collect()
    }
}

fn head(ctx: &WorkerCtx, asked: &Asked) -> String {
    let mut out = String::new();
    if asked.wants("server") {
        out.push_str(&format!(
            "# Server\r\nredis_version:{}\r\nredis_mode:standalone\r\nslotgate_version:{}\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            ctx.topology.redis_version(),
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            ctx.cfg.listen.port(),
            ctx.shared.started.elapsed().as_secs(),
        ));
    }
    if asked.wants("clients") {
        out.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            ctx.shared.client_count(),
            ctx.cfg.limits.max_clients
        ));
    }
    out
}

fn tail(ctx: &WorkerCtx, asked: &Asked) -> String {
    if !asked.wants("slotgate") {
        return String::new();
    }
    let map = ctx.topology.map();
    format!(
        "# Slotgate\r\nslotgate_version:{}\r\nupstream_mode:{}\r\nworkers:{}\r\nslots_covered:{}\r\nshards:{}\r\nnodes:{}\r\ntopology_refreshes:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        ctx.cfg.upstream.mode.name(),
        ctx.cfg.worker_count(),
        map.covered(),
        map.serving_shards().len(),
        map.all_nodes().len(),
        ctx.topology.refresh_count(),
    )
}

impl WholeMerge for InfoParts {
    fn write(&self, replies: &[Bytes], out: &mut BytesMut) {
        write(self, replies, out)
    }
}

/// Write the INFO text (a verbatim string in RESP3): slotgate's head, the primaries'
/// sections merged from `replies` (errors and odd replies count as unanswered), the tail.
pub(crate) fn write(parts: &InfoParts, replies: &[Bytes], out: &mut BytesMut) {
    let mut texts = Vec::new();
    let mut unanswered = 0;
    for reply in replies {
        match parse_value(reply) {
            Ok(Some((v, _))) if v.as_bytes().is_some() => {
                texts.push(String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned())
            }
            _ => unanswered += 1,
        }
    }
    let mut text = parts.head.clone();
    for name in &parts.sections {
        let bodies: Vec<Vec<&str>> = texts.iter().map(|t| section(t, name)).collect();
        text.push_str(&match *name {
            "keyspace" => keyspace::merged(&bodies),
            _ => merge_section(name, &bodies),
        });
    }
    if unanswered > 0 && !parts.sections.is_empty() {
        // Inside the last section, before its blank line.
        text.truncate(text.len().saturating_sub(2));
        text.push_str(&format!(
            "slotgate_primaries_unanswered:{unanswered}\r\n\r\n"
        ));
    }
    text.push_str(&parts.tail);
    parts.proto.verbatim(out, text.as_bytes());
}

/// The `key:value` lines of section `name` (`# Name` header, any case) in one node's text.
fn section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = text.lines().map(str::trim_end);
    let found = lines.by_ref().any(|l| {
        l.strip_prefix("# ")
            .is_some_and(|h| h.eq_ignore_ascii_case(name))
    });
    if !found {
        return Vec::new();
    }
    lines
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.contains(':'))
        .collect()
}

/// One section merged over the nodes (see the module's rules).
fn merge_section(name: &str, bodies: &[Vec<&str>]) -> String {
    let mut fields: Vec<(String, String)> = Vec::new();
    for body in bodies {
        for line in body {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some((_, total)) => *total = combine(total, value),
                None => fields.push((key.to_string(), value.to_string())),
            }
        }
    }
    let mut out = format!("# {}\r\n", title(name));
    for (k, v) in fields {
        out.push_str(&format!("{k}:{}\r\n", finish(&v)));
    }
    out.push_str("\r\n");
    out
}

/// `a` and `b` (one field's values from two nodes) as one.
fn combine(a: &str, b: &str) -> String {
    if a.contains('=') {
        return combine_fields(a, b);
    }
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.saturating_add(y).to_string(),
        _ => a.to_string(),
    }
}

/// `calls=1,usec=2,…` lines: integers summed, other numbers the larger.
fn combine_fields(a: &str, b: &str) -> String {
    let mut out: Vec<(String, String)> = a
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in b.split(',').filter_map(|kv| kv.split_once('=')) {
        match out.iter_mut().find(|(name, _)| name == k) {
            Some((_, total)) => {
                *total = match (total.parse::<i64>(), v.parse::<i64>()) {
                    (Ok(x), Ok(y)) => x.saturating_add(y).to_string(),
                    _ => match (total.parse::<f64>(), v.parse::<f64>()) {
                        (Ok(x), Ok(y)) if y > x => v.to_string(),
                        _ => total.clone(),
                    },
                }
            }
            None => out.push((k.to_string(), v.to_string())),
        }
    }
    let joined: Vec<String> = out.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.join(",")
}

/// A merged value as written: `usec_per_call` recomputed from the summed `calls` and `usec`.
fn finish(value: &str) -> String {
    if !value.contains("usec_per_call=") {
        return value.to_string();
    }
    let get = |k: &str| {
        value
            .split(',')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let per_call = match (get("calls"), get("usec")) {
        (Some(calls), Some(usec)) if calls > 0.0 => usec / calls,
        _ => 0.0,
    };
    value
        .split(',')
        .map(|kv| match kv.split_once('=') {
            Some(("usec_per_call", _)) => format!("usec_per_call={per_call:.2}"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `Commandstats` as Redis titles its sections.
fn title(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Bytes {
        let mut b = BytesMut::new();
        encode::bulk(&mut b, text.as_bytes());
        b.freeze()
    }

    fn merged(sections: &[&'static str], replies: &[Bytes]) -> String {
        let parts = InfoParts {
            head: "# Server\r\nx:1\r\n\r\n".into(),
            tail: String::new(),
            sections: sections.to_vec(),
            proto: Protocol::Resp2,
        };
        let mut out = BytesMut::new();
        write(&parts, replies, &mut out);
        match parse_value(&out) {
            Ok(Some((v, _))) => String::from_utf8(v.as_bytes().unwrap().to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sections_asked_for() {
        let asked = |args: &[&[u8]]| Asked::of(&Request::from_args(args)).node_sections();
        assert_eq!(asked(&[b"INFO"]), DEFAULT_NODE_SECTIONS);
        assert_eq!(asked(&[b"INFO", b"ALL"]), NODE_SECTIONS);
        assert_eq!(asked(&[b"INFO", b"server"]), Vec::<&str>::new());
        assert_eq!(
            asked(&[b"INFO", b"keyspace", b"commandstats", b"Stats"]),
            ["stats", "commandstats", "keyspace"]
        );
        let slotgate = Asked::of(&Request::from_args(&[&b"INFO"[..], b"slotgate"]));
        assert!(slotgate.wants("slotgate") && !slotgate.wants("server"));
    }

    #[test]
    fn counters_are_summed_and_per_call_figures_recomputed() {
        let a = node("# Stats\r\ntotal_commands_processed:10\r\ninstantaneous_input_kbps:0.50\r\n\r\n# Commandstats\r\ncmdstat_get:calls=3,usec=30,usec_per_call=10.00,rejected_calls=0,failed_calls=1\r\n");
        let b = node("# Stats\r\ntotal_commands_processed:5\r\ninstantaneous_input_kbps:0.70\r\n\r\n# Commandstats\r\ncmdstat_get:calls=1,usec=10,usec_per_call=10.00,rejected_calls=2,failed_calls=0\r\ncmdstat_set:calls=2,usec=8,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n");
        let text = merged(&["stats", "commandstats"], &[a, b]);
        assert_eq!(
            text,
            "# Server\r\nx:1\r\n\r\n# Stats\r\ntotal_commands_processed:15\r\ninstantaneous_input_kbps:0.50\r\n\r\n# Commandstats\r\ncmdstat_get:calls=4,usec=40,usec_per_call=10.00,rejected_calls=2,failed_calls=1\r\ncmdstat_set:calls=2,usec=8,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\r\n"
        );
    }

    #[test]
    fn latency_percentiles_are_the_largest_and_a_silent_primary_is_counted() {
        let a = node("# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=5.007\r\n");
        let err = Bytes::from_static(b"-ERR slotgate: upstream 127.0.0.1:1 is unreachable\r\n");
        let b = node("# Latencystats\r\nlatency_percentiles_usec_get:p50=2.001,p99=3.001\r\n");
        let text = merged(&["latencystats"], &[a, err, b]);
        assert!(
            text.contains("latency_percentiles_usec_get:p50=2.001,p99=5.007\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("slotgate_primaries_unanswered:1\r\n\r\n"),
            "{text}"
        );
    }
}
