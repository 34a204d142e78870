//! Adaptive pacing of the data-file copy: the backup goes as fast as it can
//! while the server's own work does not suffer, and backs off when it does.
//!
//! The signal is what a user of the server feels: the mean latency of its
//! writing statements (INSERT, UPDATE, DELETE, REPLACE, COMMIT) and of its
//! prepared statements' executions, from `performance_schema`'s statement
//! summary, sampled every [`WINDOW`]. That latency grows whether the
//! backup competes for the disk (the commits' fsyncs wait behind our
//! writes) or for the CPU. Prepared statements count because most
//! application drivers (JDBC with server-side statements, Go's
//! database/sql, sysbench) send every write as `COM_STMT_EXECUTE`, which
//! the summary files under `statement/com/Execute`, not under the SQL
//! command.
//!
//! The controller is additive-increase / multiplicative-decrease around a
//! baseline: the server's latency while the copy is paused. The copy
//! starts only after one sample of the server alone, and on a busy server
//! it pauses for one window every [`PROBE_EVERY`] windows to measure it
//! again. A baseline that is measured, never the lowest latency ever seen,
//! follows the workload as it changes and cannot drift below what the
//! server does without us (a minimum of noisy windows does, and then every
//! window looks slow and the copy crawls at the floor):
//! - no statement finished in a window and none running: the server is
//!   idle; the copy runs at full speed (or the `--throttle` cap), and
//!   pauses for nothing;
//! - none finished but some still running, on a server that was busy: the
//!   server is stalled (its clients wait longer than a whole window, most
//!   likely behind our I/O), which counts as suffering;
//! - the first busy window (the server had been idle, or the copy just
//!   started): the copy goes at most at [`BUSY_START`] and the next window
//!   is a probe, so the baseline is the server's alone;
//! - latency above [`SLOWDOWN`] × baseline: the rate halves (not below
//!   [`MIN_RATE`], so a backup always finishes);
//! - at most [`CALM`] × baseline: the rate grows by a quarter, up to full
//!   speed; in between it holds.
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
/// Latency at most this many times the baseline lets the copy speed up;
/// between it and [`SLOWDOWN`] the pace holds, so noise around the
/// baseline neither speeds the copy up nor slows it down.
pub const CALM: f64 = 1.05;
/// The pace a copy starts at on a busy server, bytes per second.
pub const BUSY_START: u64 = 64 << 20;
/// The slowest pace, bytes per second.
pub const MIN_RATE: u64 = 8 << 20;
/// Growth per calm window.
const GROWTH: f64 = 1.25;
/// On a busy server, one window in this many is a probe (the copy paused,
/// the server's own latency measured): a backup under load takes about
/// 1/PROBE_EVERY longer for a baseline that stays true.
pub const PROBE_EVERY: u32 = 10;

/// A copy of at most this many bytes is not paced: the pacer would let it
/// through in its first busy window anyway, and watching the server alone
/// first ([`BEFORE_COPY`]) would cost a small copy (an incremental of a few
/// changed pages) more than the copy itself.
pub const SMALL_COPY: u64 = BUSY_START / 2;

/// Whether a copy reading `bytes` is paced at all ([`SMALL_COPY`]).
pub fn worth_pacing(bytes: u64) -> bool {
    bytes > SMALL_COPY
}

/// Totals of the server's writing statements since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatementTotals {
    pub count: u64,
    /// Picoseconds, as performance_schema counts.
    pub wait_ps: u128,
    /// Statements of other sessions running at the moment of the sample
    /// (any kind: a stalled server's clients wait in whatever they sent).
    pub in_flight: u64,
}

/// The controller. Pure: [`Pacer::observe`] takes one window's totals and
/// the bytes copied in it, and gives the rate for the next window;
/// [`Pacer::probing`] says whether that window is a probe.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// `--throttle`, the cap; None: unlimited.
    cap: Option<u64>,
    /// None: full speed (the cap).
    rate: Option<u64>,
    /// Seconds per statement in the last probe.
    baseline: Option<f64>,
    last: Option<StatementTotals>,
    /// The coming window is a probe: the copy is paused.
    probing: bool,
    /// Windows of copying on a busy server since the last probe.
    since_probe: u32,
}

