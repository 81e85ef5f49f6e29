//! The read cache (`cache:`, `docs/cache.md`): per worker, the nodes' replies to a few
//! read-only, deterministic single-key reads, kept until the key changes. It is only as good
//! as what tells it of changes, so it holds nothing it could not hear about:
//!
//! - the primaries report every changed key (the worker's broadcast-tracking links,
//!   `upstream::invalidation`, through the [`TrackingTable`](crate::runtime::tracking)):
//!   each report drops the key's entries, a flush drops everything, and a lost or new link
//!   drops everything;
//! - slotgate's own writes drop their keys before they are sent, and again when a write that
//!   ran on a connection of its own (a transaction, a blocking command) is answered
//!   ([`WriteGuard`]);
//! - a new slot map that moves a slot to another primary drops everything;
//! - entries live at most `cache.max_ttl`, and the cache holds at most its share of
//!   `cache.max_memory` (approximate LRU: a clock over keys).
//!
//! Nothing is served or filled unless every link is up for the current slot map
//! ([`ReadCache::set_ready`]).
//!
//! # The fill race
//! A miss records a pending fill for its key with a fresh generation before the read is sent
//! ([`ReadCache::lookup`]); any drop of the key (or of everything) meanwhile removes it, and
//! a later miss for the key replaces it. The reply fills the cache only if its generation is
//! still the key's pending one ([`ReadCache::fill`]): a value a change may have overtaken,
//! or that a later read may have superseded, is never stored.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slotgate_cluster::SlotMap;
use tokio::time::Instant;

use crate::config::CacheConfig;
use crate::glob::glob_match;
use crate::telemetry::metrics::{Invalidation, Metrics};

/// Bytes counted per key beyond its name (map slot, entry list, clock place).
const KEY_OVERHEAD: usize = 96;
/// Bytes counted per stored reply beyond the request and the reply.
const ENTRY_OVERHEAD: usize = 64;
/// Keys an expiry sweep looks at per call.
const SWEEP_BATCH: usize = 1024;

/// What a cacheable read finds.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The node's reply, as it was stored.
    Hit(Bytes),
    /// Not stored: send the read and hand its reply to [`ReadCache::fill`] with this ticket.
    Miss(FillTicket),
    /// Not served nor filled now (a link is down, the key does not match `cache.keys`).
    Bypass,
}

/// A pending fill: what was sent, for which key, and its generation.
#[derive(Debug)]
pub(crate) struct FillTicket {
    cache: Rc<ReadCache>,
    key: Bytes,
    request: Bytes,
    tag: u32,
    generation: u64,
}

impl FillTicket {
    /// The read's reply arrived: store it if nothing spoilt the fill.
    pub fn fill(self, reply: &Bytes) {
        self.cache.fill(&self, reply);
    }
}

impl Drop for FillTicket {
    /// A fill that did not happen (the read failed, its client left) is no longer pending.
    fn drop(&mut self) {
        self.cache.forget_pending(self);
    }
}

/// Drops the keys of a write again when it is dropped: a write that ran on a connection of
/// its own, once answered (reads sent meanwhile over the shared connections may have read
/// the value before it and filled the cache with it).
pub(crate) struct WriteGuard {
    cache: Rc<ReadCache>,
    keys: Written,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.cache.own_write(&self.keys);
    }
}

/// The keys a write changes.
#[derive(Debug, Clone)]
pub(crate) enum Written {
    /// These keys.
    Keys(Vec<Bytes>),
    /// Any key (FLUSHALL, a script without declared keys …).
    All,
}

/// One key: the requests stored for it, and its pending fill.
#[derive(Debug, Default)]
struct KeyEntries {
    /// The generation of the miss whose reply may fill, if any.
    pending: Option<u64>,
    /// The stored requests of the key, by table (tag) and request.
    requests: Vec<(u32, Bytes)>,
    /// Bytes counted for the key and its entries.
    bytes: usize,
}

/// One stored reply, in its tag's table under its request.
#[derive(Debug)]
struct Cached {
    /// The node's reply; the same allocation as the table's request key, right after it (a
    /// hit touches one buffer).
    reply: Bytes,
    expires: Instant,
    /// Read since the clock hand last passed.
    referenced: bool,
}

