"""Checks of the Helm chart in infra/helm/ticketing, offline.

No helm binary and no cluster: `helm-python-sdk` runs Helm's own Go SDK (lint, schema
validation, render), `kubernetes-validate` checks every rendered object against the
Kubernetes OpenAPI schemas, and `checkov` scans the rendered manifests and the Dockerfile.
Run with scripts/test-chart.sh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "ticketing"
REPO = HERE.parents[2]
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
CHECKOV_CONFIG = HERE / "checkov.yaml"

RELEASE = "shop"
NAMESPACE = "marketplace"
PREFIX = f"{RELEASE}-ticketing-"

# The chart's minimum (Chart.yaml kubeVersion) and the newest version kubernetes-validate knows.
KUBE_VERSIONS = ["1.27", kubernetes_validate.latest_version()]
# Custom resources: no built-in schema; their fields are asserted by the tests below.
CRD_KINDS = {"HTTPRoute", "ServiceMonitor"}
HOOK_ANNOTATIONS = {"helm.sh/hook", "helm.sh/hook-weight", "helm.sh/hook-delete-policy"}

ALL_COMPONENTS = {
    "tickets", "users", "orders", "payments", "expiration",
    "projector-tickets", "projector-orders",
    "query-api", "schema-registry",
}
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


def production_values() -> dict[str, Any]:
    return yaml.safe_load(PRODUCTION_VALUES.read_text())


# Value sets rendered by the scenario-wide tests.
SCENARIOS: dict[str, Any] = {
    "default": lambda: {},
    "production": production_values,
    # The Ingress alternative, Kafka with mutual TLS (Strimzi-style user certificates).
    "ingress-mtls": lambda: {
        "ingress": {"enabled": True, "className": "nginx", "hostname": "tickets.example.com",
                    "tls": [{"hosts": ["tickets.example.com"], "secretName": "tickets-tls"}]},
        "kafka": {
            "brokers": "my-cluster-kafka-bootstrap.kafka.svc:9093",
            "securityProtocol": "SSL",
            "tls": {"existingSecret": "ticketing-user", "caKey": "ca.crt",
                    "certKey": "user.crt", "keyKey": "user.key"},
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
}


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's objects for `values`, in template order, each with `_template` set."""
    manifests = chart().render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for template, text in sorted(manifests.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["_template"] = template
                objects.append(doc)
    return objects


@cache
def rendered(scenario: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(SCENARIOS[scenario]()))


def without_meta(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def of_kind(objects, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects, kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def component_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def deployments(objects) -> dict[str, dict[str, Any]]:
    return {component_of(d): d for d in of_kind(objects, "Deployment")}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def pod_specs(objects):
    """(object, pod spec) of every workload."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


def secret_ref(env: dict[str, dict[str, Any]], name: str) -> tuple[str, str]:
    ref = env[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


# --- lint, schema, Kubernetes schemas ---------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_passes_in_strict_mode(scenario):
    report = helm.lint(CHART, SCENARIOS[scenario](), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["total_charts_linted"] == 1
    assert not report["errors"] and not problems, report


def test_values_schema_accepts_the_shipped_values_and_refuses_mistakes():
    chart().validate_schema({})
    chart().validate_schema(production_values())
    mistakes = [
        {"kafka": {"securityProtocol": "SASL"}},
        {"kafka": {"topics": {"schemasConfig": {"cleanup.policy": "delete"}}}},
        {"components": {"tickets": {"replicas": "three"}}},
        {"components": {"tickets": {"replica": 3}}},
        {"components": {"query-api": {"routes": [{"path": "/api/x", "methods": ["FETCH"]}]}}},
        {"scylla": {"contactPoints": []}},
        {"scylla": {"keyspacePrefix": "far-too-long"}},
        {"ticketing": {"namespace": "has.dots"}},
        {"image": {"digest": "latest"}},
        {"ticketing": {"signInLimits": {"perAddress": "5 per minute"}}},
        {"ticketing": {"trustedProxies": "10.0.0.0/8"}},
        {"ticketing": {"internalPort": 80}},
    ]
    for values in mistakes:
        with pytest.raises(helm.HelmValuesError):
            chart().validate_schema(values)
    # An install refuses them too: rendering validates against values.schema.json.
    with pytest.raises(helm.HelmError):
        render(mistakes[0])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(scenario, kube_version):
    checked = 0
    for obj in rendered(scenario):
        try:
            kubernetes_validate.validate(without_meta(obj), kube_version, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in CRD_KINDS, f"no schema for {obj['kind']} {obj['apiVersion']}"
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
    assert checked >= 30


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_is_namespaced_labelled_and_uniquely_named(scenario):
    objects = rendered(scenario)
    seen = set()
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        assert len(meta["name"]) <= 63
        assert meta["namespace"] == NAMESPACE
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"


# --- components ------------------------------------------------------------------------


def test_every_component_is_a_deployment_with_a_service():
    objects = rendered("default")
    deps = deployments(objects)
    assert set(deps) == ALL_COMPONENTS
    services = {component_of(s): s for s in of_kind(objects, "Service")}
    assert set(services) == ALL_COMPONENTS
    for name, dep in deps.items():
        assert dep["metadata"]["name"] == PREFIX + name
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", name]
        assert container["ports"] == [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "internal", "containerPort": 8081, "protocol": "TCP"},
        ]
        svc = services[name]
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        # Only the public port: forwarding goes pod to pod, never through a Service.
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(8080, "http")]


def test_adding_a_component_is_one_values_entry():
    objects = render({
        "components": {"reports": {"routes": [{"path": "/api/reports", "methods": ["GET"]}]}},
        "httpRoute": {"enabled": True},
    })
    dep = named(objects, "Deployment", PREFIX + "reports")
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve", "reports"]
    named(objects, "Service", PREFIX + "reports")
    named(objects, "PodDisruptionBudget", PREFIX + "reports")
    named(objects, "NetworkPolicy", PREFIX + "reports")
    route = of_kind(objects, "HTTPRoute")[0]
    assert backend_for(route, "GET", "/api/reports/daily") == PREFIX + "reports"


def test_disabled_components_leave_nothing_behind():
    objects = render({"components": {"orders": {"enabled": False}, "projector-orders": {"enabled": False}}})
    names = {o["metadata"]["name"] for o in objects}
    assert not {n for n in names if n.startswith(PREFIX + "orders") or "projector-orders" in n}
    assert set(deployments(objects)) == ALL_COMPONENTS - {"orders", "projector-orders"}


def test_application_environment():
    deps = deployments(rendered("default"))
    for name, dep in deps.items():
        spec = dep["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        assert env["TICKETING_ADDR"]["value"] == "0.0.0.0:8080"
        assert env["LOG_FORMAT"]["value"] == "json"
        assert env["KAFKA_BOOTSTRAP_SERVERS"]["value"] == "kafka:9092"
        assert env["SCYLLA_URI"]["value"] == "scylla-client.scylla.svc:9042"
        assert env["TICKETING_NAMESPACE"]["value"] == "ticketing"
        # Peers forward commands to the pod's own address, defined before it is referenced.
        names = [e["name"] for e in spec["containers"][0]["env"]]
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["TICKETING_INTERNAL_ADDR"]["value"] == "0.0.0.0:8081"
        assert env["TICKETING_ADVERTISED_URL"]["value"] == "http://$(POD_IP):8081"
        assert env["SIGNIN_LIMIT_PER_ADDRESS"]["value"] == "30/5m"
        assert env["SIGNIN_LIMIT_PER_ACCOUNT_ADDRESS"]["value"] == "5/5m"
        assert env["SIGNIN_LIMIT_PER_ACCOUNT"]["value"] == "20/1h"
        assert "TICKETING_TRUSTED_PROXIES" not in env
        assert names.index("POD_IP") < names.index("TICKETING_ADVERTISED_URL")
        # The only writable place is an emptyDir on /tmp, the data dir.
        assert env["TICKETING_DATA_DIR"]["value"] == "/tmp"
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        # The bundled registry is the default registry.
        assert env["SCHEMA_REGISTRY_URL"]["value"] == (
            f"http://{PREFIX}schema-registry.{NAMESPACE}.svc:8080")
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert env_of(deps["orders"]["spec"]["template"]["spec"]["containers"][0])[
        "EXPIRATION_WINDOW_SECONDS"]["value"] == "900"


def test_production_uses_the_external_registry_and_tracing():
    objects = rendered("production")
    assert "schema-registry" not in deployments(objects)
    for name, dep in deployments(objects).items():
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        assert env["SCHEMA_REGISTRY_URL"]["value"] == "http://schema-registry.kafka.svc:8081"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability.svc:4318"
        assert env["OTEL_SERVICE_NAME"]["value"] == f"ticketing-{name}"
        assert env["SCYLLA_REPLICATION"]["value"] == "{'class': 'NetworkTopologyStrategy', 'eu-west-1': 3}"
        assert env["KAFKA_TOPIC_PARTITIONS"]["value"] == "12"
        assert env["KAFKA_REPLICATION_FACTOR"]["value"] == "3"
        assert env["KAFKA_PROPERTY_CLIENT_RACK"]["value"] == "eu-west-1a"


# --- security ----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_pod_runs_locked_down(scenario):
    workloads = list(pod_specs(rendered(scenario)))
    assert len(workloads) >= 9
    for obj, spec in workloads:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == 65532, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, where
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["privileged"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_service_accounts_do_not_mount_tokens(scenario):
    objects = rendered(scenario)
    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(objects, "ServiceAccount")}
    assert set(accounts) == {f"{RELEASE}-ticketing", PREFIX + "init"}
    for sa in accounts.values():
        assert sa["automountServiceAccountToken"] is False
    for obj, spec in pod_specs(objects):
        assert spec["serviceAccountName"] in accounts


def test_probes_use_healthz_and_readyz():
    for scenario in SCENARIOS:
        for name, dep in deployments(rendered(scenario)).items():
            (container,) = dep["spec"]["template"]["spec"]["containers"]
            for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                                ("readinessProbe", "/readyz")]:
                assert container[probe]["httpGet"] == {"path": path, "port": "http"}, (name, probe)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_pod_is_selected_by_a_network_policy(scenario):
    objects = rendered(scenario)
    policies = of_kind(objects, "NetworkPolicy")
    for obj, spec in pod_specs(objects):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        selecting = [p for p in policies
                     if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert selecting, f"no NetworkPolicy selects {obj['kind']}/{obj['metadata']['name']}"
        for policy in selecting:
            assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}


@pytest.mark.parametrize("values", [{}, {"networkPolicy": {"allowExternal": True}}, "production"])
def test_the_internal_port_admits_only_the_releases_pods(values):
    objects = rendered("production") if values == "production" else render(values)
    release_pods = {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "ticketing", "app.kubernetes.io/instance": RELEASE}}}
    for policy in of_kind(objects, "NetworkPolicy"):
        if policy["metadata"].get("annotations", {}).get("helm.sh/hook"):
            continue
        internal = [rule for rule in policy["spec"]["ingress"]
                    if any(p.get("port") in ("internal", 8081) for p in rule.get("ports", []))]
        assert internal, policy["metadata"]["name"]
        for rule in internal:
            assert rule.get("from") == [release_pods], rule
        # No rule without ports opens it either.
        assert all(rule.get("ports") for rule in policy["spec"]["ingress"])
        egress = policy["spec"]["egress"]
        if {} not in egress:  # a restricted egress still lets a pod forward to its peers
            assert 8081 in {p.get("port") for rule in egress for p in rule.get("ports", [])}
    for svc in of_kind(objects, "Service"):
        assert all(p["targetPort"] != "internal" and p["port"] != 8081 for p in svc["spec"]["ports"])


def test_production_trusts_the_gateway_for_client_addresses():
    for dep in deployments(rendered("production")).values():
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        assert env["TICKETING_TRUSTED_PROXIES"]["value"] == "10.42.7.0/24"


def test_production_network_policies_admit_only_the_gateway_peers_and_prometheus():
    objects = rendered("production")
    gateway_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}
    monitoring_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    routed = {"tickets", "users", "orders", "payments", "query-api"}
    for policy in of_kind(objects, "NetworkPolicy"):
        if policy["metadata"].get("annotations", {}).get("helm.sh/hook"):
            assert policy["spec"]["ingress"] == []
            continue
        sources = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
        assert all(rule.get("from") for rule in policy["spec"]["ingress"]), "a rule admits everyone"
        assert monitoring_ns in sources
        assert (gateway_ns in sources) == (component_of(policy) in routed)
        egress = policy["spec"]["egress"]
        assert {} not in egress
        assert any(p.get("port") == 53 for rule in egress for p in rule.get("ports", []))
        ports = {p.get("port") for rule in egress for p in rule.get("ports", [])}
        assert {9092, 9042, 443} <= ports


# --- secrets -----------------------------------------------------------------------------


def test_production_wires_every_credential_through_existing_secrets():
    objects = rendered("production")
    assert not of_kind(objects, "Secret"), "the chart must not create secrets when existingSecret is set"
    for name, dep in deployments(objects).items():
        spec = dep["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = env_of(container)
        assert env["KAFKA_PROPERTY_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        assert env["KAFKA_PROPERTY_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        assert env["KAFKA_PROPERTY_SASL_USERNAME"]["value"] == "ticketing"
        assert secret_ref(env, "KAFKA_PROPERTY_SASL_PASSWORD") == ("kafka-user-passwords", "client-passwords")
        assert env["KAFKA_PROPERTY_SSL_CA_LOCATION"]["value"] == "/etc/ticketing/kafka-tls/ca.crt"
        assert env["KAFKA_PROPERTY_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"]["value"] == "https"
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["kafka-tls"]["mountPath"] == "/etc/ticketing/kafka-tls"
        assert mounts["kafka-tls"]["readOnly"] is True
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-ca"
        assert secret_ref(env, "SCYLLA_USERNAME") == ("scylla-credentials", "username")
        assert secret_ref(env, "SCYLLA_PASSWORD") == ("scylla-credentials", "password")
        assert secret_ref(env, "JWT_KEY") == ("ticketing-jwt", "jwt-key")
        if name == "payments":
            assert secret_ref(env, "STRIPE_SECRET_KEY") == ("stripe", "secret-key")
        else:
            assert "STRIPE_SECRET_KEY" not in env
        # No credential is ever a literal value.
        for var in ("KAFKA_PROPERTY_SASL_PASSWORD", "SCYLLA_PASSWORD", "JWT_KEY"):
            assert "value" not in env[var]


def test_kafka_mutual_tls_and_username_from_the_secret():
    objects = rendered("ingress-mtls")
    env = env_of(deployments(objects)["tickets"]["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_PROPERTY_SECURITY_PROTOCOL"]["value"] == "SSL"
    assert env["KAFKA_PROPERTY_SSL_CERTIFICATE_LOCATION"]["value"] == "/etc/ticketing/kafka-tls/user.crt"
    assert env["KAFKA_PROPERTY_SSL_KEY_LOCATION"]["value"] == "/etc/ticketing/kafka-tls/user.key"
    assert "KAFKA_PROPERTY_SASL_PASSWORD" not in env

    sasl = render({"kafka": {"securityProtocol": "SASL_PLAINTEXT", "sasl": {
        "mechanism": "PLAIN", "existingSecret": "kafka-user", "usernameKey": "username", "passwordKey": "password"}}})
    env = env_of(deployments(sasl)["users"]["spec"]["template"]["spec"]["containers"][0])
    assert secret_ref(env, "KAFKA_PROPERTY_SASL_USERNAME") == ("kafka-user", "username")
    assert secret_ref(env, "KAFKA_PROPERTY_SASL_PASSWORD") == ("kafka-user", "password")
    assert "KAFKA_PROPERTY_SSL_CA_LOCATION" not in env


def test_without_an_existing_secret_the_chart_generates_a_kept_master_key_mounted_as_a_file():
    objects = rendered("default")
    secret = named(objects, "Secret", f"{RELEASE}-ticketing-master-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    import base64
    key = base64.b64decode(secret["data"]["master-key"]).decode()
    assert re.fullmatch(r"[0-9a-f]{64}", key), key
    for name, dep in deployments(objects).items():
        spec = dep["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert "TICKETING_MASTER_KEY" not in env and "TICKETING_ADMIN_TOKEN" not in env
        if name != "users":
            # Only the users component reads personal data.
            assert "TICKETING_MASTER_KEY_FILE" not in env and "master-key" not in volumes and "master-key" not in mounts
            continue
        assert env["TICKETING_MASTER_KEY_FILE"]["value"] == "/etc/ticketing/master-key/master-key"
        assert volumes["master-key"]["secret"]["secretName"] == secret["metadata"]["name"]
        assert mounts["master-key"] == {"name": "master-key", "mountPath": "/etc/ticketing/master-key", "readOnly": True}


def test_production_takes_the_master_key_and_admin_token_from_existing_secrets():
    objects = rendered("production")
    assert not [s for s in of_kind(objects, "Secret")], "no generated secret in production"
    spec = deployments(objects)["users"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["master-key"]["secret"]["secretName"] == "ticketing-master-key"
    env = env_of(spec["containers"][0])
    assert secret_ref(env, "TICKETING_ADMIN_TOKEN") == ("ticketing-admin", "admin-token")


def test_without_an_existing_secret_the_chart_generates_a_kept_jwt_key():
    objects = rendered("default")
    secret = named(objects, "Secret", f"{RELEASE}-ticketing-jwt")
    assert secret["metadata"]["name"] == f"{RELEASE}-ticketing-jwt"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(secret["data"]["jwt-key"]) >= 64
    for dep in deployments(objects).values():
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        assert secret_ref(env, "JWT_KEY") == (secret["metadata"]["name"], "jwt-key")


@pytest.mark.parametrize("values, message", [
    ({"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"username": "u"}}}, "kafka.sasl.existingSecret"),
    ({"components": {"schema-registry": {"enabled": False}}}, "schemaRegistry.url"),
    ({"scylla": {"replication": {"class": "NetworkTopologyStrategy"}}}, "dataCenters"),
    ({"ingress": {"enabled": True}, "components": {"tickets": {"routes": [{"path": "/api/tickets"}]}}},
     "cannot split it by method"),
])
def test_impossible_settings_fail_the_render_with_a_clear_message(values, message):
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


# --- scaling -----------------------------------------------------------------------------


def test_hpa_and_pdb_when_enabled():
    objects = rendered("production")
    deps = deployments(objects)
    hpas = {component_of(h): h for h in of_kind(objects, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"query-api"}
    hpa = hpas["query-api"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": PREFIX + "query-api"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    # The HPA owns the replica count.
    assert "replicas" not in deps["query-api"]["spec"]
    assert deps["tickets"]["spec"]["replicas"] == 3

    pdbs = {component_of(p): p for p in of_kind(objects, "PodDisruptionBudget")}
    assert set(pdbs) == set(deps)
    for name, pdb in pdbs.items():
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
        assert pdb["spec"]["selector"]["matchLabels"] == deps[name]["spec"]["selector"]["matchLabels"]


def test_no_hpa_by_default_and_pdb_can_be_switched_off():
    objects = rendered("default")
    assert not of_kind(objects, "HorizontalPodAutoscaler")
    assert all(p["spec"]["maxUnavailable"] == 1 for p in of_kind(objects, "PodDisruptionBudget"))
    objects = render({"componentDefaults": {"pdb": {"enabled": False}},
                      "components": {"tickets": {"pdb": {"enabled": True}}}})
    assert [component_of(p) for p in of_kind(objects, "PodDisruptionBudget")] == ["tickets"]


# --- install hook --------------------------------------------------------------------------


def hook_objects(objects):
    return [o for o in objects if "helm.sh/hook" in o["metadata"].get("annotations", {})]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_init_job_is_a_pre_install_and_pre_upgrade_hook(scenario):
    objects = rendered(scenario)
    hooks = hook_objects(objects)
    (job,) = of_kind(hooks, "Job")
    annotations = job["metadata"]["annotations"]
    assert HOOK_ANNOTATIONS <= set(annotations)
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {"before-hook-creation", "hook-succeeded"}
    # What the Job needs exists before it: hooks run before the release's own objects.
    job_weight = int(annotations["helm.sh/hook-weight"])
    spec = job["spec"]["template"]["spec"]
    sa = named(hooks, "ServiceAccount", spec["serviceAccountName"])
    assert int(sa["metadata"]["annotations"]["helm.sh/hook-weight"]) < job_weight
    for policy in of_kind(hooks, "NetworkPolicy"):
        assert int(policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < job_weight
    assert spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    (container,) = spec["containers"]
    assert container["args"] == ["init"]
    env = env_of(container)
    # Only secrets the operator created beforehand; the chart's own JWT secret does not exist yet.
    assert "JWT_KEY" not in env
    chart_secrets = {s["metadata"]["name"] for s in of_kind(objects, "Secret")}
    for var in env.values():
        if "valueFrom" in var and "secretKeyRef" in var["valueFrom"]:
            assert var["valueFrom"]["secretKeyRef"]["name"] not in chart_secrets
    # The topics it creates: partitions, replication, configs; the registry topic compacted.
    assert "cleanup.policy=compact" in env["KAFKA_SCHEMAS_TOPIC_CONFIG"]["value"].split(",")
    assert "retention.ms=-1" in env["KAFKA_TOPIC_CONFIG"]["value"].split(",")
    assert int(env["KAFKA_TOPIC_PARTITIONS"]["value"]) >= 1
    assert int(env["KAFKA_REPLICATION_FACTOR"]["value"]) >= 1
    assert env["SCYLLA_REPLICATION"]["value"].startswith("{'class': ")
    assert env["KAFKA_BOOTSTRAP_SERVERS"]["value"]


def test_init_job_settings_follow_the_values():
    (job,) = of_kind(rendered("production"), "Job")
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_SCHEMAS_TOPIC_CONFIG"]["value"] == "cleanup.policy=compact,min.insync.replicas=2"
    assert env["KAFKA_TOPIC_CONFIG"]["value"] == "min.insync.replicas=2,retention.bytes=-1,retention.ms=-1"
    assert env["KAFKA_TOPIC_PARTITIONS"]["value"] == "12"
    assert env["KAFKA_REPLICATION_FACTOR"]["value"] == "3"
    assert secret_ref(env, "KAFKA_PROPERTY_SASL_PASSWORD") == ("kafka-user-passwords", "client-passwords")
    assert secret_ref(env, "SCYLLA_PASSWORD") == ("scylla-credentials", "password")
    # An external registry is passed on; with the bundled one (default) the Job creates its topic.
    assert env["SCHEMA_REGISTRY_URL"]["value"] == "http://schema-registry.kafka.svc:8081"
    (job,) = of_kind(rendered("default"), "Job")
    assert "SCHEMA_REGISTRY_URL" not in env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert not of_kind(render({"init": {"enabled": False}}), "Job")


# --- routing -------------------------------------------------------------------------------


def path_prefix_matches(prefix: str, path: str) -> bool:
    """Gateway API PathPrefix: element-wise prefix match."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


def backend_for(route: dict[str, Any], method: str, path: str) -> str | None:
    """The Service an HTTPRoute sends a request to, with Gateway API precedence (longest path
    prefix first, then a match with a method before one without)."""
    candidates = []
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches", []):
            if match["path"]["type"] != "PathPrefix":
                continue
            if not path_prefix_matches(match["path"]["value"], path):
                continue
            if "method" in match and match["method"] != method:
                continue
            (backend,) = rule["backendRefs"]
            candidates.append((len(match["path"]["value"]), "method" in match, backend["name"]))
    return max(candidates)[2] if candidates else None


def test_httproute_sends_reads_to_the_query_api_and_writes_to_the_owning_service():
    objects = rendered("production")
    (route,) = of_kind(objects, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["tickets.example.com"]
    expectations = [
        ("GET", "/api/tickets", "query-api"),
        ("GET", "/api/tickets/0f6c", "query-api"),
        ("POST", "/api/tickets", "tickets"),
        ("PUT", "/api/tickets/0f6c", "tickets"),
        ("GET", "/api/orders", "query-api"),
        ("GET", "/api/orders/42", "query-api"),
        ("POST", "/api/orders", "orders"),
        ("DELETE", "/api/orders/42", "orders"),
        ("POST", "/api/payments", "payments"),
        ("POST", "/api/users/signup", "users"),
        ("POST", "/api/users/signin", "users"),
        ("POST", "/api/users/signout", "users"),
        ("GET", "/api/users/currentuser", "users"),
        ("GET", "/api/live", "query-api"),
    ]
    for method, path, component in expectations:
        assert backend_for(route, method, path) == PREFIX + component, (method, path)
    # Nothing else is public: not the registry, not a projector, not another prefix.
    assert backend_for(route, "GET", "/subjects") is None
    assert backend_for(route, "GET", "/api/ticketsx") is None
    assert backend_for(route, "PATCH", "/api/tickets/1") is None


def test_httproute_is_well_formed():
    objects = rendered("production")
    (route,) = of_kind(objects, "HTTPRoute")
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    rules = route["spec"]["rules"]
    assert 1 <= len(rules) <= 16  # Gateway API limits
    for rule in rules:
        assert 1 <= len(rule["matches"]) <= 64
        for match in rule["matches"]:
            assert set(match) <= {"path", "method", "headers", "queryParams"}
            assert match["path"]["type"] == "PathPrefix" and match["path"]["value"].startswith("/")
            assert match.get("method", "GET") in HTTP_METHODS
        for backend in rule["backendRefs"]:
            assert set(backend) == {"name", "port"}
            service = services[backend["name"]]
            assert backend["port"] in [p["port"] for p in service["spec"]["ports"]]
    assert not of_kind(rendered("default"), "HTTPRoute"), "off by default (needs a Gateway)"


def test_ingress_alternative_routes_each_prefix_to_one_component():
    objects = rendered("ingress-mtls")
    (ingress,) = of_kind(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["tickets.example.com"], "secretName": "tickets-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "tickets.example.com"
    services = {s["metadata"]["name"] for s in of_kind(objects, "Service")}
    paths = {}
    for entry in rule["http"]["paths"]:
        assert entry["pathType"] == "Prefix"
        assert entry["backend"]["service"]["name"] in services
        assert entry["backend"]["service"]["port"] == {"name": "http"}
        assert entry["path"] not in paths
        paths[entry["path"]] = entry["backend"]["service"]["name"]
    # Methods cannot be matched: the shared prefixes go to the query API (see the README).
    assert paths == {
        "/api/live": PREFIX + "query-api",
        "/api/openapi.json": PREFIX + "query-api",
        "/api/orders": PREFIX + "query-api",
        "/api/payments": PREFIX + "payments",
        "/api/tickets": PREFIX + "query-api",
        "/api/users": PREFIX + "users",
    }


# --- metrics -------------------------------------------------------------------------------


def test_servicemonitor_scrapes_metrics_of_every_component():
    assert not of_kind(rendered("default"), "ServiceMonitor")
    objects = rendered("production")
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in of_kind(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert {component_of(s) for s in selected} == set(deployments(objects))
    assert all(any(p["name"] == "http" for p in s["spec"]["ports"]) for s in selected)


# --- scanners --------------------------------------------------------------------------------


def checkov() -> list[str]:
    beside = Path(sys.executable).with_name("checkov")
    found = str(beside) if beside.exists() else shutil.which("checkov")
    assert found, "checkov is not installed (scripts/test-chart.sh installs it)"
    return [found, "--config-file", str(CHECKOV_CONFIG), "--output", "json"]


def run_checkov(args: list[str]) -> list[dict[str, Any]]:
    # No Prisma Cloud mappings download (also skip-download in checkov.yaml): runs offline.
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE")
    result = subprocess.run(checkov() + args, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def describe(failed: list[dict[str, Any]]) -> str:
    return "\n".join(f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})" for c in failed)


def test_checkov_finds_nothing_in_the_rendered_manifests(tmp_path):
    for scenario in SCENARIOS:
        manifests = chart().render(SCENARIOS[scenario](), name=RELEASE, namespace=NAMESPACE)
        for template, text in manifests.items():
            if template.endswith(".yaml") and text.strip():
                (tmp_path / scenario).mkdir(exist_ok=True)
                (tmp_path / scenario / Path(template).name).write_text(text)
    reports = run_checkov(["--directory", str(tmp_path), "--framework", "kubernetes"])
    (report,) = reports
    failed = report["results"]["failed_checks"]
    assert not failed, describe(failed)
    assert report["summary"]["resource_count"] >= 100
    assert report["summary"]["passed"] > 1000


def test_checkov_finds_nothing_in_the_dockerfile():
    (report,) = run_checkov(["--file", str(REPO / "Dockerfile"), "--framework", "dockerfile"])
    failed = report["results"]["failed_checks"]
    assert not failed, describe(failed)
    assert report["summary"]["passed"] > 10


def test_dockerfile_builds_a_small_non_root_image_of_the_binary():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    assert "distroless/cc" in stages[-1][0] and ":nonroot" in stages[-1][0]
    build = text.split("\nFROM ")[1]
    assert "--mount=type=cache" in build and "target=/usr/local/cargo/registry" in build
    assert re.search(r"cargo build --release --locked -p ticketing --features \"\$\{CARGO_FEATURES\}\"", build)
    # TLS towards Kafka (SSL, SASL_SSL, SCRAM) and towards an external registry.
    features = re.search(r'^ARG CARGO_FEATURES="([^"]*)"', build, re.M).group(1).split()
    assert "kafka-tls" in features and "registry-tls" in features
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 65532(:65532)?$", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \["ticketing"\]$', runtime, re.M)
    assert "COPY --from=build" in runtime
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "target/" in ignored and ".git" in ignored
    assert "Cargo.lock" not in ignored


def test_the_readme_install_command_renders():
    """The `helm install ticketing …` example of the chart README stays valid."""
    readme = (CHART / "README.md").read_text()
    command = re.search(r"^helm install ticketing infra/helm/ticketing .*?(?=^```)", readme, re.S | re.M)
    assert command, "no `helm install ticketing` example in the chart README"
    values: dict[str, Any] = {}
    for expression in re.findall(r"--set '?([^' \\\n]+)'?", command.group(0)):
        values = merge(values, helm.parse_set_string(expression))
    assert values["kafka"]["sasl"]["existingSecret"] == "kafka-user-passwords"
    chart().validate_schema(values)
    objects = render(values)
    env = env_of(deployments(objects)["tickets"]["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_PROPERTY_SECURITY_PROTOCOL"]["value"] == "SASL_PLAINTEXT"
    assert secret_ref(env, "KAFKA_PROPERTY_SASL_PASSWORD") == ("kafka-user-passwords", "client-passwords")
    assert env["SCYLLA_REPLICATION"]["value"] == "{'class': 'NetworkTopologyStrategy', 'eu-west-1': 3}"
    assert secret_ref(env, "JWT_KEY") == ("ticketing-jwt", "jwt-key")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
