//! The operator's Prometheus metrics, one registry, prefix
//! `innoxide_operator_`: reconciles (count, failures by error, duration,
//! timed by a drop guard), backup and restore phase transitions, leadership.
//! The same guard tells [`Health`] which reconciles are running, for /healthz.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::health::{Health, Running};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

/// One schedule's binlog archive.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArchiveLabels {
    pub namespace: String,
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub backup_transitions: Family<PhaseLabels, Counter>,
    pub restore_transitions: Family<PhaseLabels, Counter>,
    pub leader: Gauge<i64, AtomicI64>,
    /// Seconds each binlog archive is behind its server (as the archiver
    /// last reported); absent while not archiving.
    pub binlog_archive_lag: Family<ArchiveLabels, Gauge<f64, AtomicU64>>,
    /// Gaps in each binlog archive.
    pub binlog_archive_gaps: Family<ArchiveLabels, Gauge<i64, AtomicI64>>,
    /// Running reconciles and stopped controller loops, for /healthz.
    pub health: Health,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("innoxide_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let backup_transitions = Family::<PhaseLabels, Counter>::default();
        let restore_transitions = Family::<PhaseLabels, Counter>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        let binlog_archive_lag = Family::<ArchiveLabels, Gauge<f64, AtomicU64>>::default();
        let binlog_archive_gaps = Family::<ArchiveLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "binlog_archive_lag_seconds",
            "Seconds a schedule's binlog archive is behind its primary",
            binlog_archive_lag.clone(),
        );
        registry.register(
            "binlog_archive_gaps",
            "Gaps in a schedule's binlog archive: stretches no restore can cross",
            binlog_archive_gaps.clone(),
        );
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took",
            duration.clone(),
        );
        registry.register(
            "backup_transitions",
            "MySQLBackups entering a phase",
            backup_transitions.clone(),
        );
        registry.register(
            "restore_transitions",
            "MySQLRestores entering a phase",
            restore_transitions.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            backup_transitions,
            restore_transitions,
            leader,
            binlog_archive_lag,
            binlog_archive_gaps,
            health: Health::default(),
        }
    }

    /// Counts a reconcile and times it until the guard drops; until then
    /// [`Health`] counts it as running.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
            _running: self.health.begin(controller),
        }
    }

    pub fn failure(&self, controller: &'static str, error: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { controller, error })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
    _running: Running<'a>,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_the_common_prefix() {
        let metrics = Metrics::new();
        drop(metrics.reconcile("backup"));
        metrics.failure("backup", "agent");
        let text = metrics.render();
        assert!(
            text.contains("innoxide_operator_reconciles_total{controller=\"backup\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "innoxide_operator_reconcile_failures_total{controller=\"backup\",error=\"agent\"} 1"
        ));
        assert!(text.contains(
            "innoxide_operator_reconcile_duration_seconds_count{controller=\"backup\"} 1"
        ));
        metrics
            .binlog_archive_lag
            .get_or_create(&ArchiveLabels {
                namespace: "prod".into(),
                schedule: "nightly".into(),
            })
            .set(2.5);
        let text = metrics.render();
        assert!(
            text.contains(
                "innoxide_operator_binlog_archive_lag_seconds{namespace=\"prod\",schedule=\"nightly\"} 2.5"
            ),
            "{text}"
        );
    }
}