impl Pacer {
    /// A pacer whose first window is a probe: it is taken before the copy
    /// starts.
    pub fn new(cap: Option<u64>) -> Pacer {
        Pacer {
            cap,
            rate: None,
            baseline: None,
            last: None,
            probing: true,
            since_probe: 0,
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

    /// Whether the coming window is a probe, with the copy paused.
    pub fn probing(&self) -> bool {
        self.probing
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
        let was_probe = std::mem::replace(&mut self.probing, false);
        let count = totals.count.saturating_sub(last.count);
        if count == 0 {
            if totals.in_flight == 0 {
                // Idle server: nothing to protect, nothing to measure.
                self.rate = None;
                self.baseline = None;
            } else if self.baseline.is_some() && !was_probe {
                // A busy server where nothing finished in a whole window:
                // stalled, the worst kind of suffering.
                self.back_off(copied, window);
            }
            // (Running statements on a server never seen busy, such as
            // one long query, or a probe in which nothing finished without
            // us either: the pace and the baseline are kept as they are.)
            self.since_probe = 0;
            return self.rate();
        }
        let latency = totals.wait_ps.saturating_sub(last.wait_ps) as f64 / 1e12 / count as f64;
        if was_probe {
            self.baseline = Some(latency);
            self.since_probe = 0;
            if self.rate.is_none() {
                self.rate = self.busy_start();
            }
            return self.rate();
        }
        let Some(baseline) = self.baseline else {
            // Busy, measured with the copy running: slow down and measure
            // the server alone in the next window.
            self.rate = self.busy_start();
            self.probing = true;
            return self.rate();
        };
        if latency > baseline * SLOWDOWN {
            self.back_off(copied, window);
        } else if latency <= baseline * CALM {
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
        self.since_probe += 1;
        if self.since_probe >= PROBE_EVERY {
            self.probing = true;
        }
        self.rate()
    }

    /// [`BUSY_START`] within the cap (None: the cap is lower).
    fn busy_start(&self) -> Option<u64> {
        match self.cap {
            Some(cap) if cap <= BUSY_START => None,
            _ => Some(BUSY_START),
        }
    }

    /// Halves the pace (not below [`MIN_RATE`]), from what the copy
    /// actually moved in the window when it was not limited.
    fn back_off(&mut self, copied: u64, window: Duration) {
        let now = self.rate.unwrap_or_else(|| {
            let moved = (copied as f64 / window.as_secs_f64().max(1e-3)) as u64;
            self.cap.map_or(moved, |cap| cap.min(moved))
        });
        self.rate = Some((now / 2).max(MIN_RATE));
    }
}

/// The server's writing statements and prepared-statement executions, as
/// performance_schema sums them since it started (picoseconds as text: the
/// sum can pass 2^64), and how many statements other sessions are running
/// now (`events_statements_current`, on by default; without it the count is
/// 0 and a stall looks idle, as before this signal existed).
///
/// The agent's own sessions (named by their `program_name` attribute) are
/// not the server's load: a running statement of theirs (the backup lock
/// waiting, the redo consumer advancing) is not counted in flight, and
/// they send none of the counted statements.
static WRITING_STATEMENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT CAST(SUM(COUNT_STAR) AS CHAR), \
         CAST(SUM(SUM_TIMER_WAIT) AS CHAR), \
         (SELECT CAST(COUNT(*) AS CHAR) FROM performance_schema.events_statements_current \
          WHERE END_EVENT_ID IS NULL AND THREAD_ID <> PS_CURRENT_THREAD_ID() \
          AND THREAD_ID NOT IN (SELECT t.THREAD_ID FROM performance_schema.threads t \
           JOIN performance_schema.session_connect_attrs a ON a.PROCESSLIST_ID = t.PROCESSLIST_ID \
           WHERE a.ATTR_NAME = 'program_name' AND a.ATTR_VALUE = '{}')) \
         FROM performance_schema.events_statements_summary_global_by_event_name \
         WHERE EVENT_NAME IN ('statement/sql/insert', 'statement/sql/update', \
         'statement/sql/delete', 'statement/sql/replace', 'statement/sql/commit', \
         'statement/sql/insert_select', 'statement/sql/replace_select', \
         'statement/sql/update_multi', 'statement/sql/delete_multi', \
         'statement/sql/load', 'statement/sql/execute_sql', 'statement/com/Execute')",
        crate::mysql::PROGRAM_NAME
    )
});

/// How long the server is watched alone before the copy starts, for the
/// baseline: short, since an idle server's backup waits for it too.
const BEFORE_COPY: Duration = Duration::from_millis(150);

/// One sample of the signal, None when performance_schema cannot give it.
pub async fn statement_totals(conn: &mut Conn) -> Option<StatementTotals> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> =
        conn.query_first(WRITING_STATEMENTS.as_str()).await.ok()?;
    let (count, wait, in_flight) = row?;
    Some(StatementTotals {
        count: count?.parse().ok()?,
        wait_ps: wait?.parse().ok()?,
        in_flight: in_flight.and_then(|n| n.parse().ok()).unwrap_or(0),
    })
}

/// The pacing task of one copy; stops when dropped.
pub struct Pacing {
    task: tokio::task::JoinHandle<()>,
    throttle: Arc<Throttle>,
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
        let paused = throttle.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(WINDOW);
            ticker.tick().await;
            let mut copied_before = progress.bytes_done.load(Ordering::Relaxed);
            let mut slowest: Option<u64> = None;
            let mut limited_windows = 0u32;
            loop {
                ticker.tick().await;
                let Some(totals) = statement_totals(&mut conn).await else {
                    throttle.set_paused(false);
                    throttle.set_rate(cap);
                    return;
                };
                let copied = progress.bytes_done.load(Ordering::Relaxed);
                let rate = pacer.observe(totals, copied - copied_before, WINDOW);
                copied_before = copied;
                throttle.set_paused(pacer.probing());
                if rate != throttle.rate() || pacer.probing() {
                    tracing::debug!(?rate, probing = pacer.probing(), baseline_seconds = ?pacer.baseline(), "pace");
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
        Some(Pacing {
            task,
            throttle: paused,
        })
    }
}

impl Drop for Pacing {
    fn drop(&mut self) {
        self.task.abort();
        // Never leave a copier waiting for a probe that will not end.
        self.throttle.set_paused(false);
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
            in_flight: 0,
        }
    }

