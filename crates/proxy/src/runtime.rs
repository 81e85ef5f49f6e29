//! What a worker's tasks share on its thread: the worker context handed to every session
//! ([`context`]), the timer sessions share for holding replies ([`hold`]), the pool of
//! session buffers ([`buffers`]), the shutdown signal ([`shutdown`]) and the waker
//! registries these are built on ([`wakers`]), and the read cache ([`cache`]).

pub(crate) mod budget;
pub(crate) mod buffers;
pub(crate) mod cache;
pub(crate) mod context;
pub(crate) mod hold;
pub(crate) mod shutdown;
pub(crate) mod tracking;
pub(crate) mod wakers;
