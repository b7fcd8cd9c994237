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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import psycopg
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from bench.handlers import LIMITED_SECONDS
from bench.pg import checkpoint
from bench.report import percentile
from forge import AsyncClient, EnqueueStream
from forge.client import enqueue_many_request, payload_json, wait_ready
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from forge_broker.migrate import migrate
from forge_broker.schedules import fire_key
from forge_broker.store import LOCK_SPACE, claim_statement, token_key
from forge_common import eventloop
from forge_common import settings as settings_
from tests.support import free_port

T = TypeVar("T")

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
    prefetch: int = 1900
    """Each workerd's --prefetch: max_in_flight is concurrency + prefetch, 2,000, a window of two
    claims (the broker claims at most 1,000 at a time), as docs/operations.md recommends for many
    very short jobs: the worker runs one claim's jobs while the next is claimed."""
    timeout: float = 600.0
    # Forge-only scenarios (see docs/benchmarks.md).
    gateway_jobs: int = 5_000
    """Jobs POSTed to the gateway's /v1/jobs, one per request, by ``clients`` HTTP clients."""
    scheduled_jobs: int = 100
    """Jobs scheduled 1..3 s ahead (spread evenly) for one idle workerd."""
    backlog_small: int = 10_000
    backlog_large: int = 1_000_000
    """Pending rows of the small and the large backlog."""
    backlog_completed: int = 1_000_000
    """COMPLETED rows (not yet pruned) beside the large backlog."""
    backlog_claims: int = 20
    """Claims of 100 timed on each backlog (their median is the lease latency)."""
    backlog_warmup_claims: int = 5
    """Claims of 100 before those, not counted: psycopg prepares a statement on its 5th run, and
    the broker's claims run prepared."""
    limits_jobs: int = 2_000
    """Jobs of the limited type in the limits scenario (beside ``jobs`` unlimited ones)."""
    limits_concurrency: int = 10
    """The limited type's concurrency_limit in the limits scenario."""
    backlog_drain: int = 50_000
    """Jobs of each backlog drained by ``workers`` workerd (at most the backlog)."""
    steady_seconds: float = 600.0
    steady_rate: int = 1_000
    """Jobs/s of the steady producer: an EnqueueBatch of rate/10 jobs every 100 ms."""
    steady_sample: float = 60.0
    """Seconds between the steady scenario's samples (table size, p99 of the interval)."""
    steady_retention: float = 60.0
    """The broker's FORGE_RETENTION in the steady scenario."""
    footprint_workers: int = 10
    footprint_concurrency: int = 1_000
    """workerd processes and --concurrency of each in the footprint scenario."""
    schedules: int = 1_000
    """Schedules put by ``clients`` gRPC clients, then all made due at the same instant."""


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
def stack(dsn: str, broker_env: dict[str, str] | None = None) -> Iterator[tuple[str, Procs]]:
    """A broker on ``dsn`` (which it migrates); yields its target and the process set.

    ``broker_env`` adds to (or overrides) the broker's environment, e.g. ``FORGE_RETENTION``."""
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        procs = Procs(Path(tmp))
        port = free_port()
        target = f"127.0.0.1:{port}"
        try:
            procs.start("broker", [sys.executable, "-m", "forge_broker"],
                        _env(DATABASE_URL=dsn, GRPC_PORT=str(port), FORGE_HOST="127.0.0.1",
                             FORGE_BROKER_ID=f"bench-broker-{port}", **(broker_env or {})))
            if not wait_ready(target, 30):
                procs.check_alive()
                raise RuntimeError(f"broker did not become ready; its log:\n{procs.log('broker')}")
            yield target, procs
        finally:
            procs.stop()


def start_workerd(procs: Procs, target: str, name: str, types: str, concurrency: int,
                  prefetch: int = 0) -> None:
    procs.start(name, [sys.executable, "-m", "forge_workerd", "--broker", target,
                       "--handlers", "bench.handlers",
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
    """``n`` jobs in EnqueueBatch calls of ``batch``, as the Python client's
    ``enqueue_many(type_, payloads, ids_only=True)`` sends them: the batch in columns (one
    template, each payload as JSON text), ids answered."""
    for start in range(0, n, batch):
        req = enqueue_many_request(type_, [{"n": i} for i in range(start, min(start + batch, n))],
                                   ids_only=True)
        await stub.EnqueueBatch(req, timeout=60)


async def _enqueue(target: str, p: Params) -> dict[str, Any]:
    async with channel(target) as ch:
        stub = pb_grpc.BrokerStub(ch)
        await ch.channel_ready()
        t0 = time.perf_counter()
        await enqueue_batches(stub, "bench.noop", p.jobs, p.batch)
        batch_rate = p.jobs / (time.perf_counter() - t0)

    # Each client as the Python client's EnqueueStream sends single jobs: one open stream,
    # the next job once the last is answered.
    clients = [AsyncClient(target, timeout=30) for _ in range(p.clients)]
    streams = [EnqueueStream(c) for c in clients]
    try:
        for s in streams:
            await s.send(pb.EnqueueRequest(type="bench.warmup"))  # connected, stream open
        counter = iter(range(p.single_jobs))

        async def client(stream: EnqueueStream) -> None:
            for i in counter:
                await stream.send(pb.EnqueueRequest(type="bench.noop",
                                                    payload_json=payload_json({"n": i})),
                                  id_only=True)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(s) for s in streams))
        single_rate = p.single_jobs / (time.perf_counter() - t0)
    finally:
        for s in streams:
            await s.close()
        for c in clients:
            await c.close()
    return {"enqueue_batch": batch_rate, "enqueue_single": single_rate, "jobs": p.jobs,
            "single_jobs": p.single_jobs, "clients": p.clients}


