//! The Kubernetes API harness: a real apiserver gives our custom resources
//! real API semantics (schema and CEL validation, watches, conflicts,
//! server-side apply, status, finalizers), the routed client serves the core
//! kinds the operator writes from their mirrors on the same server (real
//! apply semantics; the operator's StatefulSet wiring is checked there), and
//! no process outlives its `KubeApi`.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use innoxide_operator::context::FIELD_MANAGER;
use innoxide_operator::wiring::{self, WiringSettings};
use innoxide_testkit::{KubeApi, orphan, pid_is_running, sweep_orphans_in};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::client::Body;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use nix::sys::signal::Signal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const NS: &str = "probes";

/// A small resource of our group: `target` is required by the schema, and a
/// CEL rule ties `min` to `max`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "innoxide.dev",
    version = "v1alpha1",
    kind = "Probe",
    namespaced,
    status = "ProbeStatus"
)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not exceed max"))]
#[serde(rename_all = "camelCase")]
struct ProbeSpec {
    target: String,
    min: i32,
    max: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ProbeStatus {
    phase: String,
}

fn probe(name: &str, min: i32, max: i32) -> Probe {
    Probe::new(
        name,
        ProbeSpec {
            target: "db-0".into(),
            min,
            max,
        },
    )
}

async fn started_with_probes() -> Result<(KubeApi, Api<Probe>)> {
    let started = std::time::Instant::now();
    let kube = KubeApi::start().await?;
    println!("KubeApi::start: {:?}", started.elapsed());
    let started = std::time::Instant::now();
    kube.install_crds(&[Probe::crd()]).await?;
    println!("install_crds: {:?}", started.elapsed());
    let probes = Api::namespaced(kube.client(), NS);
    Ok((kube, probes))
}

/// The `Status` of a refused call, or a panic saying what came instead.
fn refusal<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_get_real_api_semantics() -> Result<()> {
    let (kube, probes) = started_with_probes().await?;

    creates_gets_and_lists(&probes).await?;
    refuses_what_the_schema_refuses(&kube).await?;
    refuses_what_the_cel_rule_refuses(&probes).await?;
    a_watch_sees_a_create(&probes).await?;
    a_stale_update_conflicts(&probes).await?;
    server_side_apply_tracks_field_managers(&probes).await?;
    status_is_a_subresource(&probes).await?;
    a_finalizer_holds_a_deleted_object(&probes).await?;
    Ok(())
}

async fn creates_gets_and_lists(probes: &Api<Probe>) -> Result<()> {
    let created = probes
        .create(&PostParams::default(), &probe("first", 1, 3))
        .await?;
    assert!(created.metadata.uid.is_some(), "{created:?}");
    assert_eq!(created.metadata.generation, Some(1));
    let got = probes.get("first").await?;
    assert_eq!(got.spec, created.spec);
    let names: Vec<String> = probes
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, ["first"]);
    Ok(())
}

async fn refuses_what_the_schema_refuses(kube: &KubeApi) -> Result<()> {
    // Typed objects cannot lack `target`: send raw JSON.
    let resource = ApiResource::erase::<Probe>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(kube.client(), NS, &resource);
    let mut object = DynamicObject::new("no-target", &resource);
    object.data = json!({"spec": {"min": 1, "max": 2}});
    let status = refusal(raw.create(&PostParams::default(), &object).await);
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.target: Required value"),
        "{}",
        status.message
    );
    Ok(())
}

async fn refuses_what_the_cel_rule_refuses(probes: &Api<Probe>) -> Result<()> {
    let status = refusal(
        probes
            .create(&PostParams::default(), &probe("upside-down", 5, 1))
            .await,
    );
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("min must not exceed max"),
        "{}",
        status.message
    );
    Ok(())
}

async fn a_watch_sees_a_create(probes: &Api<Probe>) -> Result<()> {
    let mut events = watching(probes).await?;
    probes
        .create(&PostParams::default(), &probe("watched", 1, 2))
        .await?;
    let seen = next_applied(&mut events).await?;
    assert_eq!(seen.metadata.name.as_deref(), Some("watched"));
    Ok(())
}

type Events = BoxStream<'static, watcher::Result<watcher::Event<Probe>>>;

