//! What every controller shares: the client, the agent API, the clock, the
//! metrics, the Event recorder, the settings; the one error type with its
//! metric label; and the helpers that write status and Events.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::{AgentApi, AgentError};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::wiring::WiringSettings;

/// The one field manager the operator applies with: status, finalizers,
/// the agent's fields on StatefulSets, certificate Secrets.
pub const FIELD_MANAGER: &str = "innoxide-operator";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the operator runs (its CA Secret and Lease live there).
    pub namespace: String,
    pub ca_secret: String,
    pub wiring: WiringSettings,
    /// How long a running backup's agent may stay out of reach before the
    /// backup is marked Failed.
    pub agent_lost_timeout: Duration,
}

/// How long a running backup's agent may stay out of reach by default.
pub const DEFAULT_AGENT_LOST_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Context<A: AgentApi> {
    pub client: Client,
    pub agent: A,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub settings: Settings,
}

impl<A: AgentApi> Context<A> {
    pub fn new(
        client: Client,
        agent: A,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            agent,
            clock,
            metrics,
            recorder,
            settings,
        }
    }

    /// Tells an Event about `obj`. An Event that cannot be written is
    /// logged, never a reason to fail a reconcile.
    pub async fn event<K>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        message: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(truncate(message, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot write an Event");
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("cannot delete backup {backup} from {repository}: {message}")]
    Storage {
        repository: String,
        backup: String,
        message: String,
    },
    /// Not an error: a cleanup that must wait (for an operation to stop).
    #[error("{0}")]
    Waiting(String),
    #[error(transparent)]
    Pki(#[from] crate::wiring::pki::PkiError),
    #[error("{0}")]
    Secret(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::Agent(e) => e.metric_label(),
            Error::Storage { .. } => "storage",
            Error::Waiting(_) => "waiting",
            Error::Pki(_) => "pki",
            Error::Secret(_) => "secret",
        }
    }

    fn is_waiting(&self) -> bool {
        match self {
            Error::Waiting(_) => true,
            Error::Finalizer(e) => matches!(
                e.as_ref(),
                kube::runtime::finalizer::Error::CleanupFailed(Error::Waiting(_))
            ),
            _ => false,
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        Error::Finalizer(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every controller does with an error: log it where it is handled,
/// count it, and look again later.
pub fn error_policy<K: Resource, A: AgentApi>(
    controller: &'static str,
    obj: &K,
    error: &Error,
    ctx: &Context<A>,
) -> Action {
    if error.is_waiting() {
        tracing::info!(controller, name = %obj.meta().name.as_deref().unwrap_or_default(), "{error}");
        return Action::requeue(Duration::from_secs(5));
    }
    tracing::warn!(
        controller,
        namespace = %obj.meta().namespace.as_deref().unwrap_or_default(),
        name = %obj.meta().name.as_deref().unwrap_or_default(),
        error = %error,
        "reconcile failed"
    );
    ctx.metrics.failure(controller, error.metric_label());
    Action::requeue(Duration::from_secs(30))
}

/// Writes a resource's whole status by server-side apply, as the one field
/// manager that owns it.
pub async fn apply_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