async def _drain(dsn: str, target: str, procs: Procs, p: Params) -> dict[str, Any]:
    async with channel(target) as ch:
        await enqueue_batches(pb_grpc.BrokerStub(ch), "bench.noop", p.jobs, p.batch)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("ANALYZE forge.jobs")
        names = [f"bench-workerd-{i}" for i in range(p.workers)]
        await _start_workers_together(conn, target, procs, names, p)
        deadline = time.monotonic() + p.timeout
        # The end is read from the trigger-kept counters (committed with each ack): two small
        # tables, where scanning forge.jobs for unfinished rows every poll cost the database
        # ~1 ms a time, ~5 % of its work during the drain.
        while await _completed(conn, "bench.noop") < p.jobs:
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


async def _limits(dsn: str, target: str, procs: Procs, p: Params) -> dict[str, Any]:
    """The drain of ``jobs`` unlimited jobs while queue settings are in force (a paused type
    with a backlog, and a type with a concurrency limit draining beside it, both leased by the
    same workers), then the limited type's own drain and the most of it seen running."""
    async with channel(target) as ch:
        stub = pb_grpc.BrokerStub(ch)
        await stub.PauseQueue(pb.PauseQueueRequest(type="bench.paused"), timeout=30)
        await stub.UpdateQueue(pb.UpdateQueueRequest(type="bench.limited", queue=pb.Queue(
            concurrency_limit=p.limits_concurrency)), timeout=30)
        await enqueue_batches(stub, "bench.paused", p.batch, p.batch)
        await enqueue_batches(stub, "bench.limited", p.limits_jobs, p.batch)
        await enqueue_batches(stub, "bench.noop", p.jobs, p.batch)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("ANALYZE forge.jobs")
        names = [f"bench-workerd-{i}" for i in range(p.workers)]
        await _start_workers_together(conn, target, procs, names, p,
                                      ("bench.noop", "bench.limited"), ("bench.paused",))
        deadline = time.monotonic() + p.timeout
        noop_done_at = limited_done_at = 0.0
        peak = 0
        while not limited_done_at:
            if time.monotonic() > deadline:
                raise TimeoutError("Forge limits drain did not finish")
            procs.check_alive()
            row = await (await conn.execute(PROCESSING_COUNT, {"type": "bench.limited"})).fetchone()
            peak = max(peak, int(row[0]) if row else 0)
            if not noop_done_at and await _completed(conn, "bench.noop") >= p.jobs:
                noop_done_at = time.time()
            if await _completed(conn, "bench.limited") >= p.limits_jobs:
                limited_done_at = time.time()
            await asyncio.sleep(POLL_SECONDS)
        row = await (await conn.execute(
            "SELECT count(*) FROM forge.jobs WHERE type = 'bench.paused' AND status = 'PENDING'"
        )).fetchone()
    procs.stop(names)
    if not row or row[0] != p.batch:
        raise RuntimeError("limits: jobs of the paused type ran")
    noop_first = min(float(f.read_text()) for f in procs.workdir.glob("first-[0-9]*"))
    limited_first = min(float(f.read_text()) for f in procs.workdir.glob("first-limited-*"))
    ideal = p.limits_concurrency / LIMITED_SECONDS
    limited_rate = p.limits_jobs / (limited_done_at - limited_first)
    return {"limits_drain": p.jobs / (noop_done_at - noop_first),
            "limits_limited_drain": limited_rate, "limits_limited_share": limited_rate / ideal,
            "limits_limited_peak": peak, "jobs": p.jobs, "limited_jobs": p.limits_jobs,
            "concurrency_limit": p.limits_concurrency}


def _records(workdir: Path, kind: str) -> list[str]:
    """The lines the handlers of every workerd wrote to ``<kind>-<pid>`` files."""
    lines: list[str] = []
    for f in sorted(workdir.glob(f"{kind}-*")):
        lines.extend(line for line in f.read_text().splitlines() if line.strip())
    return lines


def _latencies(workdir: Path, kind: str = "latency") -> list[float]:
    return [float(line) for line in _records(workdir, kind)]


