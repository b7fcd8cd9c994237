"""The ``forge`` CLI against a broker with API tokens: FORGE_TOKEN or --token, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.security_support import Tokens
from tests.support import BrokerProcess, start_broker

TOKENS = Tokens.fresh()


def forge(broker: BrokerProcess | str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    forge_bin = shutil.which("forge", path=os.path.dirname(sys.executable))
    assert forge_bin, "the forge console script is installed beside the interpreter"
    clean = {k: v for k, v in os.environ.items() if k != "FORGE_TOKEN"}
    target = broker if isinstance(broker, str) else broker.target
    return subprocess.run([forge_bin, "--broker", target, *args], capture_output=True,
                          text=True, timeout=30, env={**clean, **env})


@pytest.mark.slow
def test_cli_sends_forge_token_and_reports_refusals(dsn: str) -> None:
    broker = start_broker(dsn, FORGE_TOKENS=TOKENS.env)
    try:
        out = forge(broker, "enqueue", "email", '{"to": "a@b.c"}', FORGE_TOKEN=TOKENS.producer)
        assert out.returncode == 0, out.stderr
        job = json.loads(out.stdout)
        got = forge(broker, "get", job["id"], FORGE_TOKEN=TOKENS.producer)
        assert json.loads(got.stdout)["id"] == job["id"]

        anonymous = forge(broker, "stats")
        assert anonymous.returncode == 1 and "UNAUTHENTICATED" in anonymous.stderr
        denied = forge(broker, "cancel", job["id"], FORGE_TOKEN=TOKENS.producer)
        assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr

        # --token wins over FORGE_TOKEN
        cancelled = forge(broker, "--token", TOKENS.admin, "cancel", job["id"],
                          FORGE_TOKEN=TOKENS.producer)
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["status"] == "CANCELLED"
        dlq = forge(broker, "dlq", "list", FORGE_TOKEN=TOKENS.admin)
        assert dlq.returncode == 0, dlq.stderr
    finally:
        broker.stop()


def test_cli_names_a_bad_tls_setting() -> None:
    # no broker needed: the CLI stops before dialling
    out = forge("127.0.0.1:1", "stats", FORGE_CA_FILE="/nonexistent/ca.pem")
    assert out.returncode == 2
    assert "FORGE_CA_FILE: cannot read /nonexistent/ca.pem" in out.stderr
