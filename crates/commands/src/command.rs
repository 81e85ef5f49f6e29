//! The shape of one command-table row: [`Command`], its flag bits, ACL categories and
//! key specs, as Redis 7.0 reports them in `COMMAND INFO`.

use crate::Family;

/// One Redis command or subcommand, as `COMMAND INFO` describes it, plus slotgate's
/// routing [`Family`].
///
/// Every value lives in the static table; compare commands by `index` or by address.
#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    /// Lowercase name: `"get"`; subcommands are `"container|sub"`, e.g. `"client|setname"`.
    pub name: &'static str,
    /// Dense number in `0..COMMAND_COUNT` over all commands and subcommands (for metrics).
    pub index: u16,
    /// Redis arity: the exact argument count including the name (and the subcommand),
    /// or, when negative, the minimum count `-arity`.
    pub arity: i16,
    /// Bitset of [`flag`] constants.
    pub flags: u32,
    /// Bitset of ACL categories: bit `1 << (Category as u32)`.
    pub acl_categories: u32,
    /// Legacy first-key position from `COMMAND INFO` (0 when none).
    pub first_key: i16,
    /// Legacy last-key position (negative counts from the end).
    pub last_key: i16,
    /// Legacy step between keys.
    pub key_step: i16,
    /// Redis 7.0 key specs, in `COMMAND INFO` order.
    pub key_specs: &'static [KeySpec],
    /// How slotgate routes this command.
    pub family: Family,
    /// Subcommands (sorted by name); empty unless this is a container such as `CLIENT`.
    pub subcommands: &'static [Command],
}

// === impl Command ===

impl Command {
    /// Whether `argc` arguments (name included) satisfy the arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        let arity = self.arity as i64;
        let argc = argc as i64;
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Whether every bit of `f` (a [`flag`] constant or a union of them) is set.
    #[inline]
    pub fn has_flag(&self, f: u32) -> bool {
        self.flags & f == f
    }

    /// Whether the command belongs to ACL category `c`.
    #[inline]
    pub fn in_category(&self, c: Category) -> bool {
        self.acl_categories & c.bit() != 0
    }

    /// Whether this command is a container with subcommands (`CLIENT`, `CONFIG`, ...).
    #[inline]
    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }
}

/// Command flag bits, one per flag Redis 7.0 reports in `COMMAND INFO`.
pub mod flag {
    /// `write`: may modify the keyspace.
    pub const WRITE: u32 = 1 << 0;
    /// `readonly`: only reads.
    pub const READONLY: u32 = 1 << 1;
    /// `denyoom`: refused when `maxmemory` is reached.
    pub const DENYOOM: u32 = 1 << 2;
    /// `module`: implemented by a module.
    pub const MODULE: u32 = 1 << 3;
    /// `admin`: administrative.
    pub const ADMIN: u32 = 1 << 4;
    /// `pubsub`: a pub/sub command.
    pub const PUBSUB: u32 = 1 << 5;
    /// `noscript`: not allowed in scripts.
    pub const NOSCRIPT: u32 = 1 << 6;
    /// `blocking`: may block the client.
    pub const BLOCKING: u32 = 1 << 7;
    /// `loading`: allowed while the dataset loads.
    pub const LOADING: u32 = 1 << 8;
    /// `stale`: allowed on a replica with stale data.
    pub const STALE: u32 = 1 << 9;
    /// `skip_monitor`: not shown by `MONITOR`.
    pub const SKIP_MONITOR: u32 = 1 << 10;
    /// `skip_slowlog`: not recorded in the slow log.
    pub const SKIP_SLOWLOG: u32 = 1 << 11;
    /// `asking`: accepted for importing slots after `ASKING`.
    pub const ASKING: u32 = 1 << 12;
    /// `fast`: O(1) or O(log N).
    pub const FAST: u32 = 1 << 13;
    /// `no_auth`: allowed before authentication.
    pub const NO_AUTH: u32 = 1 << 14;
    /// `may_replicate`: may produce replication traffic.
    pub const MAY_REPLICATE: u32 = 1 << 15;
    /// `no_mandatory_keys`: all keys are optional (`EVAL` with 0 keys).
    pub const NO_MANDATORY_KEYS: u32 = 1 << 16;
    /// `no_async_loading`: refused during async loading.
    pub const NO_ASYNC_LOADING: u32 = 1 << 17;
    /// `no_multi`: not allowed inside `MULTI`.
    pub const NO_MULTI: u32 = 1 << 18;
    /// `movablekeys`: key positions depend on the arguments.
    pub const MOVABLE_KEYS: u32 = 1 << 19;
    /// `allow_busy`: allowed while a script is busy.
    pub const ALLOW_BUSY: u32 = 1 << 20;

