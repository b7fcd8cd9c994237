"""Forge's side of each scenario: a real broker subprocess, real workerd processes, gRPC clients.

The rules are the peers' (see ``bench/peers/common.py``): fresh database per run, drain timed
from the first handler start to "no PENDING or PROCESSING row left" (polled every 20 ms),
enqueue in batches of 1,000 from one client then single calls from 16 clients each with its
own connection, latency from an idle worker with ``sent_at`` in the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
from google.protobuf.struct_pb2 import Struct

from bench.report import percentile
from forge.client import wait_ready
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.02
# Separate TCP connections per channel, as separate client processes would have.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
UNFINISHED = ("SELECT EXISTS (SELECT 1 FROM forge.jobs WHERE status = 'PENDING') "
              "OR EXISTS (SELECT 1 FROM forge.jobs WHERE status = 'PROCESSING')")


@dataclass(frozen=True)
class Params:
    jobs: int = 50_000
    batch: int = 1_000
    single_jobs: int = 5_000
    clients: int = 16
    latency_jobs: int = 500
    spacing_ms: float = 10.0
    warmup: int = 5
    workers: int = 2
    """workerd processes in the drain."""
    concurrency: int = 100
    """Each workerd's --concurrency."""
    prefetch: int = 100
    """Each workerd's --prefetch (max_in_flight is concurrency + prefetch), as docs/operations.md
    recommends for short jobs."""
    timeout: float = 600.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


