//! The StatefulSet reconcile that adds the agent: for a StatefulSet that
//! opted in, make sure its agent's server certificate Secret is current
//! (issued by the operator's CA), then apply the desired fields
//! ([`super::patch::desired`]) by server-side apply, then let the pods that
//! wait at the scheduling gate go ([`super::gate`]). A StatefulSet that
//! opted out loses every field the operator applied.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::instrument;

use super::gate;
use super::patch::{self, opted_in};
use super::pki::{self, Ca};
use crate::agent::AgentApi;
use crate::backup::controller::stateful_set_pods;
use crate::context::{Context, Error, FIELD_MANAGER, Result};

pub const CONTROLLER: &str = "agent-wiring";
/// Certificates are looked at again this often (renewal is due 30 days
/// before the end).
const RECHECK: Duration = Duration::from_secs(12 * 3600);

/// What the wiring needs beside the shared context: the CA.
pub struct Wiring<A: AgentApi> {
    pub ctx: Arc<Context<A>>,
    pub ca: Ca,
}

#[instrument(skip_all, fields(namespace = %sts.namespace().unwrap_or_default(), name = %sts.name_any()))]
pub async fn reconcile<A: AgentApi>(
    sts: Arc<StatefulSet>,
    wiring: Arc<Wiring<A>>,
) -> Result<Action> {
    let ctx = &wiring.ctx;
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = sts.namespace().unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams::apply(FIELD_MANAGER);
    if !opted_in(&sts) {
        let ours = sts.managed_fields().iter().any(|f| {
            f.manager.as_deref() == Some(FIELD_MANAGER) && f.operation.as_deref() == Some("Apply")
        });
        if ours {
            api.patch(
                &sts.name_any(),
                &params,
                &Patch::Apply(&patch::released(&sts)),
            )
            .await?;
            ctx.event(
                &*sts,
                false,
                "AgentRemoved",
                "Wiring",
                "removed the innoxide agent sidecar".into(),
            )
            .await;
        }
        if gate::template_is_gated(&sts) {
            ctx.event(
                &*sts,
                true,
                "GatedWithoutAgent",
                "Wiring",
                format!(
                    "the pod template carries the scheduling gate {} but the StatefulSet does not opt in (label {}={}): its pods wait until it does, or until the gate is removed",
                    gate::AGENT_GATE,
                    patch::AGENT_LABEL,
                    patch::AGENT_LABEL_VALUE
                ),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    let desired = match patch::desired(&sts, &ctx.settings.wiring) {
        Ok(desired) => desired,
        Err(e) => {
            // Waits for the StatefulSet to change: no hot loop.
            ctx.event(&*sts, true, "AgentNotAdded", "Wiring", e.to_string())
                .await;
            return Ok(Action::await_change());
        }
    };
    ensure_certificate(&ctx.client, &sts, &desired, &wiring.ca, ctx).await?;
    let was_wired = patch::is_wired(&sts, &desired);
    let body = desired.apply_body();
    match api
        .patch(&sts.name_any(), &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Someone else owns a field we need: say so, do not force.
            ctx.event(
                &*sts,
                true,
                "AgentConflict",
                "Wiring",
                format!("cannot add the innoxide agent: {}", e.message),
            )
            .await;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
        Err(e) => return Err(e.into()),
    }
    if !was_wired {
        ctx.event(
            &*sts,
            false,
            "AgentAdded",
            "Wiring",
            "added the innoxide agent sidecar; the pods restart to pick it up".into(),
        )
        .await;
    }
    // Only now that the template is wired: pods made from it may start.
    release_gated_pods(&sts, &desired, ctx).await?;
    Ok(Action::requeue(RECHECK))
}

/// The StatefulSet's pods that wait at the operator's scheduling gate
/// ([`gate`]): those made from the wired template are let go, those made
/// before it (never started) are deleted for the StatefulSet controller to
/// make again. A pod that changed or went meanwhile is looked at on the
/// next reconcile (every pod change triggers one).
async fn release_gated_pods<A: AgentApi>(
    sts: &StatefulSet,
    desired: &patch::Desired,
    ctx: &Context<A>,
) -> Result<()> {
    let ns = sts.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = stateful_set_pods(&ctx.client, &ns, sts).await?;
    let pods: Vec<&Pod> = owned.iter().collect();
    let settled = |result: kube::Result<()>| match result {
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(false),
        Err(e) => Err(Error::from(e)),
        Ok(()) => Ok(true),
    };
    for action in gate::gate_actions(desired, &pods) {
        match action {
            gate::GateAction::Lift {
                pod,
                resource_version,
                gates,
            } => {
                let patch = gate::lift_patch(&resource_version, &gates);
                let lifted = pods_api
                    .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ());
                if settled(lifted)? {
                    tracing::info!(pod, "let the pod start: it carries the agent");
                }
            }
            gate::GateAction::Replace { pod, uid } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let deleted = pods_api.delete(&pod, &params).await.map(|_| ());
                if settled(deleted)? {
                    ctx.event(
                        sts,
                        false,
                        "PodReplaced",
                        "Wiring",
                        format!(
                            "deleted pod {pod}: it was made before the agent was added and never started (it waited at the scheduling gate {}); the StatefulSet makes it again with the agent",
                            gate::AGENT_GATE
                        ),
                    )
                    .await;
                }
            }
        }
    }
    Ok(())
}

async fn ensure_certificate<A: AgentApi>(
    client: &Client,
    sts: &StatefulSet,
    desired: &patch::Desired,
    ca: &Ca,
    ctx: &Context<A>,
) -> Result<()> {
    let ns = sts.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let existing = secrets.get_opt(&desired.tls_secret).await?;
    let data = existing
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let annotations = existing
        .as_ref()
        .and_then(|s| s.metadata.annotations.clone())
        .unwrap_or_default();
    let Some(reason) = pki::renewal_reason(
        &data,
        &annotations,
        ca,
        &desired.server_names,
        ctx.clock.now(),
    ) else {
        return Ok(());
    };
    let issued = ca.issue_server(&desired.server_names, ctx.clock.now())?;
    let (data, annotations) = pki::agent_secret_contents(ca, &issued, &desired.server_names);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(desired.tls_secret.clone()),
            namespace: Some(ns),
            annotations: Some(annotations),
            owner_references: sts.controller_owner_ref(&()).map(|mut o| {
                // Owned, not controlled: the StatefulSet controller must not adopt it.
                o.controller = None;
                vec![o]
            }),
            ..ObjectMeta::default()
        },
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        type_: Some("kubernetes.io/tls".into()),
        ..Secret::default()
    };
    let mut body = serde_json::to_value(&secret).map_err(|e| Error::Secret(e.to_string()))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    secrets
        .patch(
            &desired.tls_secret,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    ctx.event(
        sts,
        false,
        "CertificateIssued",
        "Wiring",
        format!(
            "issued the agent's server certificate in Secret {} ({reason})",
            desired.tls_secret
        ),
    )
    .await;
    Ok(())
}

/// The operator's CA from its Secret, made on first start. Two replicas
/// starting at once both try to create it; the loser reads the winner's.
pub async fn load_or_create_ca(
    client: &Client,
    namespace: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Ca> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |secret: Secret| {
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        Ca::from_secret_data(&data).map_err(Error::from)
    };
    if let Some(secret) = secrets.get_opt(name).await? {
        return read(secret);
    }
    let ca = Ca::generate(now)?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            ca.to_secret_data()
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect(),
        ),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = name, "created the operator's CA");
            Ok(ca)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => read(secrets.get(name).await?),
        Err(e) => Err(e.into()),
    }
}
