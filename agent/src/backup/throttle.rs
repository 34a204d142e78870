//! A byte-rate limit shared by all copy threads (`--throttle`).
//!
//! A token bucket with one second of burst: threads take bytes as they read
//! them and sleep when the bucket is empty, so the total read rate stays at
//! the limit however many threads copy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    bytes_per_second: u64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Throttle {
    /// `None` or 0 means no limit.
    pub fn new(bytes_per_second: Option<u64>) -> Option<Throttle> {
        let rate = bytes_per_second.filter(|r| *r > 0)?;
        Some(Throttle {
            bytes_per_second: rate,
            bucket: Mutex::new(Bucket {
                tokens: rate as f64,
                refilled_at: Instant::now(),
            }),
        })
    }

    /// Blocks the calling thread until `bytes` may be read.
    pub fn take(&self, bytes: u64) {
        let wait = {
            let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let rate = self.bytes_per_second as f64;
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
        let throttle = Throttle::new(Some(1_000_000)).unwrap();
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
    fn zero_means_unlimited() {
        assert!(Throttle::new(Some(0)).is_none());
        assert!(Throttle::new(None).is_none());
    }
}
