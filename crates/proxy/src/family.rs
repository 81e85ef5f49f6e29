//! The routing families: one module per way a command is served, each called by
//! `session::dispatch` with a command that passed the arity and auth checks.
//!
//! - [`admin`]: CONFIG SET, SAVE and other node administration on every node, all-or-error;
//! - [`local`]: answered by slotgate itself (PING, HELLO, AUTH, CLIENT, INFO, CLUSTER …);
//! - [`command`]: COMMAND and its subcommands, from the effective table;
//! - [`split`]: multi-key commands split by slot and merged;
//! - [`info`] and [`keyspace`]: INFO, slotgate's sections and the primaries' merged;
//! - [`diagnostics`]: SLOWLOG, LATENCY, COMMANDLOG and CLUSTER SLOT-STATS merged over the
//!   primaries;
//! - [`scan`]: SCAN across the primaries with one cursor;
//! - [`transaction`]: MULTI/EXEC/WATCH on a dedicated connection;
//! - [`pubsub`] and [`shardsub`]: the client's Pub/Sub link and its shard channels;
//! - [`wait`]: WAIT emulated over the replicas of the slots a client wrote;
//! - [`blocking`]: commands that block in Redis, each on a dedicated connection;
//! - [`scripts`]: the script bodies slotgate saw, to repair EVALSHA after NOSCRIPT.
//! - [`restricted_scripts`]: scripts of restricted users, run as their script identity.
//! - [`cache`]: the reads the read cache answers, and the writes that drop what it holds.

pub(crate) mod admin;
pub(crate) mod blocking;
pub(crate) mod cache;
pub(crate) mod command;
pub(crate) mod diagnostics;
pub(crate) mod info;
pub(crate) mod keyspace;
pub(crate) mod local;
pub(crate) mod pubsub;
pub(crate) mod restricted_scripts;
pub(crate) mod scan;
pub(crate) mod scripts;
pub(crate) mod shardsub;
pub(crate) mod split;
pub(crate) mod tracking;
pub(crate) mod transaction;
pub(crate) mod wait;
