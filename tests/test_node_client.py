"""The Node.js client (``clients/node``) against a real broker, through the same proto.

Runs ``node clients/node/example.mjs`` as a subprocess: it enqueues a job, leases it over the
gRPC stream, acks it and prints the final status; the job must then be COMPLETED as the Python
client and the database see it. Needs Node 20+ on PATH and ``npm ci`` done in clients/node
(``make pytest`` does it; this test does it too when node_modules is missing).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format

from forge import Client
from tests.support import REPO, BrokerProcess, start_broker

NODE_CLIENT = REPO / "clients" / "node"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def node_client() -> Path:
    """clients/node with its dependencies installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the Node client test needs Node.js 20+ and npm on PATH")
    if not (NODE_CLIENT / "node_modules" / ".package-lock.json").exists():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_CLIENT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"
    return NODE_CLIENT


def run_example(node_client: Path, target: str, job_type: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(node_client / "example.mjs"), target, job_type],
        cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60,
    )


def steps(stdout: str) -> dict[str, dict[str, Any]]:
    """The example's JSON lines, by step."""
    out: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            out[record["step"]] = record
    return out


# The client loads the API from the descriptor set ``make proto`` writes, or, without one, from
# proto/forge/v1/broker.proto with the venv's googleapis protos: both must work.
LOADERS = {"descriptor-set": {}, "proto-files": {"FORGE_DESCRIPTOR_SET": ""}}


@pytest.mark.parametrize("loader", LOADERS)
def test_node_example_enqueues_leases_and_acks(node_client: Path, broker: BrokerProcess,
                                               dsn: str, loader: str) -> None:
    job_type = f"node_{uuid.uuid4().hex[:8]}"
    proc = run_example(node_client, broker.target, job_type, LOADERS[loader])
    assert proc.returncode == 0, f"example failed:\n{proc.stdout}\n{proc.stderr}\n{broker.log_text()[-3000:]}"
    seen = steps(proc.stdout)
    assert seen["enqueued"]["created"] is True
    assert seen["enqueued"]["status"] == "PENDING"
    job_id = seen["enqueued"]["id"]
    # The payload made the round trip JS object -> Struct -> Postgres -> Struct -> JS object.
    assert seen["leased"]["id"] == job_id
    assert seen["leased"]["status"] == "PROCESSING"
    assert seen["leased"]["payload"] == {"to": "node@example.com", "n": 1, "tags": ["a", "b"]}
    assert seen["final"]["status"] == "COMPLETED"
    assert seen["final"]["result"] == {"handledBy": "node", "to": "node@example.com"}
    assert seen["stats"]["completed"] >= 1

    # What the Python client and the database say.
    with Client(broker.target) as forge:
        job = forge.get(job_id)
    assert job.type == job_type
    assert job.status == job.COMPLETED
    assert job.attempts == 1
    assert job.priority == 5
    assert job.worker_id.startswith("node-example-")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status, result FROM forge.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    assert str(row[0]).upper() == "COMPLETED"
    assert row[1] == {"handledBy": "node", "to": "node@example.com"}


def test_node_client_reports_a_broker_error(node_client: Path, broker: BrokerProcess) -> None:
    """An invalid job type comes back as the broker's INVALID_ARGUMENT, and the example fails."""
    proc = run_example(node_client, broker.target, "not a valid type!")
    assert proc.returncode == 1
    assert "forge example failed: 3 " in proc.stderr
    assert "type" in proc.stderr


ENQUEUE_MANY = """
import { connect } from "./clients/node/forge.mjs";
const [target, type] = process.argv.slice(1);
const forge = connect(target);
const ids = await forge.enqueueMany(type, [{ n: 1 }, { n: 2, tags: ["a"] }], { priority: 4, idsOnly: true });
const full = await forge.enqueueMany(type, [{ n: 3 }], { maxRetries: 0, concurrencyKey: "k1" });
let refused = null;
try {
  await forge.enqueueMany(type, [{ n: 4 }, [5]]);
} catch (err) {
  refused = { code: err.code, details: err.details };
}
console.log(JSON.stringify({ ids, full: { created: full.created, job: full.jobs[0] }, refused }));
forge.close();
"""


def test_node_client_enqueues_many_in_one_call(node_client: Path, broker: BrokerProcess) -> None:
    job_type = f"node_{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(["node", "--input-type=module", "-e", ENQUEUE_MANY, broker.target, job_type],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    out = json.loads(proc.stdout)
    assert out["ids"]["created"] == 2 and len(out["ids"]["ids"]) == 2
    job = out["full"]["job"]
    assert out["full"]["created"] == 1 and job["payload"] == {"n": 3}
    assert job["maxRetries"] == 0 and job["concurrencyKey"] == "k1"
    # A payload that is not an object is refused by its index, and its batch stores nothing.
    assert out["refused"]["code"] == 3 and "payloads_json[1]" in out["refused"]["details"]
    with Client(broker.target) as forge:
        jobs = forge.list(type=job_type, order="OLDEST").jobs
        assert [j.id for j in jobs[:2]] == out["ids"]["ids"]
        assert [(json_format.MessageToDict(j.payload), j.priority) for j in jobs] == [
            ({"n": 1}, 4), ({"n": 2, "tags": ["a"]}, 4), ({"n": 3}, 0)]


def test_node_client_sends_the_bearer_token(node_client: Path, dsn: str) -> None:
    """Against a broker with API tokens: the admin token works, none is UNAUTHENTICATED, and a
    producer token may enqueue but not lease (PERMISSION_DENIED)."""
    admin, producer = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    broker = start_broker(dsn, FORGE_TOKENS=f"ops:admin:{admin},app:producer:{producer}")
    try:
        ok = run_example(node_client, broker.target, f"node_{uuid.uuid4().hex[:8]}", {"FORGE_TOKEN": admin})
        assert ok.returncode == 0, f"example failed:\n{ok.stdout}\n{ok.stderr}\n{broker.log_text()[-3000:]}"
        job_id = steps(ok.stdout)["final"]["id"]
        assert steps(ok.stdout)["final"]["status"] == "COMPLETED"
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT status FROM forge.jobs WHERE id = %s", (job_id,)).fetchone()
        assert row is not None and str(row[0]).upper() == "COMPLETED"

        anonymous = run_example(node_client, broker.target, "node_anonymous", {"FORGE_TOKEN": ""})
        assert anonymous.returncode == 1
        assert "forge example failed: 16 " in anonymous.stderr  # UNAUTHENTICATED
        assert "enqueued" not in steps(anonymous.stdout)

        limited = run_example(node_client, broker.target, "node_producer", {"FORGE_TOKEN": producer})
        assert limited.returncode == 1
        assert "enqueued" in steps(limited.stdout)
        assert "forge example failed: 7 " in limited.stderr  # PERMISSION_DENIED on Lease
        assert "Lease" in limited.stderr
        assert admin not in broker.log_text() and producer not in broker.log_text()
    finally:
        broker.stop()
