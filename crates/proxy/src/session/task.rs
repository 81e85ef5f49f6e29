//! A reply computed by a task of its own (a blocking command on a dedicated connection, a
//! transaction step, WAIT): the reply-queue entry waits for it without a deadline, and
//! dropping the entry (the client left) tells the task its result is no longer wanted.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::replies;

/// A reply computed by a task of its own; the entry waits for it without a deadline.
pub(crate) struct Task {
    rx: oneshot::Receiver<Bytes>,
    /// The work may wait without bound (a blocking command): a client that half-closes
    /// gets no reply, and dropping the task releases the connection.
    may_block: bool,
    /// Work not started yet ([`Task::deferred`]).
    deferred: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Task {
    /// Run `work` on the worker; it gets the sender for the final reply and should stop
    /// (dropping what it holds) once `tx.closed()` resolves: the client is gone.
    pub fn spawn<F, Fut>(work: F) -> Task
    where
        F: FnOnce(oneshot::Sender<Bytes>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        tokio::task::spawn_local(work(tx));
        Task {
            rx,
            may_block: true,
            deferred: None,
        }
    }

    /// Like [`Task::spawn`], but `work` starts only when the reply is first asked for
    /// ([`Task::try_take`], [`Task::wait`]). The session asks only the entry at the front of
    /// its reply queue, so the work starts after every earlier request of the client was
    /// answered (WAIT must count replicas only once the client's earlier writes ran).
    pub fn deferred<F, Fut>(work: F) -> Task
    where
        F: FnOnce(oneshot::Sender<Bytes>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        Task {
            rx,
            may_block: true,
            deferred: Some(Box::pin(work(tx))),
        }
    }

    /// Start deferred work, once.
    fn start(&mut self) {
        if let Some(work) = self.deferred.take() {
            tokio::task::spawn_local(work);
        }
    }

    /// [`Task::spawn`] for work that ends within deadlines of its own (a transaction
    /// step): its reply is still written after the client half-closes.
    pub fn spawn_bounded<F, Fut>(work: F) -> Task
    where
        F: FnOnce(oneshot::Sender<Bytes>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        Task {
            may_block: false,
            ..Task::spawn(work)
        }
    }

    /// Whether the work may wait without bound (see [`Task::spawn_bounded`]).
    pub fn may_block(&self) -> bool {
        self.may_block
    }

    /// The reply if it is there.
    pub fn try_take(&mut self) -> Option<Bytes> {
        self.start();
        match self.rx.try_recv() {
            Ok(b) => Some(b),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                Some(Bytes::from_static(replies::TASK_ENDED))
            }
        }
    }

    /// Wait for the reply. Cancel-safe.
    pub async fn wait(&mut self) -> Bytes {
        self.start();
        (&mut self.rx)
            .await
            .unwrap_or_else(|_| Bytes::from_static(replies::TASK_ENDED))
    }
}
