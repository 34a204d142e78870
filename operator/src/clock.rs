//! Time, injected: controllers ask a [`Clock`], so tests decide what "now" is.

use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use jiff::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Yields whenever the clock jumps rather than runs: the controllers
    /// then look at everything again, since a requeue timer counts real
    /// time and would not notice. The real clock never jumps.
    fn jumps(&self) -> Option<BoxStream<'static, ()>> {
        None
    }
}

/// The real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
    moved: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ManualClock {
    pub fn at(now: Timestamp) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(now)),
            moved: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    pub fn set(&self, now: Timestamp) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
        self.moved.send_modify(|n| *n += 1);
    }

    pub fn advance(&self, by: std::time::Duration) {
        {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            *now = now
                .checked_add(
                    jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MAX);
        }
        self.moved.send_modify(|n| *n += 1);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jumps(&self) -> Option<BoxStream<'static, ()>> {
        let receiver = self.moved.subscribe();
        Some(Box::pin(futures::stream::unfold(
            receiver,
            |mut receiver| async move {
                receiver.changed().await.ok()?;
                Some(((), receiver))
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_manual_clock_tells_of_each_jump() {
        let clock = ManualClock::at("2026-11-21T03:00:00Z".parse().unwrap());
        let mut jumps = clock.jumps().unwrap();
        clock.advance(std::time::Duration::from_secs(60));
        assert_eq!(jumps.next().await, Some(()));
        assert_eq!(clock.now(), "2026-11-21T03:01:00Z".parse().unwrap());
        assert!(SystemClock.jumps().is_none());
    }
}