async def _wait_records(procs: Procs, kind: str, n: int, max_wait: float) -> list[float]:
    deadline = time.monotonic() + max_wait
    while len(values := _latencies(procs.workdir, kind)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(values)} of {n} {kind} jobs ran")
        procs.check_alive()
        await asyncio.sleep(0.005)
    return values


async def _latency(target: str, procs: Procs, p: Params) -> dict[str, Any]:
    start_workerd(procs, target, "bench-workerd-latency", "bench.latency", p.concurrency)

    async def wait_for(n: int, max_wait: float) -> list[float]:
        return await _wait_records(procs, "latency", n, max_wait)

    async with AsyncClient(target, timeout=30) as client, EnqueueStream(client) as stream:

        async def enqueue_one(extra: dict[str, Any]) -> None:
            await stream.send(pb.EnqueueRequest(
                type="bench.latency", payload_json=payload_json({"sent_at": time.time(), **extra})),
                id_only=True)

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


# -- Forge-only scenarios ------------------------------------------------------------------------

MIB = 1024 * 1024
BACKLOG_RETENTION = 30 * 24 * 3600
"""FORGE_RETENTION in the backlog scenario: nothing it inserts is pruned during the run."""
COMPLETED_COUNT = """
SELECT coalesce((SELECT sum(n) FROM forge.job_counts WHERE type = %(type)s AND status = 'COMPLETED'), 0)
     + coalesce((SELECT sum(n) FROM forge.job_count_deltas WHERE type = %(type)s AND status = 'COMPLETED'), 0)
"""
"""COMPLETED jobs of a type from the trigger-maintained counters: cheap at any table size."""
PROCESSING_COUNT = COMPLETED_COUNT.replace("'COMPLETED'", "'PROCESSING'")


async def _completed(conn: psycopg.AsyncConnection[Any], type_: str) -> int:
    """COMPLETED jobs of ``type_``, from the counters."""
    row = await (await conn.execute(COMPLETED_COUNT, {"type": type_})).fetchone()
    return int(row[0]) if row else 0


FILL_COMPLETED = """
INSERT INTO forge.jobs (type, payload, status, attempts, run_at, created_at, updated_at, result)
SELECT 'bench.done', jsonb_build_object('n', g), 'COMPLETED', 1,
       now() - interval '1 hour', now() - interval '1 hour', now(), 'null'::jsonb
FROM generate_series(1, %(n)s::int) AS g
"""
FILL_PENDING = """
INSERT INTO forge.jobs (type, payload, run_at, created_at, updated_at)
SELECT 'bench.noop', jsonb_build_object('n', g), t, t, t
FROM generate_series(1, %(n)s::int) AS g,
     LATERAL (SELECT now() - (%(n)s::int - g) * interval '1 millisecond') AS at(t)
"""
SIZES = """
SELECT pg_total_relation_size('forge.jobs'), pg_relation_size('forge.jobs'), pg_indexes_size('forge.jobs'),
       s.n_live_tup, s.n_dead_tup, s.autovacuum_count, s.vacuum_count
FROM pg_stat_user_tables s WHERE s.relid = 'forge.jobs'::regclass
"""


def rss_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak) of ``pid`` in MiB, from /proc/PID/status."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


async def _wait_workers(conn: psycopg.AsyncConnection[Any], procs: Procs, names: list[str],
                        max_wait: float = 60) -> None:
    """Until every one of the workers ``names`` has its Lease stream registered with the broker
    (counted by name: a stopped worker's stream stays listed until its broker notices)."""
    deadline = time.monotonic() + max_wait
    while True:
        row = await (await conn.execute(
            "SELECT count(DISTINCT worker_id) FROM forge.workers WHERE worker_id = ANY(%s)",
            (names,))).fetchone()
        if row is not None and row[0] >= len(names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {row[0] if row else 0} of {len(names)} workerd streams "
                               "connected")
        procs.check_alive()
        await asyncio.sleep(0.05)


async def _start_workers_together(conn: psycopg.AsyncConnection[Any], target: str, procs: Procs,
                                  names: list[str], p: Params, types: tuple[str, ...] = ("bench.noop",),
                                  also_leased: tuple[str, ...] = ()) -> None:
    """Start a drain's workerd processes (leasing ``types`` and ``also_leased``), ``types``
    paused until every one has its Lease stream open. A drain's clock starts at its first
    handler, and a workerd process takes about half a second to start, so one that came up 0.2 s
    after the other had the drain to itself for a tenth of it; the peers' consumers likewise
    all connect before the start."""
    async with channel(target) as ch:
        stub = pb_grpc.BrokerStub(ch)
        for type_ in types:
            await stub.PauseQueue(pb.PauseQueueRequest(type=type_), timeout=30)
        for name in names:
            start_workerd(procs, target, name, ",".join(types + also_leased), p.concurrency,
                          p.prefetch)
        await _wait_workers(conn, procs, names)
        for type_ in types:
            await stub.ResumeQueue(pb.ResumeQueueRequest(type=type_), timeout=30)


