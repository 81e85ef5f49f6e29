//! `COMMAND` and its subcommands, answered from the effective table: what the servers report
//! (their own descriptions and documentation, in the client's protocol) less every command
//! slotgate refuses, so that a client is told of exactly the commands slotgate serves.
//!
//! - `COMMAND` and `COMMAND INFO [name …]`: the entries of served commands; a refused
//!   subcommand is left out of its container's list. `COMMAND INFO` of a refused name answers
//!   nil, as for a name no server knows.
//! - `COMMAND LIST [FILTERBY …]`: the names the server lists, refused ones left out;
//!   `COMMAND COUNT`: the top-level names of that list.
//! - `COMMAND DOCS [name …]`: the documentation of served commands (refused subcommands left
//!   out of their container's).
//! - `COMMAND GETKEYS` / `GETKEYSANDFLAGS`: the server's answer for a served command, else
//!   Redis's `-ERR Invalid command specified`.
//! - `COMMAND HELP`: as the server answers it.
//!
//! One primary answers (they agree on every command slotgate learns) and its reply is
//! filtered here. What "served" means is decided once, by [`Served::command`], which the
//! dispatcher also asks before it refuses a command.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use slotgate_commands::{self as commands, Command, Family};
use slotgate_resp::{aggregate_children, encode, parse_value, Request, Value};
use tokio::time::Instant;

use crate::config::AdminCommands;
use crate::family::{admin, local};
use crate::protocol::Protocol;
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::client::ClientState;
use crate::session::entry::{Entry, Fanout};
use crate::session::merge::{is_error, is_nil, Merge, WholeMerge};
use crate::session::op::{Op, Route};
use crate::upstream::command_table::Learned;

const INVALID_COMMAND: &[u8] = b"-ERR Invalid command specified\r\n";
const COMMAND_LIST: &[u8] = b"*2\r\n$7\r\nCOMMAND\r\n$4\r\nLIST\r\n";
/// The field of a `COMMAND` entry that lists its subcommands (Redis 7+).
const SUBCOMMANDS_FIELD: usize = 9;

/// Whether slotgate serves `cmd`, or refuses it as unsupported (the dispatcher's rule).
pub(crate) fn serves(ctx: &WorkerCtx, cmd: &Command) -> bool {
    serves_in(ctx.one_primary(), admin_acl(ctx), cmd)
}

fn admin_acl(ctx: &WorkerCtx) -> bool {
    ctx.cfg.admin_commands() == AdminCommands::Acl
}

/// [`serves`] for a deployment with one primary (or a cluster) and the admin setting.
fn serves_in(one_primary: bool, admin_acl: bool, cmd: &Command) -> bool {
    if one_primary && local::cluster_only(cmd.name) {
        return false; // "This instance has cluster support disabled"
    }
    match cmd.family {
        // SWAPDB: one server has every database (standalone, sentinel).
        Family::Unsupported => {
            (admin_acl && admin::is_admin(cmd.name)) || (one_primary && cmd.name == "swapdb")
        }
        _ => true,
    }
}

/// The effective table at one moment: the built-in table, what the servers taught slotgate,
/// and the settings that decide what is refused.
pub(crate) struct Served {
    learned: Arc<Learned>,
    one_primary: bool,
    admin_acl: bool,
}

impl Served {
    pub(crate) fn now(ctx: &WorkerCtx) -> Served {
        Served {
            learned: ctx.topology.learned().clone(),
            one_primary: ctx.one_primary(),
            admin_acl: admin_acl(ctx),
        }
    }

