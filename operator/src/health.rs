//! Whether the operator is alive, for /healthz: which reconciles are running
//! and since when, and which controller loops have stopped. A controller is
//! wedged when a reconcile it started has not finished within the stall
//! timeout (an await that never returns also holds the controller's
//! concurrency slot), or when its loop ended while the operator still runs.
//! An idle controller is healthy however long it waits: no work, no stall.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Running reconciles: token → (controller, started).
    running: BTreeMap<u64, (&'static str, Instant)>,
    /// Controller loops that ended.
    stopped: Vec<&'static str>,
}

/// Held while one reconcile runs; see [`Health::begin`].
pub struct Running<'a> {
    health: &'a Health,
    token: u64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.health.lock().running.remove(&self.token);
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a reconcile of `controller` as running until the guard drops.
    pub fn begin(&self, controller: &'static str) -> Running<'_> {
        let mut state = self.lock();
        let token = state.next;
        state.next += 1;
        state.running.insert(token, (controller, Instant::now()));
        Running {
            health: self,
            token,
        }
    }

    /// A controller loop returned: it will not reconcile anything again.
    pub fn loop_ended(&self, controller: &'static str) {
        self.lock().stopped.push(controller);
    }

    /// At `now`: healthy, or why not (which controller, since when).
    pub fn verdict(&self, now: Instant, stall_after: Duration) -> Result<(), String> {
        let state = self.lock();
        let mut problems: Vec<String> = state
            .stopped
            .iter()
            .map(|c| format!("the {c} controller has stopped"))
            .collect();
        let mut oldest: BTreeMap<&'static str, Instant> = BTreeMap::new();
        for &(controller, started) in state.running.values() {
            let entry = oldest.entry(controller).or_insert(started);
            *entry = (*entry).min(started);
        }
        for (controller, started) in oldest {
            let running = now.saturating_duration_since(started);
            if running > stall_after {
                problems.push(format!(
                    "a {controller} reconcile has been running for {}s (stall timeout {}s)",
                    running.as_secs(),
                    stall_after.as_secs()
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(600);

    #[test]
    fn an_idle_operator_is_healthy_however_long_it_waits() {
        let health = Health::default();
        let later = Instant::now() + Duration::from_secs(86_400);
        assert_eq!(health.verdict(later, STALL), Ok(()));
    }

    #[test]
    fn a_reconcile_that_never_finishes_makes_the_operator_unhealthy_after_the_stall_timeout() {
        let health = Health::default();
        let stuck = health.begin("backup");
        let _quick = health.begin("restore");
        assert_eq!(health.verdict(Instant::now(), STALL), Ok(()));
        let verdict = health.verdict(Instant::now() + STALL + Duration::from_secs(60), STALL);
        let why = verdict.expect_err("a reconcile running past the stall timeout is a wedge");
        assert!(
            why.contains("backup reconcile has been running for 660s"),
            "{why}"
        );
        drop(stuck);
        drop(_quick);
        assert_eq!(
            health.verdict(Instant::now() + STALL * 2, STALL),
            Ok(()),
            "finished reconciles leave nothing behind"
        );
    }

    #[test]
    fn a_controller_loop_that_ended_is_reported() {
        let health = Health::default();
        health.loop_ended("wiring");
        let why = health.verdict(Instant::now(), STALL).unwrap_err();
        assert_eq!(why, "the wiring controller has stopped");
    }
}