async def _wait_drained(conn: psycopg.AsyncConnection[Any], procs: Procs, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    while await (await conn.execute(UNFINISHED)).fetchone() != (False,):
        if time.monotonic() > deadline:
            raise TimeoutError("jobs left unfinished")
        procs.check_alive()
        await asyncio.sleep(POLL_SECONDS)


async def _wait_port(port: int, procs: Procs, max_wait: float = 30) -> None:
    deadline = time.monotonic() + max_wait
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on port {port}") from None
            procs.check_alive()
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


async def _gateway(target: str, procs: Procs, p: Params) -> dict[str, Any]:
    """``POST /v1/jobs`` through a real gateway process from ``clients`` concurrent HTTP clients."""
    port = free_port()
    procs.start("gateway", [sys.executable, "-m", "forge_gateway", "--broker", target, "--host", "127.0.0.1",
                            "--port", str(port), "--static-dir", "", "--log-level", "warning"], _env())
    await _wait_port(port, procs)
    url = f"http://127.0.0.1:{port}/v1/jobs"
    clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=30)
               for _ in range(p.clients)]
    try:
        async def post(client: httpx.AsyncClient, n: int) -> None:
            r = await client.post(url, json={"type": "bench.noop", "payload": {"n": n}})
            if r.status_code != 200:
                raise RuntimeError(f"POST /v1/jobs: {r.status_code} {r.text[:300]}")

        # Warm-up: each client opens its connection (and the gateway its channel to the broker).
        await asyncio.gather(*(post(c, -1) for c in clients))
        counter = iter(range(p.gateway_jobs))

        async def client_loop(client: httpx.AsyncClient) -> None:
            for n in counter:
                await post(client, n)

        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        rate = p.gateway_jobs / (time.perf_counter() - t0)
    finally:
        for c in clients:
            await c.aclose()
    return {"enqueue_gateway": rate, "gateway_jobs": p.gateway_jobs, "clients": p.clients}


def _timestamp(epoch: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(epoch * 1e9))
    return ts


async def _scheduled(target: str, procs: Procs, p: Params) -> dict[str, Any]:
    """Jobs scheduled 1..3 s ahead for an idle workerd: handler start minus run_at."""
    start_workerd(procs, target, "bench-workerd-scheduled", "bench.scheduled", p.concurrency)
    async with channel(target) as ch:
        stub = pb_grpc.BrokerStub(ch)
        # Warm-up, discarded: a job due now, which also waits for workerd to come up.
        warmup = pb.EnqueueRequest(type="bench.scheduled", payload=payload({"run_at": time.time()}))
        await stub.Enqueue(warmup, timeout=30)
        skip = len(await _wait_records(procs, "scheduled", 1, 60))
        base = time.time()
        jobs = []
        for i in range(p.scheduled_jobs):
            run_at = base + 1 + 2 * i / max(1, p.scheduled_jobs - 1)
            jobs.append(pb.EnqueueRequest(type="bench.scheduled", payload=payload({"run_at": run_at}),
                                          run_at=_timestamp(run_at)))
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=jobs), timeout=60)
        enqueued_in = time.time() - base
        ms = [1000 * v for v in (await _wait_records(procs, "scheduled", skip + p.scheduled_jobs, 60))[skip:]]
    return {"scheduled_p50": percentile(ms, 50), "scheduled_p99": percentile(ms, 99),
            "scheduled_max": max(ms), "scheduled_min": min(ms), "samples": len(ms),
            "enqueue_seconds": enqueued_in}


async def _fill_backlog(dsn: str, pending: int, completed: int) -> dict[str, Any]:
    """A fresh forge.jobs holding ``completed`` COMPLETED and ``pending`` PENDING rows, vacuumed."""
    t0 = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("TRUNCATE forge.jobs, forge.job_counts, forge.job_count_deltas")
        if completed:
            await conn.execute(FILL_COMPLETED, {"n": completed})
        await conn.execute(FILL_PENDING, {"n": pending})
        await conn.execute("VACUUM ANALYZE forge.jobs")
        row = await (await conn.execute(SIZES)).fetchone()
    # The fill's dirty buffers written now, not by the claims and the drain timed next (and
    # the checkpoint a large fill starts not still running under them): bench/pg.py.
    checkpointed = checkpoint(dsn)
    assert row is not None
    return {"pending": pending, "completed": completed, "fill_seconds": time.perf_counter() - t0,
            "checkpointed": checkpointed,
            "table_mib": row[0] / MIB, "indexes_mib": row[2] / MIB}