    /// The command `name` (lower or upper case), or its subcommand `sub`.
    fn resolve(&self, name: &[u8], sub: Option<&[u8]>) -> Option<&'static Command> {
        let args: Vec<&[u8]> = std::iter::once(name).chain(sub).collect();
        let lower = |b: &[u8]| String::from_utf8_lossy(b).to_ascii_lowercase();
        let key = match sub {
            Some(sub) => format!("{}|{}", lower(name), lower(sub)),
            None => lower(name),
        };
        match commands::lookup(&args[..]) {
            Some(cmd) if cmd.name == key => Some(cmd),
            _ => self.learned.get(&key),
        }
    }

    /// Whether the command named as `COMMAND` names it (`"get"`, `"client|kill"`) is served;
    /// a container is when one of its subcommands is, or when it runs alone (COMMAND).
    fn name(&self, name: &[u8]) -> bool {
        let (top, sub) = match name.iter().position(|&b| b == b'|') {
            Some(i) => (&name[..i], Some(&name[i + 1..])),
            None => (name, None),
        };
        self.resolve(top, sub).is_some_and(|cmd| self.command(cmd))
    }

    fn command(&self, cmd: &Command) -> bool {
        if cmd.is_container() && !cmd.arity_ok(1) {
            return cmd.subcommands.iter().any(|sub| self.command(sub));
        }
        serves_in(self.one_primary, self.admin_acl, cmd)
    }
}

/// Answer `COMMAND [sub …]` (arity checked).
pub(crate) fn route(
    ctx: &WorkerCtx,
    client: &ClientState,
    cmd: &Command,
    req: &Request,
    deadline: Instant,
) -> Entry {
    let served = Served::now(ctx);
    let kind = match cmd.name {
        "command" | "command|info" => Kind::Entries {
            nil: (req.argc() > 2).then_some(client.proto),
        },
        "command|list" => Kind::List,
        "command|count" => Kind::Count,
        "command|docs" => Kind::Docs,
        "command|getkeys" | "command|getkeysandflags" => {
            let sub = (req.argc() > 3).then(|| req.arg(3));
            let known = served
                .resolve(req.arg(2), sub)
                .or_else(|| served.resolve(req.arg(2), None));
            if !known.is_some_and(|c| served.command(c)) {
                return Entry::Ready(Bytes::from_static(INVALID_COMMAND));
            }
            Kind::AsIs
        }
        _ => Kind::AsIs,
    };
    let wire = match kind {
        Kind::Count => Bytes::from_static(COMMAND_LIST),
        _ => req.wire(),
    };
    let op = Op::start(
        ctx,
        Route::Any,
        wire,
        true,
        deadline,
        client.dialect(),
        &client.budget,
    );
    if matches!(kind, Kind::AsIs) {
        return Entry::Single(op);
    }
    Entry::Fanout(Box::new(Fanout {
        ops: vec![op],
        merge: Merge::Whole(Box::new(Filter { served, kind })),
    }))
}

/// How one `COMMAND` reply is filtered.
enum Kind {
    /// `COMMAND`, `COMMAND INFO`: entries of refused commands dropped, or replaced by nil in
    /// `protocol` when names were asked for.
    Entries {
        nil: Option<Protocol>,
    },
    List,
    /// `COMMAND LIST`'s names counted.
    Count,
    Docs,
    /// Passed on as the server answered.
    AsIs,
}

struct Filter {
    served: Served,
    kind: Kind,
}

impl WholeMerge for Filter {
    fn write(&self, replies: &[Bytes], out: &mut BytesMut) {
        let Some(reply) = replies.first() else {
            return out.extend_from_slice(replies::UNEXPECTED_REPLY);
        };
        if is_error(reply) {
            return out.extend_from_slice(reply);
        }
        let keep = |name: &[u8]| self.served.name(name);
        let filtered = match self.kind {
            Kind::Entries { nil } => entries(reply, nil, &keep),
            Kind::List => list(reply, &keep).map(|(kept, _)| kept),
            Kind::Count => list(reply, &keep).map(|(_, count)| {
                let mut b = BytesMut::new();
                encode::integer(&mut b, count as i64);
                b
            }),
            Kind::Docs => docs(reply, &keep),
            Kind::AsIs => Some(BytesMut::from(&reply[..])),
        };
        match filtered {
            Some(b) => out.extend_from_slice(&b),
            None => out.extend_from_slice(replies::UNEXPECTED_REPLY),
        }
    }
}

/// The text of a bulk or status string.
fn text(raw: &[u8]) -> Option<Vec<u8>> {
    match parse_value(raw).ok()??.0 {
        Value::Bulk(b) | Value::Simple(b) | Value::Verbatim(b) => Some(b.to_vec()),
        _ => None,
    }
}

