//! The primary of a standalone server or of a Sentinel-managed deployment, as a slot map
//! where that one primary owns every slot (so the routing is the cluster's).
//!
//! Sentinel mode:
//! - every sentinel is asked `SENTINEL MASTER <name>`; the address named under the highest
//!   `config-epoch` wins, and among addresses with that epoch the one most sentinels name
//!   (ties: the first listed). A sentinel that has not heard of a failover names the old
//!   primary under the old epoch; the failover's leader names the old primary under the new
//!   epoch until it has reconfigured the replicas, while the others already name the new one;
//! - the named node must say `master` to `ROLE` before anything is sent to it: an old primary
//!   that comes back stale is fenced until the sentinels have demoted it;
//! - [`watch`] subscribes to the failover events of every sentinel. When a failover of this
//!   primary begins, the topology stops routing (commands wait, see `Topology::hold`) until
//!   a different primary is verified or the failover ends: writes that would land on the old
//!   primary after its replica was promoted would be lost when it is demoted.

use std::time::Duration;

use bytes::BytesMut;
use slotgate_cluster::NodeAddr;
use slotgate_resp::value::{parse_value, Value};
use tokio::io::AsyncReadExt;

use crate::config::{SentinelConfig, UpstreamConfig};
use crate::error::ProxyError;
use crate::tls::UpstreamTls;
use crate::upstream::node_client::{self, NodeStream};

/// Sentinel channels that say a failover of some primary began.
const FAILOVER_BEGINS: &[&str] = &[
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
];
/// Sentinel channels that say a failover is over: the primary switched (`+switch-master`
/// comes after `+failover-end`; only the switch says the sentinels name the new primary).
const FAILOVER_ENDS: &[&str] = &[
    "+switch-master",
    "+failover-end",
    "+failover-end-for-timeout",
];
/// Sentinel channels that say a failover was given up: the old primary stays.
const FAILOVER_ABORTS: &[&str] = &[
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
];
/// Other events worth a look at the topology (a node went down or came back, a replica was
/// reconfigured).
const TOPOLOGY_EVENTS: &[&str] = &[
    "+odown",
    "-odown",
    "+convert-to-slave",
    "+slave",
    "+sdown",
    "-sdown",
];

/// The primary (and replicas) a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Primary {
    /// The verified primary.
    pub addr: NodeAddr,
    /// Its replicas that are up, as the primary (standalone) or the sentinels list them.
    pub replicas: Vec<NodeAddr>,
    /// Sentinels that answered (sentinel mode).
    pub sentinels_answered: usize,
    /// The primary's `databases` (16, Redis's default, when `CONFIG GET` is not allowed).
    pub databases: u32,
}

/// What one sentinel says about the primary.
struct Named {
    addr: NodeAddr,
    epoch: i64,
}

/// A failover event of the monitored primary, as [`watch`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A failover began: stop sending to the primary.
    FailoverBegins,
    /// A failover is over: find the primary now.
    FailoverEnds,
    /// A failover was given up: the old primary may be used again.
    FailoverAborted,
    /// Something else changed: look again soon.
    Changed,
    /// The subscription to this sentinel was established (`true`) or lost (`false`).
    Subscribed(bool),
}

/// The standalone server: it is the primary whatever its role (a replica answers writes
/// with `-READONLY`, as it would to a direct client); its replicas come from `ROLE`.
pub(crate) async fn standalone(
    addr: &str,
    cfg: &UpstreamConfig,
    tls: Option<&UpstreamTls>,
) -> Result<Primary, ProxyError> {
    let mut stream = node_client::connect(addr, cfg, tls).await?;
    let role = role(&mut stream, addr, cfg.op_timeout).await?;
    Ok(Primary {
        addr: NodeAddr::new(addr),
        replicas: role.replicas,
        sentinels_answered: 0,
        databases: databases(&mut stream, cfg.op_timeout).await,
    })
}

