//! Commands the servers have and slotgate's own table (Redis 7.0) does not: learned from
//! every primary's `COMMAND` reply, so a newer server's commands (HSETEX, HEXPIRE, WAITAOF,
//! COMMANDLOG …) are served instead of answered as unknown.
//!
//! - A command is learned only when every primary reports it, with the same description;
//!   one that some primary lacks keeps Redis's unknown-command error.
//! - Its routing comes from what the servers say, never from a guess: key specs (index or
//!   keyword begin search, range or keynum key finding) make it a one-slot command (keys in
//!   several slots get `-CROSSSLOT`, ACL key patterns apply with the specs' read/write
//!   flags); without keys, the `request_policy` tip sends it to every primary (the
//!   `response_policy` tip merges the replies) or, with no tip, to one primary. A command
//!   whose keys the specs cannot locate, that subscribes, or that changes the connection
//!   (`@connection`: slotgate shares connections between clients) is refused as unsupported.
//! - A new container (COMMANDLOG) carries its learned subcommands, and each is routed by
//!   its own description, like a built-in container's.
//! - COMMANDLOG GET, CLUSTER SLOT-STATS, CLUSTER MYSHARDID, CLIENT CAPA and CLIENT
//!   MAINT_NOTIFICATIONS have rules of their own ([`merged_by_slotgate`]): merged like
//!   SLOWLOG GET, or answered by slotgate itself.
//! - A module's command without key specs or tips (FT.SEARCH and other index commands) is
//!   refused in a cluster, where slotgate cannot know which primaries hold its data; with
//!   one primary (standalone, sentinel) it goes to that server.
//! - The static table always wins: learning costs nothing for a command slotgate knows.

use std::collections::HashMap;

use slotgate_commands::{
    self as commands, flag, key_flag, BeginSearch, Category, Command, Family, FindKeys, KeySpec,
    MergeKind, COMMAND_COUNT,
};
use slotgate_resp::value::Value;

/// The learned commands by lower-case name (`"hsetex"`, `"client|capa"`).
#[derive(Default)]
pub struct Learned {
    by_name: HashMap<String, &'static Command>,
}

impl Learned {
    /// The learned command `name` (lower-case; `container|sub` for a subcommand).
    pub fn get(&self, name: &str) -> Option<&'static Command> {
        self.by_name.get(name).copied()
    }

    /// How many commands were learned.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// [`Learned::from_servers`] for a cluster.
    pub fn from_replies(replies: &[Value]) -> Learned {
        Learned::from_servers(replies, false)
    }

    /// The commands every reply (one per primary's `COMMAND`) describes alike and the
    /// static table lacks. With `one_primary` (standalone and sentinel modes) a module command without keys or
    /// tips goes to the one server; in a cluster it is refused.
    pub fn from_servers(replies: &[Value], one_primary: bool) -> Learned {
        let mut views = replies.iter().map(describe_all);
        let Some(first) = views.next() else {
            return Learned::default();
        };
        let others: Vec<HashMap<String, Desc>> = views.collect();
        let agreed: Vec<(String, Desc)> = first
            .into_iter()
            .filter(|(name, desc)| others.iter().all(|o| o.get(name) == Some(desc)))
            .collect();
        // Subcommands first: a new container (COMMANDLOG) routes by them, never by its own
        // description, so it carries them as a built-in container does.
        let mut subs: HashMap<String, Vec<Command>> = HashMap::new();
        let mut by_name = HashMap::new();
        let (sub_descs, tops): (Vec<_>, Vec<_>) =
            agreed.into_iter().partition(|(name, _)| name.contains('|'));
        for (name, desc) in sub_descs {
            let container = name.split('|').next().unwrap_or_default().to_string();
            subs.entry(container)
                .or_default()
                .push(desc.clone().into_command(&name, one_primary));
            let cmd: &'static Command = Box::leak(Box::new(desc.into_command(&name, one_primary)));
            by_name.insert(name, cmd);
        }
        for (name, desc) in tops {
            let mut cmd = desc.into_command(&name, one_primary);
            if let Some(mut own) = subs.remove(&name) {
                own.sort_by(|a, b| a.name.cmp(b.name));
                cmd.subcommands = Box::leak(own.into_boxed_slice());
            }
            let cmd: &'static Command = Box::leak(Box::new(cmd));
            by_name.insert(name, cmd);
        }
        Learned { by_name }
    }
}

