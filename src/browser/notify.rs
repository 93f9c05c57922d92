//! Waking tasks when something they wait for changes, instead of polling on a timer: a task
//! awaits [`Notify::notified`], whoever changes the state calls [`Notify::notify_all`].

use std::cell::RefCell;

use futures_channel::oneshot;

/// Tasks waiting for the next change (one thread: the page's or a worker's).
#[derive(Default)]
pub(crate) struct Notify {
    waiting: RefCell<Vec<oneshot::Sender<()>>>,
}

impl Notify {
    /// Resolves at the next [`Notify::notify_all`] (not at one made before it was called).
    pub fn notified(&self) -> impl Future<Output = ()> + use<> {
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().push(tx);
        async move {
            rx.await.ok();
        }
    }

    /// Wakes every task waiting now.
    pub fn notify_all(&self) {
        for tx in self.waiting.borrow_mut().drain(..) {
            tx.send(()).ok();
        }
    }
}
