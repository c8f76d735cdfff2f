"""Checks of the chart's web client (`web.enabled`) and of its image (web/Dockerfile), offline.

The web client is off by default (its image is built separately, from web/); these tests render
it on, alone and with the production-like values, and hold it to the same rules as the rest of
the chart: strict lint, the Kubernetes schemas, a locked-down pod, a network policy, routing
(`/` to the client, `/api/...` unchanged, `/api/live` to the query API) and checkov.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from test_chart import (
    CHART,
    CRD_KINDS,
    KUBE_VERSIONS,
    NAMESPACE,
    PREFIX,
    RELEASE,
    backend_for,
    chart,
    component_of,
    describe,
    env_of,
    named,
    of_kind,
    production_values,
    render,
    run_checkov,
    without_meta,
)

REPO = Path(__file__).resolve().parents[3]
WEB = REPO / "web"
WEB_NAME = PREFIX + "web"

WEB_SCENARIOS: dict[str, Any] = {
    "web": lambda: {"web": {"enabled": True}, "httpRoute": {"enabled": True}},
    "web-production": lambda: {**production_values(), "web": {
        "enabled": True, "stripePublishableKey": "pk_test_51Example",
        "image": {"registry": "registry.example.com", "repository": "shop/ticketing-web", "tag": "0.1.0"}}},
    "web-ingress-closed": lambda: {
        "web": {"enabled": True},
        "ingress": {"enabled": True, "className": "nginx", "hostname": "tickets.example.com"},
        "networkPolicy": {"allowExternal": False},
    },
}


def web_objects(objects) -> list[dict[str, Any]]:
    return [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "web"]


def test_the_web_client_is_off_by_default():
    objects = render({})
    assert not web_objects(objects)
    assert not any(o["metadata"]["name"] == WEB_NAME for o in objects)


@pytest.mark.parametrize("scenario", sorted(WEB_SCENARIOS))
def test_lint_and_the_kubernetes_schemas_accept_the_web_client(scenario):
    values = WEB_SCENARIOS[scenario]()
    chart().validate_schema(values)
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report
    objects = render(values)
    kinds = {o["kind"] for o in web_objects(objects)}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    for kube_version in KUBE_VERSIONS:
        for obj in objects:
            try:
                kubernetes_validate.validate(without_meta(obj), kube_version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                assert obj["kind"] in CRD_KINDS
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")


def test_the_web_pod_serves_the_image_locked_down_with_no_secrets():
    objects = render(WEB_SCENARIOS["web"]())
    dep = named(objects, "Deployment", WEB_NAME)
    assert component_of(dep) == "web"
    spec = dep["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "ticketing-web:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert dep["spec"]["replicas"] == 2
    # Same rules as every other pod of the chart.
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 65532
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) <= set(container["resources"]["limits"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    # nginx writes only to /tmp (an emptyDir); /config.json comes from the ConfigMap.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    config_mount = mounts["/usr/share/nginx/html/config.json"]
    assert config_mount["subPath"] == "config.json" and config_mount["readOnly"] is True
    assert volumes[config_mount["name"]]["configMap"]["name"] == WEB_NAME
    # It proxies nothing and needs no credential.
    assert not env_of(container)
    svc = named(objects, "Service", WEB_NAME)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(8080, "http")]
    pdb = named(objects, "PodDisruptionBudget", WEB_NAME)
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_config_json_names_the_stripe_publishable_key_only_when_set():
    objects = render(WEB_SCENARIOS["web"]())
    assert json.loads(named(objects, "ConfigMap", WEB_NAME)["data"]["config.json"]) == {}
    objects = render(WEB_SCENARIOS["web-production"]())
    config = named(objects, "ConfigMap", WEB_NAME)
    assert json.loads(config["data"]["config.json"]) == {"stripePublishableKey": "pk_test_51Example"}
    dep = named(objects, "Deployment", WEB_NAME)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/shop/ticketing-web:0.1.0"
    assert dep["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]
    # A changed config rolls the pods.
    plain = named(render(WEB_SCENARIOS["web"]()), "Deployment", WEB_NAME)
    assert (dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            != plain["spec"]["template"]["metadata"]["annotations"]["checksum/config"])
    # A secret key is refused: /config.json is public.
    for key in ("sk_test_51Secret", "rk_live_1", "pk_test_has space"):
        with pytest.raises(helm.HelmValuesError):
            chart().validate_schema({"web": {"enabled": True, "stripePublishableKey": key}})


def test_the_httproute_sends_pages_to_the_web_client_and_the_api_where_it_went():
    objects = render(WEB_SCENARIOS["web-production"]())
    (route,) = of_kind(objects, "HTTPRoute")
    for path in ("/", "/tickets/0f6c", "/orders/42", "/signin", "/assets/index-abc.js", "/config.json"):
        assert backend_for(route, "GET", path) == WEB_NAME, path
    expectations = [
        ("GET", "/api/live", "query-api"),
        ("GET", "/api/tickets", "query-api"),
        ("POST", "/api/tickets", "tickets"),
        ("PUT", "/api/tickets/0f6c", "tickets"),
        ("GET", "/api/orders/42", "query-api"),
        ("POST", "/api/orders", "orders"),
        ("DELETE", "/api/orders/42", "orders"),
        ("POST", "/api/payments", "payments"),
        ("POST", "/api/users/signin", "users"),
        ("GET", "/api/users/currentuser", "users"),
    ]
    for method, path, component in expectations:
        assert backend_for(route, method, path) == PREFIX + component, (method, path)
    services = {s["metadata"]["name"] for s in of_kind(objects, "Service")}
    for rule in route["spec"]["rules"]:
        for backend in rule["backendRefs"]:
            assert backend["name"] in services
    assert 1 <= len(route["spec"]["rules"]) <= 16


def test_the_ingress_sends_pages_to_the_web_client():
    objects = render(WEB_SCENARIOS["web-ingress-closed"]())
    (ingress,) = of_kind(objects, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    paths = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert paths["/"] == WEB_NAME
    assert paths["/api/live"] == PREFIX + "query-api"
    assert paths["/api/tickets"] == PREFIX + "query-api" and paths["/api/users"] == PREFIX + "users"


def test_the_web_pods_network_policy_admits_only_http_and_allows_no_egress():
    policy = named(render(WEB_SCENARIOS["web"]()), "NetworkPolicy", WEB_NAME)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"]["egress"] == []
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    closed = named(render(WEB_SCENARIOS["web-ingress-closed"]()), "NetworkPolicy", WEB_NAME)
    assert closed["spec"]["ingress"] == []
    production = named(render(WEB_SCENARIOS["web-production"]()), "NetworkPolicy", WEB_NAME)
    gateway_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}
    (rule,) = production["spec"]["ingress"]
    assert gateway_ns in rule["from"] and rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_checkov_finds_nothing_in_the_web_manifests(tmp_path):
    for scenario in WEB_SCENARIOS:
        manifests = chart().render(WEB_SCENARIOS[scenario](), name=RELEASE, namespace=NAMESPACE)
        (tmp_path / scenario).mkdir()
        (tmp_path / scenario / "web.yaml").write_text(manifests["ticketing/templates/web.yaml"])
    (report,) = run_checkov(["--directory", str(tmp_path), "--framework", "kubernetes"])
    failed = report["results"]["failed_checks"]
    assert not failed, describe(failed)
    assert report["summary"]["passed"] > 50


def test_checkov_finds_nothing_in_the_web_dockerfile():
    (report,) = run_checkov(["--file", str(WEB / "Dockerfile"), "--framework", "dockerfile"])
    failed = report["results"]["failed_checks"]
    assert not failed, describe(failed)
    assert report["summary"]["passed"] > 10


def test_the_web_image_builds_the_app_and_serves_it_with_unprivileged_nginx():
    text = (WEB / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) == 2, "multi-stage: build, then runtime"
    assert "node:" in stages[0][0]
    assert "nginx-unprivileged" in stages[1][0] and "latest" not in stages[1][0]
    build = text.split("\nFROM ")[1]
    assert "npm ci" in build and "npm run build" in build
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert "COPY --from=build" in runtime and "/usr/share/nginx/html" in runtime
    user = re.search(r"^USER (\d+)(?::(\d+))?$", runtime, re.M)
    assert user and int(user.group(1)) != 0
    ignored = (WEB / ".dockerignore").read_text().split()
    assert {"node_modules/", "dist/"} <= set(ignored)
    assert "package-lock.json" not in ignored


def test_the_web_nginx_config_serves_the_app_and_nothing_else():
    conf = (WEB / "nginx.conf").read_text()
    assert "proxy_pass" not in conf, "the web image proxies nothing"
    assert re.search(r"listen 8080;", conf)
    assert re.search(r"pid /tmp/", conf), "writable paths under /tmp only (read-only root)"
    for temp in re.findall(r"^\s*\w+_temp_path (\S+);", conf, re.M):
        assert temp.startswith("/tmp/"), temp
    # The client's routes fall back to index.html; /config.json and the API never do.
    assert re.search(r"location / \{[^}]*try_files \$uri /index\.html;", conf, re.S)
    assert re.search(r"location = /config\.json \{[^}]*try_files \$uri =404;", conf, re.S)
    assert re.search(r"location /api/ \{[^}]*return 404", conf, re.S)
    assert re.search(r"location = /healthz", conf)
