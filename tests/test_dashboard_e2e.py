"""The dashboard in a real browser against the real stack.

PostgreSQL (the session server), a broker, the REST gateway serving ``dashboard/dist`` and one
workerd (demo handlers plus ``tests/handlers/dashboard_handlers.py``) run as processes; then
``dashboard/e2e/run.mjs`` drives headless Chromium (Debian's ``chromium`` through
``playwright-core``) through every view: enqueue from the form and watch the job complete, a
failing job reaches the dead-letter queue and is retried from it, several are retried at once,
a job that failed twice shows both attempts (worker, error) on its page, the jobs list filters,
finds a job by its id (which opens it) and by its key, cancels every job its filter matches
(more than a page) after a confirmation that states their count, every dead job of one type
(more than a page) is retried from the dead-letter queue the same way and the queue empties, the
Workers page shows a running job and links to it, the overview's counters move live and its
charts (throughput per type, failures, queue wait) fill, a schedule put through the API is listed
on the Schedules page, fires, links to its last job (whose page names it), is paused there (and
fires no more) and deleted, a job type is paused from the Queues page (a job enqueued meanwhile
stays PENDING), resumed (the job completes) and given a concurrency limit there (a refused value
is shown by the API's field name), and the live feed reconnects by itself when the gateway and
then the broker restart (the script asks for the restarts on stdout; this test performs them).
A second test runs the script's API-token scenarios against a stack whose broker has
``FORGE_TOKENS`` (an admin, a producer and the worker's token): sign in, live overview, a
producer's read-only views (no cancel, bulk, pause or limits buttons; lists, workers and charts
still shown) and its 403 on the dead-letter queue.

Screenshots of each view land in ``dashboard/e2e/screenshots/``, and the README's pictures of the
overview, jobs list, job page, dead-letter queue, workers, queues and schedules (1280×800, each
under 300 KB, checked on every run) in ``dashboard/e2e/screenshots/docs/``; only with
``FORGE_DOCS_SCREENSHOTS=1`` (``make screenshot``) in ``docs/screenshots/``, so that a test run
leaves the checkout unmodified.

Needs Node (``npm ci`` is run in ``dashboard/`` when ``node_modules`` is missing, and the build is
redone when the sources are newer than it) and ``/usr/bin/chromium``
(``make chromium``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, BrokerProcess, GatewayProcess, ServiceProcess, start_broker

DASHBOARD = REPO / "dashboard"
DIST = DASHBOARD / "dist"
SCREENSHOTS = DASHBOARD / "e2e" / "screenshots"
# The README's pictures are committed: rewritten only on request (make screenshot).
DOCS_SCREENSHOTS = (REPO / "docs" / "screenshots" if os.environ.get("FORGE_DOCS_SCREENSHOTS") == "1"
                    else SCREENSHOTS / "docs")
DOCS_VIEWS = ("overview", "jobs", "job", "dlq", "workers", "queues", "schedules")
DOCS_MAX_BYTES = 300_000
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
WORKER_ID = "dashboard-e2e-worker"
E2E_TIMEOUT = 300.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(E2E_TIMEOUT + 120)]


def _newest_mtime(*paths: Path) -> float:
    newest = 0.0
    for p in paths:
        if p.is_dir():
            for f in p.rglob("*"):
                if f.is_file():
                    newest = max(newest, f.stat().st_mtime)
        elif p.exists():
            newest = max(newest, p.stat().st_mtime)
    return newest


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )


@pytest.fixture(scope="session")
def dashboard_build() -> Path:
    """``dashboard/dist``, built (and ``npm ci`` run) when missing or older than the sources."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the dashboard tests need Node.js 20.19+ and npm on PATH")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run make chromium (as root)")
    if not (DASHBOARD / "node_modules" / ".package-lock.json").exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"], DASHBOARD)
    sources = _newest_mtime(DASHBOARD / "src", DASHBOARD / "public", DASHBOARD / "index.html",
                            DASHBOARD / "package-lock.json", DASHBOARD / "vite.config.ts")
    index = DIST / "index.html"
    if not index.exists() or index.stat().st_mtime < sources:
        _run(["npm", "run", "build"], DASHBOARD)
    return DIST


class Stack:
    def __init__(self, broker: BrokerProcess, gateway: GatewayProcess, worker: ServiceProcess,
                 fix_file: Path) -> None:
        self.broker = broker
        self.gateway = gateway
        self.worker = worker
        self.fix_file = fix_file

    @property
    def url(self) -> str:
        return self.gateway.url

    def logs(self) -> str:
        parts = [f"--- broker ---\n{self.broker.log_text()[-6000:]}"]
        for p in (self.gateway, self.worker):
            parts.append(f"--- {p.name} ---\n{p.log_text()[-6000:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def running_stack(dsn: str, dashboard_build: Path, tmp_path: Path, broker_env: dict[str, str] | None = None,
                  worker_env: dict[str, str] | None = None) -> Iterator[Stack]:
    broker = start_broker(dsn, None, **(broker_env or {}))
    fix_file = tmp_path / "bug-fixed"
    gateway = GatewayProcess(broker.target, "--static-dir", str(dashboard_build))
    worker = ServiceProcess("workerd")
    try:
        gateway.start()
        worker.spawn("forge_workerd", ["--broker", broker.target, "--worker-id", WORKER_ID,
                                       "--handlers", "forge_workerd.demo,tests.handlers.dashboard_handlers",
                                       "--concurrency", "8"],
                     {"DASHBOARD_E2E_FIX_FILE": str(fix_file), **(worker_env or {})})
        worker.wait_log("connected to broker")
        yield Stack(broker, gateway, worker, fix_file)
    finally:
        worker.stop()
        gateway.stop()
        broker.stop()