/// The primary the sentinels name (highest config epoch), verified by its `ROLE`.
pub(crate) async fn resolve(
    s: &SentinelConfig,
    cfg: &UpstreamConfig,
    sentinel_tls: Option<&UpstreamTls>,
    node_tls: Option<&UpstreamTls>,
) -> Result<Primary, ProxyError> {
    let sentinel_cfg = sentinel_conn_cfg(s, cfg);
    let answers = futures_join(s.sentinels.iter().map(|addr| {
        let sentinel_cfg = &sentinel_cfg;
        async move { ask(addr, s, sentinel_cfg, sentinel_tls).await }
    }))
    .await;
    let mut views = Vec::new();
    let mut last_err = None;
    for answer in answers {
        match answer {
            Ok(view) => views.push(view),
            Err(e) => last_err = Some(e),
        }
    }
    let answered = views.len();
    let Some((named, replicas)) = choose(views) else {
        return Err(last_err.unwrap_or(ProxyError::Upstream {
            addr: "(sentinels)".into(),
            reason: "no sentinel configured".into(),
        }));
    };
    let addr = named.addr.as_str().to_string();
    let mut stream = node_client::connect(&addr, cfg, node_tls).await?;
    let role = role(&mut stream, &addr, cfg.op_timeout).await?;
    if !role.master {
        return Err(ProxyError::Upstream {
            addr,
            reason: format!(
                "the sentinels name it primary of {:?}, but its ROLE is not master: not used \
                 until they agree",
                s.master_name
            ),
        });
    }
    Ok(Primary {
        addr: named.addr,
        replicas,
        sentinels_answered: answered,
        databases: databases(&mut stream, cfg.op_timeout).await,
    })
}

/// The view whose address has the highest epoch and, among those, the most sentinels
/// naming it; the first such view in sentinel order.
fn choose(views: Vec<(Named, Vec<NodeAddr>)>) -> Option<(Named, Vec<NodeAddr>)> {
    let score = |addr: &NodeAddr| {
        let naming = views.iter().filter(|(n, _)| n.addr == *addr);
        let epoch = naming.clone().map(|(n, _)| n.epoch).max().unwrap_or(0);
        (epoch, naming.count())
    };
    let scores: Vec<(i64, usize)> = views.iter().map(|(n, _)| score(&n.addr)).collect();
    let best = scores.iter().copied().max()?;
    let index = scores.iter().position(|s| *s == best)?;
    views.into_iter().nth(index)
}

/// The sentinels' credentials and timeouts, as a config [`node_client::connect`] takes.
fn sentinel_conn_cfg(s: &SentinelConfig, cfg: &UpstreamConfig) -> UpstreamConfig {
    UpstreamConfig {
        username: s.username.clone(),
        password: s.password.clone(),
        ..cfg.clone()
    }
}

/// Run the futures concurrently and collect their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// One sentinel's view: the primary with its config epoch, and the replicas that are up.
async fn ask(
    addr: &str,
    s: &SentinelConfig,
    cfg: &UpstreamConfig,
    tls: Option<&UpstreamTls>,
) -> Result<(Named, Vec<NodeAddr>), ProxyError> {
    let fail = |reason: String| ProxyError::Upstream {
        addr: addr.to_string(),
        reason,
    };
    let mut stream = node_client::connect(addr, cfg, tls).await?;
    let mut buf = BytesMut::new();
    let name = s.master_name.as_bytes();
    let master = node_client::query(
        &mut stream,
        &mut buf,
        &[b"SENTINEL", b"MASTER", name],
        cfg.op_timeout,
    )
    .await?;
    let fields = pairs(&master).ok_or_else(|| fail(format!("SENTINEL MASTER: {master:?}")))?;
    let ip = field(&fields, "ip").ok_or_else(|| fail("SENTINEL MASTER: no ip".into()))?;
    let port = field(&fields, "port")
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| fail("SENTINEL MASTER: no port".into()))?;
    let epoch = field(&fields, "config-epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let replicas = node_client::query(
        &mut stream,
        &mut buf,
        &[b"SENTINEL", b"REPLICAS", name],
        cfg.op_timeout,
    )
    .await?;
    Ok((
        Named {
            addr: NodeAddr::from_host_port(&ip, port),
            epoch,
        },
        healthy_replicas(&replicas),
    ))
}

/// The replicas of a `SENTINEL REPLICAS` reply that are neither down nor disconnected.
fn healthy_replicas(reply: &Value) -> Vec<NodeAddr> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(pairs)
        .filter(|f| {
            field(f, "flags").is_some_and(|flags| {
                !flags
                    .split(',')
                    .any(|x| matches!(x, "s_down" | "o_down" | "disconnected"))
            })
        })
        .filter_map(|f| {
            let ip = field(&f, "ip")?;
            let port = field(&f, "port")?.parse().ok()?;
            Some(NodeAddr::from_host_port(&ip, port))
        })
        .collect()
}

