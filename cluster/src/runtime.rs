//! openraft on glommio: an `AsyncRuntime` whose tasks are glommio local tasks (the Raft
//! handle and its core live on one executor — the node's coordinator shard — so openraft's
//! `singlethreaded` feature removes the `Send` bounds), whose timers are glommio timers, and
//! whose one-shot channels and `Instant` are tokio's runtime-agnostic ones (they need no
//! tokio runtime).
//!
//! Learned from openraft's own adapters for other thread-per-core runtimes (monoio,
//! compio); written for glommio.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::{AsyncRuntime, TokioInstant};

/// openraft's runtime: the current glommio executor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GlommioRuntime;

/// A spawned task: glommio's `Task`, which never fails to join (a panicking task takes the
/// executor's thread, and with it the broker, down — see `broker::broker`).
pub struct JoinHandle<T>(Option<glommio::Task<T>>);

/// Never produced: glommio tasks do not report panics through their handle.
#[derive(Debug)]
pub struct JoinError;

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task failed")
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.as_mut() {
            Some(task) => Pin::new(task).poll(cx).map(Ok),
            None => Poll::Ready(Err(JoinError)),
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    /// openraft drops handles of tasks it wants to keep running (tokio semantics); a glommio
    /// task is cancelled when its handle drops, so detach it instead.
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.detach();
        }
    }
}

/// A glommio timer that resolves to `()`.
pub struct Sleep(glommio::timer::Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A future raced against a timer.
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    timer: Sleep,
}

#[derive(Debug)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl<R, F: Future<Output = R>> Future for Timeout<F> {
    type Output = Result<R, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        Pin::new(&mut self.timer).poll(cx).map(|()| Err(Elapsed))
    }
}

fn until(deadline: TokioInstant) -> Duration {
    deadline.saturating_duration_since(TokioInstant::now())
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = TokioInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R>> = Timeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;
    type OneshotSender<T> = openraft::async_runtime::TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + 'static,
        T::Output: 'static,
    {
        JoinHandle(Some(glommio::spawn_local(future)))
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep(glommio::timer::Timer::new(duration))
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep(glommio::timer::Timer::new(until(deadline)))
    }

    fn timeout<R, F: Future<Output = R>>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Timeout { future: Box::pin(future), timer: Self::sleep(duration) }
    }

    fn timeout_at<R, F: Future<Output = R>>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Timeout { future: Box::pin(future), timer: Self::sleep_until(deadline) }
    }

    fn is_panic(_join_error: &Self::JoinError) -> bool {
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::thread_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (openraft::async_runtime::TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use openraft::async_runtime::AsyncOneshotSendExt;

    use super::*;
    use crate::test_util::run;

    #[test]
    fn tasks_timers_timeouts_and_oneshots_work_on_glommio() {
        run(|| async {
            // A dropped handle detaches its task (tokio semantics): the task still runs.
            let ran = Rc::new(Cell::new(false));
            let flag = ran.clone();
            drop(GlommioRuntime::spawn(async move {
                GlommioRuntime::sleep(Duration::from_millis(1)).await;
                flag.set(true);
            }));
            let joined = GlommioRuntime::spawn(async { 7 }).await;
            assert_eq!(joined.ok(), Some(7));
            GlommioRuntime::sleep_until(TokioInstant::now() + Duration::from_millis(20)).await;
            assert!(ran.get(), "the detached task ran");

            let late = GlommioRuntime::timeout(Duration::from_millis(1), std::future::pending::<()>()).await;
            assert!(late.is_err());
            let early = GlommioRuntime::timeout(Duration::from_secs(5), async { 3 }).await;
            assert_eq!(early.ok(), Some(3));

            let (tx, rx) = GlommioRuntime::oneshot();
            let sender = GlommioRuntime::spawn(async move {
                let _ = tx.send(9u32);
            });
            assert_eq!(rx.await.ok(), Some(9));
            assert!(sender.await.is_ok());
        });
    }
}