struct Inner {
    /// Per tag (protocol and database): the stored replies by request as sent. A hit is one
    /// lookup here.
    tables: Vec<HashMap<Bytes, Cached>>,
    /// Per key: its entries and pending fill (invalidation, fills, eviction).
    keys: HashMap<Bytes, KeyEntries>,
    /// Keys in fill order (the clock); may hold keys dropped since, skipped when met.
    clock: VecDeque<Bytes>,
    bytes: usize,
    next_generation: u64,
    /// The slot map the entries were read under.
    map: Option<Arc<SlotMap>>,
}

/// A worker's read cache.
pub(crate) struct ReadCache {
    inner: RefCell<Inner>,
    /// The topology generation for which every link is up, when one is.
    ready: Cell<Option<u64>>,
    max_bytes: usize,
    max_ttl: Duration,
    max_value_size: usize,
    /// `cache.keys`; `None` for `*`.
    patterns: Option<Vec<Vec<u8>>>,
    metrics: Arc<Metrics>,
}

impl ReadCache {
    /// An empty cache holding at most `max_bytes` (this worker's share of
    /// `cache.max_memory`).
    pub fn new(cfg: &CacheConfig, max_bytes: usize, metrics: Arc<Metrics>) -> ReadCache {
        let patterns = if cfg.keys.iter().any(|p| p == "*") {
            None
        } else {
            Some(cfg.keys.iter().map(|p| p.as_bytes().to_vec()).collect())
        };
        ReadCache {
            inner: RefCell::new(Inner {
                tables: Vec::new(),
                keys: HashMap::new(),
                clock: VecDeque::new(),
                bytes: 0,
                next_generation: 0,
                map: None,
            }),
            ready: Cell::new(None),
            max_bytes: max_bytes.max(1),
            max_ttl: cfg.max_ttl,
            max_value_size: cfg.max_value_size,
            patterns,
            metrics,
        }
    }

    /// The tag of a request's protocol (2 or 3) and database.
    #[inline]
    pub fn tag(resp3: bool, db: u16) -> u32 {
        (u32::from(db) << 1) | u32::from(resp3)
    }

