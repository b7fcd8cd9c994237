"""The Kubernetes manifests in deploy/: they parse, hang together, configure only variables the
code reads, and KEDA's scaling query runs against a real migrated database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from forge_broker.auth import load_tokens
from forge_broker.errors import InvalidArgument
from tests.support import REPO

DEPLOY = REPO / "deploy"
SOURCES = [
    "broker/forge_broker/config.py",
    "broker/forge_broker/__main__.py",
    "workerd/forge_workerd/config.py",
    "gateway/forge_gateway/config.py",
]


def documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: not a mapping"
            out.append((path, doc))
    return out


def by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path, doc in documents():
        if doc["kind"] == "Kustomization":
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"{path.name}: {key} defined twice"
        found[key] = doc
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


def keda_query() -> str:
    scaled = by_kind()[("ScaledObject", "forge-workerd")]
    [trigger] = scaled["spec"]["triggers"]
    return str(trigger["metadata"]["query"])


def test_every_manifest_parses_with_the_expected_kinds() -> None:
    docs = documents()
    assert docs
    for path, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), path.name
    assert set(by_kind()) == {
        ("Secret", "forge-database"), ("Secret", "forge-tokens"),
        ("Deployment", "forge-broker"), ("Service", "forge-broker"),
        ("Deployment", "forge-gateway"), ("Service", "forge-gateway"),
        ("Deployment", "forge-workerd"),
        ("TriggerAuthentication", "forge-database"), ("ScaledObject", "forge-workerd"),
    }
    [kustomization] = [doc for _, doc in docs if doc["kind"] == "Kustomization"]
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def test_deployments_select_their_pods_and_services_reach_named_ports() -> None:
    kinds = by_kind()
    for (kind, name), doc in kinds.items():
        if kind != "Deployment":
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        service = kinds.get(("Service", name))
        if service is not None:
            assert service["spec"]["selector"].items() <= labels.items(), name
            ports = {p["name"] for p in container(doc)["ports"]}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, (name, port)


def test_broker_is_ready_only_when_grpc_health_says_serving() -> None:
    broker = by_kind()[("Deployment", "forge-broker")]
    probe = container(broker)["readinessProbe"]
    assert probe["grpc"] == {"port": 50051, "service": "forge.v1.Broker"}
    assert env(broker)["GRPC_PORT"] == "50051"
    assert "grpc" not in container(broker)["livenessProbe"]  # a database outage must not restart it


def test_manifests_set_only_variables_the_code_reads() -> None:
    source = "\n".join((REPO / f).read_text() for f in SOURCES)
    for (kind, name), doc in by_kind().items():
        if kind != "Deployment":
            continue
        for var in env(doc):
            assert re.search(rf"\b{var}\b", source), f"{name}: {var} is read by no service"
    for name, port_var in (("forge-broker", "FORGE_METRICS_PORT"),
                           ("forge-workerd", "WORKERD_METRICS_PORT")):
        doc = by_kind()[("Deployment", name)]
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == env(doc)[port_var]


def test_keda_scales_workerd_with_credentials_from_the_database_secret() -> None:
    kinds = by_kind()
    scaled = kinds[("ScaledObject", "forge-workerd")]
    assert ("Deployment", scaled["spec"]["scaleTargetRef"]["name"]) in kinds
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    auth = kinds[("TriggerAuthentication", trigger["authenticationRef"]["name"])]
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "connection"
    secret = kinds[("Secret", ref["name"])]
    assert ref["key"] in secret["stringData"]
    assert float(trigger["metadata"]["targetQueryValue"]) > 0


def test_keda_query_counts_runnable_pending_jobs_in_a_migrated_database(dsn: str) -> None:
    query = keda_query()
    with psycopg.connect(dsn, autocommit=True) as conn:
        plan = conn.execute(f"EXPLAIN {query}").fetchall()
        assert plan
        conn.execute(
            "INSERT INTO forge.jobs (type, status, run_at, lease_token) VALUES"
            " ('a', 'PENDING', now() - interval '1 minute', NULL), ('a', 'PENDING', now(), NULL),"
            " ('b', 'PENDING', now() - interval '1 hour', NULL),"
            " ('a', 'PENDING', now() + interval '1 hour', NULL),"  # scheduled: not yet runnable
            " ('a', 'COMPLETED', now(), NULL), ('a', 'DEAD', now(), NULL),"
            " ('a', 'PROCESSING', now(), gen_random_uuid())")
        (count,) = conn.execute(query).fetchone() or (None,)
    assert count == 3


def test_services_listening_beyond_loopback_get_tokens_and_workerd_a_worker_token() -> None:
    kinds = by_kind()
    secret = kinds[("Secret", "forge-tokens")]["stringData"]
    entries = [entry.split(":", 2) for entry in secret["FORGE_TOKENS"].split(",")]
    assert [token for _, role, token in entries if role == "worker"] == [secret["WORKER_TOKEN"]]
    for name, role, token in entries:  # placeholders: every service refuses them until replaced
        with pytest.raises(InvalidArgument, match=rf"\({name}\): the token is a placeholder"):
            load_tokens({"FORGE_TOKENS": f"{name}:{role}:{token}"})
    from_secret = {"secretKeyRef": {"name": "forge-tokens", "key": "FORGE_TOKENS"}}
    assert env(kinds[("Deployment", "forge-broker")])["FORGE_TOKENS"] == from_secret
    assert env(kinds[("Deployment", "forge-gateway")])["FORGE_TOKENS"] == from_secret
    assert env(kinds[("Deployment", "forge-workerd")])["FORGE_TOKEN"] == {
        "secretKeyRef": {"name": "forge-tokens", "key": "WORKER_TOKEN"}}


def test_keda_alone_sets_the_workerd_replica_count() -> None:
    # A replicas field would be re-applied by every `kubectl apply`, fighting the autoscaler.
    assert "replicas" not in by_kind()[("Deployment", "forge-workerd")]["spec"]


def test_gateway_probes_hit_its_health_routes() -> None:
    gateway = container(by_kind()[("Deployment", "forge-gateway")])
    # Liveness must not depend on the broker: a broker outage would restart every gateway.
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (or a folder above it) out of the build context, by
    Docker's rules: ``*`` within one path segment, ``**`` across any, ``!`` re-includes."""
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        parts = re.split(r"(\*\*/?|\*|\?)", pattern.lstrip("!").strip("/"))
        regex = "".join({"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(p, re.escape(p))
                        for p in parts)
        if re.fullmatch(rf"{regex}(/.*)?", path):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_local_installs_out_of_the_image() -> None:
    for path in ("dashboard/node_modules/react/index.js", "clients/node/node_modules/x/y.js",
                 "bench/.venv-peers/bin/python", ".venv/bin/python", "gateway/x/__pycache__/a.pyc"):
        assert dockerignored(path), path
    for path in ("broker/forge_broker/server.py", "dashboard/package.json", "bench/forge_bench.py"):
        assert not dockerignored(path), path