    /// The bit of the flag `COMMAND INFO` calls `name` (lower-case), if this table knows it.
    pub fn from_name(name: &str) -> Option<u32> {
        Some(match name {
            "write" => WRITE,
            "readonly" => READONLY,
            "denyoom" => DENYOOM,
            "module" => MODULE,
            "admin" => ADMIN,
            "pubsub" => PUBSUB,
            "noscript" => NOSCRIPT,
            "blocking" => BLOCKING,
            "loading" => LOADING,
            "stale" => STALE,
            "skip_monitor" => SKIP_MONITOR,
            "skip_slowlog" => SKIP_SLOWLOG,
            "asking" => ASKING,
            "fast" => FAST,
            "no_auth" => NO_AUTH,
            "may_replicate" => MAY_REPLICATE,
            "no_mandatory_keys" => NO_MANDATORY_KEYS,
            "no_async_loading" => NO_ASYNC_LOADING,
            "no_multi" => NO_MULTI,
            "movablekeys" => MOVABLE_KEYS,
            "allow_busy" => ALLOW_BUSY,
            _ => return None,
        })
    }
}

/// Key-spec flag bits (`COMMAND INFO` key spec `flags`).
pub mod key_flag {
    /// `RO`: the key is only read.
    pub const RO: u32 = 1 << 0;
    /// `RW`: the key is read and written.
    pub const RW: u32 = 1 << 1;
    /// `OW`: the key is overwritten.
    pub const OW: u32 = 1 << 2;
    /// `RM`: the key is deleted.
    pub const RM: u32 = 1 << 3;
    /// `access`: the value is returned or inspected.
    pub const ACCESS: u32 = 1 << 4;
    /// `update`: the value is updated.
    pub const UPDATE: u32 = 1 << 5;
    /// `insert`: data is added.
    pub const INSERT: u32 = 1 << 6;
    /// `delete`: data is removed.
    pub const DELETE: u32 = 1 << 7;
    /// `not_key`: the argument is not a key (a shard channel) but hashes like one.
    pub const NOT_KEY: u32 = 1 << 8;
    /// `incomplete`: the spec may miss keys; Redis falls back to a custom key finder.
    pub const INCOMPLETE: u32 = 1 << 9;
    /// `variable_flags`: the flags depend on the arguments.
    pub const VARIABLE_FLAGS: u32 = 1 << 10;

    /// The bit of the key-spec flag `COMMAND INFO` calls `name` (upper-case: `RW`), if this
    /// table knows it.
    pub fn from_name(name: &str) -> Option<u32> {
        Some(match name {
            "RO" => RO,
            "RW" => RW,
            "OW" => OW,
            "RM" => RM,
            "ACCESS" => ACCESS,
            "UPDATE" => UPDATE,
            "INSERT" => INSERT,
            "DELETE" => DELETE,
            "NOT_KEY" => NOT_KEY,
            "INCOMPLETE" => INCOMPLETE,
            "VARIABLE_FLAGS" => VARIABLE_FLAGS,
            _ => return None,
        })
    }
}

