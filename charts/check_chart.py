"""Checks the innoxide-operator chart with Helm's own code and the Kubernetes
schemas: lint (strict), render each way a user installs it, validate every
rendered object strictly (unknown fields are errors) against the oldest
Kubernetes the chart claims (kubeVersion) and a current one, then assert what
each install mode promises. Run by operator/tests/chart.rs with the venv
scripts/helm.sh makes; exits non-zero with the failures listed.

    python check_chart.py <chart dir>
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

# The oldest release kubeVersion admits, and a current one.
KUBE_VERSIONS = ["1.29.0", "1.33.0"]
# Prometheus Operator kinds: no offline schema, checked by the assertions.
NO_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PodMonitor")}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def render(chart: helm.Chart, values: dict[str, Any], release: str, namespace: str) -> tuple[list[dict], str]:
    """The chart's objects (with their namespace as Helm would set it) and NOTES.txt."""
    manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects, notes = [], ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                if doc["kind"] not in CLUSTER_SCOPED:
                    doc["metadata"].setdefault("namespace", namespace)
                objects.append(doc)
    return objects, notes


def key(obj: dict) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def validate(scenario: str, objects: list[dict]) -> None:
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in NO_SCHEMA:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                failures.append(f"{scenario}: {key(obj)} is invalid on Kubernetes {version} at {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                failures.append(f"{scenario}: {key(obj)}: {e.message}")


def find(objects: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def pod_spec(objects: list[dict]) -> dict:
    return find(objects, "Deployment")[0]["spec"]["template"]["spec"]


def args(objects: list[dict]) -> list[str]:
    return pod_spec(objects)["containers"][0]["args"]


def operator_rules(objects: list[dict], kind: str) -> list[list[dict]]:
    return [r["rules"] for r in find(objects, kind) if not r["metadata"]["name"].endswith(("-self", "-edit", "-view"))]


def default_install(chart: helm.Chart) -> list[dict]:
    objects, notes = render(chart, {}, "innoxide", "innoxide-system")
    validate("default install", objects)
    full = "innoxide-innoxide-operator"
    check(len(find(objects, "ClusterRole", full)) == 1, "default install: no ClusterRole named after the release")
    binding = find(objects, "ClusterRoleBinding", full)
    check(
        len(binding) == 1 and binding[0]["subjects"] == [{"kind": "ServiceAccount", "name": full, "namespace": "innoxide-system"}],
        "default install: the ClusterRoleBinding does not bind the release's ServiceAccount",
    )
    check(not any(a.startswith("--watch-namespaces") for a in args(objects)), "default install: --watch-namespaces set")
    check(f"--lease-name={full}" in args(objects), "default install: the Lease is not named after the release")
    check(f"--ca-secret={full}-ca" in args(objects), "default install: the CA Secret is not named after the release")
    aggregated = {
        label
        for role in find(objects, "ClusterRole")
        for label, value in role["metadata"]["labels"].items()
        if label.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true"
    }
    check(
        aggregated == {f"rbac.authorization.k8s.io/aggregate-to-{r}" for r in ("admin", "edit", "view")},
        f"default install: aggregated to {sorted(aggregated)}, not admin, edit and view",
    )
    for kind in ("PodMonitor", "ServiceMonitor", "NetworkPolicy"):
        check(not find(objects, kind), f"default install: a {kind} although it is opt-in")
    check("affinity" not in pod_spec(objects), "default install: anti-affinity with one replica")
    check("every namespace" in notes, "default install: NOTES.txt does not say what is watched")
    check("helm show crds" in notes, "default install: NOTES.txt does not say how to upgrade the CRDs")
    secrets = [r for r in operator_rules(objects, "ClusterRole")[0] if "secrets" in r["resources"]]
    check(
        all(set(r["verbs"]) <= {"get", "create", "patch"} for r in secrets),
        "default install: the operator may list or watch Secrets",
    )
    return objects


def everything_on() -> dict[str, Any]:
    return {
        "replicas": 2,
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/innoxide"}},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "agentPodMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        },
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
    }


def second_release(chart: helm.Chart, first: list[dict]) -> None:
    second, _ = render(chart, everything_on(), "backups-b", "innoxide-system")
    validate("second release", second)
    clashes = [k for k, n in Counter(key(o) for o in first + second).items() if n > 1]
    check(not clashes, f"second release in the same namespace: names collide: {clashes}")
    selectors = {
        o["metadata"]["name"]: o["spec"]["selector"].get("matchLabels", o["spec"]["selector"])
        for o in first + second
        if o["kind"] in ("Deployment", "Service")
    }
    check(len({str(s) for s in selectors.values()}) == 2, f"second release: selectors overlap: {selectors}")

    sm = find(second, "ServiceMonitor")
    check(len(sm) == 1 and sm[0]["metadata"]["labels"].get("release") == "kube-prometheus-stack", "ServiceMonitor lacks the configured release label")
    check(len(sm) == 1 and sm[0]["spec"]["endpoints"][0]["port"] == "metrics", "ServiceMonitor does not scrape the metrics port")
    pm = find(second, "PodMonitor")
    check(
        len(pm) == 1
        and pm[0]["spec"]["podMetricsEndpoints"][0]["port"] == "agent-metrics"
        and pm[0]["spec"]["namespaceSelector"] == {"any": True}
        and pm[0]["metadata"]["labels"].get("release") == "kube-prometheus-stack",
        f"PodMonitor does not scrape the agents' agent-metrics port in every namespace: {pm}",
    )
    sa = find(second, "ServiceAccount")[0]
    check(sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "").startswith("arn:aws"), "ServiceAccount annotations not rendered")
    check(sa.get("imagePullSecrets") == [{"name": "regcred"}], "ServiceAccount imagePullSecrets not rendered")
    check(pod_spec(second).get("imagePullSecrets") == [{"name": "regcred"}], "pod imagePullSecrets not rendered")
    anti = pod_spec(second).get("affinity", {}).get("podAntiAffinity", {})
    check(bool(anti.get("preferredDuringSchedulingIgnoredDuringExecution")), "two replicas without anti-affinity")
    netpol = find(second, "NetworkPolicy")
    check(
        len(netpol) == 1 and netpol[0]["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "NetworkPolicy does not limit scrapes to metricsFrom",
    )

    override, _ = render(chart, {"fullnameOverride": "backups"}, "whatever", "innoxide-system")
    names = {o["metadata"]["name"] for o in override}
    check(all(n == "backups" or n.startswith("backups-") for n in names), f"fullnameOverride not used everywhere: {sorted(names)}")


def namespace_scoped(chart: helm.Chart, cluster_wide: list[dict]) -> None:
    values = {"watchNamespaces": ["team-a", "team-b", "team-a"], "rbac": {"aggregateToDefaultRoles": False}, "metrics": {"agentPodMonitor": {"enabled": True}}}
    objects, notes = render(chart, values, "innoxide", "innoxide-system")
    validate("namespace-scoped", objects)
    cluster = [key(o) for o in objects if o["kind"] in CLUSTER_SCOPED]
    check(not cluster, f"namespace-scoped: cluster-scoped objects rendered: {cluster}")
    check("--watch-namespaces=team-a,team-b" in args(objects), f"namespace-scoped: operator args {args(objects)}")
    wanted = operator_rules(cluster_wide, "ClusterRole")[0]
    for ns in ("team-a", "team-b"):
        role = find(objects, "Role", "innoxide-innoxide-operator", ns)
        check(len(role) == 1 and role[0]["rules"] == wanted, f"namespace-scoped: no Role with the operator's rules in {ns}")
        binding = find(objects, "RoleBinding", "innoxide-innoxide-operator", ns)
        check(
            len(binding) == 1 and binding[0]["subjects"][0]["namespace"] == "innoxide-system" and binding[0]["roleRef"]["kind"] == "Role",
            f"namespace-scoped: no RoleBinding for the operator in {ns}",
        )
    check(len(find(objects, "Role")) == 3, "namespace-scoped: expected a Role per namespace and the operator's own")
    pm = find(objects, "PodMonitor")
    check(pm and pm[0]["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}, "namespace-scoped: PodMonitor not limited to the watched namespaces")
    check("team-a,team-b" in notes, "namespace-scoped: NOTES.txt does not list the namespaces")


def bad_values_refused(chart: helm.Chart) -> None:
    for values in ({"replica": 2}, {"watchNamespaces": ["Team_A"]}, {"logFormat": "xml"}, {"metrics": {"serviceMonitor": {"labels": {"release": 1}}}}):
        try:
            chart.render(values, name="innoxide", namespace="innoxide-system", is_install=True)
            failures.append(f"values {values} were accepted; values.schema.json should refuse them")
        except helm.HelmError:
            pass


def lint(chart_dir: str) -> None:
    for values in ({}, everything_on(), {"watchNamespaces": ["team-a"]}):
        report = helm.lint(chart_dir, values, strict=True, kube_version="v1.29.0")
        problems = [m for m in report.get("messages", []) if m["severity"] >= 2] + report.get("errors", [])
        check(not problems, f"helm lint {values}: {problems}")


def main() -> int:
    chart_dir = sys.argv[1]
    chart = helm.Chart.load(chart_dir)
    check(
        chart.metadata.get("kubeVersion") == f">={KUBE_VERSIONS[0]}-0",
        f"Chart.yaml kubeVersion {chart.metadata.get('kubeVersion')!r} is not the oldest schema checked ({KUBE_VERSIONS[0]})",
    )
    lint(chart_dir)
    first = default_install(chart)
    second_release(chart, first)
    namespace_scoped(chart, first)
    bad_values_refused(chart)
    for f in failures:
        print(f"FAIL {f}")
    print(
        f"chart {chart.name}-{chart.version}: helm {helm.helm_sdk_version()} lint and render, "
        f"strict schemas of Kubernetes {' and '.join(KUBE_VERSIONS)}: "
        + ("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
