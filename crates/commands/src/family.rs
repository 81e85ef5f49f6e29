//! Routing families: the one decision the session makes for every command after lookup
//! (docs/architecture.md). Each family has its own file in the proxy.

/// How slotgate routes a command. Assigned in `gen/families.tsv`; unlisted commands are
/// [`Family::Single`] when they have keys, else [`Family::Keyless`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Answered by the proxy itself: PING, ECHO, AUTH, HELLO, SELECT, QUIT, RESET, INFO,
    /// READONLY, READWRITE, CLIENT SETNAME/GETNAME/ID/INFO/REPLY/NO-EVICT, COMMAND
    /// (alone, COUNT, INFO, LIST, HELP), CONFIG GET, CLUSTER INFO/SLOTS/SHARDS/NODES/
    /// KEYSLOT/MYID/COUNTKEYSINSLOT (emulated), ACL WHOAMI.
    Local,
    /// Routed by the slot of its keys (all must share one slot): GET, SET, EVAL, MSETNX,
    /// XREAD, ... With no keys at run time (EVAL with numkeys 0) treat it as `Keyless`.
    /// SPUBLISH is `Single` by its shard channel: use [`crate::Command::routing_indices`].
    Single,
    /// No keys: any primary answers exactly like Redis (TIME, PUBLISH, LOLWUT, COMMAND
    /// DOCS/GETKEYS, help subcommands, unknown subcommands of harmless containers).
    Keyless,
    /// Split by slot, fanned out, merged in request order.
    Split(SplitKind),
    /// Sent to every primary; replies merged.
    AllShards(MergeKind),
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH: pins the session to one upstream connection.
    Transaction,
    /// Always blocks (BLPOP, BZMPOP, WAIT, ...): a dedicated upstream connection.
    /// XREAD/XREADGROUP are `Single`; see [`crate::is_blocking_call`].
    Blocking,
    /// (S|P)SUBSCRIBE and their UNSUBSCRIBE: the session enters subscriber mode.
    PubSub,
    /// Refused by the proxy: replication internals, node administration, MONITOR, ...
    Unsupported,
}

/// How a [`Family::Split`] command is split and its parts merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitKind {
    /// MGET: one key per part; the array is reassembled in key order.
    Mget,
    /// MSET: key/value pairs per part; every part must answer OK.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: integer replies summed.
    SumInteger,
}

/// How the replies of a [`Family::AllShards`] command are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeKind {
    /// Integers summed (DBSIZE, PUBSUB NUMPAT).
    SumInteger,
    /// Arrays concatenated (KEYS, PUBSUB CHANNELS).
    ConcatArrays,
    /// `+OK` when every shard said OK (FLUSHALL, SCRIPT FLUSH).
    AllOk,
    /// Every shard answers the same; the first reply is returned (SCRIPT LOAD, FUNCTION LIST).
    First,
    /// The first non-nil reply (RANDOMKEY).
    AnyNonNil,
    /// Cursor-based SCAN across shards (the cursor encodes the shard).
    Scan,
    /// Integer arrays combined element-wise with AND/min (SCRIPT EXISTS).
    AndArrays,
    /// Flat `[name, count, ...]` arrays with counts summed per name (PUBSUB NUMSUB).
    SumPairs,
    /// A node's diagnostics merged by the proxy's rule for that command: log entries
    /// newest first (SLOWLOG GET), one row per latency event (LATENCY LATEST), buckets
    /// summed (LATENCY HISTOGRAM), per-node text (LATENCY DOCTOR).
    Diagnostic,
}
