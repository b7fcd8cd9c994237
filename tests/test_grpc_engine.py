"""The services run gRPC on its iomgr engine unless the operator sets GRPC_EXPERIMENTS (even to
nothing), say which at start, and the installed grpcio knows the experiments they turn off."""

from __future__ import annotations

import subprocess
import sys

import httpx

from forge_common import grpcenv
from tests.support import (
    WorkerdProcess,
    drop_database,
    new_database,
    start_broker,
    start_gateway,
    wait_until,
    workers,
)
from tests.support.processes import child_env
from tests.workerd_support import create_effects_table, job_row


def test_each_service_runs_grpc_on_iomgr_by_default_and_serves_the_whole_path(
        pg_admin_dsn: str, template_dsn: str) -> None:
    dsn = new_database(pg_admin_dsn)
    create_effects_table(dsn)
    # The test process leaves GRPC_EXPERIMENTS unset (it imports grpc before any service
    # package), so each service below makes its own choice.
    broker = start_broker(dsn)
    try:
        worker = WorkerdProcess(broker.target, "engine", effects_dsn=dsn)
        gateway = start_gateway(broker.target)
        try:
            with workers(worker), httpx.Client(base_url=gateway.url, timeout=10) as http:
                resp = http.post("/v1/jobs", json={"type": "echo", "payloadJson": '{"n": 1}'})
                assert resp.status_code == 200, resp.text
                job_id = resp.json()["job"]["id"]
                assert wait_until(lambda: job_row(dsn, job_id)["status"] == "COMPLETED", 15), \
                    worker.log_text()
        finally:
            gateway.stop()
        for service in (broker, worker, gateway):
            log = service.log_text()
            assert "gRPC on iomgr)" in log, log
            # grpcio logs (and ignores) an experiment it does not know: an upgrade that drops
            # one of these shows here rather than as a quiet change of engine.
            assert "Unknown experiment" not in log, log
    finally:
        broker.stop()
        drop_database(pg_admin_dsn, dsn)


def _python(code: str, grpc_experiments: str | None) -> str:
    done = subprocess.run([sys.executable, "-c", code],
                          env=child_env({"GRPC_EXPERIMENTS": grpc_experiments}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_grpc_experiments_value_the_operator_sets_wins_even_an_empty_one() -> None:
    probe = ("import os, forge_broker, forge_workerd, forge_gateway; "
             "from forge_common import grpcenv; "
             "print(repr(os.environ.get('GRPC_EXPERIMENTS')), grpcenv.engine())")
    for given, seen, engine in ((None, repr(grpcenv.IOMGR), "iomgr"),
                                ("", "''", "EventEngine"),
                                ("-event_engine_client", "'-event_engine_client'", "EventEngine")):
        assert _python(probe, given).split() == [seen, engine], given


def test_a_process_that_imported_grpc_first_is_left_alone() -> None:
    probe = "import os, grpc, forge_broker; print(repr(os.environ.get('GRPC_EXPERIMENTS')))"
    assert _python(probe, None).strip() == "None"
