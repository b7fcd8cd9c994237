"""FORGE_EVENT_LOOP: the broker, workerd and the gateway run on uvloop by default (it is a
dependency) or on asyncio's own loop when told, serving the same whole path either way (with
gRPC on its iomgr engine), and a bad value stops each at start with a message naming the
setting."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import drop_database, new_database
from tests.support import WorkerdProcess, run_module, start_broker, start_gateway, wait_until, workers
from tests.workerd_support import create_effects_table, job_row


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_each_service_runs_a_job_end_to_end_on_the_loop_it_is_told(
        pg_admin_dsn: str, template_dsn: str, loop: str) -> None:
    dsn = new_database(pg_admin_dsn)
    create_effects_table(dsn)
    broker = start_broker(dsn, FORGE_EVENT_LOOP=loop)
    try:
        worker = WorkerdProcess(broker.target, f"loop-{loop}", effects_dsn=dsn,
                                extra=("--event-loop", loop))
        gateway = start_gateway(broker.target, FORGE_EVENT_LOOP=loop)
        try:
            with workers(worker), httpx.Client(base_url=gateway.url, timeout=10) as http:
                resp = http.post("/v1/jobs", json={"type": "echo", "payloadJson": '{"n": 1}'})
                assert resp.status_code == 200, resp.text
                job_id = resp.json()["job"]["id"]
                assert wait_until(lambda: job_row(dsn, job_id)["status"] == "COMPLETED", 15), \
                    worker.log_text()
                assert f"({loop} event loop," in worker.log_text()
        finally:
            gateway.stop()
        assert f"({loop} event loop," in broker.log_text()
        assert f"{loop} event loop," in gateway.log_text()
        # The test process leaves GRPC_EXPERIMENTS unset (it imports grpc before any service
        # package), so each service chose gRPC's iomgr engine itself (forge_common.grpcenv).
        for service in (broker, worker, gateway):
            assert "gRPC on iomgr)" in service.log_text(), service.log_text()
            # grpcio logs (and ignores) an experiment it does not know: an upgrade that drops
            # one of those turned off shows here rather than as a quiet change of engine.
            assert "Unknown experiment" not in service.log_text(), service.log_text()
    finally:
        broker.stop()
        drop_database(pg_admin_dsn, dsn)


@pytest.mark.parametrize("module,args,env,named", [
    ("forge_broker", [], {"FORGE_EVENT_LOOP": "libev"}, "FORGE_EVENT_LOOP"),
    ("forge_workerd", ["--event-loop", "trio"], {}, "--event-loop"),
    ("forge_workerd", [], {"FORGE_EVENT_LOOP": "trio"}, "--event-loop"),
    ("forge_gateway", ["--event-loop", "curio"], {}, "--event-loop"),
])
def test_an_unknown_event_loop_stops_the_service_at_start_naming_the_setting(
        module: str, args: list[str], env: dict[str, str], named: str) -> None:
    done = run_module(module, *args, env=env, timeout=30)
    assert done.returncode != 0
    err = done.stderr
    assert named in err and "uvloop or asyncio" in err, err
    assert "Traceback" not in err, err
