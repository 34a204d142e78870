//! Adaptive pacing of the data-file copy: the backup goes as fast as it can
//! while the server's own work does not suffer, and backs off when it does.
//!
//! The signal is what a user of the server feels: the mean latency of its
//! writing statements (INSERT, UPDATE, DELETE, REPLACE, COMMIT), from
//! `performance_schema`'s statement summary, sampled every [`WINDOW`]. That
//! latency grows whether the backup competes for the disk (the commits'
//! fsyncs wait behind our writes) or for the CPU.
//!
//! The controller is additive-increase / multiplicative-decrease around a
//! baseline, the lowest latency seen (the first window is taken before the
//! copy starts, so it is the server's latency without us):
//! - no writing statement in a window: the server is idle; the copy runs
//!   at full speed (or the `--throttle` cap);
//! - the first window with writing statements sets the baseline, and the
//!   copy starts at [`BUSY_START`] rather than full speed: on a busy server
//!   the harm of a full-speed start is done before the first back-off;
//! - latency above [`SLOWDOWN`] × baseline: the rate halves (not below
//!   [`MIN_RATE`], so a backup always finishes);
//! - otherwise the rate grows by a quarter, up to full speed.
//!
//! Without `performance_schema` (or its statement instruments) there is no
//! signal: the copy is not paced, and the backup log says so.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::progress::Progress;
use super::throttle::Throttle;
use crate::mysql::{self, ConnectOptions};

/// How often the server's latency is sampled and the rate set.
pub const WINDOW: Duration = Duration::from_millis(500);
/// Latency this many times the baseline counts as the server suffering.
/// sysbench-like clients wait for each statement, so their throughput
/// falls as 1 / latency: keeping the server at ≥ 0.85 of its throughput
/// means backing off above 1 / 0.85 ≈ 1.18 × the baseline. (At 1.5 the
/// 2G benchmark's default backup cost the server 20% and never backed off.)
pub const SLOWDOWN: f64 = 1.15;
/// The pace a copy starts at on a busy server, bytes per second.
pub const BUSY_START: u64 = 64 << 20;
/// The slowest pace, bytes per second.
pub const MIN_RATE: u64 = 8 << 20;
/// Growth per calm window.
const GROWTH: f64 = 1.25;

/// Totals of the server's writing statements since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatementTotals {
    pub count: u64,
    /// Picoseconds, as performance_schema counts.
    pub wait_ps: u128,
}

/// The controller. Pure: [`Pacer::observe`] takes one window's totals and
/// the bytes copied in it, and gives the rate for the next window.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// `--throttle`, the cap; None: unlimited.
    cap: Option<u64>,
    /// None: full speed (the cap).
    rate: Option<u64>,
    baseline: Option<f64>,
    last: Option<StatementTotals>,
}

impl Pacer {
    pub fn new(cap: Option<u64>) -> Pacer {
        Pacer {
            cap,
            rate: None,
            baseline: None,
            last: None,
        }
    }

    /// The rate in force: bytes per second, None for no limit.
    pub fn rate(&self) -> Option<u64> {
        self.rate.or(self.cap)
    }