/// An aggregate header of the type `of` begins with (`*`, `%`, `~`) for `elements`
/// children (a map counts its keys and values).
fn header(out: &mut BytesMut, of: &[u8], elements: usize) {
    match of.first() {
        Some(b'%') => encode::map_header(out, elements / 2),
        Some(b'~') => encode::set_header(out, elements),
        _ => encode::array_header(out, elements),
    }
}

/// `COMMAND` / `COMMAND INFO` entries of served commands, each with its served
/// subcommands.
fn entries(reply: &Bytes, nil: Option<Protocol>, keep: &dyn Fn(&[u8]) -> bool) -> Option<BytesMut> {
    let mut kept = Vec::new();
    for entry in aggregate_children(reply)? {
        if is_nil(&entry) {
            kept.push(entry);
            continue;
        }
        let fields = aggregate_children(&entry)?;
        if !keep(&text(fields.first()?)?) {
            match nil {
                Some(Protocol::Resp3) => kept.push(Bytes::from_static(b"_\r\n")),
                Some(Protocol::Resp2) => kept.push(Bytes::from_static(b"$-1\r\n")),
                None => {}
            }
            continue;
        }
        let Some(subs) = fields.get(SUBCOMMANDS_FIELD) else {
            kept.push(entry);
            continue;
        };
        let mut served = Vec::new();
        for sub in aggregate_children(subs)? {
            let sub_fields = aggregate_children(&sub)?;
            if keep(&text(sub_fields.first()?)?) {
                served.push(sub);
            }
        }
        let mut b = BytesMut::with_capacity(entry.len());
        header(&mut b, &entry, fields.len());
        for (i, field) in fields.iter().enumerate() {
            if i == SUBCOMMANDS_FIELD {
                header(&mut b, subs, served.len());
                served.iter().for_each(|s| b.extend_from_slice(s));
            } else {
                b.extend_from_slice(field);
            }
        }
        kept.push(b.freeze());
    }
    Some(join(reply, &kept))
}

/// `COMMAND LIST`'s served names, and how many of them are top-level commands.
fn list(reply: &Bytes, keep: &dyn Fn(&[u8]) -> bool) -> Option<(BytesMut, usize)> {
    let mut kept = Vec::new();
    let mut top = 0;
    for name in aggregate_children(reply)? {
        let t = text(&name)?;
        if keep(&t) {
            top += usize::from(!t.contains(&b'|'));
            kept.push(name);
        }
    }
    Some((join(reply, &kept), top))
}

/// `COMMAND DOCS`: `name, doc` pairs (a map in RESP3) of served commands, each doc's
/// `subcommands` pairs filtered alike.
fn docs(reply: &Bytes, keep: &dyn Fn(&[u8]) -> bool) -> Option<BytesMut> {
    let doc = |v: &Bytes| {
        pairs(v, &|field, value| {
            Some(Some(if field == b"subcommands" {
                pairs(value, &|name, sub| Some(keep(name).then(|| sub.clone())))?
            } else {
                value.clone()
            }))
        })
    };
    let top = pairs(reply, &|name, v| match keep(name) {
        true => doc(v).map(Some),
        false => Some(None),
    })?;
    Some(BytesMut::from(&top[..]))
}

/// What becomes of one `name, value` pair: `Some(Some(v))` kept with value `v`,
/// `Some(None)` dropped, `None` a malformed reply.
type PairRule<'a> = &'a dyn Fn(&[u8], &Bytes) -> Option<Option<Bytes>>;

/// The `name, value` pairs of a map (or flat array) `raw` that `rule` keeps.
fn pairs(raw: &Bytes, rule: PairRule) -> Option<Bytes> {
    let children = aggregate_children(raw)?;
    let mut kept = Vec::new();
    for pair in children.chunks(2) {
        let [k, v] = pair else { return None };
        if let Some(v) = rule(&text(k)?, v)? {
            kept.push(k.clone());
            kept.push(v);
        }
    }
    Some(join(raw, &kept).freeze())
}

/// `children` under a header of `like`'s type.
fn join(like: &[u8], children: &[Bytes]) -> BytesMut {
    let mut b = BytesMut::with_capacity(children.iter().map(Bytes::len).sum::<usize>() + 16);
    header(&mut b, like, children.len());
    children.iter().for_each(|c| b.extend_from_slice(c));
    b
}

#[cfg(test)]
mod tests;
