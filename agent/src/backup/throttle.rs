//! A byte-rate limit shared by all copy threads (`--throttle`, and the
//! adaptive pacing that moves it).
//!
//! A token bucket with up to one second of burst: threads take bytes as
//! they read them and sleep when the bucket is empty, so the total read rate
//! stays at the limit however many threads copy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Throttle {
    /// Bytes per second; 0: no limit.
    bytes_per_second: AtomicU64,
    /// Adaptive pacing's probe: the copy waits until it is lifted.
    paused: AtomicBool,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Throttle {
    /// A limit that [`Throttle::set_rate`] changes while threads copy;
    /// `None` or 0: no limit for now.
    pub fn adjustable(bytes_per_second: Option<u64>) -> Throttle {
        let rate = bytes_per_second.unwrap_or(0);
        Throttle {
            bytes_per_second: AtomicU64::new(rate),
            paused: AtomicBool::new(false),
            bucket: Mutex::new(Bucket {
                tokens: rate as f64,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// The limit from now on; `None`: no limit.
    pub fn set_rate(&self, bytes_per_second: Option<u64>) {
        let rate = bytes_per_second.filter(|r| *r > 0).unwrap_or(0);
        let was = self.bytes_per_second.swap(rate, Ordering::Relaxed);
        if was != rate {
            // No burst saved up while unlimited; otherwise at most a second
            // of the new rate.
            let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if was == 0 {
                bucket.tokens = 0.0;
            } else {
                let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * was as f64).min(rate as f64);
            }
            bucket.refilled_at = now;
        }
    }

    /// The limit in force; `None`: none.
    pub fn rate(&self) -> Option<u64> {
        Some(self.bytes_per_second.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Holds every copier at its next [`Throttle::take`] until lifted,
    /// whatever the rate.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Blocks the calling thread until `bytes` may be read.
    pub fn take(&self, bytes: u64) {
        while self.paused.load(Ordering::Relaxed) {
            std::thread::sleep(PAUSE_POLL);
        }
        let rate = self.bytes_per_second.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let wait = {
            let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let rate = rate as f64;
            let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
            bucket.refilled_at = now;
            bucket.tokens -= bytes as f64;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-bucket.tokens / rate)
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// How often a paused copier looks whether the pause is lifted.
const PAUSE_POLL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_after_the_first_second_of_burst() {
        let throttle = Throttle::adjustable(Some(1_000_000));
        let start = Instant::now();
        // 1 MB of burst is free, the next 500 KB cost half a second.
        for _ in 0..15 {
            throttle.take(100_000);
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[test]
    fn an_adjustable_limit_follows_its_latest_rate() {
        let throttle = Throttle::adjustable(None);
        let start = Instant::now();
        for _ in 0..100 {
            throttle.take(10_000_000);
        }
        assert!(start.elapsed() < Duration::from_millis(100), "no limit");
        throttle.set_rate(Some(1_000_000));
        let start = Instant::now();
        // No burst carried over from the unlimited time: 500 KB cost ~0.5 s.
        for _ in 0..5 {
            throttle.take(100_000);
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[test]
    fn a_pause_holds_the_copy_until_lifted() {
        let throttle = std::sync::Arc::new(Throttle::adjustable(None));
        throttle.set_paused(true);
        let copier = {
            let throttle = throttle.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                throttle.take(1);
                start.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        throttle.set_paused(false);
        let waited = copier.join().unwrap();
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
    }

    #[test]
    fn zero_means_unlimited() {
        assert_eq!(Throttle::adjustable(Some(0)).rate(), None);
        assert_eq!(Throttle::adjustable(None).rate(), None);
        assert_eq!(Throttle::adjustable(Some(5)).rate(), Some(5));
    }
}
