//! What slotgate knows about one client connection: who it is (id, name, address, the user
//! it authenticated as), which protocol it speaks, and the state of its stateful families
//! (MULTI queue, Pub/Sub link, the slots WAIT counts). Owned by the session; the routing
//! families read and change it through `&mut ClientState`.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::auth::users::ClientAuth;
use crate::family::pubsub::PubSub;
use crate::family::tracking::TrackingState;
use crate::family::transaction::TxState;
use crate::family::wait::WrittenSlots;
use crate::protocol::{Dialect, Protocol};
use crate::runtime::budget::OutputBudget;

/// What the proxy knows about one client connection.
pub(crate) struct ClientState {
    /// Unique per process, as CLIENT ID reports it.
    pub id: u64,
    /// Set by CLIENT SETNAME / HELLO SETNAME.
    pub name: Option<Bytes>,
    /// RESP2 until `HELLO 3`.
    pub proto: Protocol,
    /// The database `SELECT` chose (standalone and sentinel modes; 0 in a cluster).
    pub db: u16,
    /// `CLIENT REPLY`: whether the client gets its replies.
    pub replies: Replies,
    /// The client's address.
    pub peer: SocketAddr,
    /// The proxy's address on this connection.
    pub local: SocketAddr,
    /// When the connection was accepted.
    pub created: Instant,
    /// Who the client authenticated as; `None` when no users are configured (then the auth
    /// gate is one branch).
    pub auth: Option<ClientAuth>,
    /// MULTI queue and WATCH connection (see `transaction`).
    pub transaction: TxState,
    /// The Pub/Sub link, once the client used SUBSCRIBE and friends (see `pubsub`).
    pub pubsub: Option<PubSub>,
    /// `CLIENT TRACKING` and its invalidation inbox, once used (see `tracking`).
    pub tracking: Option<Box<TrackingState>>,
    /// Its reads go to primaries only (it tracks keys; see [`Dialect::primary_reads`]).
    pub primary_reads: bool,
    /// The slots this connection's writes went to, for WAIT (see `wait`).
    pub writes: WrittenSlots,
    /// The last command found by name (see [`slotgate_commands::LookupCache`]).
    pub lookup: slotgate_commands::LookupCache,
    /// What slotgate holds for the client: its replies are charged to it (see
    /// `runtime::budget`).
    pub budget: Rc<OutputBudget>,
}

/// `CLIENT REPLY ON|OFF|SKIP`: which replies the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replies {
    /// Every reply (the default).
    On,
    /// None.
    Off,
    /// None for the `CLIENT REPLY SKIP` that set it, nor for the command after it.
    SkipThisAndNext,
    /// None for the next command, then every reply again.
    SkipNext,
}

impl Replies {
    /// Whether the reply of the command just routed is dropped (the commands are routed in
    /// order, so the mode it was routed under is the one that applies); moves a skip on.
    pub fn mute_this(&mut self) -> bool {
        match *self {
            Replies::On => false,
            Replies::Off => true,
            Replies::SkipThisAndNext => {
                *self = Replies::SkipNext;
                true
            }
            Replies::SkipNext => {
                *self = Replies::On;
                true
            }
        }
    }
}

impl ClientState {
    /// A new connection's state: RESP2, no name, nothing queued or subscribed.
    pub fn new(
        id: u64,
        peer: SocketAddr,
        local: SocketAddr,
        auth: Option<ClientAuth>,
        budget: Rc<OutputBudget>,
    ) -> ClientState {
        ClientState {
            id,
            name: None,
            proto: Protocol::Resp2,
            db: 0,
            replies: Replies::On,
            peer,
            local,
            created: Instant::now(),
            auth,
            transaction: TxState::default(),
            pubsub: None,
            tracking: None,
            primary_reads: false,
            writes: Default::default(),
            lookup: Default::default(),
            budget,
        }
    }

    /// Whether commands may run: no users configured, or AUTH succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.auth.as_ref().is_none_or(|a| a.user().is_some())
    }

    /// The user name `ACL WHOAMI` and `CLIENT INFO` report (`default` without users).
    pub fn user_name(&self) -> &str {
        self.auth
            .as_ref()
            .and_then(|a| a.user())
            .map_or(crate::auth::users::DEFAULT_USER, |u| u.name.as_str())
    }

    /// How its commands travel to the nodes: its protocol and database.
    #[inline]
    pub fn dialect(&self) -> Dialect {
        Dialect {
            proto: self.proto,
            db: self.db,
            primary_reads: self.primary_reads,
        }
    }

    /// A `CLIENT INFO` line in Redis's format (the fields that mean something here).
    pub fn info_line(&self) -> String {
        let name = self
            .name
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle=0 flags=N db={} sub=0 psub=0 ssub=0 multi={} user={} redir=-1 resp={}\n",
            self.id,
            self.peer,
            self.local,
            name,
            self.created.elapsed().as_secs(),
            self.db,
            self.transaction.queued_count(),
            self.user_name(),
            self.proto.version()
        )
    }
}
