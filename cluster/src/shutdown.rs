//! Giving up on a future: when the node stops (`Shutdown`), or when a deadline passes
//! (`within`). Every background loop of a node races its waits against the node's
//! `Shutdown`, so that `ClusterControl::stop` ends them all and releases their sockets.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;

#[derive(Default)]
struct Inner {
    stopped: Cell<bool>,
    event: Event,
}

/// A stop signal shared by a node's tasks; clones share it.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Rc<Inner>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Stops every task waiting on this signal (now and later).
    pub fn trigger(&self) {
        self.inner.stopped.set(true);
        self.inner.event.notify(usize::MAX);
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.stopped.get()
    }

    /// Resolves once the signal is triggered.
    pub async fn wait(&self) {
        loop {
            if self.is_triggered() {
                return;
            }
            let listener = self.inner.event.listen();
            // Triggered between the check and the listen: the notification was missed.
            if self.is_triggered() {
                return;
            }
            listener.await;
        }
    }

    /// `future`'s output, or `None` if the signal is triggered first.
    pub async fn or<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        futures_lite::future::or(async { Some(future.await) }, async {
            self.wait().await;
            None
        })
        .await
    }

    /// Sleeps for `duration`; false if the signal was triggered instead.
    pub async fn sleep(&self, duration: Duration) -> bool {
        self.or(glommio::timer::sleep(duration)).await.is_some()
    }
}

/// `future`'s output, or `None` if `duration` passes first.
pub async fn within<T>(duration: Duration, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(duration).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::run;

    #[test]
    fn trigger_ends_waits_and_sleeps() {
        run(|| async {
            let shutdown = Shutdown::new();
            let waiter = {
                let shutdown = shutdown.clone();
                glommio::spawn_local(async move { shutdown.sleep(Duration::from_secs(600)).await })
            };
            glommio::timer::sleep(Duration::from_millis(5)).await;
            shutdown.trigger();
            assert!(!waiter.await, "the sleep ended by the trigger");
            assert_eq!(shutdown.or(std::future::pending::<()>()).await, None);
            assert_eq!(within(Duration::from_millis(1), std::future::pending::<()>()).await, None);
            assert_eq!(within(Duration::from_secs(5), async { 3 }).await, Some(3));
        });
    }
}
