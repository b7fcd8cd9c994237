"""Server-streaming RPCs through the gateway: NDJSON, SSE, early errors, client disconnects."""

from __future__ import annotations

import json
import time

import httpx

from tests.gateway_support import unique_type

pytest_plugins = ["tests.gateway_fixtures"]


def test_watch_stats_ndjson_delivers_snapshots(http: httpx.Client) -> None:
    frames = []
    with http.stream("GET", "/v1/stats:watch", params={"interval": "0.2s"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if line:
                frames.append(json.loads(line))
            if len(frames) == 3:
                break
    assert all(set(f) == {"result"} for f in frames), frames
    stamps = [f["result"]["computedAt"] for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) >= 2
    assert all("pending" in f["result"] for f in frames)


def test_watch_stats_sse_delivers_snapshots(http: httpx.Client) -> None:
    events: list[dict[str, object]] = []
    headers = {"Accept": "text/event-stream"}
    with http.stream("GET", "/v1/stats:watch", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        buffer = ""
        for chunk in r.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                event, buffer = buffer.split("\n\n", 1)
                lines = event.split("\n")
                assert all(line.startswith("data: ") for line in lines), event
                events.append(json.loads("".join(line[6:] for line in lines)))
            if len(events) >= 2:
                break
    assert len(events) >= 2
    # SSE carries the bare message (no {"result": ...} wrapper) for EventSource consumers.
    assert all("computedAt" in e and "pending" in e for e in events)


def test_stream_refused_at_once_gets_an_http_error(http: httpx.Client) -> None:
    # Lease without a worker_id: the broker refuses before sending anything, so the client gets
    # a real 400, not a 200 stream holding an error.
    r = http.post("/v1/jobs:lease", json={})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 3
    assert "worker_id" in r.json()["message"]
    r = http.get("/v1/stats:watch", params={"interval": "-1s"})
    assert r.status_code == 400, r.text


def workers(http: httpx.Client) -> set[str]:
    return {w["workerId"] for w in http.get("/v1/stats").json()["workers"]}


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_client_disconnect_cancels_the_grpc_stream(http: httpx.Client) -> None:
    """A lease stream opened over HTTP registers a worker at the broker; hanging up the HTTP
    connection must end the gRPC stream, which unregisters it."""
    worker_id = "gw-disconnect-" + unique_type()
    with httpx.Client(base_url=str(http.base_url), timeout=20.0) as own:
        with own.stream(
            "POST", "/v1/jobs:lease", json={"workerId": worker_id, "types": [unique_type()]}
        ) as r:
            assert r.status_code == 200
            assert wait_for(lambda: worker_id in workers(http)), "stream never registered"
        # Leaving the block closed the response; close the pool too so the socket is gone.
    assert wait_for(lambda: worker_id not in workers(http)), "gRPC stream outlived its client"