async def _time_claims(dsn: str, claims: int) -> list[float]:
    """Milliseconds of each of ``claims`` claims of 100, by the broker's own statement, committed."""
    params = {"worker_id": "bench-backlog-claimer", "types": ["bench.noop"], "limit": 100,
              "lease_seconds": 3600, "lock_space": LOCK_SPACE, "token_key": token_key()}
    ms: list[float] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(claims):
            t0 = time.perf_counter()
            cur = await conn.execute(claim_statement(lean=True, one_type=True), params)
            rows = await cur.fetchall()
            ms.append(1000 * (time.perf_counter() - t0))
            if len(rows) != 100:
                raise RuntimeError(f"backlog: a claim returned {len(rows)} rows, expected 100")
    return ms


async def _drain_backlog(dsn: str, n: int, p: Params) -> dict[str, Any]:
    """The first ``n`` jobs of the backlog in ``dsn`` drained by ``workers`` workerd: jobs/s."""
    with stack(dsn, {"FORGE_RETENTION": str(BACKLOG_RETENTION)}) as (target, procs):
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            async def completed() -> int:
                return await _completed(conn, "bench.noop")

            base = await completed()
            names = [f"bench-workerd-backlog-{i}" for i in range(p.workers)]
            # Started one after the other, as when the ratio's baseline was measured: started
            # together (as drain's are), one build measured 0.6-0.86 against 0.9-1.1 this way
            # (docs/benchmarks.md, eleventh pass), so the two are not comparable.
            for name in names:
                start_workerd(procs, target, name, "bench.noop", p.concurrency, p.prefetch)
            deadline = time.monotonic() + p.timeout
            while await completed() < base + n:
                if time.monotonic() > deadline:
                    raise TimeoutError("backlog drain did not finish")
                procs.check_alive()
                await asyncio.sleep(POLL_SECONDS)
            done_at = time.time()
        procs.stop(names)
        firsts = sorted(float(f.read_text()) for f in procs.workdir.glob("first-*"))
    if not firsts:
        raise RuntimeError("backlog: no handler recorded its start")
    return {"jobs": n, "seconds": done_at - firsts[0], "rate": n / (done_at - firsts[0])}


async def _backlog(dsn: str, p: Params) -> dict[str, Any]:
    """Lease latency (claim of 100) and drain rate with a small and a large backlog."""
    migrate(dsn)
    claimed = (p.backlog_warmup_claims + p.backlog_claims) * 100
    n = min(p.backlog_drain, p.backlog_large - claimed)
    if n <= 0 or p.backlog_small <= claimed:
        raise ValueError("backlog: each backlog must hold more than the claims take (100 each)")
    out: dict[str, Any] = {"drain_jobs": n}
    for size, pending, completed in (("small", p.backlog_small, 0),
                                     ("large", p.backlog_large, p.backlog_completed)):
        info = await _fill_backlog(dsn, pending, completed)
        all_ms = await _time_claims(dsn, p.backlog_warmup_claims + p.backlog_claims)
        warmup, ms = all_ms[:p.backlog_warmup_claims], all_ms[p.backlog_warmup_claims:]
        if pending - claimed < n:
            # The small backlog drains as many jobs as the large one, from a fresh backlog of
            # just those: what its claims leave (7,500 of the default 10,000) drains in under
            # half a second, mostly the workers' first claims, too short to compare.
            await _fill_backlog(dsn, n, completed)
        drained = await _drain_backlog(dsn, n, p)
        out[f"backlog_lease_{size}"] = statistics.median(ms)
        out[f"backlog_drain_{size}"] = drained["rate"]
        out[size] = {**info, "claim_ms": [round(x, 3) for x in ms], "claim_p90_ms": percentile(ms, 90),
                     "warmup_claim_ms": [round(x, 3) for x in warmup],
                     "drain_seconds": drained["seconds"],
                     "drain_from_pending": max(pending - claimed, n)}
    out["backlog_lease_ratio"] = out["backlog_lease_large"] / out["backlog_lease_small"]
    out["backlog_drain_ratio"] = out["backlog_drain_large"] / out["backlog_drain_small"]
    return out


