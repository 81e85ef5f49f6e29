//! The `envoy.filters.network.redis_proxy` filter's config (`RedisProxy`): connection pool
//! `settings` become `upstream.*` keys, `prefix_routes` must lead every key to one cluster, and
//! downstream AUTH becomes `users:` (in [`users`]).

use super::output::Converted;
use super::report::{ImportError, Report};
use super::tree::{Node, Obj};
use super::users;

/// The cluster every key goes to, and where the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The Envoy cluster's name.
    pub cluster: String,
    /// YAML path of the route that names it.
    pub path: String,
}

/// Converts a `RedisProxy` message into `out`; returns the cluster it routes to.
///
/// # Errors
/// No route at all, or wrong types.
pub fn convert(
    mut config: Obj<'_>,
    out: &mut Converted,
    report: &mut Report,
) -> Result<Route, ImportError> {
    if let Some(prefix) = config.take("stat_prefix") {
        report.note(
            &prefix.path,
            format!(
                "Envoy's redis.{}.* statistics become slotgate_* metrics \
                    (docs/migrating-from-envoy.md)",
                prefix.str()?
            ),
        );
    }
    if let Some(settings) = config.take("settings") {
        conn_pool(&settings, out, report)?;
    }
    let route = match (config.take("prefix_routes"), config.take("cluster")) {
        (Some(routes), _) => prefix_routes(&routes, report)?,
        (None, Some(cluster)) => Route {
            cluster: cluster.str()?.to_string(),
            path: cluster.path.clone(),
        },
        (None, None) => {
            return Err(config_error(
                &config,
                "no prefix_routes: the filter names no cluster",
            ))
        }
    };
    users::convert(&mut config, out, report)?;
    config.note_each(
        report,
        &[(
            "latency_in_micros",
            "slotgate's latency histograms are in seconds (docs/metrics.md)",
        )],
    );
    config.lose_each(
        report,
        &[
            ("faults", "fault injection: slotgate has none"),
            (
                "external_auth_provider",
                "external authentication: slotgate checks passwords itself (users:)",
            ),
            (
                "custom_commands",
                "custom (module) commands: slotgate routes the commands of its command table only",
            ),
        ],
    );
    config.finish(report);
    Ok(route)
}

fn config_error(config: &Obj<'_>, message: &str) -> ImportError {
    ImportError {
        path: config.path().to_string(),
        message: message.to_string(),
    }
}

/// `settings` (`ConnPoolSettings`).
fn conn_pool(node: &Node<'_>, out: &mut Converted, report: &mut Report) -> Result<(), ImportError> {
    let mut obj = node.obj()?;
    if let Some(t) = obj.take("op_timeout") {
        out.upstream.op_timeout = Some(t.duration()?);
        report.literal_only(&t.path, t.str()?, "upstream.op_timeout");
        report.note(
            &t.path,
            "slotgate's op_timeout bounds a whole client command, \
                redirects and retries included; blocking commands are not \
                bound by it",
        );
    }
    if let Some(r) = obj.take("enable_redirection") {
        let why = match r.bool()? {
            true => "slotgate always follows MOVED and ASK",
            false => "Envoy passed MOVED and ASK to clients; slotgate always follows them",
        };
        report.note(&r.path, why);
    }
    if let Some(h) = obj.take("enable_hashtagging") {
        h.bool()?;
        report.note(
            &h.path,
            "no effect: Envoy hashes {tags} for envoy.clusters.redis whatever this \
                says, one server holds every key anyway, and slotgate always hashes them",
        );
    }
    if let Some(policy) = obj.take("read_policy") {
        out.upstream.read_from = read_policy(&policy, report)?;
    }
    obj.note_each(
        report,
        &[
            (
                "max_upstream_unknown_connections",
                "slotgate opens connections to a node when the slot map or a \
                    redirect names it",
            ),
            (
                "max_buffer_size_before_flush",
                "slotgate batches the commands it has per wake-up and needs \
                    no flush settings",
            ),
            (
                "buffer_flush_timeout",
                "slotgate batches the commands it has per wake-up and needs \
                    no flush settings",
            ),
            (
                "enable_command_stats",
                "slotgate always counts and times every command \
                    (slotgate_commands_total, slotgate_command_duration_seconds)",
            ),
            (
                "connection_rate_limit",
                "slotgate reconnects with exponential backoff (50 ms doubling \
                    to 2 s) per connection",
            ),
        ],
    );
    obj.lose_each(
        report,
        &[(
            "dns_cache_config",
            "a DNS cache for redirect targets: slotgate resolves node \
                names with the system resolver",
        )],
    );
    obj.finish(report);
    Ok(())
}