@pytest.fixture
def stack(dsn: str, dashboard_build: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(dsn, dashboard_build, tmp_path) as s:
        yield s


def run_script(stack: Stack, env: dict[str, str]) -> str:
    """Runs dashboard/e2e/run.mjs against ``stack`` (doing the restarts it asks for) and returns
    its output once it passed."""
    node = subprocess.Popen(
        ["node", str(DASHBOARD / "e2e" / "run.mjs"), stack.url], cwd=REPO, env=env, text=True, bufsize=1,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert node.stdin is not None and node.stdout is not None
    output: list[str] = []
    timer = threading.Timer(E2E_TIMEOUT, node.kill)
    timer.start()
    try:
        for line in node.stdout:
            output.append(line)
            sys.stdout.write(line)
            command = line.strip()
            if not command.startswith("@@restart "):
                continue
            # The script asks for an outage and waits for "ok" before it looks again.
            what = command.removeprefix("@@restart ")
            if what == "gateway-down":
                stack.gateway.stop()
            elif what == "gateway-up":
                stack.gateway.start()
            elif what == "broker":
                stack.broker.restart()
            else:
                raise AssertionError(f"unknown request from the e2e script: {command}")
            node.stdin.write("ok\n")
            node.stdin.flush()
        code = node.wait()
    finally:
        timer.cancel()
        if node.poll() is None:
            node.kill()
            node.wait()
    text = "".join(output)
    assert code == 0, f"the browser test failed (exit {code}):\n{text}\n{stack.logs()}"
    assert "e2e passed" in text
    return text


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_dashboard_in_a_real_browser(stack: Stack) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        if not old.name.startswith("auth-"):
            old.unlink()
    for view in DOCS_VIEWS:
        (DOCS_SCREENSHOTS / f"{view}.png").unlink(missing_ok=True)
    run_script(stack, {**os.environ, "SCREENSHOT_DIR": str(SCREENSHOTS),
                       "DOCS_SCREENSHOT_DIR": str(DOCS_SCREENSHOTS),
                       "DASHBOARD_E2E_FIX_FILE": str(stack.fix_file), "E2E_CONTROL": "1",
                       "E2E_WORKER_ID": WORKER_ID, "CHROMIUM": str(CHROMIUM)})
    for name in ("overview", "overview-dark", "overview-narrow", "jobs", "jobs-scheduled",
                 "jobs-cancel-matching", "job", "job-attempts", "dlq", "dlq-retry-type", "workers",
                 "enqueue", "schedules", "queues", "queues-limits"):
        assert (SCREENSHOTS / f"{name}.png").is_file(), f"no screenshot of {name}"
    # The README's pictures: one per view, a 1280×800 window each, small enough to commit.
    for view in DOCS_VIEWS:
        picture = DOCS_SCREENSHOTS / f"{view}.png"
        assert picture.is_file(), f"no picture of {view} for the README"
        assert png_size(picture) == (1280, 800), f"{picture} is {png_size(picture)}"
        assert picture.stat().st_size < DOCS_MAX_BYTES, f"{picture} is {picture.stat().st_size} bytes"


def test_dashboard_sign_in_with_an_api_token(dsn: str, dashboard_build: Path, tmp_path: Path) -> None:
    """A broker with API tokens: the dashboard asks for one, refuses a wrong one, shows the live
    overview with the admin token, keeps it across a reload, gives a producer token read-only
    views (lists, workers and charts, no button that changes anything) and its 403 on the
    dead-letter queue, and signs out (run.mjs's auth scenarios, chosen by E2E_AUTH_TOKEN)."""
    admin, producer, worker = (secrets.token_urlsafe(24) for _ in range(3))
    tokens = f"e2e-admin:admin:{admin},e2e-viewer:producer:{producer},e2e-worker:worker:{worker}"
    with running_stack(dsn, dashboard_build, tmp_path, broker_env={"FORGE_TOKENS": tokens},
                       worker_env={"FORGE_TOKEN": worker}) as auth_stack:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob("auth-*.png"):
            old.unlink()
        text = run_script(auth_stack, {**os.environ, "SCREENSHOT_DIR": str(SCREENSHOTS),
                                       "E2E_AUTH_TOKEN": admin, "E2E_PRODUCER_TOKEN": producer,
                                       "E2E_WORKER_ID": WORKER_ID, "CHROMIUM": str(CHROMIUM)})
        assert "sign in with the admin token" in text
        for name in ("auth-signin", "auth-overview", "auth-forbidden", "auth-queues-readonly"):
            assert (SCREENSHOTS / f"{name}.png").is_file(), f"no screenshot of {name}"
        # Tokens are secrets: neither the broker nor the gateway may log them.
        logs = auth_stack.logs()
        assert admin not in logs and producer not in logs and worker not in logs