async def _steady(dsn: str, target: str, procs: Procs, p: Params) -> dict[str, Any]:
    """A fixed-rate producer and ``workers`` workerd for ``steady_seconds``; size and p99 over time."""
    names = [f"bench-workerd-steady-{i}" for i in range(p.workers)]
    for name in names:
        start_workerd(procs, target, name, "bench.steady", p.concurrency, p.prefetch)
    per_tick = max(1, round(p.steady_rate / 10))
    n_samples = max(1, int(p.steady_seconds / p.steady_sample + 1e-9))
    samples: list[dict[str, Any]] = []
    sent = 0
    behind = 0
    async with channel(target) as ch, await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        stub = pb_grpc.BrokerStub(ch)
        await _wait_workers(conn, procs, names)
        start = time.monotonic()
        t0 = time.time()
        end = start + n_samples * p.steady_sample

        async def produce() -> None:
            nonlocal sent, behind
            for tick in range(1, round(10 * (end - start)) + 1):
                body = payload({"sent_at": time.time()})
                await stub.EnqueueBatch(pb.EnqueueBatchRequest(
                    jobs=[pb.EnqueueRequest(type="bench.steady", payload=body) for _ in range(per_tick)]),
                    timeout=30)
                sent += per_tick
                delay = start + tick / 10 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    behind += 1

        async def sample() -> None:
            for i in range(1, n_samples + 1):
                await asyncio.sleep(max(0.0, start + i * p.steady_sample - time.monotonic()))
                procs.check_alive()
                row = await (await conn.execute(SIZES)).fetchone()
                counts: dict[str, int] = dict(await (await conn.execute(
                    "SELECT status, count(*) FROM forge.jobs GROUP BY status")).fetchall())
                assert row is not None
                samples.append({"t": round(time.monotonic() - start, 1), "total_bytes": row[0],
                                "heap_bytes": row[1], "indexes_bytes": row[2], "live_tup": row[3],
                                "dead_tup": row[4], "autovacuums": row[5] + row[6],
                                "rows": counts, "sent": sent})

        await asyncio.gather(produce(), sample())
        elapsed = time.monotonic() - start
        await _wait_drained(conn, procs, 120)
    procs.stop(names)
    buckets: list[list[float]] = [[] for _ in range(n_samples)]
    for line in _records(procs.workdir, "steady"):
        sent_at, waited = (float(x) for x in line.split())
        i = int((sent_at - t0) / p.steady_sample)
        if 0 <= i < n_samples:
            buckets[i].append(1000 * waited)
    for s, ms in zip(samples, buckets, strict=True):
        s.update({"jobs": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                  "max_ms": max(ms, default=float("nan"))})
    # size(minute 10) ÷ size(minute 3) on the 10-minute run: the last sample over the one 30 % in.
    ref = samples[max(1, round(0.3 * n_samples)) - 1]
    p99s = [s["p99_ms"] for s in samples if s["jobs"]]
    return {"steady_size_ratio": samples[-1]["total_bytes"] / ref["total_bytes"],
            "steady_size_end": samples[-1]["total_bytes"] / MIB,
            "steady_p99_max": max(p99s) if p99s else float("nan"),
            "reference_sample_t": ref["t"], "sent": sent, "achieved_rate": sent / elapsed,
            "ticks_behind": behind, "retention_s": p.steady_retention,
            "sample_seconds": p.steady_sample, "series": samples}


async def _footprint(dsn: str, target: str, procs: Procs, p: Params) -> dict[str, Any]:
    """Broker and workerd RSS with footprint_workers × footprint_concurrency jobs in flight."""
    total = p.footprint_workers * p.footprint_concurrency
    pids = dict(procs.procs)
    broker_idle = rss_mib(pids["broker"].pid)[0]
    names = [f"bench-workerd-hold-{i}" for i in range(p.footprint_workers)]
    for name in names:
        start_workerd(procs, target, name, "bench.hold", p.footprint_concurrency, 0)
    async with channel(target) as ch, await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await _wait_workers(conn, procs, names)
        await enqueue_batches(pb_grpc.BrokerStub(ch), "bench.hold", total, p.batch)
        deadline = time.monotonic() + p.timeout
        while True:
            row = await (await conn.execute(
                "SELECT count(*) FROM forge.jobs WHERE status = 'PROCESSING'")).fetchone()
            if row is not None and row[0] >= total:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {row[0] if row else 0} of {total} jobs in flight")
            procs.check_alive()
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # let the last deliveries reach their handlers
        pids = dict(procs.procs)
        broker_rss, broker_peak = rss_mib(pids["broker"].pid)
        workerd = [rss_mib(pids[name].pid) for name in names]
        (procs.workdir / "release").touch()
        await _wait_drained(conn, procs, p.timeout)
    procs.stop(names)
    rss = [w[0] for w in workerd]
    return {"footprint_broker": broker_rss, "footprint_workerd_max": max(rss),
            "footprint_workerd_mean": statistics.mean(rss), "broker_idle_mib": broker_idle,
            "broker_peak_mib": broker_peak, "workerd_rss_mib": [round(x, 1) for x in rss],
            "workerd_peak_mib": [round(w[1], 1) for w in workerd], "in_flight": total,
            "workers": p.footprint_workers, "concurrency": p.footprint_concurrency}


ONCE_A_YEAR = "0 0 1 1 *"
"""The schedules' cron: never due on its own while the scenario runs."""
DUE_IN = "2 seconds"
"""How far ahead of the database's clock the harness makes every schedule due: the same instant
for all, as at a minute boundary, without waiting up to a minute for one."""
MAKE_DUE = f"""
UPDATE forge.schedules SET next_run_at = date_trunc('second', now()) + interval '{DUE_IN}'
WHERE starts_with(name, 'bench-')
"""
SCHEDULE_JOBS = """
SELECT idempotency_key, extract(epoch FROM created_at)::float8 FROM forge.jobs
WHERE starts_with(idempotency_key, 'schedule:')
"""


