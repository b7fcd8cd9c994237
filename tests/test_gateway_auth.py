"""The gateway in front of a broker with API tokens: it forwards each request's Authorization
header (unary and streaming calls alike) and maps the broker's refusals to 401 and 403."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.security_support import Tokens
from tests.support import BrokerProcess, GatewayProcess, free_port, run_module

TOKENS = Tokens.fresh()


pytest_plugins = ["tests.gateway_fixtures"]


@pytest.fixture(scope="module")
def gw_broker_env() -> dict[str, str]:
    return {"FORGE_TOKENS": TOKENS.env}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_requests_without_authorization_get_401(http: httpx.Client) -> None:
    for method, path in (("GET", "/v1/stats"), ("GET", "/stats"), ("POST", "/v1/jobs"),
                         ("GET", "/v1/dlq")):
        r = http.request(method, path, json={"type": "gw.auth"} if method == "POST" else None)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["code"] == 16  # UNAUTHENTICATED
        assert "Bearer" in r.json()["message"]
    r = http.get("/v1/stats", headers=auth("wrong-token-wrong-token"))
    assert r.status_code == 401


def test_the_authorization_header_is_forwarded_to_the_broker(http: httpx.Client) -> None:
    r = http.post("/v1/jobs", json={"type": "gw.auth", "payload": {"n": 1}},
                  headers=auth(TOKENS.producer))
    assert r.status_code == 200, r.text
    job_id = r.json()["job"]["id"]
    r = http.get(f"/v1/jobs/{job_id}", headers=auth(TOKENS.producer))
    assert r.status_code == 200 and r.json()["id"] == job_id
    assert http.get("/stats", headers=auth(TOKENS.producer)).status_code == 200


def test_a_token_of_the_wrong_role_gets_403(http: httpx.Client) -> None:
    job_id = http.post("/v1/jobs", json={"type": "gw.auth"},
                       headers=auth(TOKENS.producer)).json()["job"]["id"]
    r = http.post(f"/v1/jobs/{job_id}:cancel", json={}, headers=auth(TOKENS.producer))
    assert r.status_code == 403, r.text
    assert r.json()["code"] == 7  # PERMISSION_DENIED
    assert http.get("/v1/dlq", headers=auth(TOKENS.worker)).status_code == 403
    r = http.post(f"/v1/jobs/{job_id}:cancel", json={}, headers=auth(TOKENS.admin))
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"


def test_streaming_calls_carry_the_header_too(http: httpx.Client) -> None:
    assert http.get("/v1/stats:watch", headers={"Accept": "text/event-stream"}).status_code == 401
    assert http.get("/v1/stats:watch", headers={"Accept": "text/event-stream",
                                                 **auth(TOKENS.worker)}).status_code == 403
    with http.stream("GET", "/v1/stats:watch",
                     headers={"Accept": "text/event-stream", **auth(TOKENS.producer)}) as r:
        assert r.status_code == 200
        buffer = ""
        for chunk in r.iter_text():
            buffer += chunk
            if "\n\n" in buffer:
                break
    event = buffer.split("\n\n", 1)[0]
    assert event.startswith("data: ")
    assert "computedAt" in json.loads(event[6:])


def run_gateway(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a gateway expecting it to refuse to start, with no tokens configured but ``env``'s."""
    return run_module("forge_gateway", "--port", str(free_port()), "--static-dir", "", *args,
                      env={"FORGE_TOKENS": None, "FORGE_TOKENS_FILE": None, **env})


def test_gateway_refuses_to_listen_beyond_loopback_without_tokens() -> None:
    out = run_gateway("--host", "0.0.0.0")
    assert out.returncode == 2
    assert "--host 0.0.0.0" in out.stderr
    assert "FORGE_TOKENS" in out.stderr and "FORGE_TOKENS_FILE" in out.stderr
    out = run_gateway(FORGE_GATEWAY_HOST="::")
    assert out.returncode == 2 and "refusing to listen beyond loopback" in out.stderr


def test_gateway_with_tokens_configured_listens_beyond_loopback(gw_broker: BrokerProcess) -> None:
    gw = GatewayProcess(gw_broker.target, "--host", "0.0.0.0", FORGE_TOKENS=TOKENS.env)
    gw.start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            assert client.get("/v1/stats").status_code == 401
            assert client.get("/v1/stats", headers=auth(TOKENS.admin)).status_code == 200
    finally:
        gw.stop()


def test_gateway_refuses_blank_short_or_placeholder_tokens_naming_the_variable_not_the_token() -> None:
    out = run_gateway("--host", "0.0.0.0", FORGE_TOKENS=",")
    assert out.returncode == 2
    assert "FORGE_TOKENS: entry 1: is empty" in out.stderr
    for token, message in (("tiny-token", "FORGE_TOKENS: entry 1 (ops): the token must be 16"),
                           ("CHANGE-ME-ADMIN-TOKEN-0000",
                            "FORGE_TOKENS: entry 1 (ops): the token is a placeholder")):
        out = run_gateway(FORGE_TOKENS=f"ops:admin:{token}")
        assert out.returncode == 2, token
        assert message in out.stderr
        assert token not in out.stderr + out.stdout


@pytest.fixture(scope="module")
def checking_gateway(gw_broker: BrokerProcess) -> Iterator[GatewayProcess]:
    """A gateway given the broker's tokens, so it checks them itself before reading a body."""
    gw = GatewayProcess(gw_broker.target, FORGE_TOKENS=TOKENS.env)
    gw.start()
    yield gw
    gw.stop()


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {"code": 16, "message": r.json()["message"], "details": []}
    assert "Bearer" in r.json()["message"]
    assert r.headers["www-authenticate"] == "Bearer"


def test_a_gateway_with_tokens_refuses_a_request_without_a_valid_token_before_its_body(
    checking_gateway: GatewayProcess,
) -> None:
    url = checking_gateway.url
    malformed = b'{"type": "gw.auth", "payload": {"n": NaN'
    for headers in ({}, auth("wrong-token-wrong-token"), {"Authorization": "Basic abc"}):
        r = httpx.post(url + "/v1/jobs", content=malformed, headers=headers, timeout=10)
        assert_401(r)
    # Past the size limit: still 401, the token is checked first.
    huge = b'{"type": "gw.auth", "payload": {"blob": "' + b"x" * (3 * 1024 * 1024) + b'"}}'
    assert_401(httpx.post(url + "/v1/jobs", content=huge, timeout=10))
    # A body announced but never sent: answered at once, without waiting to read it.
    with socket.create_connection(("127.0.0.1", checking_gateway.port), timeout=5) as s:
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 401")
    # With a valid token the body is read and judged.
    r = httpx.post(url + "/v1/jobs", content=malformed, headers=auth(TOKENS.producer), timeout=10)
    assert r.status_code == 400, r.text
    r = httpx.get(url + "/v1/stats", headers=auth(TOKENS.producer), timeout=10)
    assert r.status_code == 200, r.text
    # The role check stays with the broker.
    assert httpx.get(url + "/v1/dlq", headers=auth(TOKENS.producer), timeout=10).status_code == 403