/// kube's own watcher (list, then watch), as a controller uses it, once its
/// initial list is done: what comes next is news.
async fn watching(probes: &Api<Probe>) -> Result<Events> {
    let mut events = watcher(probes.clone(), watcher::Config::default()).boxed();
    loop {
        if let watcher::Event::InitDone = next_event(&mut events).await? {
            return Ok(events);
        }
    }
}

/// The next object the watch reports as created or changed.
async fn next_applied(events: &mut Events) -> Result<Probe> {
    loop {
        if let watcher::Event::Apply(probe) = next_event(events).await? {
            return Ok(probe);
        }
    }
}

async fn next_event(events: &mut Events) -> Result<watcher::Event<Probe>> {
    tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .context("no watch event within 10 s")??
        .context("the watch ended")
}

async fn a_stale_update_conflicts(probes: &Api<Probe>) -> Result<()> {
    let read = probes.get("first").await?;
    let mut fresh = read.clone();
    fresh.spec.max = 10;
    let updated = probes
        .replace("first", &PostParams::default(), &fresh)
        .await?;
    assert_eq!(updated.metadata.generation, Some(2));
    let mut stale = read;
    stale.spec.max = 11;
    let status = refusal(
        probes
            .replace("first", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!(status.code, 409, "{status:?}");
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );
    Ok(())
}

async fn server_side_apply_tracks_field_managers(probes: &Api<Probe>) -> Result<()> {
    let applied = probes
        .patch(
            "applied",
            &PatchParams::apply("innoxide-operator"),
            &Patch::Apply(probe("applied", 1, 4)),
        )
        .await?;
    assert_eq!(applied.spec.max, 4);
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["innoxide-operator"]);

    // Real SSA, not a merge: another manager changing an owned field is
    // refused unless it forces.
    let other = PatchParams::apply("someone-else");
    let status = refusal(
        probes
            .patch("applied", &other, &Patch::Apply(probe("applied", 1, 9)))
            .await,
    );
    assert_eq!(status.code, 409, "{status:?}");
    assert!(
        status
            .message
            .contains("conflict with \"innoxide-operator\""),
        "{}",
        status.message
    );
    let forced = probes
        .patch(
            "applied",
            &other.force(),
            &Patch::Apply(probe("applied", 1, 9)),
        )
        .await?;
    assert_eq!(forced.spec.max, 9);
    Ok(())
}

async fn status_is_a_subresource(probes: &Api<Probe>) -> Result<()> {
    let before = probes.get("first").await?;
    let patched = probes
        .patch_status(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await?;
    assert_eq!(
        patched.status.as_ref().map(|s| s.phase.as_str()),
        Some("Running")
    );
    // A status change is not a spec change.
    assert_eq!(patched.metadata.generation, before.metadata.generation);

    // The main resource ignores status; the subresource ignores spec.
    let mut via_main = patched.clone();
    via_main.status = Some(ProbeStatus {
        phase: "Ignored".into(),
    });
    let after_main = probes
        .replace("first", &PostParams::default(), &via_main)
        .await?;
    assert_eq!(
        after_main.status.map(|s| s.phase).as_deref(),
        Some("Running")
    );
    let after_status = probes
        .patch_status(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"max": 99}, "status": {"phase": "Done"}})),
        )
        .await?;
    assert_eq!(after_status.spec.max, before.spec.max);
    assert_eq!(
        after_status.status.map(|s| s.phase).as_deref(),
        Some("Done")
    );
    Ok(())
}

