//! A byte-rate limit shared by all copy threads (`--throttle`, and the
//! adaptive pacing that moves it).
//!
//! A token bucket with up to one second of burst: threads take bytes as
//! they read them and sleep when the bucket is empty, so the total read rate
//! stays at the limit however many threads copy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Throttle {
    /// Bytes per second; 0: no limit.
    bytes_per_second: AtomicU64,
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

    /// Blocks the calling thread until `bytes` may be read.
    pub fn take(&self, bytes: u64) {
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
    fn zero_means_unlimited() {
        assert_eq!(Throttle::adjustable(Some(0)).rate(), None);
        assert_eq!(Throttle::adjustable(None).rate(), None);
        assert_eq!(Throttle::adjustable(Some(5)).rate(), Some(5));
    }
}
