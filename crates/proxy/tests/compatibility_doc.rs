//! `docs/compatibility.md` is generated from the command table and the routing rules here,
//! so it cannot drift: this test fails when the committed file differs from what the table
//! says. Regenerate with `SLOTGATE_UPDATE_DOCS=1 cargo test -p slotgate-proxy --test compatibility_doc`.

use slotgate_commands::{all, Command, Family, MergeKind, SplitKind};

const NOT_YET: &str = "not supported yet (`-ERR slotgate: command '…' is not supported yet`)";

/// MULTI, EXEC, DISCARD, WATCH, UNWATCH (`transaction.rs`).
fn transaction(name: &str) -> &'static str {
    match name {
        "multi" => {
            "answered by slotgate, which queues the following commands (`+QUEUED`) as \
            Redis does; every keyed command must be in the transaction's slot (of the first \
            key, or of the WATCHed keys): another slot gets `-CROSSSLOT` and EXEC then \
            `-EXECABORT`, like any command refused while queueing (unknown, wrong arity, \
            NOPERM). Commands that need every shard (KEYS, SCAN, FLUSHALL …), the subscribe \
            family and those slotgate answers itself (but PING, ECHO, COMMAND, QUIT, RESET) \
            cannot be queued: `-ERR slotgate: command '…' cannot be used inside MULTI through \
            the proxy`, and EXEC answers `-EXECABORT`"
        }
        "exec" => {
            "sends MULTI, the queued commands and EXEC in one write on a dedicated \
            connection to the slot's primary (any primary without keys) and answers with \
            Redis's EXEC reply; if the slot moved meanwhile (the node answered MOVED/ASK and \
            ran nothing) the transaction runs again on the new owner (after ASKING for ASK); \
            with a WATCH whose slot moved, EXEC answers nil instead, as if a watched key \
            changed; within `upstream.op_timeout`"
        }
        "discard" => "answered by slotgate: drops the queue and the WATCH",
        "watch" => {
            "keys in one slot (`-CROSSSLOT` otherwise, also for a later WATCH or \
            queued command in another slot); sent on a dedicated connection to that slot's \
            primary, kept for the client until EXEC, DISCARD, UNWATCH or RESET, so a change \
            by anyone makes EXEC answer nil exactly as in Redis"
        }
        "unwatch" => "answered by slotgate (`+OK`); releases the WATCH connection",
        _ => NOT_YET,
    }
}

