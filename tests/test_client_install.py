"""The Python client installs alone: ``pip install clients/python`` into a fresh venv brings no
server code and no server dependency, and that install talks to a real broker.

The distributions are built from a copy of their folders, so the build leaves nothing (``build/``,
``*.egg-info``) in the repository. pip finds its packages in this machine's index and its cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO, BrokerProcess

pytestmark = pytest.mark.slow

DISTRIBUTIONS = {"clients/python": "forge", "common": "forge_common", "broker": "forge_broker",
                 "workerd": "forge_workerd", "gateway": "forge_gateway"}
SERVER_ONLY = {"psycopg", "psycopg-binary", "psycopg-pool", "pgserver", "starlette", "uvicorn",
               "prometheus-client", "forge-broker", "forge-workerd", "forge-gateway", "forge-common"}
MISLEADING_TOP_LEVEL = {"broker", "workerd", "gateway", "chaos"}

ENQUEUE_AND_READ_BACK = """
import json, sys
from forge import Client

with Client(sys.argv[1]) as client:
    job = client.enqueue("email", {"to": "a@b.c"})
    got = client.get(job.id)
print(json.dumps({"id": got.id, "type": got.type, "to": got.payload["to"]}))
"""


def run(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` outside this checkout's venv: no PYTHONPATH, no VIRTUAL_ENV."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of every distribution's folder (and migrations/, which the broker's ships)."""
    root = tmp_path_factory.mktemp("sources")
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    for folder in [*DISTRIBUTIONS, "migrations"]:
        shutil.copytree(REPO / folder, root / folder, ignore=skip)
    return root


@pytest.fixture(scope="module")
def client_bin(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv holding only ``pip install clients/python``."""
    venv = tmp_path_factory.mktemp("client-venv")
    made = run(sys.executable, "-m", "venv", venv, cwd=venv)
    assert made.returncode == 0, made.stderr
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                    sources / "clients" / "python", cwd=venv)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv / "bin"


def test_the_client_installs_without_server_code_or_server_dependencies(client_bin: Path) -> None:
    listed = run(client_bin / "python", "-m", "pip", "list", "--format", "json", cwd=client_bin)
    assert listed.returncode == 0, listed.stderr
    names = {canonical(d["name"]) for d in json.loads(listed.stdout)}
    assert "forge-client" in names and "grpcio" in names
    assert names & SERVER_ONLY == set()

    imported = run(client_bin / "python", "-c", "import forge, forge.v1.broker_pb2; print(forge.__file__)",
                   cwd=client_bin)
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()).is_relative_to(client_bin.parent)


def test_the_installed_client_enqueues_and_reads_a_job_back_from_a_real_broker(
        client_bin: Path, broker: BrokerProcess, tmp_path: Path) -> None:
    script = tmp_path / "enqueue.py"
    script.write_text(ENQUEUE_AND_READ_BACK)
    ran = run(client_bin / "python", script, broker.target, cwd=tmp_path, timeout=60)
    assert ran.returncode == 0, ran.stderr
    job = json.loads(ran.stdout)
    assert job["type"] == "email" and job["to"] == "a@b.c"

    shown = run(client_bin / "forge", "--broker", broker.target, "get", job["id"], cwd=tmp_path, timeout=60)
    assert shown.returncode == 0, shown.stderr
    got = json.loads(shown.stdout)
    assert got["id"] == job["id"] and got["type"] == "email" and got["payload"] == {"to": "a@b.c"}


def test_forge_sql_without_psycopg_names_the_extra_that_brings_it(client_bin: Path,
                                                                  tmp_path: Path) -> None:
    imported = run(client_bin / "python", "-c", "import forge.sql", cwd=tmp_path, timeout=60)
    assert imported.returncode == 1
    assert "forge.sql needs psycopg: pip install 'forge-client[sql]'" in imported.stderr
    requires = run(client_bin / "python", "-c",
                   "import importlib.metadata as m; print(m.requires('forge-client'))",
                   cwd=tmp_path, timeout=60)
    assert requires.returncode == 0, requires.stderr
    assert "psycopg>=3.1; extra == \"sql\"" in requires.stdout


def test_the_installed_forge_command_offers_no_migrate(client_bin: Path, tmp_path: Path) -> None:
    out = run(client_bin / "forge", "migrate", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert "invalid choice: 'migrate'" in out.stderr


def test_no_wheel_has_a_top_level_import_named_broker_workerd_gateway_or_chaos(
        sources: Path, tmp_path: Path) -> None:
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path,
                *(sources / folder for folder in DISTRIBUTIONS), cwd=sources)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = sorted(tmp_path.glob("*.whl"))
    assert len(wheels) == len(DISTRIBUTIONS), wheels
    tops: set[str] = set()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            names = {Path(n).parts[0] for n in zf.namelist()}
        tops |= {n.removesuffix(".py") for n in names if not n.endswith((".dist-info", ".data"))}
    assert tops == set(DISTRIBUTIONS.values())
    assert tops & MISLEADING_TOP_LEVEL == set()
