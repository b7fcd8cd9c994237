"""workerd against a broker with API tokens: a worker token drains jobs; a token of another
role, or none, is refused at once (exit 1) rather than retried forever."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forge import Client
from forge.v1 import broker_pb2 as pb
from tests.security_support import Tokens
from tests.support import BrokerProcess, WorkerdProcess, start_broker, wait_until

TOKENS = Tokens.fresh()


@pytest.fixture
def broker(dsn: str) -> Iterator[BrokerProcess]:
    proc = start_broker(dsn, FORGE_TOKENS=TOKENS.env)
    yield proc
    proc.stop()


def test_workerd_with_a_worker_token_drains_jobs(broker: BrokerProcess, dsn: str) -> None:
    with Client(broker.target, token=TOKENS.producer) as producer:
        jobs = [producer.enqueue("echo", {"n": i}) for i in range(3)]
    worker = WorkerdProcess(broker.target, "authed", effects_dsn=dsn)
    worker.env["FORGE_TOKEN"] = TOKENS.worker
    worker.start()
    try:
        with Client(broker.target, token=TOKENS.admin) as admin:
            done = wait_until(lambda: all(admin.get(j.id).status == pb.Job.COMPLETED for j in jobs))
            assert done, worker.log_text()
    finally:
        assert worker.stop() == 0
    assert TOKENS.worker not in worker.log_text()


@pytest.mark.parametrize(("token", "code"), [(TOKENS.producer, "PERMISSION_DENIED"),
                                             (None, "UNAUTHENTICATED")],
                         ids=["producer-token", "no-token"])
def test_workerd_without_a_worker_token_is_refused_and_exits_1(
        broker: BrokerProcess, dsn: str, token: str | None, code: str) -> None:
    worker = WorkerdProcess(broker.target, "refused", effects_dsn=dsn)
    if token:
        worker.args += ["--token", token]
    worker.start(wait=False)
    assert worker.wait(30) == 1
    assert f"Lease refused: {code}" in worker.log_text()
