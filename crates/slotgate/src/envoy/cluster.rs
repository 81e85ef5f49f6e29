//! The Envoy cluster the redis_proxy routes to becomes `upstream:`. It must be an
//! `envoy.clusters.redis` cluster (a Redis Cluster): its endpoints are the seeds, its
//! `cluster_refresh_rate` the refresh interval, and the redis_proxy protocol options give the
//! upstream credentials.

use super::core_v3::{address, data_source, typed_config, Source};
use super::output::{Secret, Upstream};
use super::report::{ImportError, Report};
use super::tls;
use super::tree::{Node, Obj};

/// The name Envoy gives its Redis Cluster cluster type.
const REDIS_CLUSTER_TYPE: &str = "envoy.clusters.redis";

/// The cluster called `name` in `static_resources.clusters`.
///
/// # Errors
/// No cluster has that name, or the list is malformed.
pub fn find<'a>(clusters: &Node<'a>, name: &str) -> Result<Node<'a>, ImportError> {
    for cluster in clusters.list()? {
        let mut obj = cluster.obj()?;
        if obj.require("name")?.str()? == name {
            return Ok(cluster);
        }
    }
    Err(clusters.error(format!(
        "no cluster named {name:?} (the cluster the redis_proxy routes to)"
    )))
}

/// Converts the cluster at `node` into `up`: an `envoy.clusters.redis` cluster into cluster
/// mode, a plain cluster of exactly one server into `upstream.mode: standalone`.
///
/// # Errors
/// A plain cluster of several servers (Envoy's hash ring over independent servers), another
/// cluster type, no endpoints, or wrong types.
pub fn convert(node: &Node<'_>, up: &mut Upstream, report: &mut Report) -> Result<(), ImportError> {
    let mut obj = node.obj()?;
    let name = obj.require("name")?.str()?.to_string();
    let cluster_type = obj.take("cluster_type");
    if let Some(cluster_type) = &cluster_type {
        redis_cluster_config(cluster_type, up, report)?;
    }
    let assignment = obj.require("load_assignment")?;
    up.seeds = seeds(&assignment, report)?;
    if up.seeds.is_empty() {
        return Err(assignment.error("no endpoints: slotgate needs at least one seed node"));
    }
    if cluster_type.is_none() {
        standalone(node, &name, up, report)?;
    }
    if let Some(t) = obj.take("connect_timeout") {
        up.connect_timeout = Some(t.duration()?);
        report.literal_only(&t.path, t.str()?, "upstream.connect_timeout");
    }
    if let Some(options) = obj.take("typed_extension_protocol_options") {
        protocol_options(&options, up, report)?;
    }
    if let Some(socket) = obj.take("transport_socket") {
        up.tls = tls::upstream_tls(&socket, report)?;
    }
    note_ignored(&mut obj, report);
    obj.finish(report);
    Ok(())
}

/// A cluster without `cluster_type`: Envoy spreads keys over its servers with a hash ring.
/// One server is slotgate's standalone mode; several cannot be converted.
fn standalone(
    node: &Node<'_>,
    name: &str,
    up: &mut Upstream,
    report: &mut Report,
) -> Result<(), ImportError> {
    if up.seeds.len() > 1 {
        return Err(node.error(format!(
            "cluster {name:?} is not an {REDIS_CLUSTER_TYPE} cluster: Envoy spreads keys over \
                its {} servers with a hash ring, and slotgate proxies one Redis Cluster or one \
                server",
            up.seeds.len()
        )));
    }
    up.mode = Some("standalone");
    report.note(
        &node.path,
        "one server and no envoy.clusters.redis cluster_type: upstream.mode: standalone",
    );
    Ok(())
}

fn note_ignored(obj: &mut Obj<'_>, report: &mut Report) {
    obj.note_each(
        report,
        &[
            ("type", "slotgate resolves node names when it connects"),
            (
                "lb_policy",
                "slotgate picks the node itself: by the slot map, or the one server",
            ),
            (
                "dns_lookup_family",
                "slotgate resolves seeds with the system resolver",
            ),
            (
                "dns_refresh_rate",
                "slotgate resolves seeds when it loads the slot map",
            ),
            (
                "respect_dns_ttl",
                "slotgate resolves seeds when it loads the slot map",
            ),
            (
                "circuit_breakers",
                "slotgate bounds work per client (limits.max_pipeline, \
                    limits.max_client_output) and per process \
                    (limits.max_buffered)",
            ),
            (
                "health_checks",
                "slotgate watches every node's connection and the slot map instead",
            ),
            (
                "outlier_detection",
                "slotgate follows the cluster's own failover",
            ),
            (
                "upstream_connection_options",
                "slotgate sets its own TCP options",
            ),
            (
                "per_connection_buffer_limit_bytes",
                "slotgate bounds buffers per client and per process \
                    (limits.*)",
            ),
            (
                "common_lb_config",
                "slotgate routes by the cluster's slot map",
            ),
            (
                "close_connections_on_host_health_failure",
                "slotgate follows the cluster's own failover",
            ),
            (
                "ignore_health_on_host_removal",
                "slotgate follows the cluster's own failover",
            ),
            (
                "alt_stat_name",
                "slotgate's metrics name nodes by address (docs/metrics.md)",
            ),
            ("metadata", "not used by slotgate"),
        ],
    );
}

