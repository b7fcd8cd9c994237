"""The seed project's README curl examples, with its exact paths and bodies, through the gateway.

    curl -X POST http://localhost:8080/jobs -H "Content-Type: application/json" -d '{
        "type": "email", "payload": {"to": "user@example.com", "subject": "Hello"},
        "priority": 10, "max_retries": 5 }'
    curl http://localhost:8080/jobs/{id}
    curl http://localhost:8080/stats
    curl http://localhost:8080/dlq
    curl -X POST http://localhost:8080/dlq/{id}/retry
"""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx

from tests.gateway_support import SEED_JOB, make_dead_job, unique_type
from tests.support import BrokerProcess

pytest_plugins = ["tests.gateway_fixtures"]

# The README's body byte for byte (indentation and all), as curl -d sends it.
SEED_BODY = """{
    "type": "email",
    "payload": {"to": "user@example.com", "subject": "Hello"},
    "priority": 10,
    "max_retries": 5
  }"""


def test_seed_enqueue_returns_the_job_with_its_id(http: httpx.Client) -> None:
    r = http.post("/jobs", content=SEED_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    job = r.json()
    # The seed answers with the bare job, not an EnqueueResponse wrapper.
    assert "job" not in job
    assert job["id"]
    assert job["type"] == "email"
    assert job["payload"] == {"to": "user@example.com", "subject": "Hello"}
    assert job["priority"] == 10
    assert job["maxRetries"] == 5
    assert job["status"] == "PENDING"
    assert job["attempts"] == 0
    assert job["createdAt"].endswith("Z")


def test_seed_get_job(http: httpx.Client) -> None:
    created = http.post("/jobs", json=SEED_JOB).json()
    r = http.get(f"/jobs/{created['id']}")
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["id"] == created["id"]
    assert job["type"] == "email"
    assert job["payload"] == SEED_JOB["payload"]
    assert job["status"] in ("PENDING", "PROCESSING", "COMPLETED")


def test_seed_stats(http: httpx.Client) -> None:
    http.post("/jobs", json=SEED_JOB).raise_for_status()
    r = http.get("/stats")
    assert r.status_code == 200, r.text
    stats = r.json()
    for key in ("pending", "scheduled", "processing", "completed", "dead", "cancelled"):
        # int64 counters are JSON strings under the proto3 mapping.
        assert isinstance(stats[key], str) and stats[key].isdigit(), (key, stats)
    assert int(stats["pending"]) + int(stats["scheduled"]) >= 1
    assert stats["computedAt"].endswith("Z")


def test_seed_dlq_is_a_bare_array_and_retry_revives(
    http: httpx.Client, gw_broker: BrokerProcess
) -> None:
    job_type = unique_type("seed")
    dead_id = make_dead_job(gw_broker.target, job_type)

    r = http.get("/dlq")
    assert r.status_code == 200, r.text
    dead = r.json()
    assert isinstance(dead, list)
    mine = [j for j in dead if j["id"] == dead_id]
    assert len(mine) == 1
    assert mine[0]["status"] == "DEAD"
    assert mine[0]["lastError"] == "boom"

    # Exactly the README's call: POST with no body and no content type.
    r = http.post(f"/dlq/{dead_id}/retry")
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["id"] == dead_id
    assert job["status"] == "PENDING"
    assert job["attempts"] == 0
    assert dead_id not in [j["id"] for j in http.get("/dlq").json()]


def test_seed_curl_commands_verbatim(http: httpx.Client) -> None:
    """The README's commands run by curl itself."""
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed to run the README's commands as written"
    base = str(http.base_url).rstrip("/") + "/"
    out = subprocess.run(
        [curl, "-s", "-X", "POST", f"{base}jobs", "-H", "Content-Type: application/json",
         "-d", SEED_BODY],
        capture_output=True, check=True, timeout=20,
    )
    job = json.loads(out.stdout)
    assert job["type"] == "email" and job["id"]
    for path in (f"jobs/{job['id']}", "stats", "dlq"):
        out = subprocess.run([curl, "-s", "-f", f"{base}{path}"], capture_output=True, timeout=20)
        assert out.returncode == 0, (path, out.stdout)
        json.loads(out.stdout)