/// `read_policy` as `upstream.read_from` (`None`: the default, `primary`).
fn read_policy(node: &Node<'_>, report: &mut Report) -> Result<Option<&'static str>, ImportError> {
    let policy = match node.value {
        serde_json::Value::Number(_) => match node.uint()? {
            0 => "MASTER",
            1 => "PREFER_MASTER",
            2 => "REPLICA",
            3 => "PREFER_REPLICA",
            4 => "ANY",
            _ => "an unknown policy",
        },
        _ => node.str()?,
    };
    Ok(match policy {
        "MASTER" | "PRIMARY" => None,
        "REPLICA" => Some("replica"),
        "PREFER_REPLICA" => Some("prefer-replica"),
        "PREFER_MASTER" | "PREFER_PRIMARY" => {
            report.note(
                &node.path,
                "PREFER_MASTER: upstream.read_from: primary (Envoy read from a replica only \
                    while the primary was unavailable; slotgate waits for the failover instead)",
            );
            None
        }
        "ANY" => {
            report.note(
                &node.path,
                "ANY: upstream.read_from: prefer-replica (replicas that are up and in step, \
                    else the primary)",
            );
            Some("prefer-replica")
        }
        other => {
            report.lost(
                &node.path,
                format!("read_policy {other}: not a known policy"),
            );
            None
        }
    })
}

/// One entry of `prefix_routes` (a route or the catch-all route).
#[derive(Clone)]
struct Entry {
    prefix: String,
    cluster: String,
    path: String,
    /// No prefix removal, mirror, key formatter or read policy (those are reported).
    plain: bool,
}

/// `prefix_routes` → the one cluster every key goes to.
fn prefix_routes(node: &Node<'_>, report: &mut Report) -> Result<Route, ImportError> {
    let mut obj = node.obj()?;
    let catch_all = match (obj.take("catch_all_route"), obj.take("catch_all_cluster")) {
        (Some(route), _) => Some(entry(&route, report)?),
        (None, Some(cluster)) => Some(Entry {
            prefix: String::new(),
            cluster: cluster.str()?.to_string(),
            path: cluster.path.clone(),
            plain: true,
        }),
        (None, None) => None,
    };
    let routes = match obj.take("routes") {
        Some(list) => list
            .list()?
            .iter()
            .map(|r| entry(r, report))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let case = obj.take("case_insensitive");
    obj.finish(report);
    let (target, others) = match catch_all {
        Some(c) => (c, routes.as_slice()),
        None => match routes.split_first() {
            Some((first, rest)) => (first.clone(), rest),
            None => {
                return Err(
                    node.error("no catch_all_route and no routes: the filter names no cluster")
                )
            }
        },
    };
    if !target.prefix.is_empty() {
        report.lost(
            &target.path,
            format!(
                "only keys starting with {:?} were served: slotgate serves \
                    every key from cluster {:?}",
                target.prefix, target.cluster
            ),
        );
    }
    for other in others {
        if other.cluster == target.cluster && other.plain {
            report.note(
                &other.path,
                "routes to the same cluster as every other key: nothing to convert",
            );
        } else if other.cluster != target.cluster {
            report.lost(
                &other.path,
                format!(
                    "several prefix routes: slotgate routes every key to one \
                        cluster (keys starting with {:?} went to cluster {:?})",
                    other.prefix, other.cluster
                ),
            );
        }
    }
    if let (Some(case), false) = (case, others.is_empty()) {
        report.note(
            &case.path,
            "prefix matching does not apply: every key goes to one cluster",
        );
    }
    Ok(Route {
        cluster: target.cluster,
        path: target.path,
    })
}

fn entry(node: &Node<'_>, report: &mut Report) -> Result<Entry, ImportError> {
    let mut obj = node.obj()?;
    let cluster = obj.require("cluster")?.str()?.to_string();
    let prefix = match obj.take("prefix") {
        Some(p) => p.str()?.to_string(),
        None => String::new(),
    };
    let mut plain = true;
    if let Some(remove) = obj.take("remove_prefix") {
        if remove.bool()? {
            report.lost(
                &remove.path,
                "keys lost their prefix on the way to the cluster: slotgate \
                    forwards keys unchanged",
            );
            plain = false;
        }
    }
    let lost_before = report.lost.len();
    obj.lose_each(
        report,
        &[
            (
                "request_mirror_policy",
                "request mirroring: slotgate sends each command to one cluster",
            ),
            (
                "key_formatter",
                "key rewriting: slotgate forwards keys unchanged",
            ),
            (
                "read_command_policy",
                "reads routed to another cluster: slotgate reads from the same cluster",
            ),
        ],
    );
    plain &= report.lost.len() == lost_before;
    obj.finish(report);
    Ok(Entry {
        prefix,
        cluster,
        path: node.path.clone(),
        plain,
    })
}