/// `cluster_type` → checks it is `envoy.clusters.redis`; its `RedisClusterConfig` gives
/// `refresh_interval`.
fn redis_cluster_config(
    node: &Node<'_>,
    up: &mut Upstream,
    report: &mut Report,
) -> Result<(), ImportError> {
    let mut obj = node.obj()?;
    let name = obj.require("name")?.str()?.to_string();
    if name != REDIS_CLUSTER_TYPE {
        return Err(node.error(format!(
            "cluster type {name:?}: slotgate proxies a Redis Cluster ({REDIS_CLUSTER_TYPE})"
        )));
    }
    let mut config = match obj.take("typed_config") {
        Some(t) => typed_config(&t, report)?.1,
        None => Obj::empty(obj.path()),
    };
    obj.finish(report);
    if let Some(rate) = config.take("cluster_refresh_rate") {
        up.refresh_interval = Some(rate.duration()?);
        report.literal_only(&rate.path, rate.str()?, "upstream.refresh_interval");
    }
    config.note_each(
        report,
        &[
            (
                "cluster_refresh_timeout",
                "slotgate has no separate deadline for loading the slot map",
            ),
            (
                "redirect_refresh_interval",
                "slotgate reloads the slot map at once after a MOVED (debounced to 100 ms)",
            ),
            (
                "redirect_refresh_threshold",
                "slotgate reloads the slot map at once after a MOVED (debounced to 100 ms)",
            ),
            (
                "failure_refresh_threshold",
                "slotgate reloads the slot map at once after an upstream connection failure",
            ),
            (
                "host_degraded_refresh_threshold",
                "slotgate reloads the slot map at once after an upstream connection failure",
            ),
        ],
    );
    config.finish(report);
    Ok(())
}

/// `load_assignment.endpoints[].lb_endpoints[].endpoint.address` → `host:port` seeds.
fn seeds(node: &Node<'_>, report: &mut Report) -> Result<Vec<String>, ImportError> {
    let mut obj = node.obj()?;
    let mut seeds = Vec::new();
    for locality in obj.require("endpoints")?.list()? {
        let mut group = locality.obj()?;
        for lb in group.require("lb_endpoints")?.list()? {
            let mut lb = lb.obj()?;
            let mut endpoint = lb.require("endpoint")?.obj()?;
            if let Some(seed) = address(&endpoint.require("address")?, report)? {
                seeds.push(seed);
            }
            for skipped in ["hostname", "health_check_config"] {
                endpoint.take(skipped);
            }
            endpoint.finish(report);
            for skipped in ["health_status", "load_balancing_weight", "metadata"] {
                lb.take(skipped);
            }
            lb.finish(report);
        }
        for skipped in ["locality", "priority", "load_balancing_weight", "metadata"] {
            group.take(skipped);
        }
        group.finish(report);
    }
    for skipped in ["cluster_name", "policy"] {
        obj.take(skipped);
    }
    obj.finish(report);
    Ok(seeds)
}

/// `typed_extension_protocol_options["envoy.filters.network.redis_proxy"]`
/// (`RedisProtocolOptions`) → `upstream.username` and `upstream.password`.
fn protocol_options(
    node: &Node<'_>,
    up: &mut Upstream,
    report: &mut Report,
) -> Result<(), ImportError> {
    let mut obj = node.obj()?;
    let options = obj
        .take("envoy.filters.network.redis_proxy")
        .or_else(|| obj.take("envoy.redis_proxy"));
    obj.finish(report);
    let Some(options) = options else {
        return Ok(());
    };
    let mut opts = typed_config(&options, report)?.1;
    if let Some(user) = opts.take("auth_username") {
        up.username = username(&user, report)?;
    }
    if let Some(pass) = opts.take("auth_password") {
        up.password = Secret::from_source(data_source(&pass, report)?, &pass.path, report);
    }
    opts.lose_each(
        report,
        &[
            (
                "credentials",
                "per-node credentials: slotgate uses one username and password for every node",
            ),
            (
                "aws_iam",
                "AWS IAM authentication: slotgate authenticates with a username and password",
            ),
        ],
    );
    opts.finish(report);
    Ok(())
}

/// The upstream user name: clear text, or `${VAR}` (slotgate expands it in
/// `upstream.username`); a file is reported.
fn username(node: &Node<'_>, report: &mut Report) -> Result<Option<String>, ImportError> {
    Ok(match data_source(node, report)? {
        Source::Inline(name) if name.is_empty() => None,
        Source::Inline(name) => Some(name),
        Source::Env(var) => Some(format!("${{{var}}}")),
        Source::File(file) => {
            report.lost(
                &node.path,
                format!(
                    "the user name is read from {file}: slotgate needs it in upstream.username"
                ),
            );
            None
        }
        Source::Binary => {
            report.lost(&node.path, "a user name that is not UTF-8 text");
            None
        }
    })
}
