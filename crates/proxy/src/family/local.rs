//! Commands the proxy answers itself, because they concern the client connection (PING,
//! ECHO, QUIT, SELECT, HELLO, CLIENT …) or because the client must see slotgate as one server
//! (INFO, CONFIG GET, CLUSTER KEYSLOT/INFO). COMMAND and its subcommands are answered from
//! the effective table ([`crate::family::command`]).

use bytes::{Bytes, BytesMut};
use slotgate_commands::Command;
use slotgate_resp::{encode, Request};
use tokio::time::Instant;

use crate::auth::users;
use crate::glob::glob_match_nocase;
use crate::protocol::Protocol;
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::client::{ClientState, Replies};
use crate::session::entry::Entry;
use crate::session::gate;
use crate::session::op::{Op, Route};

/// Answer (or forward) a command of the local family.
pub(crate) fn run(
    ctx: &WorkerCtx,
    client: &mut ClientState,
    cmd: &Command,
    req: &Request,
    deadline: Instant,
) -> Entry {
    let reply = match cmd.name {
        name if ctx.one_primary() && cluster_only(name) => {
            Bytes::from_static(replies::CLUSTER_DISABLED)
        }
        "ping" => match req.argc() {
            1 => Bytes::from_static(replies::PONG),
            _ => bulk(req.arg(1)),
        },
        "echo" => bulk(req.arg(1)),
        "quit" => return Entry::Close(Bytes::from_static(replies::OK)),
        "select" => select(ctx, client, req.arg(1)),
        "hello" => return hello(ctx, client, req),
        "auth" => return auth(ctx, client, req),
        "readonly" | "readwrite" => Bytes::from_static(replies::OK),
        "client|no-evict" | "client|no-touch" => client_switch(ctx, cmd.name, req),
        "reset" => {
            client.name = None;
            client.proto = Protocol::Resp2;
            client.db = 0;
            client.replies = Replies::On;
            client.tracking = None; // tracking off, and no invalidation inbox
            client.primary_reads = false;
            client.transaction.reset(ctx); // leaves MULTI, drops the WATCH
            if let Some(auth) = &mut client.auth {
                auth.log_out(); // as Redis: back to `default`, which needs a password here
            }
            Bytes::from_static(b"+RESET\r\n")
        }
        "acl|whoami" => bulk(client.user_name().as_bytes()),
        name if name.starts_with("acl|") => replies::acl_not_available(name),
        "client|setname" => match set_name(client, req.arg(2)) {
            Ok(()) => Bytes::from_static(replies::OK),
            Err(e) => e,
        },
        "client|getname" => match &client.name {
            Some(n) => bulk(n),
            None => Bytes::from_static(client.proto.null_bulk()),
        },
        "client|id" => integer(client.id as i64),
        "client|info" => client.proto.verbatim_reply(client.info_line().as_bytes()),
        "client|setinfo" => client_setinfo(req),
        // Learned from servers that have them: capabilities a client announces (Valkey's
        // CAPA redirect, Redis's maintenance notifications) concern what a server would
        // send it; slotgate follows redirects and maintenance itself.
        "client|capa" | "client|maint_notifications" => Bytes::from_static(replies::OK),
        "client|reply" => client_reply(client, req.arg(2)),
        "client|tracking" | "client|caching" | "client|trackinginfo" | "client|getredir" => {
            let for_client = crate::family::tracking::ForClient {
                state: &mut client.tracking,
                primary_reads: &mut client.primary_reads,
                id: client.id,
                proto: client.proto,
                budget: &client.budget,
            };
            return crate::family::tracking::run(ctx, for_client, cmd, req);
        }
        "info" => return crate::family::info::route(ctx, client, req, deadline),
        // Under `upstream.admin_commands: acl` the primaries answer (family::admin).
        "config|get" if ctx.cfg.admin_commands() == crate::config::AdminCommands::Acl => {
            return crate::family::admin::config_get(
                ctx,
                cmd,
                req,
                deadline,
                client.dialect(),
                &client.budget,
            )
        }
        "config|get" => config_get(req, client.proto),
        "cluster|keyslot" => integer(slotgate_cluster::slot(req.arg(2)) as i64),
        "cluster|info" => client.proto.verbatim_reply(cluster_info(ctx).as_bytes()),
        "cluster|myid" => bulk(node_id(client).as_bytes()),
        // Learned from Redis 7.2+ and Valkey; the one node is its shard's only member.
        "cluster|myshardid" => bulk(shard_id(client).as_bytes()),
        "cluster|nodes" => client
            .proto
            .verbatim_reply(cluster_nodes(client).as_bytes()),
        "cluster|slots" => cluster_slots(client),
        "cluster|shards" => cluster_shards(client),
        "cluster|countkeysinslot" => match parse_i64(req.arg(2)) {
            Some(slot) if (0..slotgate_cluster::SLOT_COUNT as i64).contains(&slot) => {
                return Entry::Single(Op::start(
                    ctx,
                    Route::Slot(slot as u16),
                    req.wire(),
                    true,
                    deadline,
                    client.dialect(),
                    &client.budget,
                ))
            }
            _ => Bytes::from_static(replies::INVALID_SLOT),
        },
        name if name == "command" || name.starts_with("command|") => {
            return crate::family::command::route(ctx, client, cmd, req, deadline)
        }
        name => replies::not_yet(name),
    };
    Entry::Ready(reply)
}