class Procs:
    """Subprocesses with their logs in one temporary directory; all stopped on close."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; its log:\n{self.log(name)}")

    def stop(self, names: list[str] | None = None, timeout: float = 15.0) -> None:
        chosen = [(n, p) for n, p in self.procs if names is None or n in names]
        for _, proc in chosen:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in chosen:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = [(n, p) for n, p in self.procs if (n, p) not in chosen]


@contextlib.contextmanager
def stack(dsn: str) -> Iterator[tuple[str, Procs]]:
    """A broker on ``dsn`` (which it migrates); yields its target and the process set."""
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        procs = Procs(Path(tmp))
        port = free_port()
        target = f"127.0.0.1:{port}"
        try:
            procs.start("broker", [sys.executable, "-m", "broker"],
                        _env(DATABASE_URL=dsn, GRPC_PORT=str(port), FORGE_HOST="127.0.0.1",
                             FORGE_BROKER_ID=f"bench-broker-{port}"))
            if not wait_ready(target, 30):
                procs.check_alive()
                raise RuntimeError(f"broker did not become ready; its log:\n{procs.log('broker')}")
            yield target, procs
        finally:
            procs.stop()


def start_workerd(procs: Procs, target: str, name: str, types: str, concurrency: int,
                  prefetch: int = 0) -> None:
    procs.start(name, [sys.executable, "-m", "workerd", "--broker", target, "--handlers", "bench.handlers",
                       "--types", types, "--concurrency", str(concurrency), "--prefetch", str(prefetch),
                       "--worker-id", name],
                _env(FORGE_BENCH_DIR=str(procs.workdir)))


def payload(values: dict[str, Any]) -> Struct:
    s = Struct()
    s.update(values)
    return s


def channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


async def enqueue_batches(stub: pb_grpc.BrokerAsyncStub, type_: str, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        size = min(batch, n - start)
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(
            jobs=[pb.EnqueueRequest(type=type_, payload=payload({"n": start + i})) for i in range(size)]),
            timeout=60)


async def _enqueue(target: str, p: Params) -> dict[str, Any]:
    async with channel(target) as ch:
        stub = pb_grpc.BrokerStub(ch)
        await ch.channel_ready()
        t0 = time.perf_counter()
        await enqueue_batches(stub, "bench.noop", p.jobs, p.batch)
        batch_rate = p.jobs / (time.perf_counter() - t0)

    channels = [channel(target) for _ in range(p.clients)]
    try:
        for ch in channels:
            await ch.channel_ready()
        counter = iter(range(p.single_jobs))

        async def client(ch: grpc.aio.Channel) -> None:
            stub = pb_grpc.BrokerStub(ch)
            for i in counter:
                await stub.Enqueue(pb.EnqueueRequest(type="bench.noop", payload=payload({"n": i})),
                                   timeout=30)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(ch) for ch in channels))
        single_rate = p.single_jobs / (time.perf_counter() - t0)
    finally:
        for ch in channels:
            await ch.close(None)
    return {"enqueue_batch": batch_rate, "enqueue_single": single_rate, "jobs": p.jobs,
            "single_jobs": p.single_jobs, "clients": p.clients}


async def _drain(dsn: str, target: str, procs: Procs, p: Params) -> dict[str, Any]:
    async with channel(target) as ch:
        await enqueue_batches(pb_grpc.BrokerStub(ch), "bench.noop", p.jobs, p.batch)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("ANALYZE forge.jobs")
        names = [f"bench-workerd-{i}" for i in range(p.workers)]
        for name in names:
            start_workerd(procs, target, name, "bench.noop", p.concurrency, p.prefetch)
        deadline = time.monotonic() + p.timeout
        while await (await conn.execute(UNFINISHED)).fetchone() != (False,):
            if time.monotonic() > deadline:
                raise TimeoutError("Forge drain did not finish")
            procs.check_alive()
            await asyncio.sleep(POLL_SECONDS)
        done_at = time.time()
        row = await (await conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FROM forge.jobs")).fetchone()
    procs.stop(names)
    assert row is not None
    if row[0] != p.jobs:
        raise RuntimeError(f"drain: {row[0]} of {row[1]} jobs COMPLETED, expected {p.jobs}")
    firsts = sorted(float(f.read_text()) for f in procs.workdir.glob("first-*"))
    if not firsts:
        raise RuntimeError("drain: no handler recorded its start")
    elapsed = done_at - firsts[0]
    return {"drain": p.jobs / elapsed, "drain_seconds": elapsed, "jobs": p.jobs,
            "workers": p.workers, "concurrency": p.concurrency, "prefetch": p.prefetch,
            "worker_start_skew_s": firsts[-1] - firsts[0]}


def _latencies(workdir: Path) -> list[float]:
    values: list[float] = []
    for f in sorted(workdir.glob("latency-*")):
        values.extend(float(line) for line in f.read_text().splitlines() if line.strip())
    return values


async def _latency(target: str, procs: Procs, p: Params) -> dict[str, Any]:
    start_workerd(procs, target, "bench-workerd-latency", "bench.latency", p.concurrency)

    async def wait_for(n: int, max_wait: float) -> list[float]:
        deadline = time.monotonic() + max_wait
        while len(values := _latencies(procs.workdir)) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(values)} of {n} latency jobs ran")
            procs.check_alive()
            await asyncio.sleep(0.005)
        return values

    async with channel(target) as ch:
        stub = pb_grpc.BrokerStub(ch)

        async def enqueue_one(extra: dict[str, Any]) -> None:
            await stub.Enqueue(pb.EnqueueRequest(type="bench.latency",
                                                 payload=payload({"sent_at": time.time(), **extra})),
                               timeout=30)

        for i in range(p.warmup):  # the first one also waits for workerd to come up
            await enqueue_one({"warmup": True})
            await wait_for(i + 1, 60 if i == 0 else 30)
        skip = len(_latencies(procs.workdir))
        spacing = p.spacing_ms / 1000
        next_at = time.monotonic()
        for _ in range(p.latency_jobs):
            next_at += spacing
            await enqueue_one({})
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        ms = [1000 * v for v in (await wait_for(skip + p.latency_jobs, 30))[skip:]]
    return {"latency_p50": percentile(ms, 50), "latency_p99": percentile(ms, 99),
            "latency_max": max(ms), "samples": len(ms), "concurrency": p.concurrency}


def settings(scenario: str, p: Params) -> dict[str, Any]:
    """How Forge was set up for ``scenario``: what a reader needs to reproduce the figure."""
    tuned = {k: v for k, v in os.environ.items() if k.startswith("FORGE_")}
    out: dict[str, Any] = {"broker": "one `python -m broker` process",
                           "broker_env": tuned or "defaults", "client": "grpc.aio"}
    if scenario == "drain":
        out["workerd"] = (f"{p.workers} processes × --concurrency {p.concurrency} "
                          f"--prefetch {p.prefetch}, async no-op handler")
    elif scenario == "latency":
        out["workerd"] = f"1 process, --concurrency {p.concurrency}"
    else:
        out["clients"] = f"1 channel for EnqueueBatch; {p.clients} channels (own connections) for Enqueue"
    return out


def run(scenario: str, dsn: str, p: Params) -> dict[str, Any]:
    """One repeat of ``scenario`` for Forge on the fresh database ``dsn``."""
    with stack(dsn) as (target, procs):
        if scenario == "enqueue":
            result = asyncio.run(_enqueue(target, p))
        elif scenario == "drain":
            result = asyncio.run(_drain(dsn, target, procs, p))
        elif scenario == "latency":
            result = asyncio.run(_latency(target, procs, p))
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
    result["settings"] = settings(scenario, p)
    return result
