"""TLS and mutual TLS between every Forge process and the broker, with a throwaway CA made here
(server certificate for 127.0.0.1 and localhost, a client certificate, and an unrelated CA)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from forge import ChannelSecurity, Client, ForgeClientError, SecurityConfigError
from forge.v1 import broker_pb2 as pb
from forge_broker.config import Config
from forge_broker.errors import InvalidArgument
from tests.security_support import Pki, Tokens, make_pki
from tests.support import (
    BrokerProcess,
    GatewayProcess,
    WorkerdProcess,
    drop_database,
    new_database,
    run_module,
    wait_until,
)

TOKENS = Tokens.fresh()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pg_admin_dsn: str, template_dsn: str, pki: Pki) -> Iterator[BrokerProcess]:
    """A broker serving TLS (certificate and key from the environment), no client certs."""
    dsn = new_database(pg_admin_dsn)
    broker = BrokerProcess(dsn, security=ChannelSecurity(ca_file=str(pki.ca)),
                           FORGE_TLS_CERT=str(pki.server_cert), FORGE_TLS_KEY=str(pki.server_key))
    broker.start()
    yield broker
    broker.stop()
    drop_database(pg_admin_dsn, dsn)


@pytest.fixture(scope="module")
def mtls_broker(pg_admin_dsn: str, template_dsn: str, pki: Pki) -> Iterator[BrokerProcess]:
    """A broker requiring client certificates (configured by flags) and API tokens."""
    dsn = new_database(pg_admin_dsn)
    security = ChannelSecurity(ca_file=str(pki.ca), client_cert=str(pki.client_cert),
                               client_key=str(pki.client_key))
    broker = BrokerProcess(dsn, args=["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                                      "--tls-client-ca", str(pki.ca)],
                           security=security, FORGE_TOKENS=TOKENS.env)
    broker.start()
    yield broker
    broker.stop()
    drop_database(pg_admin_dsn, dsn)


def unavailable(client: Client) -> None:
    with client, pytest.raises(ForgeClientError) as info:
        client.stats()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_client_with_the_ca_file_reaches_a_tls_broker(tls_broker: BrokerProcess, pki: Pki) -> None:
    with Client(tls_broker.target, ca_file=str(pki.ca)) as client:
        job = client.enqueue("tls.hello", {"over": "tls"})
        assert client.get(job.id).payload["over"] == "tls"
    with Client(f"localhost:{tls_broker.port}", ca_file=str(pki.ca)) as client:
        assert client.stats() is not None


def test_a_client_without_the_ca_cannot_reach_a_tls_broker(tls_broker: BrokerProcess, pki: Pki) -> None:
    unavailable(Client(tls_broker.target, timeout=3))  # plain text against TLS
    unavailable(Client(tls_broker.target, ca_file=str(pki.other_ca), timeout=3))  # wrong CA


def test_mutual_tls_requires_the_client_certificate(mtls_broker: BrokerProcess, pki: Pki) -> None:
    unavailable(Client(mtls_broker.target, ca_file=str(pki.ca), token=TOKENS.admin, timeout=3))
    full = ChannelSecurity(token=TOKENS.admin, ca_file=str(pki.ca),
                           client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    with Client(mtls_broker.target, security=full) as client:
        assert client.stats() is not None
    # the certificate gets a caller through TLS, not past the token check
    no_token = ChannelSecurity(ca_file=str(pki.ca), client_cert=str(pki.client_cert),
                               client_key=str(pki.client_key))
    with Client(mtls_broker.target, security=no_token) as client, \
            pytest.raises(ForgeClientError) as info:
        client.stats()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_cli_dials_tls_with_ca_file_and_client_certificate_from_the_environment(
        mtls_broker: BrokerProcess, pki: Pki) -> None:
    forge_bin = shutil.which("forge", path=os.path.dirname(sys.executable))
    assert forge_bin
    env = {**os.environ, "FORGE_TOKEN": TOKENS.producer, "FORGE_TLS_CLIENT_CERT": str(pki.client_cert),
           "FORGE_TLS_CLIENT_KEY": str(pki.client_key)}
    out = subprocess.run([forge_bin, "--broker", mtls_broker.target, "--ca-file", str(pki.ca),
                          "enqueue", "tls.cli"], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["type"] == "tls.cli"


def test_workerd_over_mutual_tls_with_a_token_drains_a_job(
        mtls_broker: BrokerProcess, pki: Pki) -> None:
    admin = ChannelSecurity(token=TOKENS.admin, ca_file=str(pki.ca),
                            client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    with Client(mtls_broker.target, security=admin) as client:
        job = client.enqueue("echo", {"over": "mtls"})
        worker = WorkerdProcess(mtls_broker.target, "tls-worker", effects_dsn=mtls_broker.dsn,
                                extra=("--ca-file", str(pki.ca)))
        worker.env.update(FORGE_TOKEN=TOKENS.worker, FORGE_TLS_CLIENT_CERT=str(pki.client_cert),
                          FORGE_TLS_CLIENT_KEY=str(pki.client_key))
        worker.start()
        try:
            assert wait_until(lambda: client.get(job.id).status == pb.Job.COMPLETED), worker.log_text()
        finally:
            assert worker.stop() == 0


def test_gateway_serves_https_and_dials_the_broker_over_mutual_tls(
        mtls_broker: BrokerProcess, pki: Pki) -> None:
    gw = GatewayProcess(mtls_broker.target, "--tls-cert", str(pki.server_cert),
                        "--tls-key", str(pki.server_key), "--broker-ca", str(pki.ca),
                        FORGE_TLS_CLIENT_CERT=str(pki.client_cert),
                        FORGE_TLS_CLIENT_KEY=str(pki.client_key))
    gw.start()
    try:
        trust = ssl.create_default_context(cafile=str(pki.ca))
        with httpx.Client(base_url=f"https://127.0.0.1:{gw.port}", verify=trust, timeout=10) as http:
            r = http.get("/v1/stats", headers={"Authorization": f"Bearer {TOKENS.producer}"})
            assert r.status_code == 200, r.text
            assert http.get("/v1/stats").status_code == 401
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{gw.port}/v1/stats", timeout=5)
    finally:
        gw.stop()


def test_half_configured_tls_is_refused_naming_the_setting(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="FORGE_TLS_KEY"):
        Config.from_env({"FORGE_TLS_CERT": str(pki.server_cert)}).check()
    with pytest.raises(InvalidArgument, match="FORGE_TLS_CLIENT_CA"):
        Config.from_env({"FORGE_TLS_CLIENT_CA": str(pki.ca)}).check()
    with pytest.raises(InvalidArgument, match="FORGE_TLS_CERT: no such file"):
        Config.from_env({"FORGE_TLS_CERT": str(tmp_path / "missing.pem")})
    with pytest.raises(SecurityConfigError, match="FORGE_TLS_CLIENT_KEY"):
        ChannelSecurity(ca_file=str(pki.ca), client_cert=str(pki.client_cert))
    with pytest.raises(SecurityConfigError, match="FORGE_CA_FILE"):
        ChannelSecurity(client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    assert "FORGE_CA_FILE: cannot read" in str(_error(lambda: ChannelSecurity(
        ca_file=str(tmp_path / "nope.pem")).credentials()))


def test_a_broker_given_a_missing_tls_file_by_flag_refuses_to_start_naming_the_flag(
        pki: Pki, tmp_path: Path) -> None:
    for flag in ("--tls-cert", "--tls-key", "--tls-client-ca"):
        out = run_module("forge_broker", flag, str(tmp_path / "missing.pem"),
                         env={"DATABASE_URL": "postgresql://127.0.0.1:1/none"})
        assert out.returncode == 2, out.stderr
        assert f"argument {flag}: no such file: " in out.stderr
        assert "Traceback" not in out.stderr


def test_nothing_configured_means_a_plain_channel_and_no_token() -> None:
    plain = ChannelSecurity.from_env({})
    assert plain == ChannelSecurity() and not plain.tls and plain.metadata() == ()
    assert plain.credentials() is None
    assert TOKENS.admin not in repr(ChannelSecurity(token=TOKENS.admin))


def _error(fn: object) -> Exception:
    try:
        fn()  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("no error")