/// What happens to `cmd` when a client sends it through slotgate.
fn behaviour(cmd: &Command) -> String {
    let name = cmd.name;
    match cmd.family {
        Family::Local => match name {
            n if n == "command" || n.starts_with("command|") => "from the effective table: one primary's reply (its descriptions and docs) less every command and subcommand slotgate refuses, so what is listed is served; `COMMAND COUNT` counts that list, `COMMAND INFO` of a refused name is nil, `GETKEYS` of one `-ERR Invalid command specified`".into(),
            n if n.starts_with("cluster|countkeysinslot") => "forwarded to the primary owning the slot".into(),
            n if n.starts_with("cluster|") => "emulated: slotgate appears as a one-node cluster that owns every slot".into(),
            "config|get" => "answered harmlessly: `save` (empty) and `appendonly` (`no`) only".into(),
            "hello" => "answered by slotgate; `AUTH user pass` checks slotgate's `users:`; `HELLO 3` switches the client to RESP3 (its commands then use RESP3 upstream connections, so node replies pass through unchanged), `HELLO 2` or `RESET` back".into(),
            "auth" => "checks slotgate's `users:` (`AUTH pass` is user `default`); without users: like Redis's passwordless `default` user".into(),
            "acl|whoami" => "the connection's user (`default` without users)".into(),
            n if n.starts_with("acl|") => "refused: `-ERR slotgate: ACL … is not available through the proxy; users are configured in slotgate's config file`".into(),
            "info" => "any section list, as Redis takes it (`default`, `all`, `everything`, names): server (with the cluster's `redis_version`), clients and slotgate sections from slotgate; \
                memory, persistence, stats, cpu, errorstats, commandstats, latencystats and keyspace merged over every primary: \
                integer fields summed (`usec_per_call` recomputed, latency percentiles the largest), other values from the first primary; \
                keyspace `keys` and `expires` added, `avg_ttl` weighted by `expires`".into(),
            "select" => "cluster mode: `SELECT 0` accepted, others `-ERR SELECT is not allowed in cluster mode`; standalone and sentinel modes: any database the server has, per client".into(),
            "client|reply" => "answered by slotgate: `OFF` and `SKIP` drop this client's replies in order (the commands still run), `ON` answers `+OK`; Pub/Sub messages still arrive".into(),
            "client|no-evict" => "answered by slotgate: `ON` and `OFF` `+OK` (no server sees the client's connection, and slotgate never evicts a client for its memory)".into(),
            "client|no-touch" => "answered by slotgate (Redis 7.2+ and Valkey; older servers' unknown-subcommand error kept): `OFF` `+OK`; `ON` refused, `-ERR slotgate: CLIENT NO-TOUCH ON is not supported by the proxy: …` (upstream connections are shared between clients)".into(),
            "client|tracking" => "answered by slotgate, as Redis defines it: default mode, BCAST with PREFIX, OPTIN/OPTOUT, NOLOOP, REDIRECT to another client connection of slotgate (RESP2: subscribed to `__redis__:invalidate`); changes made by anyone, directly on the nodes too, expiry, eviction and FLUSHALL included, come back as invalidations ([client-tracking.md](client-tracking.md))".into(),
            "client|caching" | "client|trackinginfo" | "client|getredir" => "answered by slotgate for this client connection's tracking ([client-tracking.md](client-tracking.md))".into(),
            _ => "answered by slotgate for this client connection".into(),
        },
        Family::Single if cmd.key_specs.is_empty() => "sent to one primary".into(),
        Family::Single => {
            let mut text = String::from("routed to the primary of its keys' slot; keys in several slots get `-CROSSSLOT`");
            if name == "xread" || name == "xreadgroup" {
                text.push_str("; with `BLOCK`: on a dedicated connection like the blocking family");
            }
            if name == "evalsha" || name == "evalsha_ro" {
                text.push_str(
                    "; a `-NOSCRIPT` from a node that never loaded the script (a promoted \
                     replica, a flushed cache) is repaired once with `SCRIPT LOAD` of the body \
                     slotgate saw in an EVAL or SCRIPT LOAD",
                );
            }
            text
        }
        Family::Keyless if name == "publish" => "sent to the Pub/Sub home (the primary of slot 0), where every \
            subscriber connected through slotgate is: one publisher's messages reach every subscriber in publish \
            order, and the reply counts every subscriber connected through slotgate (docs/architecture.md, Pub/Sub)"
            .into(),
        Family::Keyless => "sent to one primary (rotating)".into(),
        Family::Split(kind) => format!(
            "split by slot (one sub-command per slot, sent in parallel), merged: {}",
            match kind {
                SplitKind::Mget => "values in the client's key order",
                SplitKind::Mset => "`OK` when every part is",
                SplitKind::SumInteger => "counts summed",
            }
        ),
        Family::AllShards(kind) => match kind {
            MergeKind::SumInteger => "sent to every primary, integers summed".into(),
            MergeKind::ConcatArrays => "sent to every primary, arrays concatenated".into(),
            MergeKind::AllOk => "sent to every primary, `OK` when every primary says so".into(),
            MergeKind::First => "sent to every primary, the first reply when all succeed".into(),
            MergeKind::AnyNonNil => "sent to every primary, one of the non-nil replies picked at random".into(),
            MergeKind::AndArrays => "sent to every primary, element-wise AND of the replies".into(),
            MergeKind::Scan => "one primary per call, primaries in order of their lowest slot; the cursor \
                encodes the primary and its own cursor (below 2^63); `MATCH`/`COUNT`/`TYPE` passed through; \
                a full iteration returns every key present throughout at least once, also across a failover \
                or reshard (a changed layout restarts the iteration, so keys may repeat); `-ERR invalid cursor` \
                like Redis; `-CLUSTERDOWN` while a slot has no owner (see docs/architecture.md)".into(),
            MergeKind::SumPairs => "sent to every primary, counts summed per channel in the client's order \
                (subscribers connected to replicas are not counted)".into(),
            MergeKind::Diagnostic => format!("sent to every primary; {}", diagnostic(name)),
        },
        Family::Blocking if name == "wait" => "emulated (the connection's writes travel over \
            connections shared with other clients, so it cannot be forwarded): slotgate remembers \
            the slots this connection wrote to (up to 64, then every primary) and, once every \
            earlier command of the connection was answered, reads the replication offset of each \
            primary serving them (`ROLE`) and polls that shard's replicas (`ROLE`, on dedicated \
            connections) until `numreplicas` of them processed it on every such shard, or the \
            timeout passes (0: never; `upstream.op_timeout` does not apply); answers the smallest \
            count over those shards; a replica that cannot be reached does not acknowledge; \
            without earlier writes every replica that answers counts; inside MULTI it runs in \
            the transaction and answers at once, as in Redis; the upstream user needs `+role`"
            .into(),
        Family::Blocking if name == "waitaof" => "emulated (Redis 7.2+ and Valkey; older \
            servers' unknown-command error kept), like WAIT: once every earlier command of the \
            connection was answered, on each primary serving a slot it wrote to (every primary \
            if none or too many), slotgate writes and deletes the key `slotgate:waitaof:{N}` \
            with EVAL on a dedicated connection, then sends it `WAITAOF` there; answers the \
            element-wise minimum of the primaries' `[local, replicas]`, or a node's error as \
            the node words it (appendonly off, bad arguments); a primary that has not answered \
            100 ms after the timeout counts `[0, 0]`; inside MULTI it runs in the transaction \
            and answers at once, as in Redis; the upstream user needs `+eval` and write access \
            to `slotgate:waitaof:*`"
            .into(),
        Family::Blocking => "routed by its keys' slot (`-CROSSSLOT` across slots) to a dedicated \
            connection of its own for as long as it blocks, so it holds up nobody else; its own \
            timeout applies, not `upstream.op_timeout`; MOVED/ASK while blocked are followed; a \
            client that disconnects releases the connection; at most \
            `upstream.max_dedicated_per_node` per node per worker"
            .into(),
        Family::Transaction => transaction(name).into(),
        Family::PubSub if matches!(name, "ssubscribe" | "sunsubscribe") => "shard channels: \
            each on a dedicated connection to its slot's owner (channels of one call must share a \
            slot, `-CROSSSLOT` otherwise); counts in confirmations are the client's total; when a \
            slot moves or its owner fails over, slotgate subscribes again on the new owner without \
            telling the client (messages published in the gap are lost)"
            .into(),
        Family::PubSub => "sent down the client's own Pub/Sub connection to one primary (every \
            node sees every PUBLISH over the cluster bus); confirmations and messages relayed in \
            order; subscriptions are renewed on another primary if that connection breaks \
            (messages published in the gap are lost); in subscribe mode only the Pub/Sub family, \
            PING, QUIT and RESET run; a subscriber more than `limits.max_pubsub_backlog` behind \
            is disconnected"
            .into(),
        Family::Unsupported => "refused: `-ERR slotgate: command '…' is not supported by the proxy`".into(),
    }
}

