"""The demo handlers (forge_workerd.demo) run by a real workerd: email, webhook (a real HTTP POST to a
local server), report."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from forge import Client
from tests.support import BrokerProcess, WorkerdProcess, wait_until, workers
from tests.workerd_support import job_row


class Hooks:
    """A local webhook receiver: answers each POST with the status in its path (/200, /500)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hooks.received.append((self.path, dict(self.headers), body))
                self.send_response(int(self.path.strip("/")))
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.server.shutdown()


def settled(dsn: str, job_id: str) -> dict[str, Any]:
    def done() -> bool:
        row = job_row(dsn, job_id)
        return row["attempts"] >= 1 and row["status"] != "PROCESSING"

    assert wait_until(done, timeout=15), job_row(dsn, job_id)
    return job_row(dsn, job_id)


def test_demo_handlers(dsn: str, broker: BrokerProcess, hooks: Hooks) -> None:
    worker = WorkerdProcess(broker.target, "demo", effects_dsn=dsn, handlers="forge_workerd.demo")
    with workers(worker), Client(broker.target) as client:
        sent = client.enqueue("email", {"to": "user@example.com", "subject": "Hello"})
        bad = client.enqueue("email", {"to": "not-an-address", "subject": "Hello"}, max_retries=5)
        ok_hook = client.enqueue("webhook", {"url": f"{hooks.url}/200", "body": {"event": "signup"}})
        failing_hook = client.enqueue("webhook", {"url": f"{hooks.url}/500"})
        report = client.enqueue("report", {"rows": 20000})

        row = settled(broker.dsn, sent.id)
        assert row["status"] == "COMPLETED" and row["result"]["to"] == "user@example.com"
        assert row["result"]["message_id"].endswith("@forge.local>")

        row = settled(broker.dsn, bad.id)
        assert row["status"] == "DEAD" and row["attempts"] == 1
        assert row["last_error"] == "invalid 'to' address: 'not-an-address'"

        row = settled(broker.dsn, ok_hook.id)
        assert row["status"] == "COMPLETED" and row["result"]["status"] == 200
        _, headers, body = next(r for r in hooks.received if r[0] == "/200")
        assert body == {"event": "signup"} and headers["X-Forge-Job-Id"] == ok_hook.id

        row = settled(broker.dsn, failing_hook.id)
        assert row["status"] == "PENDING" and row["attempts"] == 1
        assert row["last_error"].startswith(f"RuntimeError: webhook {hooks.url}/500 answered 500")

        row = settled(broker.dsn, report.id)
        assert row["status"] == "COMPLETED"
        assert row["result"]["rows"] == 20000 and 0.4 < row["result"]["mean"] < 0.6
        assert len(row["result"]["digest"]) == 64