/// A flat `[field, value, …]` array (RESP2) or a map (RESP3) as pairs of strings.
fn pairs(v: &Value) -> Option<Vec<(String, String)>> {
    let text = |v: &Value| match v {
        Value::Bulk(b) | Value::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Integer(n) => Some(n.to_string()),
        _ => None,
    };
    match v {
        Value::Array(items) => items
            .chunks(2)
            .map(|c| Some((text(c.first()?)?, text(c.get(1)?)?)))
            .collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => None,
    }
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Redis's default number of databases.
const DEFAULT_DATABASES: u32 = 16;

/// The server's `databases` setting; Redis's default when `CONFIG GET` is refused (an
/// upstream user without `+config|get`).
async fn databases(stream: &mut NodeStream, deadline: Duration) -> u32 {
    let mut buf = BytesMut::new();
    let reply = node_client::query(
        stream,
        &mut buf,
        &[b"CONFIG", b"GET", b"databases"],
        deadline,
    )
    .await;
    reply
        .ok()
        .as_ref()
        .and_then(pairs)
        .and_then(|p| field(&p, "databases"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_DATABASES)
}

/// What `ROLE` says.
struct Role {
    master: bool,
    replicas: Vec<NodeAddr>,
}

/// Ask `ROLE`: whether the node is a primary, and its connected replicas.
async fn role(stream: &mut NodeStream, addr: &str, deadline: Duration) -> Result<Role, ProxyError> {
    let mut buf = BytesMut::new();
    let reply = node_client::query(stream, &mut buf, &[b"ROLE"], deadline).await?;
    let Value::Array(items) = &reply else {
        return Err(ProxyError::Upstream {
            addr: addr.to_string(),
            reason: format!("ROLE: {reply:?}"),
        });
    };
    let master = matches!(items.first(), Some(Value::Bulk(b) | Value::Simple(b)) if b == b"master");
    let replicas = match items.get(2) {
        Some(Value::Array(list)) if master => list
            .iter()
            .filter_map(|r| match r {
                Value::Array(f) => {
                    let host = match f.first()? {
                        Value::Bulk(b) | Value::Simple(b) => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                        _ => return None,
                    };
                    let port = match f.get(1)? {
                        Value::Bulk(b) | Value::Simple(b) => {
                            std::str::from_utf8(b).ok()?.parse().ok()?
                        }
                        Value::Integer(n) => u16::try_from(*n).ok()?,
                        _ => return None,
                    };
                    Some(NodeAddr::from_host_port(&host, port))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Role { master, replicas })
}

/// Follow one sentinel's events about `s.master_name` for as long as the connection lasts,
/// calling `on_event` for each that matters. Returns when the connection is lost (after
/// reporting [`Event::Subscribed`]`(false)` if it had been established).
pub(crate) async fn watch(
    addr: &str,
    s: &SentinelConfig,
    cfg: &UpstreamConfig,
    tls: Option<&UpstreamTls>,
    on_event: &impl Fn(Event),
) -> Result<(), ProxyError> {
    let sentinel_cfg = sentinel_conn_cfg(s, cfg);
    let mut stream = node_client::connect(addr, &sentinel_cfg, tls).await?;
    let mut buf = BytesMut::new();
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    let channels = [
        FAILOVER_BEGINS,
        FAILOVER_ENDS,
        FAILOVER_ABORTS,
        TOPOLOGY_EVENTS,
    ];
    for ch in channels.concat() {
        args.push(ch.as_bytes());
    }
    // The first confirmation; the others follow as ordinary messages and are skipped.
    node_client::query(&mut stream, &mut buf, &args, cfg.op_timeout).await?;
    on_event(Event::Subscribed(true));
    let result = follow(&mut stream, &mut buf, &s.master_name, on_event).await;
    on_event(Event::Subscribed(false));
    result
}

async fn follow(
    stream: &mut NodeStream,
    buf: &mut BytesMut,
    master: &str,
    on_event: &impl Fn(Event),
) -> Result<(), ProxyError> {
    let lost = |reason: String| ProxyError::Upstream {
        addr: "(sentinel)".into(),
        reason,
    };
    loop {
        while let Some((value, used)) = parse_value(buf).map_err(|e| lost(e.to_string()))? {
            let _ = buf.split_to(used);
            if let Some(event) = classify(&value, master) {
                on_event(event);
            }
        }
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| lost(format!("read: {e}")))?;
        if n == 0 {
            return Err(lost("connection closed".into()));
        }
    }
}

/// The event a Pub/Sub message from a sentinel means for the primary named `master`.
fn classify(message: &Value, master: &str) -> Option<Event> {
    let Value::Array(parts) = message else {
        return None;
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::Bulk(b) | Value::Simple(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    if text(parts.first())?.as_str() != "message" {
        return None;
    }
    let channel = text(parts.get(1))?;
    let payload = text(parts.get(2))?;
    // `<type> <name> <ip> <port> [@ <master-name> <ip> <port>]`, or for +switch-master
    // `<master-name> <old-ip> <old-port> <new-ip> <new-port>`: the name is one of the words.
    if !payload.split_whitespace().any(|w| w == master) {
        return None;
    }
    let channel = channel.as_str();
    if FAILOVER_BEGINS.contains(&channel) {
        Some(Event::FailoverBegins)
    } else if FAILOVER_ENDS.contains(&channel) {
        Some(Event::FailoverEnds)
    } else if FAILOVER_ABORTS.contains(&channel) {
        Some(Event::FailoverAborted)
    } else {
        Some(Event::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn message(channel: &str, payload: &str) -> Value {
        Value::Array(vec![bulk("message"), bulk(channel), bulk(payload)])
    }

    #[test]
    fn events_of_other_primaries_are_ignored() {
        let m = message("+try-failover", "master other 127.0.0.1 7000");
        assert_eq!(classify(&m, "mymaster"), None);
        let m = message("+try-failover", "master mymaster 127.0.0.1 7000");
        assert_eq!(classify(&m, "mymaster"), Some(Event::FailoverBegins));
        let m = message("+switch-master", "mymaster 127.0.0.1 7000 127.0.0.1 7001");
        assert_eq!(classify(&m, "mymaster"), Some(Event::FailoverEnds));
        let m = message(
            "+sdown",
            "slave 127.0.0.1:7002 127.0.0.1 7002 @ mymaster 127.0.0.1 7000",
        );
        assert_eq!(classify(&m, "mymaster"), Some(Event::Changed));
        let confirm = Value::Array(vec![bulk("subscribe"), bulk("+sdown"), Value::Integer(3)]);
        assert_eq!(classify(&confirm, "mymaster"), None);
    }

    #[test]
    fn the_newest_epoch_then_the_most_sentinels_choose_the_primary() {
        let view = |port: u16, epoch| {
            (
                Named {
                    addr: NodeAddr::from_host_port("127.0.0.1", port),
                    epoch,
                },
                Vec::new(),
            )
        };
        let chosen = |views| choose(views).map(|(n, _)| n.addr.to_string());
        // Before the switch: the leader has the new epoch, still with the old primary.
        assert_eq!(
            chosen(vec![view(1, 2), view(1, 1), view(1, 1)]).as_deref(),
            Some("127.0.0.1:1")
        );
        // The others heard of the promotion: two against the leader's one.
        assert_eq!(
            chosen(vec![view(1, 2), view(2, 2), view(2, 2)]).as_deref(),
            Some("127.0.0.1:2")
        );
        // A sentinel that missed the failover does not win with its old epoch.
        assert_eq!(
            chosen(vec![view(1, 1), view(1, 1), view(2, 2)]).as_deref(),
            Some("127.0.0.1:2")
        );
        assert_eq!(chosen(Vec::new()), None);
    }

    #[test]
    fn replicas_that_are_down_are_left_out() {
        let replica = |port: &str, flags: &str| {
            Value::Array(
                ["name", "x", "ip", "127.0.0.1", "port", port, "flags", flags]
                    .iter()
                    .map(|s| bulk(s))
                    .collect(),
            )
        };
        let reply = Value::Array(vec![
            replica("7001", "slave"),
            replica("7002", "s_down,slave"),
            replica("7003", "slave,disconnected"),
        ]);
        assert_eq!(
            healthy_replicas(&reply),
            vec![NodeAddr::new("127.0.0.1:7001")]
        );
    }
}