/// How `family/diagnostics.rs` merges a diagnostic command's replies.
fn diagnostic(name: &str) -> &'static str {
    match name {
        "slowlog|get" => {
            "the entries of all, newest first by timestamp (seconds; a primary's own order \
             within a second), the first `count` (default 10, `-1` all); each entry as its \
             primary wrote it: the id is that node's own, the client address is slotgate's \
             connection to that node; a primary's error is the reply"
        }
        "latency|latest" => {
            "one row per event: the timestamp and latest latency of the primary that saw it \
             last, the largest all-time maximum (further counters, Valkey's sum and count, \
             summed); a primary's error is the reply"
        }
        "latency|history" => {
            "the samples of all by timestamp, oldest first, one per second (the largest), \
             the 160 newest as one server keeps; a primary's error is the reply"
        }
        "latency|histogram" => {
            "per command, calls summed and the cumulative bucket counts added (a bucket \
             counts the calls of every primary at or below it); a map for RESP3 clients; a \
             primary's error is the reply"
        }
        "latency|doctor" | "latency|graph" => {
            "each primary's text under a `# host:port` line, primaries separated by a blank \
             line (a verbatim string for RESP3 clients); a primary's error appears as its \
             text, and is the reply when every primary gives one (GRAPH of an event no \
             primary sampled)"
        }
        _ => "merged by a rule of its own",
    }
}

