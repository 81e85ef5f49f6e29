//! Everything between slotgate and the Redis nodes: connecting and authenticating
//! ([`node_client`]), the multiplexed connections every session shares ([`conn`]) and the
//! one-shot channel a request waits on ([`reply_channel`]), the dedicated connections of blocking
//! commands, transactions and Pub/Sub ([`dedicated`]), the slot map and its refresh
//! ([`topology`]), which connection serves a slot ([`routes`]), and the one redirect and
//! retry policy every path to the nodes follows ([`redirect`]).

pub(crate) mod command_table;
pub(crate) mod conn;
pub(crate) mod dedicated;
pub(crate) mod invalidation;
pub(crate) mod node_client;
pub(crate) mod redirect;
pub(crate) mod reply_channel;
pub(crate) mod routes;
pub(crate) mod sentinel;
pub mod topology;
