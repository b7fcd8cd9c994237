"""The services run gRPC on its iomgr engine unless the operator sets GRPC_EXPERIMENTS (even to
nothing), and leave a process that imported grpc first alone. That each service says so at
start, serving the whole path, and that the installed grpcio knows the experiments it turns
off: tests/test_event_loop.py. The broker's forks (pg_ctl, for the embedded server) run none of
gRPC's fork handlers."""

from __future__ import annotations

import subprocess
import sys

from forge_common import grpcenv
from tests.support.processes import child_env


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


# Forks (preexec_fn rules out vfork, as a change of user does) while other threads are in gRPC
# calls: gRPC's fork handlers, when on, say that they skip this fork.
_FORKS_BESIDE_CALLS = """
import subprocess, threading
from concurrent import futures
{imports}
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(4))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
stop = threading.Event()
def calls():
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            stub.Check(health_pb2.HealthCheckRequest())
threads = [threading.Thread(target=calls) for _ in range(4)]
for t in threads:
    t.start()
def fork():  # a child the handlers hang is killed (and counted as lost), not waited for
    try:
        return subprocess.run(["true"], preexec_fn=lambda: None, timeout=10).returncode
    except subprocess.TimeoutExpired:
        return None
codes = [fork() for _ in range(20)]
stop.set()
for t in threads:
    t.join()
server.stop(None)
print(codes.count(0))
"""


def _forks_beside_calls(imports: str) -> tuple[int, str]:
    """How many of the probe's 20 children (after ``imports``) exited 0, and its stderr with
    gRPC's INFO lines."""
    done = subprocess.run([sys.executable, "-c", _FORKS_BESIDE_CALLS.replace("{imports}", imports)],
                          env=child_env({"GRPC_ENABLE_FORK_SUPPORT": None,
                                         "GRPC_VERBOSITY": "INFO"}),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout), done.stderr


def test_the_brokers_forks_run_none_of_grpcs_fork_handlers() -> None:
    survived, stderr = _forks_beside_calls("import forge_broker, grpc")
    assert "fork() handlers" not in stderr
    assert survived == 20


def test_a_process_that_imported_grpc_first_keeps_its_fork_handlers() -> None:
    """grpcio's default, left alone as GRPC_EXPERIMENTS is; and the probe above sees them (their
    children die now and then too: 2 of 20 in one run)."""
    _, stderr = _forks_beside_calls("import grpc, forge_broker")
    assert "fork() handlers" in stderr