/// What node administration does under `upstream.admin_commands: acl` (`family/admin.rs`).
fn admin_note(name: &str) -> Option<&'static str> {
    Some(match name {
        "config|set" | "config|resetstat" | "config|rewrite" => {
            "; under `upstream.admin_commands: acl` (the default with `users:`): sent to every \
             node of the slot map, primaries and replicas, `+OK` when every node says so, else \
             `-ERR slotgate: … failed on <nodes> (<their error>); succeeded on <nodes>` \
             (docs/configuration.md, Admin commands)"
        }
        "save" => {
            "; under `upstream.admin_commands: acl` (the default with `users:`): sent to every \
             primary, `+OK` when every primary says so, else `-ERR slotgate: … failed on …` \
             naming the nodes (docs/configuration.md, Admin commands)"
        }
        "bgsave" | "bgrewriteaof" => {
            "; under `upstream.admin_commands: acl` (the default with `users:`): sent to every \
             primary, Redis's `+Background … started` when every primary started it (`… \
             scheduled` when one only scheduled it), else `-ERR slotgate: … failed on …` \
             naming the nodes (docs/configuration.md, Admin commands)"
        }
        "lastsave" => {
            "; under `upstream.admin_commands: acl` (the default with `users:`): sent to every \
             primary, the oldest (smallest) timestamp, else `-ERR slotgate: … failed on …` \
             naming the nodes (docs/configuration.md, Admin commands)"
        }
        "config|get" => {
            "; under `upstream.admin_commands: acl` (the default with `users:`): sent to every \
             primary, the answer of the primary serving the lowest slot as it is (a map for \
             RESP3 clients), else `-ERR slotgate: … failed on …` naming the nodes \
             (docs/configuration.md, Admin commands)"
        }
        _ => return None,
    })
}

/// What every row adds after the family's behaviour: key groups, restricted users' scripts
/// and node administration.
fn notes(cmd: &Command) -> String {
    let mut text = String::new();
    if let Some(note) = admin_note(cmd.name) {
        text.push_str(note);
    }
    if !cmd.key_groups_complete(4) {
        text.push_str(
            "; a key without its value gets Redis's `-ERR wrong number of arguments`, whether or \
             not the keys share a slot",
        );
    }
    if matches!(
        cmd.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    ) {
        text.push_str(
            "; for a user with less than `~* &*`, runs on a dedicated connection as an ACL \
             user with that user's rules, so the node checks the script's own calls \
             (`scripting.restricted_users: mirror`, the default; refused under `refuse`, see \
             docs/configuration.md)",
        );
    } else if cmd.in_category(slotgate_commands::Category::Scripting) {
        text.push_str(
            "; refused (`-NOPERM`) for users with less than `~* &*` under \
             `scripting.restricted_users: refuse` (docs/configuration.md)",
        );
    }
    text
}

fn family(cmd: &Command) -> String {
    match cmd.family {
        Family::Split(_) => "split".into(),
        Family::AllShards(_) => "all-shard".into(),
        f => format!("{f:?}").to_lowercase(),
    }
}

