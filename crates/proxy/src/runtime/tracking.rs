//! `CLIENT TRACKING` for slotgate's clients: which client read which key, and where their
//! invalidations go. The primaries tell slotgate of every change to every key (one
//! broadcast-tracking connection per primary and worker, `upstream::invalidation`); the
//! worker's [`TrackingTable`] turns those reports into invalidations for the clients that
//! asked, as a Redis server would:
//!
//! - default mode: a client is told once about each key it read with a read-only command
//!   while tracking was on; then the key is forgotten for it;
//! - BCAST: a client is told about every changed key under one of its prefixes (every key
//!   without a prefix);
//! - a flush on a primary (FLUSHALL, FLUSHDB) tells every tracking client to drop everything;
//! - where the servers' reports may have been missed (the link to a primary broke, or came
//!   up after a failover or a restart), the keys read from that primary's slots are
//!   invalidated; BCAST clients are told to drop everything when a link breaks, and when it
//!   comes up if they read while it was down.
//!
//! Invalidations go to an [`Inbox`]: the tracking client's own, or that of the client it
//! redirects to (possibly on another worker), drained by that client's session, which writes
//! them in its protocol. An inbox is bounded: when it overflows, its owner is told to drop
//! everything instead (a flush covers every key it missed). The table is bounded too
//! (`limits.max_tracked_keys`): a key forgotten for room is invalidated first.
//!
//! The worker's read cache ([`ReadCache`]) hears the same reports: the table passes each
//! on, and is active (its links run) while the cache is on.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::runtime::cache::ReadCache;
use crate::telemetry::metrics::{Invalidation, Metrics};

/// Messages an inbox holds before it overflows into one flush.
pub(crate) const INBOX_CAPACITY: usize = 256;

/// What a client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalidated {
    /// These keys changed.
    Keys(Vec<Bytes>),
    /// Drop everything (a flush, or state slotgate lost).
    All,
    /// The client tracking redirects to (this id) is gone: `tracking-redir-broken`.
    RedirectBroken(u64),
}

/// Where one client's invalidations are delivered.
#[derive(Debug)]
pub(crate) struct Inbox {
    tx: mpsc::Sender<Invalidated>,
    /// A message was dropped because the inbox was full.
    overflowed: AtomicBool,
}

impl Inbox {
    /// Deliver `msg`; a full inbox turns into a flush at its next read. `false`: the client
    /// is gone.
    pub fn deliver(&self, msg: Invalidated) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The receiving end of a client's inbox, held by its session; unregistered when dropped.
pub(crate) struct InboxRx {
    id: u64,
    rx: mpsc::Receiver<Invalidated>,
    inbox: Arc<Inbox>,
    registry: Arc<Inboxes>,
}

impl InboxRx {
    /// The next message (waits); after an overflow, one [`Invalidated::All`] for everything
    /// dropped and queued since.
    pub async fn next(&mut self) -> Invalidated {
        let msg = match self.rx.recv().await {
            Some(msg) => msg,
            None => return std::future::pending().await, // the registry holds a sender
        };
        self.after_overflow(msg)
    }

    /// The next message if one is there, as [`InboxRx::next`] gives it.
    pub fn try_next(&mut self) -> Option<Invalidated> {
        let msg = self.rx.try_recv().ok()?;
        Some(self.after_overflow(msg))
    }

    fn after_overflow(&mut self, msg: Invalidated) -> Invalidated {
        if self.inbox.overflowed.swap(false, Ordering::AcqRel) {
            while self.rx.try_recv().is_ok() {}
            return Invalidated::All;
        }
        msg
    }

