"""forge-client's build: generates the forge.v1 stubs from the repository's proto/ when they are
missing, as ``make proto`` does, so ``pip install ./clients/python`` works on a clean clone; and
writes the blocking ``Client`` (``forge/_sync.py``) from ``AsyncClient`` (see sync_client.py).

Everything else about the distribution is in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_client  # beside this file, not part of the package

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
PROTO = PROTO_ROOT / "forge" / "v1" / "broker.proto"
GEN = HERE / "forge" / "v1"


def generate() -> None:
    """Run protoc on broker.proto into forge/v1 unless its stubs are there already."""
    if (GEN / "broker_pb2.py").exists():
        return
    if not PROTO.is_file():
        sys.exit(f"forge-client: forge/v1 is not generated and {PROTO} is missing: build from a "
                 "checkout of the repository, or run `make proto` first")
    import google.api  # googleapis-common-protos: the google/api/*.proto the proto imports

    googleapis = Path(next(iter(google.api.__path__))).parent.parent
    # protoc finds its plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) on PATH.
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    outs = [f"--python_out={HERE}", f"--grpc_python_out={HERE}"]
    if shutil.which("protoc-gen-mypy", path=path) and shutil.which("protoc-gen-mypy_grpc", path=path):
        outs += [f"--mypy_out={HERE}", f"--mypy_grpc_out={HERE}"]
    GEN.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{googleapis}", *outs,
         f"--descriptor_set_out={GEN / 'broker.binpb'}", "--include_source_info",
         "--include_imports", str(PROTO)],
        check=True, env={**os.environ, "PATH": path})
    (GEN / "__init__.py").touch()


class BuildPy(build_py):
    """build_py that generates forge.v1 first."""

    def finalize_options(self) -> None:
        # Here rather than in run(): egg_info lists the packages' files through this command
        # before anything runs, and forge/v1 must exist by then.
        generate()
        sync_client.main()
        super().finalize_options()


setup(cmdclass={"build_py": BuildPy})