fn render() -> String {
    let mut out = String::from(
        "# Redis 7.0 command compatibility\n\n\
         Every command of Redis 7.0 (and the two 7.2 `CLIENT` subcommands clients send on connect),\n\
         with its routing family and what a client sees through slotgate. Generated from the command\n\
         table (`crates/commands`) by `crates/proxy/tests/compatibility_doc.rs`; a test fails when\n\
         this file is out of date. Regenerate with\n\
         `SLOTGATE_UPDATE_DOCS=1 cargo test -p slotgate-proxy --test compatibility_doc`.\n\n\
         Families: **local** (answered by slotgate), **single** (one slot), **keyless** (one primary),\n\
         **split** (per-slot parts merged), **all-shard** (every primary, merged), **transaction**,\n\
         **blocking** (a dedicated connection per blocked command), **pubsub** (the client's own\n\
         connections: one for SUBSCRIBE and friends, one per slot owner for shard channels),\n\
         **unsupported**.\n\n\
         The table describes cluster mode. In standalone and sentinel modes one server has every key:\n\
         nothing is split or refused with `-CROSSSLOT` (multi-key commands, transactions, WATCH and\n\
         scripts take keys in any slots), SCAN is the server's own, `SELECT`, `MOVE`, `SWAPDB` and\n\
         `COPY … DB` work per client database, and `CLUSTER …`, `READONLY` and `READWRITE` get\n\
         `-ERR This instance has cluster support disabled` (see configuration.md, \"Upstream modes\").\n\n\
         Commands a newer server has and this table lacks (Redis 7.2–8.x: HSETEX, HGETEX, HGETDEL,\n\
         the hash-field expiry family; Valkey: COMMANDLOG; module commands) are learned from every\n\
         primary's `COMMAND` when the primaries change, if every primary describes them alike: one\n\
         with key specs is routed to its keys' slot (ACL key patterns apply with the specs'\n\
         read/write flags, and ACL category rules decide who may run it; rules cannot name it),\n\
         one without keys goes to every primary when its `request_policy` tip says so (merged by\n\
         `response_policy`: `agg_sum`, `all_succeeded`, `one_succeeded`, `agg_logical_and`, or\n\
         arrays concatenated) or to one primary otherwise; a container (COMMANDLOG) is routed by\n\
         its subcommands. A command whose keys the specs cannot locate, that subscribes, that\n\
         changes the connection (`@connection`: CLIENT IMPORT-SOURCE; slotgate shares connections\n\
         between clients), whose tips ask for a merge slotgate lacks, or a module's command\n\
         without keys or tips (FT.SEARCH; in a cluster, where its data's primaries are unknown) is\n\
         refused as not supported. `CLIENT CAPA` and `CLIENT MAINT_NOTIFICATIONS` are answered\n\
         `+OK` by slotgate (it follows redirects and maintenance itself). `COMMAND` and its\n\
         subcommands list exactly what slotgate serves (queued in `MULTI`, the node answers at\n\
         `EXEC`, with its own table); what each tested server adds, and why\n\
         each command is served or refused: [compatibility-servers.md](compatibility-servers.md).\n\
         Per-command metrics count learned commands under `unknown`.\n\n\
         Diagnostics are merged over every primary serving slots, as one server would answer\n\
         (rows below for SLOWLOG and LATENCY); replicas' logs are not included. Valkey's `COMMANDLOG\n\
         GET count type` is merged like `SLOWLOG GET` (no default count), `COMMANDLOG LEN` summed,\n\
         `COMMANDLOG RESET` `+OK` when every primary says so. `CLUSTER SLOT-STATS` (Valkey 8, Redis\n\
         8.2; cluster mode only): each primary reports the slots it serves; `SLOTSRANGE a b` in slot\n\
         order, `ORDERBY metric [LIMIT n] [ASC|DESC]` sorted again by the metric (ties by slot) and\n\
         cut to `n`. Servers without them (Redis 7.0) keep Redis's unknown command or subcommand\n\
         error. They are `@admin @dangerous` (SLOT-STATS `@slow`): users' ACL rules decide, as for\n\
         any command (`upstream.admin_commands` does not apply), and they cannot be queued in `MULTI`.\n\
         `CLUSTER MYSHARDID` (Redis 7.2+, Valkey) answers the emulated one-node cluster's shard id,\n\
         stable per listen address and other than its node id (Redis 7.0: unknown subcommand).\n\n\
         | command | family | through slotgate |\n|---|---|---|\n",
    );
    let mut rows: Vec<&Command> = Vec::new();
    for cmd in all() {
        if cmd.subcommands.is_empty() || cmd.arity_ok(1) {
            rows.push(cmd); // a container that runs bare too (COMMAND)
        }
        rows.extend(cmd.subcommands.iter());
    }
    rows.sort_by_key(|c| c.name);
    for cmd in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            cmd.name.replace('|', " ").to_uppercase(),
            family(cmd),
            behaviour(cmd) + &notes(cmd)
        ));
    }
    out
}

#[test]
fn compatibility_doc_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compatibility.md");
    let expected = render();
    if std::env::var_os("SLOTGATE_UPDATE_DOCS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "docs/compatibility.md is out of date: run SLOTGATE_UPDATE_DOCS=1 cargo test -p slotgate-proxy --test compatibility_doc"
    );
}
