"""``make run``: the whole stack on one machine, each part a real process.

Starts the broker (embedded PostgreSQL unless DATABASE_URL is set), waits until it serves,
then the REST gateway with the dashboard on :8080 and two workerd processes with the demo
handlers, and prints the ``export FORGE_BROKER=...`` line that points the CLI at this broker
(it dials localhost:50051 otherwise, whatever GRPC_PORT says). Ctrl-C (or SIGTERM) stops them
in reverse order, each with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from forge import wait_ready

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    grpc_port = os.environ.get("GRPC_PORT", "50051")
    http_port = os.environ.get("PORT", "8080")
    target = f"127.0.0.1:{grpc_port}"
    env = {**os.environ, "GRPC_PORT": grpc_port, "PYTHONUNBUFFERED": "1"}
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, *args: str) -> None:
        print(f"stack: starting {name}", flush=True)
        procs.append((name, subprocess.Popen([sys.executable, "-m", *args], env=env, cwd=REPO)))

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    start("broker", "forge_broker")
    if not wait_ready(target, timeout=60):
        print("stack: the broker did not come up", file=sys.stderr)
        stopping = True
    else:
        start("gateway", "forge_gateway", "--broker", target, "--port", http_port)
        for n in (1, 2):
            start(f"workerd-{n}", "forge_workerd", "--broker", target, "--worker-id", f"workerd-{n}")
        print(f"stack: broker on {target}, REST API and dashboard on http://localhost:{http_port}/\n"
              f"stack: for the forge CLI and the Python client in another shell:\n"
              f"export FORGE_BROKER={target}", flush=True)
    while not stopping:
        for name, proc in procs:
            if proc.poll() is not None:
                print(f"stack: {name} exited with {proc.returncode}; stopping", file=sys.stderr)
                stopping = True
        time.sleep(0.2)
    for _name, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(35)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
