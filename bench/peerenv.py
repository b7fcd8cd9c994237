"""The peers' own virtual environment, ``bench/.venv-peers``, created on first use.

The peer queues (pgqueuer, procrastinate) and their drivers never enter the project's venv: the
harness runs ``bench/peers/*_bench.py`` with this venv's python as subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-peers"
PEERS_DIR = HERE / "peers"

REQUIREMENTS = (
    "pgqueuer==1.6.0",
    "procrastinate==3.10.0",
    "psycopg[binary,pool]>=3.2,<3.4",
    "asyncpg>=0.29",
    "uvloop>=0.19",
)
STAMP = VENV / ".requirements.json"


def python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure(quiet: bool = False) -> Path:
    """The peers venv's python, creating the venv and installing REQUIREMENTS when needed."""
    wanted = json.dumps(sorted(REQUIREMENTS))
    if python().exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python()
    if not quiet:
        print(f"bench: creating the peers venv in {VENV} (once) ...", file=sys.stderr, flush=True)
    if not python().exists():
        # The base interpreter, not this venv's: the peers venv must not see the project.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    pip = subprocess.run([str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          *REQUIREMENTS], capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"installing {' '.join(REQUIREMENTS)} into {VENV} failed:\n"
                           f"{(pip.stdout + pip.stderr)[-4000:]}")
    STAMP.write_text(wanted)
    return python()


def versions() -> dict[str, str]:
    """Installed versions of the peer packages, as the peers venv reports them."""
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('pgqueuer', 'procrastinate', 'psycopg', 'asyncpg', 'uvloop')}))")
    out = subprocess.run([str(python()), "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, str] = json.loads(out.stdout)
    return result