async def _put_schedules(target: str, n: int, clients: int) -> float:
    """PutSchedule of ``n`` yearly schedules from ``clients`` channels; seconds taken."""
    channels = [channel(target) for _ in range(clients)]
    try:
        for ch in channels:
            await ch.channel_ready()
        numbers = iter(range(n))

        async def client(ch: grpc.aio.Channel) -> None:
            stub = pb_grpc.BrokerStub(ch)
            for i in numbers:
                await stub.PutSchedule(pb.Schedule(
                    name=f"bench-{i:05d}", cron=ONCE_A_YEAR,
                    job=pb.EnqueueRequest(type="bench.noop", payload=payload({"n": i}))), timeout=30)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(ch) for ch in channels))
        return time.perf_counter() - t0
    finally:
        for ch in channels:
            await ch.close(None)


async def _committed_at(conn: psycopg.AsyncConnection[Any], count: psycopg.AsyncConnection[Any],
                        n: int, until: float) -> tuple[float, int]:
    """When the commit that made the ``n``-th scheduled job visible reached ``conn`` (which
    LISTENs to the jobs' insert NOTIFY, sent at commit), and how many commits it took."""
    commits = 0
    while (left := until - time.time()) > 0:
        async for _ in conn.notifies(timeout=left, stop_after=1):
            at = time.time()
            commits += 1
            row = await (await count.execute(
                "SELECT count(*) FROM forge.jobs WHERE starts_with(idempotency_key, 'schedule:')"
            )).fetchone()
            if row is not None and row[0] >= n:
                return at, commits
    raise TimeoutError(f"the schedules' {n} jobs were not all enqueued in time")


async def _schedules(dsn: str, target: str, p: Params) -> dict[str, Any]:
    """``schedules`` cron schedules due at the same instant: how long after it the broker
    has enqueued all their jobs, one per schedule."""
    n = p.schedules
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listen, \
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await listen.execute("LISTEN forge_jobs")
        put_seconds = await _put_schedules(target, n, p.clients)
        # All due at one instant, as cron schedules are at a boundary they share; then one more put
        # (a paused schedule, which never fires) so the scheduler looks at the new times at once.
        await conn.execute(MAKE_DUE)
        async with channel(target) as ch:
            await pb_grpc.BrokerStub(ch).PutSchedule(pb.Schedule(
                name="wake", every=Duration(seconds=3600), paused=True,
                job=pb.EnqueueRequest(type="bench.noop")), timeout=30)
        row = await (await conn.execute(
            "SELECT count(DISTINCT next_run_at), min(next_run_at), now() FROM forge.schedules")).fetchone()
        assert row is not None
        distinct, due, now = row
        if distinct != 1 or due <= now:
            raise RuntimeError(f"schedules: not all due at one instant ({distinct} fire times, "
                               f"the first {due}, now {now})")
        fire_at = due.timestamp()
        committed, commits = await _committed_at(listen, conn, n, fire_at + 30)
        rows = await (await conn.execute(SCHEDULE_JOBS)).fetchall()
    keys = [key for key, _ in rows]
    expected = {fire_key(f"bench-{i:05d}", due) for i in range(n)}
    if len(keys) != n or set(keys) != expected:
        raise RuntimeError(f"schedules: {len(keys)} jobs ({len(set(keys))} keys, "
                           f"{len(set(keys) & expected)} of the {n} expected), not one per schedule")
    created = [at for _, at in rows]
    return {"schedules_fire": 1000 * (committed - fire_at),
            "schedules_created": 1000 * (max(created) - fire_at),
            "first_created_ms": 1000 * (min(created) - fire_at), "jobs": len(keys),
            "commits": commits, "schedules": n, "put_seconds": put_seconds,
            "puts_per_second": n / put_seconds,
            "fire_time": datetime.fromtimestamp(fire_at, UTC).isoformat()}