    /// The server's latency baseline, seconds per statement.
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }

    /// Takes the totals at the end of a window and the bytes the copy moved
    /// in it (`window` long); returns the rate for the next window.
    pub fn observe(
        &mut self,
        totals: StatementTotals,
        copied: u64,
        window: Duration,
    ) -> Option<u64> {
        let Some(last) = self.last.replace(totals) else {
            return self.rate();
        };
        let count = totals.count.saturating_sub(last.count);
        if count == 0 {
            // Idle server: nothing to protect.
            self.rate = None;
            return self.rate();
        }
        let latency = totals.wait_ps.saturating_sub(last.wait_ps) as f64 / 1e12 / count as f64;
        let Some(baseline) = self.baseline else {
            // The first busy window: the baseline, and a moderate start.
            self.baseline = Some(latency);
            self.rate = match self.cap {
                Some(cap) if cap <= BUSY_START => None,
                _ => Some(BUSY_START),
            };
            return self.rate();
        };
        if latency > baseline * SLOWDOWN {
            // From what we actually moved, when we were not limited.
            let now = self.rate.unwrap_or_else(|| {
                let moved = (copied as f64 / window.as_secs_f64().max(1e-3)) as u64;
                self.cap.map_or(moved, |cap| cap.min(moved))
            });
            self.rate = Some((now / 2).max(MIN_RATE));
        } else {
            self.baseline = Some(baseline.min(latency));
            self.rate = match self.rate {
                None => None,
                Some(rate) => {
                    let grown = (rate as f64 * GROWTH) as u64;
                    match self.cap {
                        Some(cap) if grown >= cap => None,
                        _ => Some(grown),
                    }
                }
            };
        }
        self.rate()
    }
}

/// The server's writing statements, as performance_schema sums them since
/// it started (picoseconds as text: the sum can pass 2^64).
const WRITING_STATEMENTS: &str = "SELECT CAST(SUM(COUNT_STAR) AS CHAR), \
     CAST(SUM(SUM_TIMER_WAIT) AS CHAR) \
     FROM performance_schema.events_statements_summary_global_by_event_name \
     WHERE EVENT_NAME IN ('statement/sql/insert', 'statement/sql/update', \
     'statement/sql/delete', 'statement/sql/replace', 'statement/sql/commit', \
     'statement/sql/insert_select')";

/// How long the server is watched alone before the copy starts, for the
/// baseline: short, since an idle server's backup waits for it too.
const BEFORE_COPY: Duration = Duration::from_millis(150);

async fn statement_totals(conn: &mut Conn) -> Option<StatementTotals> {
    let row: Option<(Option<String>, Option<String>)> =
        conn.query_first(WRITING_STATEMENTS).await.ok()?;
    let (count, wait) = row?;
    Some(StatementTotals {
        count: count?.parse().ok()?,
        wait_ps: wait?.parse().ok()?,
    })
}

/// The pacing task of one copy; stops when dropped.
pub struct Pacing {
    task: tokio::task::JoinHandle<()>,
}

impl Pacing {
    /// Watches the server for a moment (the baseline), then keeps
    /// `throttle` at the pace the server's latency allows while the copy
    /// runs. None when there is nothing to watch (no connection, no
    /// performance_schema): the copy then runs at `cap`.
    pub async fn start(
        connect: &ConnectOptions,
        throttle: Arc<Throttle>,
        progress: Arc<Progress>,
        cap: Option<u64>,
    ) -> Option<Pacing> {
        let mut conn = match mysql::connect(connect).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "adaptive pacing is off: no session to watch the server");
                return None;
            }
        };
        let Some(first) = statement_totals(&mut conn).await else {
            tracing::warn!(
                "adaptive pacing is off: performance_schema's statement summary is not \
                 available (performance_schema=OFF?); the copy runs unpaced"
            );
            return None;
        };
        let mut pacer = Pacer::new(cap);
        pacer.observe(first, 0, BEFORE_COPY);
        tokio::time::sleep(BEFORE_COPY).await;
        let second = statement_totals(&mut conn).await?;
        throttle.set_rate(pacer.observe(second, 0, BEFORE_COPY));
        tracing::info!(baseline_seconds = ?pacer.baseline(), "adaptive pacing on");
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(WINDOW);
            ticker.tick().await;
            let mut copied_before = progress.bytes_done.load(Ordering::Relaxed);
            let mut slowest: Option<u64> = None;
            let mut limited_windows = 0u32;
            loop {
                ticker.tick().await;
                let Some(totals) = statement_totals(&mut conn).await else {
                    throttle.set_rate(cap);
                    return;
                };
                let copied = progress.bytes_done.load(Ordering::Relaxed);
                let rate = pacer.observe(totals, copied - copied_before, WINDOW);
                copied_before = copied;
                if rate != throttle.rate() {
                    tracing::debug!(?rate, "pace");
                }
                if let Some(r) = rate.filter(|_| rate != cap) {
                    limited_windows += 1;
                    slowest = Some(slowest.map_or(r, |s| s.min(r)));
                    if limited_windows.is_power_of_two() {
                        tracing::info!(
                            limited_windows,
                            slowest_bytes_per_second = slowest,
                            "pacing the copy for the server's sake"
                        );
                    }
                }
                throttle.set_rate(rate);
            }
        });
        Some(Pacing { task })
    }
}

