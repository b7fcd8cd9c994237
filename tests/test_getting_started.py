"""The first steps of README.md, run as written: ``make run``'s stack script and the Python
example against a broker with the demo handlers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, BrokerProcess, WorkerdProcess, free_port, run_module, wait_until, workers
from tests.support.processes import child_env


def readme_block(language: str) -> str:
    [block] = re.findall(rf"```{language}\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return block


def test_readme_python_example_enqueues_an_email_the_demo_handler_completes(
    broker: BrokerProcess, dsn: str, tmp_path: Path
) -> None:
    demo = WorkerdProcess(broker.target, "readme", effects_dsn=dsn, handlers="forge_workerd.demo")
    script = tmp_path / "example.py"
    script.write_text(readme_block("python"))
    with workers(demo):
        out = subprocess.run([sys.executable, str(script)], env=child_env({"FORGE_BROKER": broker.target}),
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "COMPLETED", out.stdout


@pytest.mark.slow
def test_make_run_prints_the_line_that_points_the_cli_at_its_broker(dsn: str, tmp_path: Path) -> None:
    grpc_port = free_port()
    env = child_env({"DATABASE_URL": dsn, "GRPC_PORT": str(grpc_port), "PORT": str(free_port()),
                     "FORGE_METRICS_PORT": "0", "FORGE_BROKER": None})
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        stack = subprocess.Popen([sys.executable, "scripts/stack.py"], env=env, cwd=REPO,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        line = f"export FORGE_BROKER=127.0.0.1:{grpc_port}"
        assert wait_until(lambda: line in log.read_text(), timeout=90), log.read_text()
        address = line.split("=", 1)[1]
        stats = run_module("forge.cli", "stats", env={"FORGE_BROKER": address})
        assert stats.returncode == 0, stats.stderr
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(60)
