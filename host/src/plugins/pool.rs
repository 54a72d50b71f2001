//! The instances of one plugin: at most `max_instances` serving calls at
//! once, at most `max_calls_in_flight` calls waiting or running, and the
//! idle instances kept for the next call.

use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};

/// Why a call got no instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// `max_calls_in_flight` calls are already waiting or running.
    Busy,
    /// No instance became free by the deadline.
    TimedOut,
}

/// A pool of instances (`T`).
#[derive(Debug)]
pub(super) struct Pool<T> {
    /// Instances not serving a call. A call takes one, or starts one if
    /// there is none, and puts it back after; one that failed is dropped
    /// instead.
    idle: Mutex<Vec<T>>,
    /// One permit for each instance that may serve a call at once.
    instances: Semaphore,
    /// Bounds the calls waiting for or running in an instance.
    in_flight: Semaphore,
}

/// The right to run one call: a place among the calls in flight and one of
/// the instances. Dropping it gives both back.
#[derive(Debug)]
pub(super) struct Slot<'a, T> {
    pool: &'a Pool<T>,
    _in_flight: SemaphorePermit<'a>,
    _instance: SemaphorePermit<'a>,
}

impl<T> Pool<T> {
    /// A pool holding `idle`, for `max_instances` instances and
    /// `max_in_flight` calls at once.
    pub(super) fn new(idle: Vec<T>, max_instances: usize, max_in_flight: usize) -> Self {
        Self {
            idle: Mutex::new(idle),
            instances: Semaphore::new(max_instances),
            in_flight: Semaphore::new(max_in_flight),
        }
    }

    /// A slot for one call: refused at once when the calls in flight are
    /// at their bound, and after waiting until `deadline` for an instance
    /// when every one is serving.
    pub(super) async fn enter(&self, deadline: Instant) -> Result<Slot<'_, T>, Refused> {
        let in_flight = self.in_flight.try_acquire().map_err(|_| Refused::Busy)?;
        // A free instance is taken at once; only a wait needs the timer.
        let instance = match self.instances.try_acquire() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout_at(deadline.into(), self.instances.acquire())
                .await
                .map_err(|_| Refused::TimedOut)?
                .unwrap_or_else(|_| unreachable!("the semaphore of instances is never closed")),
        };
        Ok(Slot {
            pool: self,
            _in_flight: in_flight,
            _instance: instance,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // Pushing and popping whole instances cannot leave the list
        // half-updated.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the idle instances.
    pub(super) fn clear_idle(&self) {
        let dropped = std::mem::take(&mut *self.idle());
        drop(dropped);
    }

    /// How many instances are idle.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

impl<T> Slot<'_, T> {
    /// An idle instance, if there is one; else the caller starts one.
    pub(super) fn take_idle(&mut self) -> Option<T> {
        self.pool.idle().pop()
    }

    /// Keeps `instance` for the next call.
    pub(super) fn put_back(&self, instance: T) {
        self.pool.idle().push(instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn an_idle_instance_is_reused_and_a_failed_one_is_not() {
        let pool = Pool::new(vec![1], 1, 4);
        let mut slot = pool.enter(soon(100)).await.unwrap();
        let instance = slot.take_idle().unwrap();
        assert_eq!(slot.take_idle(), None, "the only instance is taken");
        slot.put_back(instance);
        drop(slot);
        assert_eq!(pool.idle_count(), 1);
        let mut slot = pool.enter(soon(100)).await.unwrap();
        // This call's instance fails: it is dropped, not put back.
        assert_eq!(slot.take_idle(), Some(1));
        drop(slot);
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_call_waits_for_an_instance_until_its_deadline() {
        let pool = Pool::new(vec![(), ()], 2, 8);
        let first = pool.enter(soon(100)).await.unwrap();
        let second = pool.enter(soon(100)).await.unwrap();
        // Both instances serve: a third call waits, and times out.
        assert!(matches!(pool.enter(soon(50)).await, Err(Refused::TimedOut)));
        // Once one is free, a waiting call gets it.
        let waiter = pool.enter(soon(5_000));
        let release = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(first);
        };
        let (slot, ()) = tokio::join!(waiter, release);
        assert!(slot.is_ok());
        drop(second);
    }

    #[tokio::test]
    async fn calls_over_the_in_flight_bound_are_refused_at_once() {
        let pool = Pool::new(vec![()], 1, 2);
        let _serving = pool.enter(soon(100)).await.unwrap();
        // One call waits for the instance, counted in flight...
        let waiting = pool.enter(soon(5_000));
        tokio::pin!(waiting);
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "the second call waits"
        );
        // ...so a third is refused without waiting.
        let started = Instant::now();
        assert!(matches!(pool.enter(soon(5_000)).await, Err(Refused::Busy)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