impl Drop for Pacing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn at(count: u64, wait_ms: u64) -> StatementTotals {
        StatementTotals {
            count,
            wait_ps: u128::from(wait_ms) * 1_000_000_000,
        }
    }

    #[test]
    fn an_idle_server_gets_full_speed() {
        let mut p = Pacer::new(None);
        assert_eq!(p.observe(at(10, 10), 0, WINDOW), None);
        for _ in 0..5 {
            assert_eq!(p.observe(at(10, 10), 500 * MB, WINDOW), None);
        }
        let mut capped = Pacer::new(Some(100 * MB));
        assert_eq!(capped.observe(at(0, 0), 0, WINDOW), Some(100 * MB));
        assert_eq!(capped.observe(at(0, 0), 50 * MB, WINDOW), Some(100 * MB));
    }

    #[test]
    fn a_busy_server_gets_a_moderate_start_a_slower_one_halves_it_and_a_calm_one_grows_it() {
        let mut p = Pacer::new(None);
        // Before the copy: 100 statements at 1 ms each.
        p.observe(at(0, 0), 0, WINDOW);
        assert_eq!(p.observe(at(100, 100), 0, WINDOW), Some(BUSY_START));
        assert_eq!(p.baseline(), Some(0.001));
        // Latency tripled: halves.
        assert_eq!(
            p.observe(at(200, 400), 32 * MB, WINDOW),
            Some(BUSY_START / 2)
        );
        // 20% slower is already too slow (the server would lose a sixth).
        assert_eq!(
            p.observe(at(300, 520), 16 * MB, WINDOW),
            Some(BUSY_START / 4)
        );
        // Calm: grows by a quarter per window.
        assert_eq!(p.observe(at(400, 620), 8 * MB, WINDOW), Some(20 * MB));
        assert_eq!(p.observe(at(500, 720), 10 * MB, WINDOW), Some(25 * MB));
        // Never below the floor however slow the server gets.
        for n in 0..20 {
            p.observe(at(600 + n * 100, 1000 + n * 1000), MB, WINDOW);
        }
        assert_eq!(p.rate(), Some(MIN_RATE));
    }

    #[test]
    fn the_cap_bounds_the_pace() {
        let mut p = Pacer::new(Some(100 * MB));
        p.observe(at(0, 0), 0, WINDOW);
        assert_eq!(p.observe(at(100, 100), 0, WINDOW), Some(BUSY_START));
        assert_eq!(
            p.observe(at(200, 400), 32 * MB, WINDOW),
            Some(BUSY_START / 2)
        );
        assert_eq!(p.observe(at(300, 500), 16 * MB, WINDOW), Some(40 * MB));
        for n in 0..10 {
            p.observe(at(400 + n * 100, 600 + n * 100), MB, WINDOW);
        }
        assert_eq!(p.rate(), Some(100 * MB));
        // A cap below the busy start is the start.
        let mut low = Pacer::new(Some(10 * MB));
        low.observe(at(0, 0), 0, WINDOW);
        assert_eq!(low.observe(at(100, 100), 0, WINDOW), Some(10 * MB));
        // Slower: half of what moved, within the cap.
        assert_eq!(low.observe(at(200, 400), 5 * MB, WINDOW), Some(8 * MB));
    }
}
