//! The Kubernetes API harness: a real apiserver gives our custom resources
//! real API semantics (schema and CEL validation, watches, conflicts,
//! server-side apply, status, finalizers), the routed client sends core
//! resources to the in-memory fake, and no process outlives its `KubeApi`.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use innoxide_testkit::{KubeApi, orphan, pid_is_running, sweep_orphans_in};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::client::Body;
use kube::runtime::watcher;
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
async fn the_routed_client_keeps_core_resources_in_the_fake() -> Result<()> {
    let (kube, _) = started_with_probes().await?;
    let routed = kube.routed_client();

    let mut pod = Pod::default();
    pod.metadata.name = Some("mysql-0".into());
    pod.metadata.labels = Some([("app".to_owned(), "mysql".to_owned())].into());
    Api::<Pod>::namespaced(routed.clone(), NS)
        .create(&PostParams::default(), &pod)
        .await?;

    // It landed in the fake and nowhere else: the real server has no Pods.
    // (Its 404 body is an index of paths, which kube reads as a Status with
    // code 0: look at the HTTP status itself.)
    let in_fake = Api::<Pod>::namespaced(kube.fake(), NS)
        .get("mysql-0")
        .await?;
    assert_eq!(in_fake.metadata.labels, pod.metadata.labels);
    let pod_path = format!("/api/v1/namespaces/{NS}/pods/mysql-0");
    let on_real = kube
        .client()
        .send(http::Request::get(&pod_path).body(Body::empty())?)
        .await?;
    assert_eq!(on_real.status(), http::StatusCode::NOT_FOUND);

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