    /// Look `request` (whose key is `key`) up at `now`, under topology generation `topology`.
    #[inline]
    pub fn lookup(
        self: &Rc<Self>,
        tag: u32,
        key: &[u8],
        request: &Bytes,
        now: Instant,
        topology: u64,
    ) -> Lookup {
        if self.ready.get() != Some(topology) || !self.key_matches(key) {
            return Lookup::Bypass;
        }
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let found = inner
            .tables
            .get_mut(tag as usize)
            .and_then(|t| t.get_mut(&request[..]));
        if let Some(cached) = found {
            if cached.expires > now {
                cached.referenced = true;
                return Lookup::Hit(cached.reply.clone());
            }
            let freed = inner.remove_entry(tag, request, key);
            self.metrics.cache_bytes(-(freed as i64));
            self.metrics.invalidations(Invalidation::Ttl, 1);
        }
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let key = match inner.keys.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => {
                let k = Bytes::copy_from_slice(key);
                let size = k.len() + KEY_OVERHEAD;
                inner.keys.insert(
                    k.clone(),
                    KeyEntries {
                        bytes: size,
                        ..KeyEntries::default()
                    },
                );
                inner.clock.push_back(k.clone());
                inner.bytes += size;
                self.metrics.cache_bytes(size as i64);
                k
            }
        };
        if let Some(entries) = inner.keys.get_mut(&key) {
            entries.pending = Some(generation);
        }
        Lookup::Miss(FillTicket {
            cache: Rc::clone(self),
            key,
            request: request.clone(),
            tag,
            generation,
        })
    }

    fn key_matches(&self, key: &[u8]) -> bool {
        match &self.patterns {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob_match(p, key)),
        }
    }

    /// Store `reply` for `ticket`'s request, unless the fill was spoilt, the cache cannot
    /// vouch for it now, or it is an error or too large.
    fn fill(&self, ticket: &FillTicket, reply: &Bytes) {
        if self.ready.get().is_none()
            || reply.len() > self.max_value_size
            || matches!(reply.first(), Some(b'-' | b'!') | None)
        {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let Some(entries) = inner.keys.get_mut(&ticket.key) else {
            return;
        };
        if entries.pending != Some(ticket.generation) {
            return; // spoilt by a change, or superseded by a later read
        }
        entries.pending = None;
        // Copies, in one buffer: the request's bytes may share a client's read buffer, the
        // reply an upstream one, which stored slices would keep whole (and uncounted).
        let n = ticket.request.len();
        let mut both = Vec::with_capacity(n + reply.len());
        both.extend_from_slice(&ticket.request);
        both.extend_from_slice(reply);
        let both = Bytes::from(both);
        let (request, reply) = (both.slice(..n), both.slice(n..));
        let size = n + reply.len() + ENTRY_OVERHEAD;
        let cached = Cached {
            reply,
            expires: Instant::now() + self.max_ttl,
            referenced: false,
        };
        let tag = ticket.tag as usize;
        if inner.tables.len() <= tag {
            inner.tables.resize_with(tag + 1, HashMap::new);
        }
        let freed = match inner.tables[tag].insert(request.clone(), cached) {
            Some(old) => n + old.reply.len() + ENTRY_OVERHEAD,
            None => {
                entries.requests.push((ticket.tag, request));
                0
            }
        };
        entries.bytes = entries.bytes + size - freed;
        inner.bytes = inner.bytes + size - freed;
        self.metrics.cache_bytes(size as i64 - freed as i64);
        self.evict(inner);
    }

    fn forget_pending(&self, ticket: &FillTicket) {
        let mut inner = self.inner.borrow_mut();
        if let Some(entries) = inner.keys.get_mut(&ticket.key) {
            if entries.pending == Some(ticket.generation) {
                entries.pending = None;
            }
        }
    }

    /// Make room: keys are dropped in clock order, a key read since the hand last passed
    /// gets another round.
    fn evict(&self, inner: &mut Inner) {
        let mut evicted = 0;
        let mut steps = inner.clock.len() * 2 + 1;
        while inner.bytes > self.max_bytes && steps > 0 {
            steps -= 1;
            let Some(key) = inner.clock.pop_front() else {
                break;
            };
            if !inner.keys.contains_key(&key) {
                continue;
            }
            if inner.take_referenced(&key) {
                inner.clock.push_back(key);
                continue;
            }
            let (freed, dropped) = inner.remove_key(&key);
            self.metrics.cache_bytes(-(freed as i64));
            evicted += dropped;
        }
        self.metrics.invalidations(Invalidation::Memory, evicted);
        inner.compact_clock();
    }

    /// The servers reported these keys changed (every database: reports carry no database).
    pub fn invalidate(&self, keys: &[Bytes]) {
        self.drop_keys(keys.iter().map(|k| &k[..]), Invalidation::Server);
    }

    /// A write slotgate forwards changes these keys: dropped before it is sent (and again
    /// when a [`WriteGuard`] ends).
    pub fn own_write(&self, written: &Written) {
        match written {
            Written::Keys(keys) => {
                self.drop_keys(keys.iter().map(|k| &k[..]), Invalidation::OwnWrite)
            }
            Written::All => self.drop_all(Invalidation::OwnWrite),
        }
    }

    /// [`ReadCache::own_write`] again when the guard is dropped (the write was answered).
    pub fn guard(self: &Rc<Self>, written: Written) -> WriteGuard {
        WriteGuard {
            cache: Rc::clone(self),
            keys: written,
        }
    }

    fn drop_keys<'k>(&self, keys: impl Iterator<Item = &'k [u8]>, source: Invalidation) {
        let mut inner = self.inner.borrow_mut();
        let (mut freed, mut dropped) = (0, 0);
        for key in keys {
            let (f, d) = inner.remove_key(key);
            freed += f;
            dropped += d;
        }
        self.metrics.cache_bytes(-(freed as i64));
        self.metrics.invalidations(source, dropped);
    }

    /// Drop every entry and every pending fill.
    pub fn drop_all(&self, source: Invalidation) {
        let mut inner = self.inner.borrow_mut();
        let dropped: u64 = inner.tables.iter().map(|t| t.len() as u64).sum();
        self.metrics.cache_bytes(-(inner.bytes as i64));
        inner.tables.iter_mut().for_each(HashMap::clear);
        inner.keys.clear();
        inner.clock.clear();
        inner.bytes = 0;
        self.metrics.invalidations(source, dropped);
    }

    /// Whether every link reports changes for the map of topology generation `generation`
    /// (`None`: not all do). Losing readiness drops nothing by itself: the link that broke
    /// drops everything ([`ReadCache::drop_all`]).
    pub fn set_ready(&self, generation: Option<u64>) {
        self.ready.set(generation);
    }

    /// Whether the links were all up for an older slot map than generation `topology`:
    /// following the new map now (rather than at the worker's next periodic step) may make
    /// the cache usable again at once.
    #[inline]
    pub fn lags(&self, topology: u64) -> bool {
        self.ready.get().is_some_and(|g| g != topology)
    }

    /// The slot map is now `map`: when a slot has another primary, everything is dropped
    /// (what the new primary changed before its link was up went unreported).
    pub fn follow_map(&self, map: &Arc<SlotMap>) {
        let moved = {
            let mut inner = self.inner.borrow_mut();
            let moved = match &inner.map {
                Some(old) if Arc::ptr_eq(old, map) => return,
                Some(old) => (0..slotgate_cluster::SLOT_COUNT as u16)
                    .any(|s| old.primary_for_slot(s) != map.primary_for_slot(s)),
                None => false,
            };
            inner.map = Some(Arc::clone(map));
            moved
        };
        if moved {
            self.drop_all(Invalidation::Topology);
        }
    }

    /// Drop entries past their time to live: a bounded step around the clock (the worker
    /// calls it a few times a second; a hit checks the time to live itself).
    pub fn sweep(&self, now: Instant) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let (mut freed, mut expired) = (0, 0);
        for _ in 0..SWEEP_BATCH.min(inner.clock.len()) {
            let Some(key) = inner.clock.pop_front() else {
                break;
            };
            let Some(entries) = inner.keys.get(&key) else {
                continue;
            };
            let stale: Vec<(u32, Bytes)> = entries
                .requests
                .iter()
                .filter(|(tag, request)| {
                    inner.tables[*tag as usize]
                        .get(request)
                        .is_none_or(|c| c.expires <= now)
                })
                .cloned()
                .collect();
            for (tag, request) in &stale {
                freed += inner.remove_entry(*tag, request, &key);
                expired += 1;
            }
            match inner.keys.get(&key) {
                Some(e) if e.requests.is_empty() && e.pending.is_none() => {
                    freed += inner.remove_key(&key).0;
                }
                Some(_) => inner.clock.push_back(key),
                None => {}
            }
        }
        self.metrics.cache_bytes(-(freed as i64));
        self.metrics.invalidations(Invalidation::Ttl, expired);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.borrow().bytes
    }

    /// Keys with entries or a pending fill.
    #[cfg(test)]
    pub fn key_count(&self) -> usize {
        self.inner.borrow().keys.len()
    }
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Remove `key` with its entries and pending fill: the bytes freed and the entries
    /// dropped.
    fn remove_key(&mut self, key: &[u8]) -> (usize, u64) {
        let Some(gone) = self.keys.remove(key) else {
            return (0, 0);
        };
        for (tag, request) in &gone.requests {
            if let Some(t) = self.tables.get_mut(*tag as usize) {
                t.remove(request);
            }
        }
        self.bytes -= gone.bytes;
        (gone.bytes, gone.requests.len() as u64)
    }

    /// Remove one entry of `key`; the bytes freed.
    fn remove_entry(&mut self, tag: u32, request: &[u8], key: &[u8]) -> usize {
        let Some(gone) = self
            .tables
            .get_mut(tag as usize)
            .and_then(|t| t.remove(request))
        else {
            return 0;
        };
        let size = request.len() + gone.reply.len() + ENTRY_OVERHEAD;
        if let Some(entries) = self.keys.get_mut(key) {
            entries
                .requests
                .retain(|(t, r)| !(*t == tag && r[..] == request[..]));
            entries.bytes -= size;
        }
        self.bytes -= size;
        size
    }

    /// Whether an entry of `key` was read since the clock hand last passed (the marks are
    /// cleared).
    fn take_referenced(&mut self, key: &[u8]) -> bool {
        let Some(entries) = self.keys.get(key) else {
            return false;
        };
        let mut any = false;
        for (tag, request) in &entries.requests {
            if let Some(c) = self
                .tables
                .get_mut(*tag as usize)
                .and_then(|t| t.get_mut(request))
            {
                any |= std::mem::take(&mut c.referenced);
            }
        }
        any
    }

    /// Rebuild the clock when most of its places name dropped keys.
    fn compact_clock(&mut self) {
        if self.clock.len() > self.keys.len() * 2 + 1024 {
            self.clock = self.keys.keys().cloned().collect();
        }
    }
}

#[cfg(test)]
mod tests;