    /// The inbox, to deliver to.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }
}

impl Drop for InboxRx {
    fn drop(&mut self) {
        self.registry.close(self.id, &self.inbox);
    }
}

/// Every client inbox of the process, by client id (a redirect may cross workers).
#[derive(Debug, Default)]
pub(crate) struct Inboxes {
    by_id: Mutex<HashMap<u64, Arc<Inbox>>>,
}

impl Inboxes {
    /// Open client `id`'s inbox.
    pub fn open(self: &Arc<Self>, id: u64) -> InboxRx {
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        let inbox = Arc::new(Inbox {
            tx,
            overflowed: AtomicBool::new(false),
        });
        if let Ok(mut map) = self.by_id.lock() {
            map.insert(id, Arc::clone(&inbox));
        }
        InboxRx {
            id,
            rx,
            inbox,
            registry: Arc::clone(self),
        }
    }

    /// Client `id`'s inbox, when it has one open.
    pub fn get(&self, id: u64) -> Option<Arc<Inbox>> {
        self.by_id.lock().ok()?.get(&id).cloned()
    }

    fn close(&self, id: u64, inbox: &Arc<Inbox>) {
        if let Ok(mut map) = self.by_id.lock() {
            if map.get(&id).is_some_and(|i| Arc::ptr_eq(i, inbox)) {
                map.remove(&id);
            }
        }
    }
}

/// How one tracking client of a worker wants to hear of changes.
pub(crate) struct Subscriber {
    /// Where its invalidations go: its own inbox, or its redirect target's.
    pub to: Arc<Inbox>,
    /// With a redirect: its own inbox, told once when the target is gone (RESP3 clients).
    pub broken_notice: Option<(u64, Arc<Inbox>)>,
    /// Set when the redirect target is gone (`CLIENT TRACKINGINFO`'s `broken_redirect`).
    pub broken: Rc<Cell<bool>>,
    /// BCAST: the prefixes (empty: every key). `None`: default mode (keys it read).
    pub prefixes: Option<Vec<Bytes>>,
    /// BCAST: it read while a link to a primary was down, so it may hold what that primary
    /// changed unreported; told to drop everything when the link comes up.
    pub read_unlinked: bool,
}

/// A worker's tracking state: its tracking clients and the keys they read.
pub(crate) struct TrackingTable {
    inner: RefCell<Inner>,
    metrics: Arc<Metrics>,
    /// The worker's read cache, which the same reports invalidate (`cache.enabled`).
    cache: Option<Rc<ReadCache>>,
}

struct Inner {
    /// Default mode: key → the clients that read it since its last invalidation.
    keys: HashMap<Bytes, Vec<u64>>,
    subscribers: HashMap<u64, Subscriber>,
    max_keys: usize,
}

impl TrackingTable {
    /// An empty table holding at most `max_keys` keys, passing the reports on to `cache`.
    pub fn new(
        max_keys: usize,
        metrics: Arc<Metrics>,
        cache: Option<Rc<ReadCache>>,
    ) -> TrackingTable {
        TrackingTable {
            inner: RefCell::new(Inner {
                keys: HashMap::new(),
                subscribers: HashMap::new(),
                max_keys: max_keys.max(1),
            }),
            metrics,
            cache,
        }
    }

    /// Whether any client of this worker tracks, or the read cache is on (the servers'
    /// reports are wanted).
    pub fn is_active(&self) -> bool {
        self.cache.is_some() || !self.inner.borrow().subscribers.is_empty()
    }

    /// The read cache the reports also go to.
    pub fn cache(&self) -> Option<&Rc<ReadCache>> {
        self.cache.as_ref()
    }

    /// Client `id` tracks from now on, as `sub` says (replacing how it did).
    pub fn subscribe(&self, id: u64, sub: Subscriber) {
        self.inner.borrow_mut().subscribers.insert(id, sub);
    }

    /// Client `id` stops tracking (or left); the keys it read are forgotten for it.
    pub fn unsubscribe(&self, id: u64) {
        let mut inner = self.inner.borrow_mut();
        if inner.subscribers.remove(&id).is_none() {
            return;
        }
        let before = inner.keys.len();
        inner.keys.retain(|_, ids| {
            ids.retain(|&i| i != id);
            !ids.is_empty()
        });
        let gone = before - inner.keys.len();
        self.metrics.tracking_keys(-(gone as i64));
    }