async fn a_finalizer_holds_a_deleted_object(probes: &Api<Probe>) -> Result<()> {
    let mut held = probe("held", 1, 2);
    held.metadata.finalizers = Some(vec!["innoxide.dev/cleanup".into()]);
    probes.create(&PostParams::default(), &held).await?;

    probes.delete("held", &DeleteParams::default()).await?;
    let deleting = probes.get("held").await?;
    assert!(
        deleting.metadata.deletion_timestamp.is_some(),
        "{deleting:?}"
    );

    probes
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    assert!(probes.get_opt("held").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routed_client_serves_core_kinds_from_their_mirrors() -> Result<()> {
    let (kube, _) = started_with_probes().await?;
    let routed = kube.routed_client();

    let mut pod = Pod::default();
    pod.metadata.name = Some("mysql-0".into());
    pod.metadata.labels = Some([("app".to_owned(), "mysql".to_owned())].into());
    pod.spec = Some(PodSpec {
        containers: vec![Container {
            name: "mysql".into(),
            image: Some("mysql:9.7.4".into()),
            ..Container::default()
        }],
        ..PodSpec::default()
    });
    let pods = Api::<Pod>::namespaced(routed.clone(), NS);
    let created = pods.create(&PostParams::default(), &pod).await?;
    assert_eq!(created.metadata.labels, pod.metadata.labels);
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|f| f.api_version.clone())
        .collect();
    assert_eq!(managers, [Some("v1".to_owned())], "read as core/v1");

    // Stored by the real server as its mirror, not in the fake.
    let mirror_path = format!("/apis/core.mirror.innoxide.dev/v1/namespaces/{NS}/pods/mysql-0");
    let on_real = kube
        .client()
        .send(http::Request::get(&mirror_path).body(Body::empty())?)
        .await?;
    assert_eq!(on_real.status(), http::StatusCode::OK);
    let in_fake = Api::<Pod>::namespaced(kube.fake(), NS)
        .get_opt("mysql-0")
        .await;
    assert!(
        !matches!(in_fake, Ok(Some(_))),
        "the pod leaked into the fake"
    );
    // The schema is Kubernetes' own: a container's name is a string.
    let resource = ApiResource::erase::<Pod>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(routed.clone(), NS, &resource);
    let mut bad = DynamicObject::new("bad", &resource);
    bad.data = json!({"spec": {"containers": [{"name": 7}]}});
    let status = refusal(raw.create(&PostParams::default(), &bad).await);
    assert_eq!(status.code, 422, "{status:?}");
    // A watch through the router reads the real kind, and status is a
    // subresource, as on kube-apiserver.
    let mut watch = watcher(pods.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.try_next())
        .await??
        .context("the watch ended")?;
    assert_eq!(first.metadata.name.as_deref(), Some("mysql-0"));
    pods.patch_status(
        "mysql-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await?;
    let changed = tokio::time::timeout(Duration::from_secs(10), watch.try_next())
        .await??
        .context("the watch ended")?;
    assert_eq!(
        changed.status.and_then(|s| s.phase).as_deref(),
        Some("Running"),
        "a watch event, read as a core/v1 Pod"
    );
    pods.patch(
        "mysql-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}})),
    )
    .await?;
    let phase = pods.get("mysql-0").await?.status.and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Running"), "status only by /status");

    // Our resources through the same client reach the real server: its CEL
    // rule refuses, what it accepts is there for the plain client, and its
    // watches stream through the router (what a controller needs).
    let routed_probes: Api<Probe> = Api::namespaced(routed, NS);
    let mut events = watching(&routed_probes).await?;
    let status = refusal(
        routed_probes
            .create(&PostParams::default(), &probe("bad", 3, 2))
            .await,
    );
    assert_eq!(status.code, 422, "{status:?}");
    routed_probes
        .create(&PostParams::default(), &probe("routed", 1, 2))
        .await?;
    let real = Api::<Probe>::namespaced(kube.client(), NS)
        .get("routed")
        .await?;
    assert_eq!(real.spec.target, "db-0");
    let seen = next_applied(&mut events).await?;
    assert_eq!(seen.metadata.name.as_deref(), Some("routed"));
    let in_fake = Api::<Probe>::namespaced(kube.fake(), NS)
        .get_opt("routed")
        .await;
    assert!(
        !matches!(in_fake, Ok(Some(_))),
        "the probe leaked into the fake: {in_fake:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_outlives_its_kube_api() -> Result<()> {
    let kube = KubeApi::start().await?;
    let etcd = kube.etcd_pid().context("etcd pid")? as i32;
    let apiserver = kube.apiserver_pid().context("apiserver pid")? as i32;
    let base = kube.base_dir().to_path_buf();
    assert!(pid_is_running(etcd) && pid_is_running(apiserver));
    drop(kube);
    assert!(!pid_is_running(etcd), "etcd {etcd} still runs");
    assert!(
        !pid_is_running(apiserver),
        "apiserver {apiserver} still runs"
    );
    assert!(!base.exists(), "{} is still there", base.display());
    Ok(())
}

const ORPHAN_HELPER: &str = "INNOXIDE_KUBE_ORPHAN_HELPER";

/// Run by `the_sweep_kills_the_servers_of_a_dead_test_process` in a child
/// process: starts a Kubernetes API, says where it is, and dies by SIGKILL
/// (no Drop).
#[tokio::test]
#[ignore = "helper of the_sweep_kills_the_servers_of_a_dead_test_process"]
async fn kube_orphan_helper() {
    if std::env::var_os(ORPHAN_HELPER).is_none() {
        return;
    }
    let kube = KubeApi::start().await.expect("the Kubernetes API starts");
    orphan::report_and_die(&[
        kube.etcd_pid().unwrap().to_string(),
        kube.apiserver_pid().unwrap().to_string(),
        kube.base_dir().display().to_string(),
    ]);
}

#[tokio::test]
async fn the_sweep_kills_the_servers_of_a_dead_test_process() -> Result<()> {
    let runs = tempfile::tempdir()?;
    let out = orphan::run_child("kube_orphan_helper", ORPHAN_HELPER, runs.path()).await?;
    let fields = out.fields.with_context(|| {
        format!(
            "the helper did not report its servers ({}):\n{}\n{}",
            out.status, out.stdout, out.stderr
        )
    })?;
    let mut fields = fields.iter();
    let etcd: i32 = fields.next().context("no etcd pid")?.parse()?;
    let apiserver: i32 = fields.next().context("no apiserver pid")?.parse()?;
    let base_dir = std::path::PathBuf::from(fields.next().context("no base dir")?);
    // In case an assertion below fails first.
    let _guard = orphan::KillOnDrop(vec![etcd, apiserver]);
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    assert!(pid_is_running(etcd) && pid_is_running(apiserver));

    let swept = sweep_orphans_in(runs.path())?;
    assert_eq!(swept.len(), 1, "{swept:?}");
    let expected: Vec<(String, i32)> = vec![("apiserver".into(), apiserver), ("etcd".into(), etcd)];
    assert_eq!(swept[0].processes, expected);
    assert!(swept[0].killed);
    assert!(!pid_is_running(etcd), "etcd {etcd} survived the sweep");
    assert!(
        !pid_is_running(apiserver),
        "apiserver {apiserver} survived the sweep"
    );
    assert!(!base_dir.exists(), "{} was not removed", base_dir.display());
    Ok(())
}

/// A user's StatefulSet, as a GitOps tool applies it.
fn users_statefulset() -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS, "labels": {"innoxide.dev/agent": "enabled"}},
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{
                    "name": "mysql",
                    "image": "mysql:9.7.4",
                    "env": [{"name": "MYSQL_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-root", "key": "password"}}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}],
                }]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    })
}