/// `CLIENT NO-EVICT ON|OFF` and `CLIENT NO-TOUCH ON|OFF`, for this client's connection.
/// NO-EVICT: no server sees the client's connection and slotgate never evicts a client for
/// its memory, so either answers `+OK`. NO-TOUCH OFF is how every request runs; ON would
/// have to set the flag on upstream connections shared with other clients, so it is
/// refused. NO-TOUCH is Redis 7.2's: older servers' unknown-subcommand error is kept.
fn client_switch(ctx: &WorkerCtx, name: &str, req: &Request) -> Bytes {
    if name == "client|no-touch" && !ctx.topology.version_at_least(7, 2) {
        return replies::unknown_subcommand("client", req.arg(1));
    }
    let on = match req.arg(2).to_ascii_uppercase().as_slice() {
        b"ON" => true,
        b"OFF" => false,
        _ => return Bytes::from_static(replies::SYNTAX),
    };
    if on && name == "client|no-touch" {
        return Bytes::from_static(replies::NO_TOUCH);
    }
    Bytes::from_static(replies::OK)
}

/// Whether `name` (a local command) exists only in cluster mode: with one primary
/// (standalone, sentinel) it answers Redis's "cluster support disabled".
pub(crate) fn cluster_only(name: &str) -> bool {
    matches!(name, "readonly" | "readwrite") || name.starts_with("cluster|")
}

fn bulk(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 16);
    encode::bulk(&mut b, data);
    b.freeze()
}

fn integer(n: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(24);
    encode::integer(&mut b, n);
    b.freeze()
}

