//! Local sockets' readiness, heard by the loop itself. Each open connection has a waker per
//! direction, handed to the runtime's reactor when the connection waits; the reactor's wake
//! notes the connection in [`Woken`] and wakes the loop's task, which then polls only the
//! connections it was told of. No task and no channel stand between a socket that became
//! readable and the loop that reads it.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use burrow_core::forward::ConnId;

use crate::runtime::Direction;

/// The connections whose readiness the reactor reported since the loop last looked, and the
/// loop's waker.
#[derive(Debug, Default)]
pub(crate) struct Woken {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// In the order they woke; a connection may appear more than once, or after it closed.
    woken: Vec<(ConnId, Direction)>,
    /// The loop's task, while it waits.
    waiting: Option<Waker>,
}

impl Woken {
    /// An empty list.
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The waker for `conn`'s readiness in `direction`.
    pub(crate) fn waker(self: &Arc<Self>, conn: ConnId, direction: Direction) -> Waker {
        Waker::from(Arc::new(ConnWaker {
            conn,
            direction,
            woken: self.clone(),
        }))
    }

    /// Moves the woken connections to `into` (Ready), or keeps `cx`'s waker to wake when one
    /// is (Pending).
    pub(crate) fn poll(&self, cx: &Context<'_>, into: &mut Vec<(ConnId, Direction)>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.woken.is_empty() {
            match &inner.waiting {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.waiting = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        into.append(&mut inner.woken);
        Poll::Ready(())
    }

    /// Moves the woken connections to `into`, without waiting; whether there were any.
    pub(crate) fn take(&self, into: &mut Vec<(ConnId, Direction)>) -> bool {
        let mut inner = self.lock();
        let any = !inner.woken.is_empty();
        into.append(&mut inner.woken);
        any
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned list is still a list.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's waker in one direction.
struct ConnWaker {
    conn: ConnId,
    direction: Direction,
    woken: Arc<Woken>,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waiting = {
            let mut inner = self.woken.lock();
            inner.woken.push((self.conn, self.direction));
            inner.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A connection's wake reaches the waiting loop once, and the loop then sees every
    /// connection woken since, in order; with none woken it waits again.
    #[test]
    fn wakes_the_loop_and_lists_the_woken_connections() {
        let woken = Woken::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let loop_waker = Waker::from(count.clone());
        let cx = Context::from_waker(&loop_waker);
        let mut got = Vec::new();
        assert!(woken.poll(&cx, &mut got).is_pending());
        let (a, b) = (ConnId(1), ConnId(2));
        woken.waker(a, Direction::Read).wake();
        woken.waker(b, Direction::Write).wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the loop is woken once");
        assert!(woken.poll(&cx, &mut got).is_ready());
        assert_eq!(got, [(a, Direction::Read), (b, Direction::Write)]);
        got.clear();
        assert!(!woken.take(&mut got), "none woken since");
        woken.waker(b, Direction::Read).wake();
        assert!(woken.take(&mut got));
        assert_eq!(got, [(b, Direction::Read)]);
        got.clear();
        assert!(woken.poll(&cx, &mut got).is_pending());
        assert!(got.is_empty());
        woken.waker(a, Direction::Write).wake();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "waiting again, woken again"
        );
    }
}
