//! A reply computed by a task of its own (a blocking command on a dedicated connection, a
//! transaction step, WAIT): the reply-queue entry waits for it without a deadline, and
//! dropping the entry (the client left) tells the task its result is no longer wanted. Like
//! a node's reply to an op, the reply is charged to the client's output budget when the task
//! sends it and released when the session takes it (or drops it).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::replies;
use crate::runtime::budget::OutputBudget;

/// The sending side a task's work gets: a one-shot sender that charges the reply to the
/// client's budget.
pub(crate) struct TaskTx {
    tx: oneshot::Sender<Bytes>,
    budget: Rc<OutputBudget>,
}

impl TaskTx {
    /// Deliver the final reply; `Err` with it when the entry is gone (the client left).
    pub fn send(self, reply: Bytes) -> Result<(), Bytes> {
        let len = reply.len();
        self.budget.charge(len);
        self.tx
            .send(reply)
            .inspect_err(|_| self.budget.release(len))
    }

    /// Resolves once the entry is gone: the reply is no longer wanted.
    pub async fn closed(&mut self) {
        self.tx.closed().await
    }

    /// Deliver what `work` answers, unless the client leaves first: then `work` is dropped
    /// with everything it holds (connections in use included).
    pub async fn answer(mut self, work: impl Future<Output = Bytes>) {
        let reply = tokio::select! {
            reply = work => reply,
            _ = self.closed() => return,
        };
        let _ = self.send(reply);
    }
}

/// A reply computed by a task of its own; the entry waits for it without a deadline.
pub(crate) struct Task {
    rx: oneshot::Receiver<Bytes>,
    /// The client's budget, which the reply is charged to while it waits.
    budget: Rc<OutputBudget>,
    /// The work may wait without bound (a blocking command): a client that half-closes
    /// gets no reply, and dropping the task releases the connection.
    may_block: bool,
    /// Work not started yet ([`Task::deferred`]).
    deferred: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Task {
    /// Run `work` on the worker; it gets the sender for the final reply and should stop
    /// (dropping what it holds) once `tx.closed()` resolves: the client is gone.
    pub fn spawn<F, Fut>(budget: &Rc<OutputBudget>, work: F) -> Task
    where
        F: FnOnce(TaskTx) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let tx = TaskTx {
            tx,
            budget: Rc::clone(budget),
        };
        tokio::task::spawn_local(work(tx));
        Task {
            rx,
            budget: Rc::clone(budget),
            may_block: true,
            deferred: None,
        }
    }

    /// Like [`Task::spawn`], but `work` starts only when the reply is first asked for
    /// ([`Task::try_take`], [`Task::wait`]). The session asks only the entry at the front of
    /// its reply queue, so the work starts after every earlier request of the client was
    /// answered (WAIT must count replicas only once the client's earlier writes ran).
    pub fn deferred<F, Fut>(budget: &Rc<OutputBudget>, work: F) -> Task
    where
        F: FnOnce(TaskTx) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let tx = TaskTx {
            tx,
            budget: Rc::clone(budget),
        };
        Task {
            rx,
            budget: Rc::clone(budget),
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
    pub fn spawn_bounded<F, Fut>(budget: &Rc<OutputBudget>, work: F) -> Task
    where
        F: FnOnce(TaskTx) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let mut task = Task::spawn(budget, work);
        task.may_block = false;
        task
    }

    /// Whether the work may wait without bound (see [`Task::spawn_bounded`]).
    pub fn may_block(&self) -> bool {
        self.may_block
    }

    /// The reply if it is there.
    pub fn try_take(&mut self) -> Option<Bytes> {
        self.start();
        match self.rx.try_recv() {
            Ok(b) => {
                self.budget.release(b.len());
                Some(b)
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                Some(Bytes::from_static(replies::TASK_ENDED))
            }
        }
    }

    /// Wait for the reply. Cancel-safe.
    pub async fn wait(&mut self) -> Bytes {
        self.start();
        match (&mut self.rx).await {
            Ok(b) => {
                self.budget.release(b.len());
                b
            }
            Err(_) => Bytes::from_static(replies::TASK_ENDED),
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // A reply that arrived and was never taken (the client left) is no longer held.
        if let Ok(b) = self.rx.try_recv() {
            self.budget.release(b.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_reply_is_charged_while_it_waits_and_released_when_taken_or_dropped() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let budget = crate::testing::budget();
                let mut task = Task::spawn(&budget, |tx| async move {
                    let _ = tx.send(Bytes::from(vec![b'x'; 1000]));
                });
                tokio::task::yield_now().await;
                assert_eq!(budget.held(), 1000, "charged when the task sent it");
                assert_eq!(task.try_take().map(|b| b.len()), Some(1000));
                assert_eq!(budget.held(), 0, "released when the session took it");

                let task = Task::spawn(&budget, |tx| async move {
                    let _ = tx.send(Bytes::from(vec![b'y'; 500]));
                });
                tokio::task::yield_now().await;
                assert_eq!(budget.held(), 500);
                drop(task); // the client left with the reply unread
                assert_eq!(budget.held(), 0);

                let task = Task::spawn(&budget, |tx| async move {
                    tokio::task::yield_now().await;
                    assert!(tx.send(Bytes::from_static(b"late")).is_err());
                });
                drop(task); // gone before the reply: never charged
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                assert_eq!(budget.held(), 0);
            })
            .await;
    }
}
