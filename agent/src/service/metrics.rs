//! The agent's Prometheus metrics: one registry, every name prefixed
//! `innoxide_agent_`, served as text on `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::record::{Kind, State};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as the variant names
enum KindLabel {
    backup,
    stage_restore,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum ResultLabel {
    succeeded,
    failed,
    cancelled,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: KindLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: KindLabel,
    result: ResultLabel,
}

type DurationFamily = Family<ResultLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    finished: Family<ResultLabels, Counter>,
    running: Family<KindLabels, Gauge>,
    bytes: Family<KindLabels, Counter>,
    duration: DurationFamily,
    last_success: Family<KindLabels, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("innoxide_agent");
        let finished = Family::<ResultLabels, Counter>::default();
        registry.register(
            "operations",
            "Operations that ended, by kind and result",
            finished.clone(),
        );
        let running = Family::<KindLabels, Gauge>::default();
        registry.register(
            "operations_running",
            "Operations running now",
            running.clone(),
        );
        let bytes = Family::<KindLabels, Counter>::default();
        registry.register_with_unit(
            "copied",
            "Bytes copied by operations (backup: data files read; stage restore: fetched)",
            Unit::Bytes,
            bytes.clone(),
        );
        // 1 s .. ~9 h
        let duration: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 16)));
        registry.register_with_unit(
            "operation_duration",
            "How long operations took, by kind and result",
            Unit::Seconds,
            duration.clone(),
        );
        let last_success = Family::<KindLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "When an operation of this kind last succeeded (Unix time)",
            last_success.clone(),
        );
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        build
            .get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())])
            .set(1);
        registry.register("build_info", "The agent's version", build);
        Metrics {
            registry,
            finished,
            running,
            bytes,
            duration,
            last_success,
        }
    }

    pub fn started(&self, kind: Kind) {
        self.running.get_or_create(&kind_labels(kind)).inc();
    }

    /// Bytes copied since the last call, for a live rate.
    pub fn copied(&self, kind: Kind, bytes: u64) {
        if bytes > 0 {
            self.bytes.get_or_create(&kind_labels(kind)).inc_by(bytes);
        }
    }

    pub fn finished(&self, kind: Kind, state: State, took: Duration) {
        let result = match state {
            State::Succeeded => ResultLabel::succeeded,
            State::Cancelled => ResultLabel::cancelled,
            State::Failed | State::Running => ResultLabel::failed,
        };
        let labels = ResultLabels {
            kind: kind_label(kind),
            result,
        };
        self.running.get_or_create(&kind_labels(kind)).dec();
        self.finished.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if state == State::Succeeded {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            self.last_success.get_or_create(&kind_labels(kind)).set(now);
        }
    }

    /// A failed operation found on disk when the agent started: counted, so
    /// a crash shows on the dashboards, but it was never "running" here.
    pub fn interrupted(&self, kind: Kind) {
        self.finished
            .get_or_create(&ResultLabels {
                kind: kind_label(kind),
                result: ResultLabel::failed,
            })
            .inc();
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn kind_label(kind: Kind) -> KindLabel {
    match kind {
        Kind::Backup => KindLabel::backup,
        Kind::StageRestore => KindLabel::stage_restore,
    }
}

fn kind_labels(kind: Kind) -> KindLabels {
    KindLabels {
        kind: kind_label(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_the_prefix_and_results_are_labelled() {
        let metrics = Metrics::new();
        metrics.started(Kind::Backup);
        metrics.copied(Kind::Backup, 4096);
        metrics.finished(Kind::Backup, State::Succeeded, Duration::from_secs(3));
        let text = metrics.render();
        assert!(
            text.contains(r#"innoxide_agent_operations_total{kind="backup",result="succeeded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"innoxide_agent_copied_bytes_total{kind="backup"} 4096"#),
            "{text}"
        );
        assert!(
            text.contains(r#"innoxide_agent_operations_running{kind="backup"} 0"#),
            "{text}"
        );
        assert!(text.contains("innoxide_agent_last_success_timestamp_seconds{kind=\"backup\"}"));
        assert!(
            text.contains("innoxide_agent_operation_duration_seconds_count"),
            "{text}"
        );
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("innoxide_agent_"), "{line}");
        }
    }
}
