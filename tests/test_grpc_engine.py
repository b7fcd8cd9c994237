"""The services run gRPC on its iomgr engine unless the operator sets GRPC_EXPERIMENTS (even to
nothing), and leave a process that imported grpc first alone. That each service says so at
start, serving the whole path, and that the installed grpcio knows the experiments it turns
off: tests/test_event_loop.py."""

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
