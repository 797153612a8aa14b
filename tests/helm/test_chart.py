"""The Helm chart, rendered and linted by the real Helm engine (``helm-python-sdk``).

Rendered manifests are parsed and checked as objects: the RBAC must equal the code's permission
list (orchestrator.kube.permissions) exactly, a default install must hold no cluster-wide rights,
the pod must run locked down, and the schema must reject bad values with a message naming the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from helm_python.chart import Chart, lint

from orchestrator.kube import permissions as perms

CHART = Path(__file__).resolve().parents[2] / "helm" / "orchestrator"
RELEASE, NAMESPACE = "orch", "ops"


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART) as c:
        yield c


def render(chart: Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def env_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cluster-wide": {"rbac": {"clusterWide": True}},
    "several-namespaces": {"targetNamespaces": ["shop", "payments", "search"]},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
    "tls": {"temporal": {"address": "prod.abc12.tmprl.cloud:7233", "namespace": "prod.abc12",
                         "tls": {"enabled": True, "existingSecret": "temporal-mtls", "caKey": "ca.crt"}}},
    "node-drain": {"chaos": {"nodeDrain": {"enabled": True}}, "targetNamespaces": ["shop"]},
    "everything": {
        "rbac": {"clusterWide": True},
        "chaos": {"nodeDrain": {"enabled": True}, "chaosMesh": {"enabled": True},
                  "protectedNamespaces": ["payments"]},
        "serviceMonitor": {"enabled": True},
        "temporal": {"tls": {"enabled": True, "existingSecret": "t"}, "apiKey": {"existingSecret": "k"}},
        "prometheus": {"auth": {"existingSecret": "prom"}, "ca": {"existingSecret": "prom-ca"}},
        "flags": {"providers": [
            {"name": "main", "type": "unleash", "url": "https://unleash.example.com",
             "tokenSecret": {"name": "unleash", "key": "token"}, "projects": ["default"]},
            {"name": "shop-flags", "type": "flagd", "configMap": {"namespace": "shop", "name": "flagd-flags"}},
        ]},
        "notifications": {"webhook": {"existingSecret": "slack"}},
        "podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": None},
    },
    "network-policy": {
        "targetNamespaces": ["shop"],
        "temporal": {"address": "prod.abc12.tmprl.cloud:7233"},
        "prometheus": {"url": "https://prometheus.monitoring.svc"},
        "networkPolicy": {
            "enabled": True,
            "temporal": {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
            "apiServer": {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]},
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "providers": [{"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"port": 4242}]}],
            "webhooks": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 443}]}],
        },
    },
}


# --- lint and render --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_lint_passes_strict(name: str) -> None:
    report = lint(CHART, COMBINATIONS[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_combination_renders_a_complete_release(chart: Chart, name: str) -> None:
    objects = render(chart, COMBINATIONS[name])
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget"} <= kinds
    for o in objects:
        assert o["apiVersion"] and o["metadata"]["name"].startswith(f"{RELEASE}-orchestrator")


# --- RBAC == the code's permission list --------------------------------------------------------

def test_permissions_json_is_generated_from_the_code() -> None:
    on_disk = (CHART / "files" / "permissions.json").read_text()
    assert on_disk == perms.render_json(), (
        "helm/orchestrator/files/permissions.json is stale: run "
        "`python -m orchestrator.kube.permissions > helm/orchestrator/files/permissions.json`"
    )


def test_default_role_rules_equal_the_permission_list_exactly(chart: Chart) -> None:
    objects = render(chart, {"targetNamespaces": ["shop"]})
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == "shop"
    assert role["rules"] == perms.rbac_rules("namespace")
    expected = {(p.api_group, p.resource, v) for p in perms.permissions("namespace") for v in p.verbs}
    assert perms.triples(role["rules"]) == expected
    # Each rule's verbs hold for every resource in it: nothing is granted beyond the list.
    for rule in role["rules"]:
        for resource in rule["resources"]:
            entry = next(p for p in perms.permissions("namespace")
                         if (p.api_group, p.resource) == (rule["apiGroups"][0], resource))
            assert sorted(entry.verbs) == sorted(rule["verbs"])


def test_no_cluster_wide_rights_by_default(chart: Chart) -> None:
    objects = render(chart)
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    # No target namespace named: no rights anywhere (the release namespace is protected, see below).
    assert of_kind(objects, "Role") == [] and of_kind(objects, "RoleBinding") == []
    for rule in one(render(chart, {"targetNamespaces": ["shop"]}), "Role")["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert not {"nodes", "customresourcedefinitions", "pods/eviction"} & set(rule["resources"])


def test_one_role_and_binding_per_target_namespace(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["several-namespaces"])
    roles, bindings = of_kind(objects, "Role"), of_kind(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["payments", "search", "shop"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["payments", "search", "shop"]
    sa = one(objects, "ServiceAccount")["metadata"]
    for role, binding in zip(roles, bindings, strict=True):
        assert role["rules"] == perms.rbac_rules("namespace")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}]
    assert of_kind(objects, "ClusterRole") == []


def test_cluster_wide_uses_one_cluster_role_with_the_same_rules(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["cluster-wide"])
    assert of_kind(objects, "Role") == [] and of_kind(objects, "RoleBinding") == []
    role = one(objects, "ClusterRole")
    assert role["rules"] == perms.rbac_rules("namespace")
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_node_drain_adds_only_the_drain_rules_cluster_wide(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["node-drain"])
    assert one(objects, "Role")["metadata"]["namespace"] == "shop"
    cluster_role = one(objects, "ClusterRole")
    assert perms.triples(cluster_role["rules"]) == {
        ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "patch"),
        ("", "pods", "list"), ("", "pods/eviction", "create"),
        # What the blast radius reads about every pod a drain would evict, in any namespace: its workload,
        # that workload's PodDisruptionBudgets (the ready-pod floor) and its namespace's opt-in.
        ("apps", "deployments", "get"), ("apps", "deployments", "list"), ("apps", "statefulsets", "get"),
        ("apps", "statefulsets", "list"), ("policy", "poddisruptionbudgets", "list"), ("", "namespaces", "get"),
    }
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == cluster_role["metadata"]["name"]


def test_all_features_grant_exactly_the_whole_list(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["everything"])
    granted: set[tuple[str, str, str]] = set()
    for role in of_kind(objects, "ClusterRole"):
        granted |= perms.triples(role["rules"])
    assert granted == {(p.api_group, p.resource, v) for p in perms.PERMISSIONS for v in p.verbs}


# --- the pod -----------------------------------------------------------------------------------

def test_pod_is_locked_down_with_probes_on_the_health_port(chart: Chart) -> None:
    deploy = one(render(chart), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["replicas"] == 1  # more needs the PostgreSQL run store (tests/scoring/test_chart_store.py)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["command"] + container["args"] == ["orchestrator", "worker", "--health-port", "8080"]
    assert container["ports"] == [{"name": "http-health", "containerPort": 8080, "protocol": "TCP"},
                                  {"name": "http-sdk", "containerPort": 9464, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert pod["serviceAccountName"] == f"{RELEASE}-orchestrator"


def test_default_env_configures_temporal_prometheus_and_logs(chart: Chart) -> None:
    env = env_of(render(chart, {"health": {"port": 9100}}))
    assert env["ORCHESTRATOR_TEMPORAL_ADDRESS"]["value"] == "temporal-frontend.temporal.svc.cluster.local:7233"
    assert env["ORCHESTRATOR_TEMPORAL_NAMESPACE"]["value"] == "default"
    assert env["ORCHESTRATOR_TASK_QUEUE"]["value"] == "orchestrator"
    assert env["ORCHESTRATOR_TEMPORAL_TLS"]["value"] == "false"
    assert env["ORCHESTRATOR_PROMETHEUS_URL"]["value"].startswith("http://")
    assert env["ORCHESTRATOR_LOG_FORMAT"]["value"] == "json"
    assert env["ORCHESTRATOR_HEALTH_PORT"]["value"] == "9100"
    assert env["ORCHESTRATOR_HEALTH_HOST"]["value"] == "0.0.0.0"  # the kubelet probes the pod IP
    assert env["ORCHESTRATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["ORCHESTRATOR_CHAOS_NAMESPACES"]["value"] == ""  # no target namespaces: chaos nowhere
    # No secret configured: no credential variables at all.
    assert not {k for k in env if k.endswith(("_TOKEN", "_PASSWORD", "_WEBHOOK", "_API_KEY"))}


def test_tls_mounts_the_client_certificate_secret(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["tls"])
    env = env_of(objects)
    assert env["ORCHESTRATOR_TEMPORAL_TLS"]["value"] == "true"
    assert env["ORCHESTRATOR_TEMPORAL_ADDRESS"]["value"] == "prod.abc12.tmprl.cloud:7233"
    assert env["ORCHESTRATOR_TEMPORAL_TLS_CERT"]["value"] == "/etc/orchestrator/temporal-tls/tls.crt"
    assert env["ORCHESTRATOR_TEMPORAL_TLS_KEY"]["value"] == "/etc/orchestrator/temporal-tls/tls.key"
    assert env["ORCHESTRATOR_TEMPORAL_TLS_CA"]["value"] == "/etc/orchestrator/temporal-tls/ca.crt"
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "temporal-tls")
    assert volume["secret"]["secretName"] == "temporal-mtls"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "temporal-tls")
    assert mount == {"name": "temporal-tls", "mountPath": "/etc/orchestrator/temporal-tls", "readOnly": True}


def test_credentials_come_from_existing_secrets_only(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["everything"])
    env = env_of(objects)

    def secret_of(name: str) -> tuple[str, str]:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        return ref["name"], ref["key"]

    assert secret_of("ORCHESTRATOR_PROMETHEUS_TOKEN") == ("prom", "token")
    assert secret_of("ORCHESTRATOR_PROMETHEUS_USERNAME") == ("prom", "username")
    assert secret_of("ORCHESTRATOR_PROMETHEUS_PASSWORD") == ("prom", "password")
    assert secret_of("ORCHESTRATOR_UNLEASH_TOKEN_MAIN") == ("unleash", "token")
    assert secret_of("ORCHESTRATOR_NOTIFY_WEBHOOK") == ("slack", "url")
    assert secret_of("ORCHESTRATOR_TEMPORAL_API_KEY") == ("k", "api-key")
    assert env["ORCHESTRATOR_PROMETHEUS_CA_FILE"]["value"] == "/etc/orchestrator/prometheus-ca/ca.crt"
    assert "ORCHESTRATOR_UNLEASH_URL" not in env  # where a provider lives is the operator settings' business
    # The chart never creates a Secret: credentials are referenced, never templated into the release.
    assert of_kind(objects, "Secret") == []
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert env["ORCHESTRATOR_CHAOS_NAMESPACES"]["value"] == "*"  # cluster-wide RBAC, no namespace list
    assert env["ORCHESTRATOR_CHAOS_PROTECTED"]["value"] == "payments"


def test_chaos_only_targets_namespaces_the_rbac_covers(chart: Chart) -> None:
    env = env_of(render(chart, COMBINATIONS["several-namespaces"]))
    assert env["ORCHESTRATOR_CHAOS_NAMESPACES"]["value"] == "shop,payments,search"
    env = env_of(render(chart, {"targetNamespaces": ["shop", "search"], "chaos": {"namespaces": ["search"]}}))
    assert env["ORCHESTRATOR_CHAOS_NAMESPACES"]["value"] == "search"


def test_pdb_and_metrics_service_select_the_worker_pods(chart: Chart) -> None:
    objects = render(chart)
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http-health"
    assert of_kind(objects, "ServiceMonitor") == []


def test_service_monitor_scrapes_the_metrics_port(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["service-monitor"])
    sm = one(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus"
    assert sm["spec"]["endpoints"] == [{"port": port, "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
                                       for port in ("http-metrics", "http-sdk-metrics")]
    assert sm["spec"]["selector"]["matchLabels"] == one(objects, "Service")["spec"]["selector"]


# --- the schema --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": "two"}, "at '/replicas': got string, want integer"),
        ({"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
        ({"rbac": {"clusterWide": "yes"}}, "at '/rbac/clusterWide': got string, want boolean"),
        ({"logging": {"format": "xml"}}, "at '/logging/format'"),
        ({"temporal": {"address": "no-port"}}, "at '/temporal/address'"),
        ({"chaos": {"nodeDrain": {"enabled": True, "force": True}}}, "additional properties 'force' not allowed"),
        ({"chaos": {"namespaceOptIn": {"enabled": True}}}, "additional properties 'namespaceOptIn' not allowed"),
        ({"targetNamespaces": ["Not_A_Namespace"]}, "at '/targetNamespaces/0'"),
        ({"prometheus": {"url": "prometheus:9090"}}, "at '/prometheus/url'"),
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(chart: Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(caught.value)
    report = lint(CHART, values, namespace=NAMESPACE)
    assert any(message in e for e in report["errors"]), report


def test_schema_accepts_every_tested_combination(chart: Chart) -> None:
    for values in COMBINATIONS.values():
        chart.validate_schema(chart.merge_values(values))


def test_pdb_refuses_both_bounds(chart: Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="either minAvailable or maxUnavailable"):
        chart.render({"podDisruptionBudget": {"minAvailable": 1}}, name=RELEASE, namespace=NAMESPACE)


def test_permission_list_is_well_formed() -> None:
    seen: set[tuple[str, str, str]] = set()
    for p in perms.PERMISSIONS:
        assert (p.api_group, p.resource, p.scope) not in seen, f"{p.resource} listed twice: merge the entries"
        seen.add((p.api_group, p.resource, p.scope))
        assert p.why and p.verbs and len(set(p.verbs)) == len(p.verbs)
        assert (p.scope == "cluster") == (p.feature is not None), p
    doc = json.loads(perms.render_json())
    # Every feature that gates a cluster-scoped permission has its switch in values.yaml.
    chaos_values = yaml.safe_load((CHART / "values.yaml").read_text())["chaos"]
    assert all(chaos_values[c["feature"]] == {"enabled": False} for c in doc["cluster"])


# --- protected namespaces ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("values", "namespace"),
    [
        ({"targetNamespaces": ["shop", "kube-system"]}, "kube-system"),
        ({"targetNamespaces": ["kube-public"]}, "kube-public"),
        ({"targetNamespaces": ["kube-node-lease"]}, "kube-node-lease"),
        ({"targetNamespaces": [NAMESPACE]}, NAMESPACE),  # the release's own namespace
        ({"targetNamespaces": ["shop"], "chaos": {"namespaces": ["kube-system"]}}, "kube-system"),
        ({"rbac": {"clusterWide": True}, "chaos": {"namespaces": [NAMESPACE]}}, NAMESPACE),
    ],
)
def test_protected_namespaces_are_refused_at_render(chart: Chart, values: dict[str, Any], namespace: str) -> None:
    # A template `fail` (helm lint only logs those; install and template refuse).
    with pytest.raises(helm_python.HelmRenderError, match=rf"namespace {namespace} is protected"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


# --- the NetworkPolicy -------------------------------------------------------------------------

def test_no_network_policy_by_default(chart: Chart) -> None:
    assert of_kind(render(chart), "NetworkPolicy") == []


def test_the_network_policy_allows_only_the_named_peers(chart: Chart) -> None:
    objects = render(chart, COMBINATIONS["network-policy"])
    policy = one(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == NAMESPACE
    assert spec["podSelector"]["matchLabels"].items() <= one(objects, "Deployment")["spec"]["template"]["metadata"][
        "labels"].items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert spec["ingress"] == [{"from": monitoring, "ports": [{"port": 8080, "protocol": "TCP"},
                                                             {"port": 9464, "protocol": "TCP"}]}]
    tcp = [{"port": 443, "protocol": "TCP"}]
    assert spec["egress"] == [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
         "ports": [{"port": 7233, "protocol": "TCP"}]},                       # from temporal.address
        {"to": monitoring, "ports": tcp},                                      # https without a port: 443
        {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
         "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
        {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"port": 4242}]},
        {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 443}]},
    ]
    # An egress rule without peers allows every destination: none may be rendered.
    assert all(rule["to"] for rule in spec["egress"])


def test_the_network_policy_reads_the_prometheus_port_and_opens_ingress_without_sources(chart: Chart) -> None:
    values = {"networkPolicy": {"enabled": True, "apiServer": {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]}}}
    spec = one(render(chart, values), "NetworkPolicy")["spec"]
    assert spec["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}, {"port": 9464, "protocol": "TCP"}]}]
    assert spec["egress"][2]["ports"] == [{"port": 9090, "protocol": "TCP"}]  # prometheus-operated...:9090
    assert len(spec["egress"]) == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "networkPolicy.apiServer.to"),
        ({"apiServer": {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]}, "dns": {"to": []}}, "networkPolicy.dns.to"),
        ({"apiServer": {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]}, "temporal": {"to": []}},
         "networkPolicy.temporal.to"),
    ],
)
def test_the_network_policy_never_opens_egress_to_everywhere(
    chart: Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        chart.render({"networkPolicy": {"enabled": True, **values}}, name=RELEASE, namespace=NAMESPACE,
                     is_install=True)


def test_the_network_policy_needs_a_rule_for_the_postgresql_store(chart: Chart) -> None:
    values: dict[str, Any] = {"store": {"databaseUrlSecret": {"name": "db"}}, "networkPolicy": {
        "enabled": True, "apiServer": {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]}}}
    with pytest.raises(helm_python.HelmRenderError, match=re.escape("networkPolicy.database.to")):
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    values["networkPolicy"]["database"] = {"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}]}
    egress = one(render(chart, values), "NetworkPolicy")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}], "ports": [{"port": 5432, "protocol": "TCP"}]} in egress


def test_the_schema_checks_network_policy_peers(chart: Chart) -> None:
    values = {"networkPolicy": {"enabled": True, "apiServer": {"to": [{"ipBlok": {"cidr": "10.96.0.1/32"}}]}}}
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'ipBlok' not allowed"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_the_operator_settings_name_every_flag_provider_and_no_secret(chart: Chart, tmp_path: Path) -> None:
    from orchestrator.specs.operator import load_operator_settings

    objects = render(chart, COMBINATIONS["everything"])
    [cm] = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-operator")]
    path = tmp_path / "operator.yaml"
    path.write_text(cm["data"]["operator.yaml"])
    settings = load_operator_settings(path)  # what the worker reads, through the same loader
    main = settings.flag_provider("main")
    assert main is not None and main.type == "unleash"
    assert (main.url, main.token_env, main.projects) == (
        "https://unleash.example.com", "ORCHESTRATOR_UNLEASH_TOKEN_MAIN", ["default"])
    assert settings.flag_provider_names("flagd") == ["shop-flags"]
    assert "tokenSecret" not in cm["data"]["operator.yaml"]
    env = env_of(objects)
    assert env["ORCHESTRATOR_SETTINGS_FILE"]["value"] == "/etc/orchestrator/operator/operator.yaml"
    # With no provider declared the file still validates, and every ramp is refused by name.
    [empty] = [o for o in of_kind(render(chart), "ConfigMap") if o["metadata"]["name"].endswith("-operator")]
    path.write_text(empty["data"]["operator.yaml"])
    assert load_operator_settings(path).flag_provider_names() == []