/// A Redis ACL category (`@read`, `@sortedset`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Category {
    /// `@keyspace`
    Keyspace,
    /// `@read`
    Read,
    /// `@write`
    Write,
    /// `@set`
    Set,
    /// `@sortedset`
    SortedSet,
    /// `@list`
    List,
    /// `@hash`
    Hash,
    /// `@string`
    String,
    /// `@bitmap`
    Bitmap,
    /// `@hyperloglog`
    HyperLogLog,
    /// `@geo`
    Geo,
    /// `@stream`
    Stream,
    /// `@pubsub`
    PubSub,
    /// `@admin`
    Admin,
    /// `@fast`
    Fast,
    /// `@slow`
    Slow,
    /// `@blocking`
    Blocking,
    /// `@dangerous`
    Dangerous,
    /// `@connection`
    Connection,
    /// `@transaction`
    Transaction,
    /// `@scripting`
    Scripting,
}

// === impl Category ===

impl Category {
    /// Every category, in declaration (bit) order.
    pub const ALL: [Category; 21] = [
        Category::Keyspace,
        Category::Read,
        Category::Write,
        Category::Set,
        Category::SortedSet,
        Category::List,
        Category::Hash,
        Category::String,
        Category::Bitmap,
        Category::HyperLogLog,
        Category::Geo,
        Category::Stream,
        Category::PubSub,
        Category::Admin,
        Category::Fast,
        Category::Slow,
        Category::Blocking,
        Category::Dangerous,
        Category::Connection,
        Category::Transaction,
        Category::Scripting,
    ];

    /// The Redis name without `@`, lowercase: `"sortedset"`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Keyspace => "keyspace",
            Category::Read => "read",
            Category::Write => "write",
            Category::Set => "set",
            Category::SortedSet => "sortedset",
            Category::List => "list",
            Category::Hash => "hash",
            Category::String => "string",
            Category::Bitmap => "bitmap",
            Category::HyperLogLog => "hyperloglog",
            Category::Geo => "geo",
            Category::Stream => "stream",
            Category::PubSub => "pubsub",
            Category::Admin => "admin",
            Category::Fast => "fast",
            Category::Slow => "slow",
            Category::Blocking => "blocking",
            Category::Dangerous => "dangerous",
            Category::Connection => "connection",
            Category::Transaction => "transaction",
            Category::Scripting => "scripting",
        }
    }

    /// The category named `name` (without `@`), compared case-insensitively.
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// This category's bit in [`Command::acl_categories`].
    #[inline]
    pub const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A Redis 7.0 key spec: where the search for keys begins and how keys are found from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Where the first key is.
    pub begin: BeginSearch,
    /// How the keys after `begin` are found.
    pub find: FindKeys,
    /// Bitset of [`key_flag`] constants.
    pub flags: u32,
}

/// The `begin_search` part of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginSearch {
    /// The first key is at this argument index.
    Index(i16),
    /// The first key follows `keyword`, searched from `start_from` (negative: from the
    /// end, backwards).
    Keyword {
        /// The keyword, uppercase as Redis reports it (compared case-insensitively).
        keyword: &'static str,
        /// Where the search starts; negative counts from the end and searches backwards.
        start_from: i16,
    },
    /// Redis cannot describe it (`SORT`); a custom key finder applies.
    Unknown,
}

/// The `find_keys` part of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys from the begin index up to `last_key` (relative to it; negative: from the end
    /// of the arguments), every `step`; with a negative `last_key` and a nonzero `limit`,
    /// only the first `1/limit` of the remaining arguments.
    Range {
        /// Last key, relative to the first; negative counts from the end.
        last_key: i16,
        /// Distance between keys.
        step: i16,
        /// When nonzero (and `last_key` is -1), divide the remaining arguments by this.
        limit: i16,
    },
    /// The argument at `keynum_idx` (relative to the begin index) says how many keys follow,
    /// starting `first_key` after the begin index, every `step`.
    KeyNum {
        /// Index of the key count, relative to the begin index.
        keynum_idx: i16,
        /// Index of the first key, relative to the begin index.
        first_key: i16,
        /// Distance between keys.
        step: i16,
    },
    /// Redis cannot describe it (`SORT`).
    Unknown,
}