    /// Client `id` (default mode) read `key`: tell it of the key's next change.
    pub fn remember(&self, id: u64, key: &[u8]) {
        let mut inner = self.inner.borrow_mut();
        if let Some(ids) = inner.keys.get_mut(key) {
            if !ids.contains(&id) {
                ids.push(id);
            }
            return;
        }
        if inner.keys.len() >= inner.max_keys {
            // Room for the new key: another is invalidated for its readers and forgotten.
            if let Some(old) = inner.keys.keys().next().cloned() {
                let msgs = inner.take_keys(std::slice::from_ref(&old), &self.metrics);
                drop(inner);
                self.send(msgs, Invalidation::Memory);
                inner = self.inner.borrow_mut();
            }
        }
        inner.keys.insert(Bytes::copy_from_slice(key), vec![id]);
        self.metrics.tracking_keys(1);
    }

    /// A primary reported these keys changed.
    pub fn invalidate(&self, keys: &[Bytes]) {
        if let Some(cache) = &self.cache {
            cache.invalidate(keys);
        }
        let msgs = {
            let mut inner = self.inner.borrow_mut();
            let mut msgs = inner.take_keys(keys, &self.metrics);
            for (&id, sub) in &inner.subscribers {
                let matching = sub.matching(keys);
                if !matching.is_empty() {
                    msgs.entry(id).or_default().extend(matching);
                }
            }
            msgs
        };
        self.send(msgs, Invalidation::Server);
    }

    /// Client `id` sends a write of `keys` through slotgate. The worker's readers of them are
    /// told now, and so is the writer in BCAST mode when a prefix matches — unless it asked
    /// for NOLOOP (then the keys are forgotten for it without a message, as Redis does).
    /// Each hears of it behind the replies it is owed, so the writer's invalidation follows
    /// the write's reply, where Redis writes it. The primary's report comes later, possibly
    /// after the writer's next reply; it tells the other BCAST clients, and anyone who read
    /// the keys again meanwhile (one invalidation more, never one less).
    pub fn wrote(&self, id: u64, keys: &[Bytes], noloop: bool) {
        let msgs = {
            let mut inner = self.inner.borrow_mut();
            if noloop {
                keys.iter().for_each(|k| inner.forget(id, k, &self.metrics));
            }
            let mut msgs = inner.take_keys(keys, &self.metrics);
            if let Some(sub) = inner.subscribers.get(&id).filter(|_| !noloop) {
                let matching = sub.matching(keys);
                if !matching.is_empty() {
                    msgs.entry(id).or_default().extend(matching);
                }
            }
            msgs
        };
        self.send(msgs, Invalidation::OwnWrite);
    }

    /// A primary flushed its data: every tracking client drops everything.
    pub fn flush(&self) {
        if let Some(cache) = &self.cache {
            cache.drop_all(Invalidation::Server);
        }
        self.drop_everything(|_| true, Invalidation::Server, |_| true);
    }

    /// A tracking client of this worker sent FLUSHALL or FLUSHDB: its tracking clients drop
    /// everything now, behind the replies they are owed (the primaries' reports follow).
    pub fn flushed(&self) {
        self.drop_everything(|_| true, Invalidation::OwnWrite, |_| true);
    }

    /// A BCAST client `id` reads while a link is down ([`Subscriber::read_unlinked`]).
    pub fn read_unlinked(&self, id: u64) {
        if let Some(sub) = self.inner.borrow_mut().subscribers.get_mut(&id) {
            sub.read_unlinked = true;
        }
    }

    /// The link to the primary serving the keys for which `owns` is true broke: its reports
    /// may be missed from now on. Their readers are told now, and BCAST clients drop
    /// everything.
    pub fn lost(&self, owns: impl Fn(&[u8]) -> bool) {
        if let Some(cache) = &self.cache {
            cache.set_ready(None);
            cache.drop_all(Invalidation::Topology);
        }
        self.drop_everything(owns, Invalidation::Topology, |s| s.prefixes.is_some());
    }