    fn running(totals: StatementTotals, in_flight: u64) -> StatementTotals {
        StatementTotals {
            in_flight,
            ..totals
        }
    }

    #[test]
    fn a_busy_server_where_nothing_finishes_is_stalled_not_idle() {
        let mut p = Pacer::new(None);
        p.observe(at(0, 0), 0, WINDOW);
        assert_eq!(p.observe(at(100, 100), 0, WINDOW), Some(BUSY_START));
        // Four clients wait in their commits for the whole window.
        assert_eq!(
            p.observe(running(at(100, 100), 4), 32 * MB, WINDOW),
            Some(BUSY_START / 2)
        );
        assert_eq!(
            p.observe(running(at(100, 100), 4), 16 * MB, WINDOW),
            Some(BUSY_START / 4)
        );
        // Nothing running any more: idle, full speed.
        assert_eq!(p.observe(at(100, 100), 8 * MB, WINDOW), None);
    }

    #[test]
    fn a_long_query_on_a_server_never_seen_busy_keeps_the_pace() {
        let mut p = Pacer::new(None);
        p.observe(at(0, 0), 0, WINDOW);
        for _ in 0..5 {
            assert_eq!(p.observe(running(at(0, 0), 1), 500 * MB, WINDOW), None);
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
        // Never below the floor however slow the server gets while we
        // copy (1 ms alone, in the probes; 10 ms with us).
        let mut t = at(500, 720);
        for _ in 0..40 {
            let ms: u64 = if p.probing() { 1 } else { 10 };
            t = StatementTotals {
                count: t.count + 100,
                wait_ps: t.wait_ps + u128::from(ms * 100) * 1_000_000_000,
                in_flight: 0,
            };
            p.observe(t, MB, WINDOW);
        }
        assert_eq!(p.rate(), Some(MIN_RATE));
        assert_eq!(p.baseline(), Some(0.001));
    }

    /// Feeds `windows` windows in which a statement takes `alone_ms` with
    /// the copy paused and `copying_ms` with it running.
    fn feed(p: &mut Pacer, t: &mut StatementTotals, windows: u32, alone_ms: u64, copying_ms: u64) {
        for _ in 0..windows {
            let ms = if p.probing() { alone_ms } else { copying_ms };
            t.count += 100;
            t.wait_ps += u128::from(ms * 100) * 1_000_000_000;
            p.observe(*t, 16 * MB, WINDOW);
        }
    }

    #[test]
    fn one_window_in_ten_is_a_probe_whose_latency_is_the_new_baseline() {
        let mut p = Pacer::new(None);
        let mut t = at(0, 0);
        p.observe(t, 0, WINDOW);
        // The first window, before the copy, is the first probe.
        assert!(p.probing());
        feed(&mut p, &mut t, 1, 2, 2);
        assert_eq!(p.baseline(), Some(0.002));
        assert!(!p.probing());
        let mut probes = 0;
        // A probe, then PROBE_EVERY windows of copying, and again.
        for _ in 0..(3 * (PROBE_EVERY + 1)) {
            feed(&mut p, &mut t, 1, 2, 2);
            probes += u32::from(p.probing());
        }
        assert_eq!(probes, 3);
        // The workload gets heavier by itself (4 ms alone): the copy slows
        // down until the next probe measures that, then speeds up again
        // rather than crawling at the floor against a stale baseline.
        feed(&mut p, &mut t, 2 * PROBE_EVERY, 4, 4);
        assert_eq!(p.baseline(), Some(0.004));
        let before = p.rate();
        feed(&mut p, &mut t, 3, 4, 4);
        assert!(p.rate() > before, "{:?} then {:?}", before, p.rate());
    }

    #[test]
    fn an_idle_server_is_never_paused_for_a_probe() {
        let mut p = Pacer::new(None);
        let t = at(5, 5);
        p.observe(t, 0, WINDOW);
        p.observe(t, 0, WINDOW);
        for _ in 0..(3 * PROBE_EVERY) {
            assert_eq!(p.observe(t, 500 * MB, WINDOW), None);
            assert!(!p.probing());
        }
    }

    #[test]
    fn a_copy_the_first_busy_window_would_let_through_is_not_paced() {
        assert!(!worth_pacing(0));
        assert!(!worth_pacing(SMALL_COPY));
        assert!(worth_pacing(SMALL_COPY + 1));
        assert_eq!(SMALL_COPY as f64, BUSY_START as f64 * WINDOW.as_secs_f64());
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
        // (A probe window among them holds the pace.)
        for n in 0..12 {
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
