"""What a new user trips on with the ``forge`` CLI: bad options, a closed pipe, no broker, the
version. Each runs the real command (``python -m forge.cli``) in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from tests.gateway_support import make_dead_job
from tests.support import REPO, BrokerProcess, drop_database, free_port, run_module
from tests.support.processes import child_env


def one_line_usage_error(out: subprocess.CompletedProcess[str], option: str) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert option in line
    return line


def test_an_unknown_status_is_a_one_line_error_naming_the_option() -> None:
    out = run_module("forge.cli", "--broker", f"127.0.0.1:{free_port()}", "list", "--status", "bogus")
    line = one_line_usage_error(out, "--status")
    assert "bogus" in line and "DEAD" in line  # says what it got and what it takes


def test_a_run_at_that_is_not_a_time_is_a_one_line_error_naming_the_option() -> None:
    out = run_module("forge.cli", "--broker", f"127.0.0.1:{free_port()}",
                     "enqueue", "t", "--run-at", "tomorrow")
    assert "tomorrow" in one_line_usage_error(out, "--run-at")


def test_a_batch_size_out_of_range_is_a_one_line_error_naming_the_option() -> None:
    for size in ("0", "10001", "ten"):
        out = run_module("forge.cli", "--broker", f"127.0.0.1:{free_port()}",
                         "enqueue-many", "t", "--batch", size)
        assert size in one_line_usage_error(out, "--batch")


def test_a_run_at_without_an_offset_is_a_one_line_error_naming_the_option() -> None:
    out = run_module("forge.cli", "--broker", f"127.0.0.1:{free_port()}",
                     "enqueue", "t", "--run-at", "2030-01-01T09:00:00")
    assert "offset" in one_line_usage_error(out, "--run-at")


def test_a_status_in_any_case_lists_the_jobs_in_it(broker: BrokerProcess) -> None:
    dead_id = make_dead_job(broker.target, "cli.dead")
    out = run_module("forge.cli", "--broker", broker.target, "list", "--status", "dead",
                     "--type", "cli.dead")
    assert out.returncode == 0, out.stderr
    assert [j["id"] for j in json.loads(out.stdout)["jobs"]] == [dead_id]


def test_output_into_a_closed_pipe_ends_quietly(broker: BrokerProcess) -> None:
    # `forge list | head -0`: the reader is gone before the first line is written.
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli", "--broker", broker.target, "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env({}),
                            cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(30) != 0
    assert stderr == ""


def test_an_unreachable_broker_names_the_address_it_tried() -> None:
    target = f"127.0.0.1:{free_port()}"
    out = run_module("forge.cli", "stats", env={"FORGE_BROKER": target})
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(
        f"forge: cannot reach the broker at {target} (set FORGE_BROKER or --broker): ")


def test_version_is_the_installed_client_version() -> None:
    pyproject = tomllib.loads((REPO / "clients/python/pyproject.toml").read_text())
    out = run_module("forge.cli", "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"forge {pyproject['project']['version']}"

@pytest.mark.slow  # waits out the broker's database connect timeout
def test_a_broker_whose_database_is_down_is_not_called_unreachable(
        pg_admin_dsn: str, dsn: str, broker: BrokerProcess) -> None:
    drop_database(pg_admin_dsn, dsn)
    out = run_module("forge.cli", "--broker", broker.target, "get", "01a24878-f79a-7079-95c5-26a19ad4cea3")
    assert out.returncode == 1
    assert out.stderr.startswith("forge: UNAVAILABLE: "), out.stderr
    assert "cannot reach" not in out.stderr