    /// The link to the primary serving the keys for which `owns` is true is up: what was
    /// read from it while it was down (or before it first came up) is invalidated, and the
    /// BCAST clients that read meanwhile drop everything. With `all_up`, no link is down.
    pub fn linked(&self, owns: impl Fn(&[u8]) -> bool, all_up: bool) {
        if let Some(cache) = &self.cache {
            cache.drop_all(Invalidation::Topology);
        }
        self.drop_everything(owns, Invalidation::Topology, |s| {
            s.prefixes.is_some() && s.read_unlinked
        });
        if all_up {
            let mut inner = self.inner.borrow_mut();
            inner
                .subscribers
                .values_mut()
                .for_each(|s| s.read_unlinked = false);
        }
    }

    /// Invalidate the keys for which `owns` is true for their readers, and tell the
    /// subscribers `everything` picks (every one for a flush) to drop everything.
    fn drop_everything(
        &self,
        owns: impl Fn(&[u8]) -> bool,
        source: Invalidation,
        everything: impl Fn(&Subscriber) -> bool,
    ) {
        let (msgs, all) = {
            let mut inner = self.inner.borrow_mut();
            let lost: Vec<Bytes> = inner.keys.keys().filter(|k| owns(k)).cloned().collect();
            let msgs = inner.take_keys(&lost, &self.metrics);
            let all: Vec<u64> = inner
                .subscribers
                .iter()
                .filter(|(_, s)| everything(s))
                .map(|(&id, _)| id)
                .collect();
            (msgs, all)
        };
        // A flush says "everything" to everyone, so no key list is needed as well.
        let msgs: HashMap<u64, Vec<Bytes>> = msgs
            .into_iter()
            .filter(|(id, _)| !all.contains(id))
            .collect();
        self.send(msgs, source);
        for id in all {
            self.deliver(id, Invalidated::All, source);
        }
    }

    /// Deliver each client's keys in one message.
    fn send(&self, msgs: HashMap<u64, Vec<Bytes>>, source: Invalidation) {
        for (id, keys) in msgs {
            self.deliver(id, Invalidated::Keys(keys), source);
        }
    }

    fn deliver(&self, id: u64, msg: Invalidated, source: Invalidation) {
        let inner = self.inner.borrow();
        let Some(sub) = inner.subscribers.get(&id) else {
            return;
        };
        self.metrics.invalidation(source);
        if sub.to.deliver(msg) || sub.broken.get() {
            return;
        }
        sub.broken.set(true);
        if let Some((target, own)) = &sub.broken_notice {
            own.deliver(Invalidated::RedirectBroken(*target));
        }
    }
}

impl Subscriber {
    /// BCAST: which of `keys` its prefixes cover (none in default mode).
    fn matching(&self, keys: &[Bytes]) -> Vec<Bytes> {
        let Some(prefixes) = &self.prefixes else {
            return Vec::new();
        };
        keys.iter()
            .filter(|k| prefixes.is_empty() || prefixes.iter().any(|p| k.starts_with(p)))
            .cloned()
            .collect()
    }
}

impl Inner {
    /// Remove `keys` from the table: each reader's keys, by reader.
    fn take_keys(&mut self, keys: &[Bytes], metrics: &Metrics) -> HashMap<u64, Vec<Bytes>> {
        let mut msgs: HashMap<u64, Vec<Bytes>> = HashMap::new();
        for key in keys {
            let Some(ids) = self.keys.remove(key) else {
                continue;
            };
            metrics.tracking_keys(-1);
            for id in ids {
                if self.subscribers.contains_key(&id) {
                    msgs.entry(id).or_default().push(key.clone());
                }
            }
        }
        msgs
    }

    /// Client `id` no longer reads `key`, without a message.
    fn forget(&mut self, id: u64, key: &[u8], metrics: &Metrics) {
        let Some(ids) = self.keys.get_mut(key) else {
            return;
        };
        ids.retain(|&i| i != id);
        if ids.is_empty() {
            self.keys.remove(key);
            metrics.tracking_keys(-1);
        }
    }
}

#[cfg(test)]
mod tests;
