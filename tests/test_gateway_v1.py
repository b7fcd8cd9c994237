"""Every /v1 route of the proto's annotations, over real HTTP to a real broker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx

from tests.gateway_support import make_dead_job, unique_type
from tests.support import BrokerProcess, free_port, start_gateway

pytest_plugins = ["tests.gateway_fixtures"]


def enqueue(http: httpx.Client, job_type: str, **fields: object) -> dict[str, object]:
    r = http.post("/v1/jobs", json={"type": job_type, **fields})
    assert r.status_code == 200, r.text
    job: dict[str, object] = r.json()["job"]
    return job


def test_enqueue_answers_the_response_message(http: httpx.Client) -> None:
    job_type = unique_type()
    run_at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = http.post(
        "/v1/jobs",
        json={
            "type": job_type,
            "payload": {"n": 1, "nested": {"list": [1, "two", None, True]}},
            "priority": -5,
            "maxRetries": 2,
            "runAt": run_at,
            "idempotencyKey": "k-" + job_type,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] is True
    job = body["job"]
    assert job["type"] == job_type
    assert job["payload"] == {"n": 1, "nested": {"list": [1, "two", None, True]}}
    assert job["priority"] == -5
    assert job["maxRetries"] == 2
    assert job["runAt"] == run_at
    assert job["idempotencyKey"] == "k-" + job_type
    # Same key again: the existing job, created = false.
    again = http.post("/v1/jobs", json={"type": job_type, "idempotency_key": "k-" + job_type})
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["job"]["id"] == job["id"]


def test_enqueue_accepts_proto_and_json_field_names(http: httpx.Client) -> None:
    a = enqueue(http, unique_type(), max_retries=7)
    b = enqueue(http, unique_type(), maxRetries=7)
    assert a["maxRetries"] == b["maxRetries"] == 7
    assert "max_retries" not in a  # output is lowerCamelCase only


def test_enqueue_batch(http: httpx.Client) -> None:
    job_type = unique_type()
    r = http.post(
        "/v1/jobs:batch",
        json={"jobs": [{"type": job_type, "priority": i} for i in range(3)]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == 3
    assert [j["priority"] for j in body["jobs"]] == [0, 1, 2]
    assert len({j["id"] for j in body["jobs"]}) == 3


def test_whole_numbers_in_a_payload_come_back_without_a_fraction(http: httpx.Client) -> None:
    payload = {"n": 1, "neg": -42, "half": 1.5, "list": [0, 2.25, {"deep": 7}], "big": 1e300}
    r = http.post("/v1/jobs", json={"type": unique_type(), "payload": payload})
    assert r.status_code == 200, r.text
    for text in (r'"n":1[,}]', r'"neg":-42[,}]', r'"deep":7}', r'"half":1\.5[,}]'):
        assert re.search(text, r.text), (text, r.text)
    assert r.json()["job"]["payload"] == payload
    got = http.get(f"/v1/jobs/{r.json()['job']['id']}")
    assert got.json()["payload"] == payload and re.search(r'"n":1[,}]', got.text)


def test_get_job(http: httpx.Client) -> None:
    job = enqueue(http, unique_type(), payload={"x": "y"})
    r = http.get(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == job["id"]
    assert r.json()["payload"] == {"x": "y"}


def test_list_jobs_filters_and_pages(http: httpx.Client) -> None:
    job_type = unique_type()
    ids = [str(enqueue(http, job_type)["id"]) for _ in range(5)]
    enqueue(http, unique_type())  # another type: must not show up

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        params = {"status": "PENDING", "type": job_type, "page_size": "2"}
        if token:
            params["page_token"] = token
        r = http.get("/v1/jobs", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["jobs"]) <= 2
        assert all(j["type"] == job_type and j["status"] == "PENDING" for j in body["jobs"])
        seen += [j["id"] for j in body["jobs"]]
        pages += 1
        token = body["nextPageToken"]
        if not token:
            break
    assert pages == 3
    # Newest first, each job exactly once.
    assert seen == list(reversed(ids))

    # lowerCamelCase parameter names and enum numbers work too.
    r = http.get("/v1/jobs", params={"type": job_type, "pageSize": "1", "status": "1"})
    assert r.status_code == 200, r.text
    assert len(r.json()["jobs"]) == 1
    assert r.json()["nextPageToken"]
    # Another status: none of them.
    r = http.get("/v1/jobs", params={"type": job_type, "status": "DEAD"})
    assert r.status_code == 200, r.text
    assert r.json()["jobs"] == []


def test_cancel_job(http: httpx.Client) -> None:
    job = enqueue(http, unique_type())
    r = http.post(f"/v1/jobs/{job['id']}:cancel", json={"reason": "not needed"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CANCELLED"
    assert "not needed" in r.json()["lastError"]
    # body "*" with an empty body is an empty request message plus the path's id.
    other = enqueue(http, unique_type())
    r = http.post(f"/v1/jobs/{other['id']}:cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CANCELLED"


def test_dead_letter_queue_and_retry(http: httpx.Client, gw_broker: BrokerProcess) -> None:
    job_type = unique_type()
    dead_id = make_dead_job(gw_broker.target, job_type)
    r = http.get("/v1/dlq", params={"type": job_type})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [j["id"] for j in body["jobs"]] == [dead_id]
    assert body["jobs"][0]["status"] == "DEAD"
    assert body["nextPageToken"] == ""

    r = http.post(f"/v1/dlq/{dead_id}:retry", json={})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PENDING"
    assert http.get("/v1/dlq", params={"type": job_type}).json()["jobs"] == []


def test_stats(http: httpx.Client) -> None:
    job_type = unique_type()
    enqueue(http, job_type)
    r = http.get("/v1/stats")
    assert r.status_code == 200, r.text
    stats = r.json()
    assert set(stats) >= {"computedAt", "pending", "dead", "types", "throughput", "workers"}
    assert isinstance(stats["types"], list)


def lease_stream(
    http: httpx.Client, worker_id: str, job_type: str
) -> Iterator[dict[str, object]]:
    """Yield the jobs pushed on an HTTP lease stream, with their lease tokens."""
    with http.stream(
        "POST", "/v1/jobs:lease", json={"workerId": worker_id, "types": [job_type]}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if not line:
                continue
            frame = json.loads(line)
            assert "result" in frame, frame
            yield from frame["result"]["jobs"]


def test_lease_heartbeat_ack_nack_over_http(http: httpx.Client) -> None:
    """The worker protocol itself through the gateway: a streaming lease plus unary calls."""
    job_type = unique_type()
    first = enqueue(http, job_type)
    second = enqueue(http, job_type)
    leased: dict[str, str] = {}
    stream = lease_stream(http, "http-worker", job_type)
    for item in stream:
        job = item["job"]
        assert isinstance(job, dict)
        assert job["status"] == "PROCESSING"
        leased[job["id"]] = str(item["leaseToken"])
        if len(leased) == 2:
            break
    stream.close()  # type: ignore[attr-defined]
    assert set(leased) == {first["id"], second["id"]}

    r = http.post(
        "/v1/leases:heartbeat",
        json={
            "leases": [{"jobId": k, "leaseToken": v} for k, v in leased.items()],
            "leaseSeconds": 60,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["lostJobIds"] == []
    assert r.json()["leaseExpiresAt"].endswith("Z")

    r = http.post(
        f"/v1/jobs/{first['id']}:ack",
        json={"leaseToken": leased[str(first["id"])], "result": {"sent": True}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}
    done = http.get(f"/v1/jobs/{first['id']}").json()
    assert done["status"] == "COMPLETED"
    assert done["result"] == {"sent": True}

    r = http.post(
        f"/v1/jobs/{second['id']}:nack",
        json={"lease_token": leased[str(second["id"])], "error": "smtp down", "retryAfter": "30s"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PENDING"
    assert r.json()["runAt"].endswith("Z")
    again = http.get(f"/v1/jobs/{second['id']}").json()
    assert again["lastError"] == "smtp down"
    assert again["status"] == "PENDING"


def test_request_id_is_echoed_and_forwarded(http: httpx.Client) -> None:
    r = http.get("/v1/stats", headers={"x-request-id": "req-123", "authorization": "Bearer x"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "req-123"


def test_enum_names_in_the_query_string_are_accepted_in_any_case(
    http: httpx.Client, gw_broker: BrokerProcess
) -> None:
    job_type = unique_type()
    dead_id = make_dead_job(gw_broker.target, job_type)
    for spelling in ("dead", "Dead", "DEAD"):
        r = http.get("/v1/jobs", params={"type": job_type, "status": spelling})
        assert r.status_code == 200, (spelling, r.text)
        assert [j["id"] for j in r.json()["jobs"]] == [dead_id]
    r = http.get("/v1/jobs", params={"type": job_type, "status": "pending"})
    assert r.status_code == 200, r.text
    assert r.json()["jobs"] == []
    bogus = http.get("/v1/jobs", params={"status": "bogus"})
    assert bogus.status_code == 400
    assert "bogus" in bogus.json()["message"]


def test_healthz_and_readyz_answer_200_with_the_broker_serving(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "SERVING"}


def test_without_a_broker_the_gateway_is_alive_but_not_ready() -> None:
    gw = start_gateway(f"127.0.0.1:{free_port()}")
    try:
        with httpx.Client(base_url=gw.url, timeout=20.0) as http:
            assert http.get("/healthz").status_code == 200
            ready = http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["status"] != "SERVING"
    finally:
        gw.stop()