/// What `COMMAND` says of one command, owned (compared across primaries before use).
#[derive(Debug, Clone, PartialEq)]
struct Desc {
    arity: i16,
    flags: u32,
    categories: u32,
    first_key: i16,
    last_key: i16,
    key_step: i16,
    tips: Vec<String>,
    specs: Vec<OwnedSpec>,
}

#[derive(Debug, Clone, PartialEq)]
struct OwnedSpec {
    begin: OwnedBegin,
    find: FindKeys,
    flags: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum OwnedBegin {
    Index(i16),
    Keyword(String, i16),
    Unknown,
}

/// Every command and subcommand in one `COMMAND` reply that the static table lacks.
fn describe_all(reply: &Value) -> HashMap<String, Desc> {
    let mut out = HashMap::new();
    let Value::Array(entries) = reply else {
        return out;
    };
    for entry in entries {
        let Value::Array(f) = entry else { continue };
        let Some(name) = text(f.first()).map(|n| n.to_ascii_lowercase()) else {
            continue;
        };
        if commands::lookup_name(name.as_bytes()).is_none() {
            if let Some(desc) = describe(f) {
                out.insert(name.clone(), desc);
            }
        }
        // Subcommands (Redis 7+: the tenth field), e.g. CLIENT CAPA under a known CLIENT.
        if let Some(Value::Array(subs)) = f.get(9) {
            for sub in subs {
                let Value::Array(sf) = sub else { continue };
                let Some(full) = text(sf.first()).map(|n| n.to_ascii_lowercase()) else {
                    continue;
                };
                let Some((_, sub_name)) = full.split_once('|') else {
                    continue;
                };
                let known = commands::lookup(&[name.as_bytes(), sub_name.as_bytes()][..])
                    .is_some_and(|c| c.name == full);
                if !known {
                    if let Some(desc) = describe(sf) {
                        out.insert(full, desc);
                    }
                }
            }
        }
    }
    out
}

/// One entry: `[name, arity, flags, first, last, step, categories, tips, key specs, subs]`.
fn describe(f: &[Value]) -> Option<Desc> {
    let int = |i: usize| match f.get(i) {
        Some(Value::Integer(n)) => i16::try_from(*n).ok(),
        _ => None,
    };
    let words = |i: usize| -> Vec<String> {
        match f.get(i) {
            Some(Value::Array(items)) | Some(Value::Set(items)) => items
                .iter()
                .filter_map(|v| text(Some(v)).map(|s| s.to_ascii_lowercase()))
                .collect(),
            _ => Vec::new(),
        }
    };
    let flags = words(2)
        .iter()
        .fold(0, |acc, w| acc | flag::from_name(w).unwrap_or(0));
    let categories = words(6)
        .iter()
        .filter_map(|c| Category::from_name(c.trim_start_matches('@')))
        .fold(0, |acc, c| acc | c.bit());
    let specs = match f.get(8) {
        Some(Value::Array(specs)) => specs.iter().map(spec).collect(),
        _ => Vec::new(),
    };
    Some(Desc {
        arity: int(1)?,
        flags,
        categories,
        first_key: int(3).unwrap_or(0),
        last_key: int(4).unwrap_or(0),
        key_step: int(5).unwrap_or(0),
        tips: words(7),
        specs,
    })
}

/// A key spec map (RESP2: a flat `[name, value, …]` array).
fn spec(v: &Value) -> OwnedSpec {
    let unknown = OwnedSpec {
        begin: OwnedBegin::Unknown,
        find: FindKeys::Unknown,
        flags: key_flag::INCOMPLETE,
    };
    let Some(fields) = pairs(v) else {
        return unknown;
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let flags = match get("flags") {
        Some(Value::Array(items)) | Some(Value::Set(items)) => items
            .iter()
            .filter_map(|v| text(Some(v)))
            .fold(0, |acc, w| {
                acc | key_flag::from_name(&w.to_ascii_uppercase()).unwrap_or(0)
            }),
        _ => 0,
    };
    let (kind, spec) = search(get("begin_search"));
    let keyword = spec
        .iter()
        .find(|(n, _)| n == "keyword")
        .and_then(|(_, v)| text(Some(v)));
    let begin = match (kind.as_deref(), keyword) {
        (Some("index"), _) => num(&spec, "index").map_or(OwnedBegin::Unknown, OwnedBegin::Index),
        (Some("keyword"), Some(k)) => {
            num(&spec, "startfrom").map_or(OwnedBegin::Unknown, |from| OwnedBegin::Keyword(k, from))
        }
        _ => OwnedBegin::Unknown,
    };
    let (kind, spec) = search(get("find_keys"));
    let n = |k: &str| num(&spec, k);
    let find = match kind.as_deref() {
        Some("range") => match (n("lastkey"), n("keystep"), n("limit")) {
            (Some(last_key), Some(step), Some(limit)) => FindKeys::Range {
                last_key,
                step,
                limit,
            },
            _ => FindKeys::Unknown,
        },
        Some("keynum") => match (n("keynumidx"), n("firstkey"), n("keystep")) {
            (Some(keynum_idx), Some(first_key), Some(step)) => FindKeys::KeyNum {
                keynum_idx,
                first_key,
                step,
            },
            _ => FindKeys::Unknown,
        },
        _ => FindKeys::Unknown,
    };
    OwnedSpec { begin, find, flags }
}

impl Desc {
    /// The table row slotgate routes by (leaked: learned once per change of the servers).
    fn into_command(self, name: &str, one_primary: bool) -> Command {
        let family = routing(name, &self, one_primary).0;
        let specs: Vec<KeySpec> = self
            .specs
            .iter()
            .map(|s| KeySpec {
                begin: match &s.begin {
                    OwnedBegin::Index(i) => BeginSearch::Index(*i),
                    OwnedBegin::Keyword(k, from) => BeginSearch::Keyword {
                        keyword: Box::leak(k.to_ascii_uppercase().into_boxed_str()),
                        start_from: *from,
                    },
                    OwnedBegin::Unknown => BeginSearch::Unknown,
                },
                find: s.find,
                flags: s.flags,
            })
            .collect();
        Command {
            name: Box::leak(name.to_string().into_boxed_str()),
            // Counted under the unknown-command index in per-command metrics.
            index: COMMAND_COUNT as u16,
            arity: self.arity,
            flags: self.flags,
            acl_categories: self.categories,
            first_key: self.first_key,
            last_key: self.last_key,
            key_step: self.key_step,
            key_specs: Box::leak(specs.into_boxed_slice()),
            family,
            subcommands: &[],
        }
    }

    /// How to route it, from its key specs and tips only (see the module's rules).
    /// How to route it, and why, in words for docs/compatibility-servers.md.
    fn decide(&self, one_primary: bool) -> (Family, &'static str) {
        let usable = |s: &OwnedSpec| {
            !matches!(s.begin, OwnedBegin::Unknown)
                && !matches!(s.find, FindKeys::Unknown)
                && s.flags & key_flag::INCOMPLETE == 0
        };
        // Subscriptions, and connection settings (CLIENT CAPA, CLIENT IMPORT-SOURCE): on a
        // connection slotgate shares between clients they would apply to the others too.
        if self.flags & flag::PUBSUB != 0 {
            return (
                Family::Unsupported,
                "refused: it subscribes (flag `pubsub`)",
            );
        }
        if self.categories & Category::Connection.bit() != 0 {
            return (
                Family::Unsupported,
                "refused: it sets state on the connection (`@connection`), which slotgate shares between clients",
            );
        }
        if !self.specs.is_empty() {
            if !self.specs.iter().all(usable) {
                return (
                    Family::Unsupported,
                    "refused: its key specs do not locate every key",
                );
            }
            return if self.flags & flag::BLOCKING != 0 {
                (
                    Family::Blocking,
                    "served: blocks on a dedicated connection to its keys' primary",
                )
            } else {
                (
                    Family::Single,
                    "served: routed by its key specs to its keys' primary (one slot; ACL key patterns apply)",
                )
            };
        }
        if self.flags & flag::MOVABLE_KEYS != 0 {
            return (
                Family::Unsupported,
                "refused: keys in positions no key spec describes (`movablekeys`)",
            );
        }
        let tip = |prefix: &str| {
            self.tips
                .iter()
                .find_map(|t| t.strip_prefix(prefix).map(str::to_string))
        };
        match tip("request_policy:").as_deref() {
            Some("all_shards") | Some("all_nodes") => {
                let (merge, why) = match tip("response_policy:").as_deref() {
                    Some("agg_sum") => (MergeKind::SumInteger, "served: every primary, integers summed"),
                    Some("all_succeeded") => (MergeKind::AllOk, "served: every primary, `OK` when all succeed"),
                    Some("one_succeeded") => (MergeKind::First, "served: every primary, the first reply"),
                    Some("agg_logical_and") => (MergeKind::AndArrays, "served: every primary, arrays combined with AND"),
                    None => (MergeKind::ConcatArrays, "served: every primary, arrays concatenated"),
                    Some(_) => {
                        return (
                            Family::Unsupported,
                            "refused: its tips ask for a merge slotgate does not make",
                        )
                    }
                };
                (Family::AllShards(merge), why)
            }
            Some("multi_shard") | Some("special") => (
                Family::Unsupported,
                "refused: its tips ask for a routing slotgate does not make",
            ),
            // A module's command without keys or tips (an index such as FT.SEARCH's): which
            // primaries hold its data is unknown in a cluster.
            _ if self.flags & flag::MODULE != 0 && !one_primary => (
                Family::Unsupported,
                "refused in a cluster: a module command without keys or tips (which primaries hold its data is unknown); served by the one server in standalone and sentinel modes",
            ),
            _ => (
                Family::Keyless,
                "served: no keys, sent to one primary",
            ),
        }
    }
}

/// Newer commands slotgate serves by a rule of its own rather than by their tips: the
/// diagnostics merged over the primaries (`family::diagnostics`: COMMANDLOG GET, CLUSTER
/// SLOT-STATS) and CLUSTER MYSHARDID, answered by the one-node cluster emulation.
fn merged_by_slotgate(name: &str) -> Option<(Family, &'static str)> {
    match name {
        "commandlog|get" | "cluster|slot-stats" => Some((
            Family::AllShards(MergeKind::Diagnostic),
            "served: every primary, merged as one server would answer (compatibility.md)",
        )),
        "cluster|myshardid" => Some((
            Family::Local,
            "served: answered by the one-node cluster emulation",
        )),
        // What a client says it can handle: slotgate follows redirects and maintenance
        // itself, so it never sends what the capability announces; answered `+OK`.
        "client|capa" | "client|maint_notifications" => Some((
            Family::Local,
            "served: answered `+OK` by slotgate for the client's connection (slotgate follows redirects and maintenance itself and never sends what it announces)",
        )),
        _ => None,
    }
}

/// How slotgate routes the learned command `name` described by `desc`, and why in words.
fn routing(name: &str, desc: &Desc, one_primary: bool) -> (Family, &'static str) {
    merged_by_slotgate(name).unwrap_or_else(|| desc.decide(one_primary))
}

/// A `begin_search` or `find_keys` map: its `type` and its `spec` fields.
fn search(v: Option<&Value>) -> (Option<String>, Vec<(String, &Value)>) {
    let fields = v.and_then(pairs).unwrap_or_default();
    let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let kind = text(field("type"));
    let spec = field("spec").and_then(pairs).unwrap_or_default();
    (kind, spec)
}

/// The integer field `k` of a spec.
fn num(spec: &[(String, &Value)], k: &str) -> Option<i16> {
    spec.iter()
        .find(|(n, _)| n == k)
        .and_then(|(_, v)| match v {
            Value::Integer(n) => i16::try_from(*n).ok(),
            _ => None,
        })
}

/// A bulk or status string.
fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Bulk(b) | Value::Simple(b) | Value::Verbatim(b)) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

/// A map (RESP3) or a flat `[name, value, …]` array (RESP2) as pairs.
fn pairs(v: &Value) -> Option<Vec<(String, &Value)>> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .map(|c| Some((text(c.first())?, c.get(1)?)))
            .collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| Some((text(Some(k))?, v)))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