fn parse_i64(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// `SELECT n`: the client's commands go to database `n` from now on (standalone and
/// sentinel modes; a cluster has only database 0). Checked against the `databases` the
/// server reported, so a refused `SELECT` never reaches a shared connection.
fn select(ctx: &WorkerCtx, client: &mut ClientState, arg: &[u8]) -> Bytes {
    let Some(db) = parse_i64(arg) else {
        return Bytes::from_static(replies::NOT_AN_INTEGER);
    };
    if !ctx.one_primary() {
        return Bytes::from_static(if db == 0 {
            replies::OK
        } else {
            replies::SELECT_IN_CLUSTER
        });
    }
    match u16::try_from(db) {
        Ok(n) if u32::from(n) < ctx.topology.databases() => {
            client.db = n;
            Bytes::from_static(replies::OK)
        }
        _ => Bytes::from_static(replies::DB_OUT_OF_RANGE),
    }
}

/// `AUTH [user] password`. With users configured: authenticate (see [`gate::attempt`];
/// one argument means user `default`). Without: behave like Redis with the passwordless
/// `default` user.
fn auth(ctx: &WorkerCtx, client: &mut ClientState, req: &Request) -> Entry {
    if req.argc() > 3 {
        return Entry::Ready(Bytes::from_static(replies::SYNTAX));
    }
    let (user, password) = match req.argc() {
        2 => (users::DEFAULT_USER.as_bytes(), req.arg(1)),
        _ => (req.arg(1), req.arg(2)),
    };
    if client.auth.is_some() {
        let (ok, hold) = gate::attempt(ctx, client, user, password);
        let reply = if ok { replies::OK } else { replies::WRONGPASS };
        return Entry::after(Bytes::from_static(reply), hold);
    }
    Entry::Ready(Bytes::from_static(if req.argc() == 2 {
        replies::AUTH_NOT_CONFIGURED
    } else if user.eq_ignore_ascii_case(b"default") {
        replies::OK
    } else {
        ctx.shared.metrics.auth_failure("wrongpass");
        replies::WRONGPASS
    }))
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`. In Redis 7.0's order: protocol
/// version, options, authentication, then the NOAUTH check and the client name (a bad name
/// after a good AUTH leaves the client authenticated); only then does the protocol switch,
/// and the reply is in the new one.
fn hello(ctx: &WorkerCtx, client: &mut ClientState, req: &Request) -> Entry {
    let ready = |b: Bytes| Entry::Ready(b);
    let mut proto = client.proto;
    if req.argc() >= 2 {
        match parse_i64(req.arg(1)) {
            Some(2) => proto = Protocol::Resp2,
            Some(3) => proto = Protocol::Resp3,
            Some(_) => return ready(Bytes::from_static(replies::NOPROTO)),
            None => return ready(Bytes::from_static(replies::HELLO_BAD_PROTOVER)),
        }
    }
    let mut i = 2;
    let mut new_name = None;
    let mut credentials = None;
    while i < req.argc() {
        let opt = req.arg(i);
        if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < req.argc() {
            credentials = Some((req.arg(i + 1), req.arg(i + 2)));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < req.argc() {
            new_name = Some(req.arg(i + 1));
            i += 2;
        } else {
            return ready(replies::hello_bad_option(opt));
        }
    }
    let mut hold = None;
    if let Some((user, password)) = credentials {
        let ok = if client.auth.is_some() {
            let (ok, at) = gate::attempt(ctx, client, user, password);
            hold = at;
            ok
        } else {
            user.eq_ignore_ascii_case(b"default")
        };
        if !ok {
            if client.auth.is_none() {
                ctx.shared.metrics.auth_failure("wrongpass");
            }
            return Entry::after(Bytes::from_static(replies::WRONGPASS), hold);
        }
    }
    if !client.is_authenticated() {
        ctx.shared.metrics.auth_failure("noauth");
        return ready(Bytes::from_static(replies::HELLO_NOAUTH));
    }
    if let Some(name) = new_name {
        if let Err(e) = set_name(client, name) {
            return Entry::after(e, hold);
        }
    }
    client.proto = proto;
    Entry::after(hello_reply(ctx, client), hold)
}

/// The HELLO map (RESP2: a flat array) describing slotgate as a standalone Redis.
fn hello_reply(ctx: &WorkerCtx, client: &ClientState) -> Bytes {
    let version = ctx.topology.redis_version();
    let mut b = BytesMut::with_capacity(256);
    client.proto.map_header(&mut b, 7);
    encode::bulk(&mut b, b"server");
    encode::bulk(&mut b, b"redis");
    encode::bulk(&mut b, b"version");
    encode::bulk(&mut b, version.as_bytes());
    encode::bulk(&mut b, b"proto");
    encode::integer(&mut b, client.proto.version());
    encode::bulk(&mut b, b"id");
    encode::integer(&mut b, client.id as i64);
    encode::bulk(&mut b, b"mode");
    encode::bulk(&mut b, b"standalone");
    encode::bulk(&mut b, b"role");
    encode::bulk(&mut b, b"master");
    encode::bulk(&mut b, b"modules");
    encode::array_header(&mut b, 0);
    b.freeze()
}

fn set_name(client: &mut ClientState, name: &[u8]) -> Result<(), Bytes> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Bytes::from_static(replies::BAD_CLIENT_NAME));
    }
    client.name = if name.is_empty() {
        None
    } else {
        Some(Bytes::copy_from_slice(name))
    };
    Ok(())
}

/// `CLIENT REPLY ON|OFF|SKIP`: ON answers `+OK`; OFF and SKIP are not answered (the session
/// drops the replies they mute, in order, see `ClientState::replies`).
fn client_reply(client: &mut ClientState, mode: &[u8]) -> Bytes {
    let mode = match mode.to_ascii_uppercase().as_slice() {
        b"ON" => Replies::On,
        b"OFF" => Replies::Off,
        b"SKIP" => Replies::SkipThisAndNext,
        _ => return Bytes::from_static(replies::SYNTAX),
    };
    client.replies = mode;
    Bytes::from_static(replies::OK)
}

fn client_setinfo(req: &Request) -> Bytes {
    let attr = req.arg(2);
    if attr.eq_ignore_ascii_case(b"lib-name") || attr.eq_ignore_ascii_case(b"lib-ver") {
        Bytes::from_static(replies::OK)
    } else {
        replies::setinfo_bad_option(attr)
    }
}

/// `CONFIG GET` answered harmlessly: the persistence settings tools ask about, nothing else.
fn config_get(req: &Request, proto: Protocol) -> Bytes {
    const KNOWN: [(&str, &str); 2] = [("appendonly", "no"), ("save", "")];
    let mut found: Vec<(&str, &str)> = Vec::new();
    for pattern in req.args().skip(2) {
        for (k, v) in KNOWN {
            if glob_match_nocase(pattern, k.as_bytes()) && !found.iter().any(|(f, _)| *f == k) {
                found.push((k, v));
            }
        }
    }
    let mut b = BytesMut::new();
    proto.map_header(&mut b, found.len());
    for (k, v) in found {
        encode::bulk(&mut b, k.as_bytes());
        encode::bulk(&mut b, v.as_bytes());
    }
    b.freeze()
}

/// The node id slotgate reports for itself: stable per listen address.
fn node_id(client: &ClientState) -> String {
    stable_id(&client.local.to_string())
}

/// The id of the one shard of the emulated cluster (`CLUSTER MYSHARDID`): stable per listen
/// address, other than the node's.
fn shard_id(client: &ClientState) -> String {
    stable_id(&format!("shard {}", client.local))
}

/// 40 hex digits, the same for the same `seed`.
fn stable_id(seed: &str) -> String {
    let seed = slotgate_cluster::crc16(seed.as_bytes()) as u64;
    let mut id = String::with_capacity(40);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while id.len() < 40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id.push_str(&format!("{:016x}", x));
    }
    id.truncate(40);
    id
}

/// `CLUSTER NODES` as a one-node cluster: slotgate, at the address the client used, owns
/// every slot, so cluster-aware clients keep all traffic on slotgate.
fn cluster_nodes(client: &ClientState) -> String {
    let addr = client.local;
    format!(
        "{} {}:{}@{} myself,master - 0 0 1 connected 0-16383\n",
        node_id(client),
        addr.ip(),
        addr.port(),
        addr.port()
    )
}

/// `CLUSTER SLOTS` as a one-node cluster (see [`cluster_nodes`]).
fn cluster_slots(client: &ClientState) -> Bytes {
    let addr = client.local;
    let mut b = BytesMut::with_capacity(128);
    encode::array_header(&mut b, 1);
    encode::array_header(&mut b, 3);
    encode::integer(&mut b, 0);
    encode::integer(&mut b, slotgate_cluster::SLOT_COUNT as i64 - 1);
    encode::array_header(&mut b, 4);
    encode::bulk(&mut b, addr.ip().to_string().as_bytes());
    encode::integer(&mut b, addr.port() as i64);
    encode::bulk(&mut b, node_id(client).as_bytes());
    encode::array_header(&mut b, 0);
    b.freeze()
}

/// `CLUSTER SHARDS` (Redis 7.0: maps, flat arrays in RESP2) for the same one-node cluster.
fn cluster_shards(client: &ClientState) -> Bytes {
    let addr = client.local;
    let ip = addr.ip().to_string();
    let mut b = BytesMut::with_capacity(256);
    encode::array_header(&mut b, 1);
    client.proto.map_header(&mut b, 2);
    encode::bulk(&mut b, b"slots");
    encode::array_header(&mut b, 2);
    encode::integer(&mut b, 0);
    encode::integer(&mut b, slotgate_cluster::SLOT_COUNT as i64 - 1);
    encode::bulk(&mut b, b"nodes");
    encode::array_header(&mut b, 1);
    client.proto.map_header(&mut b, 7);
    for (k, v) in [
        ("id", node_id(client)),
        ("ip", ip.clone()),
        ("endpoint", ip),
        ("hostname", String::new()),
        ("role", "master".into()),
        ("health", "online".into()),
    ] {
        encode::bulk(&mut b, k.as_bytes());
        encode::bulk(&mut b, v.as_bytes());
    }
    encode::bulk(&mut b, b"port");
    encode::integer(&mut b, addr.port() as i64);
    b.freeze()
}

fn cluster_info(ctx: &WorkerCtx) -> String {
    let covered = ctx.topology.map().covered();
    let state = if covered == slotgate_cluster::SLOT_COUNT {
        "ok"
    } else {
        "fail"
    };
    format!(
        "cluster_enabled:1\r\ncluster_state:{state}\r\ncluster_slots_assigned:{covered}\r\ncluster_slots_ok:{covered}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::glob_match_nocase as glob_match;

    #[test]
    fn glob() {
        assert!(glob_match(b"*", b"save"));
        assert!(glob_match(b"SAVE", b"save"));
        assert!(glob_match(b"app*", b"appendonly"));
        assert!(glob_match(b"s?ve", b"save"));
        assert!(!glob_match(b"maxmemory", b"save"));
    }
}