def settings(scenario: str, p: Params) -> dict[str, Any]:
    """How Forge was set up for ``scenario``: what a reader needs to reproduce the figure."""
    tuned = {k: v for k, v in os.environ.items() if k.startswith("FORGE_")}
    if scenario == "backlog":
        tuned["FORGE_RETENTION"] = str(BACKLOG_RETENTION)
    elif scenario == "steady":
        tuned["FORGE_RETENTION"] = f"{p.steady_retention:g}"
    out: dict[str, Any] = {"broker": "one `python -m forge_broker` process",
                           "broker_env": tuned or "defaults", "client": "grpc.aio",
                           "event_loop": f"{event_loop()} (broker, workerd and this client)"}
    if scenario == "drain":
        out["workerd"] = (f"{p.workers} processes × --concurrency {p.concurrency} "
                          f"--prefetch {p.prefetch}, async no-op handler")
    elif scenario == "latency":
        out["workerd"] = f"1 process, --concurrency {p.concurrency}"
        out["client"] = ("forge.EnqueueStream (grpc.aio), one open stream; payload_json, "
                         "answer ids")
    elif scenario == "gateway":
        out["gateway"] = "one `python -m forge_gateway` process (uvicorn) in front of the broker"
        out["client"] = f"{p.clients} httpx.AsyncClient, each its own connection, POST /v1/jobs"
    elif scenario == "scheduled":
        out["workerd"] = f"1 process, --concurrency {p.concurrency}, idle"
        out["jobs"] = f"{p.scheduled_jobs} jobs with run_at = now + 1..3 s, one EnqueueBatch"
    elif scenario == "backlog":
        out["backlog"] = (f"{p.backlog_small:,} vs {p.backlog_large:,} PENDING rows (+ "
                          f"{p.backlog_completed:,} COMPLETED with the large one), inserted by SQL, "
                          "VACUUM ANALYZE")
        out["lease"] = (f"median of {p.backlog_claims} claims of 100 by the broker's claim_jobs "
                        "statement (workerd's lean view), "
                        f"after {p.backlog_warmup_claims} not counted")
        out["workerd"] = (f"{p.workers} processes × --concurrency {p.concurrency} "
                          f"--prefetch {p.prefetch}, draining {p.backlog_drain:,} jobs")
    elif scenario == "steady":
        out["producer"] = (f"{p.steady_rate} jobs/s as an EnqueueBatch of {p.steady_rate // 10} every "
                           f"100 ms for {p.steady_seconds:g} s, sampled every {p.steady_sample:g} s")
        out["workerd"] = (f"{p.workers} processes × --concurrency {p.concurrency} "
                          f"--prefetch {p.prefetch}")
    elif scenario == "limits":
        out["workerd"] = (f"{p.workers} processes × --concurrency {p.concurrency} "
                          f"--prefetch {p.prefetch}, leasing bench.noop, bench.limited and "
                          "bench.paused")
        out["queues"] = (f"bench.paused paused with {p.batch:,} jobs; bench.limited "
                         f"(concurrency_limit {p.limits_concurrency}, "
                         f"{LIMITED_SECONDS * 1000:g} ms per job) with {p.limits_jobs:,}")
    elif scenario == "footprint":
        out["workerd"] = (f"{p.footprint_workers} processes × --concurrency {p.footprint_concurrency} "
                          "--prefetch 0, handlers holding their slot")
    elif scenario == "schedules":
        out["schedules"] = (f"{p.schedules:,} schedules, cron '{ONCE_A_YEAR}', put by {p.clients} "
                            f"gRPC clients, then all made due {DUE_IN} ahead; no workerd")
    else:
        out["client"] = "grpc.aio; payload_json, EnqueueBatch answer ids"
        out["clients"] = (f"1 channel for EnqueueBatch; {p.clients} forge.AsyncClient (own "
                          "connections), each one EnqueueStream answering ids, for single jobs")
    return out


def event_loop() -> str:
    """The loop the services started here run on, read as they read it (FORGE_EVENT_LOOP, by
    default uvloop where installed, as the pgqueuer peer's): the harness's client runs on it too."""
    return settings_.from_env(os.environ, eventloop.VAR, eventloop.DEFAULT, eventloop.kind)


def _run(main: Coroutine[Any, Any, T]) -> T:
    """The harness's client side of a scenario, on the services' loop (``event_loop``)."""
    return eventloop.run(main, event_loop())


def run(scenario: str, dsn: str, p: Params) -> dict[str, Any]:
    """One repeat of ``scenario`` for Forge on the fresh database ``dsn``."""
    if scenario == "backlog":
        result = _run(_backlog(dsn, p))
    elif scenario == "steady":
        with stack(dsn, {"FORGE_RETENTION": f"{p.steady_retention:g}"}) as (target, procs):
            result = _run(_steady(dsn, target, procs, p))
    else:
        with stack(dsn) as (target, procs):
            if scenario == "enqueue":
                result = _run(_enqueue(target, p))
            elif scenario == "drain":
                result = _run(_drain(dsn, target, procs, p))
            elif scenario == "latency":
                result = _run(_latency(target, procs, p))
            elif scenario == "gateway":
                result = _run(_gateway(target, procs, p))
            elif scenario == "scheduled":
                result = _run(_scheduled(target, procs, p))
            elif scenario == "footprint":
                result = _run(_footprint(dsn, target, procs, p))
            elif scenario == "limits":
                result = _run(_limits(dsn, target, procs, p))
            elif scenario == "schedules":
                result = _run(_schedules(dsn, target, p))
            else:
                raise ValueError(f"unknown scenario {scenario!r}")
    result["settings"] = settings(scenario, p)
    return result