/// What one field manager owns of an object (its `fieldsV1`).
fn owned_by(sts: &StatefulSet, manager: &str) -> serde_json::Value {
    sts.metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|f| f.manager.as_deref() == Some(manager))
        .and_then(|f| f.fields_v1.as_ref())
        .map(|f| f.0.clone())
        .unwrap_or_default()
}

fn container<'a>(sts: &'a StatefulSet, name: &str) -> Option<&'a Container> {
    sts.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wiring_apply_owns_only_the_operators_fields() -> Result<()> {
    let kube = KubeApi::start().await?;
    let statefulsets: Api<StatefulSet> = Api::namespaced(kube.routed_client(), NS);
    let gitops = PatchParams::apply("argocd-controller");
    let operator = PatchParams::apply(FIELD_MANAGER);
    let users = statefulsets
        .patch("db", &gitops, &Patch::Apply(users_statefulset()))
        .await?;
    let desired = wiring::desired(
        &users,
        &WiringSettings {
            agent_image: "innoxide/innoxide-agent:test".into(),
        },
    )?;

    // The typed StatefulSet the wiring used to send: its required fields
    // serialize empty (`selector: {}`), and the atomic selector is the
    // user's. A real API server refuses it; forced, it would change an
    // immutable field.
    let typed = StatefulSet {
        metadata: desired.patch.metadata.clone(),
        spec: Some(StatefulSetSpec {
            template: desired.patch.spec.clone().unwrap_or_default().template,
            ..StatefulSetSpec::default()
        }),
        status: None,
    };
    let status = refusal(
        statefulsets
            .patch("db", &operator, &Patch::Apply(&typed))
            .await,
    );
    assert_eq!(status.code, 409, "{status:?}");
    assert!(
        status.message.contains(".spec.selector"),
        "{}",
        status.message
    );
    let forced = operator.clone().force();
    let status = refusal(
        statefulsets
            .patch("db", &forced, &Patch::Apply(&typed))
            .await,
    );
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("immutable"), "{}", status.message);

    // The wiring's apply body lands, merged into the user's template.
    let wired = statefulsets
        .patch("db", &operator, &Patch::Apply(desired.apply_body()))
        .await?;
    assert!(wiring::is_wired(&wired, &desired));
    assert_eq!(
        wired.spec.as_ref().map(|s| &s.selector),
        users.spec.as_ref().map(|s| &s.selector)
    );
    let mysql = container(&wired, "mysql").context("the user's container")?;
    assert_eq!(mysql.image.as_deref(), Some("mysql:9.7.4"));
    assert_eq!(mysql.env.as_ref().map(Vec::len), Some(1));
    let mounts: Vec<&str> = mysql
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(mounts, ["data", "innoxide-mysql-run"]);

    // What the operator owns: of the user's container only its key and the
    // mount it added; no selector, serviceName or claim templates.
    let ours = owned_by(&wired, FIELD_MANAGER);
    let spec = ours["f:spec"]
        .as_object()
        .context("the operator owns no spec fields")?;
    assert_eq!(spec.keys().collect::<Vec<_>>(), ["f:template"], "{ours}");
    let of_mysql = &ours["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"mysql"}"#];
    let mut owned: Vec<&String> = of_mysql
        .as_object()
        .context("mysql entry")?
        .keys()
        .collect();
    owned.sort();
    assert_eq!(owned, [".", "f:name", "f:volumeMounts"], "{of_mysql}");
    let theirs = owned_by(&wired, "argocd-controller");
    assert!(
        theirs["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"mysql"}"#]
            .get("f:image")
            .is_some(),
        "the image stays the user's alone: {theirs}"
    );

    // A GitOps re-sync of the user's manifest conflicts with nothing and
    // keeps the agent; the operator applying again changes nothing.
    let synced = statefulsets
        .patch("db", &gitops, &Patch::Apply(users_statefulset()))
        .await?;
    assert!(container(&synced, wiring::AGENT_CONTAINER).is_some());
    let again = statefulsets
        .patch("db", &operator, &Patch::Apply(desired.apply_body()))
        .await?;
    assert_eq!(again.metadata.generation, synced.metadata.generation);

    // Opting out: the operator's empty apply takes back all it added.
    let released = statefulsets
        .patch("db", &operator, &Patch::Apply(&wiring::released(&again)))
        .await?;
    assert!(container(&released, wiring::AGENT_CONTAINER).is_none());
    let mysql = container(&released, "mysql").context("the user's container")?;
    assert_eq!(mysql.image.as_deref(), Some("mysql:9.7.4"));
    let mounts: Vec<&str> = mysql
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(mounts, ["data"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulsets_immutable_fields_stay_immutable() -> Result<()> {
    let kube = KubeApi::start().await?;
    let statefulsets: Api<StatefulSet> = Api::namespaced(kube.routed_client(), NS);
    let gitops = PatchParams::apply("argocd-controller");
    statefulsets
        .patch("db", &gitops, &Patch::Apply(users_statefulset()))
        .await?;
    for (field, value) in [
        ("selector", json!({"matchLabels": {"app": "other"}})),
        ("serviceName", json!("other")),
        ("volumeClaimTemplates", json!([])),
    ] {
        let mut changed = users_statefulset();
        changed["spec"][field] = value;
        let status = refusal(
            statefulsets
                .patch("db", &gitops, &Patch::Apply(changed))
                .await,
        );
        assert_eq!(status.code, 422, "{field}: {status:?}");
        assert!(
            status
                .message
                .contains(&format!("spec.{field}: field is immutable")),
            "{}",
            status.message
        );
    }
    // The template and replicas may change.
    let mut scaled = users_statefulset();
    scaled["spec"]["replicas"] = json!(0);
    let scaled = statefulsets
        .patch("db", &gitops, &Patch::Apply(scaled))
        .await?;
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(0));
    Ok(())
}
