"""The chaos run: a real Forge stack drains a queue while its parts are killed and restarted.

Its own PostgreSQL cluster (which it stops and starts), ``brokers`` broker processes and
``workers`` workerd processes split between them. It enqueues ``jobs`` jobs, then while they
drain a driver SIGKILLs random workers at random intervals (starting a replacement each time),
restarts a broker, crash-restarts PostgreSQL, and stops PostgreSQL for ``pg_stop_seconds``
(asking every broker for a job and to enqueue one meanwhile: each must answer UNAVAILABLE),
and SIGKILLs ``broker_kills`` brokers for good (workers then dial every broker, and those on a
killed one must carry on through the others). With ``pooler``, the brokers reach PostgreSQL
through a PgBouncer in transaction mode (LISTEN and migrations directly); ``schedule_every``
keeps a schedule firing during the drain, and ``wake_probe`` times one job enqueued to the idle
workers afterwards (NOTIFY, not the poll, should start it).
One job in ``limited_every`` has a type whose queue has a concurrency limit. The last
``trickle`` jobs are enqueued one at a time with ``Enqueue`` during the drain, so that idle
workers get some of them handed off by the INSERT itself, under the same faults.
A sampler records the age of the oldest open transaction every second, and how many jobs of
the limited type are PROCESSING five times a second. At the end the checks
in ``chaos.checks`` decide whether anything was lost, run twice without cause, or held by two
live workers at once.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg

from forge.client import Client, enqueue_request
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from tests.chaos.checks import Findings, check
from tests.chaos.handlers import JOB_TYPE, LIMIT, LIMITED_TYPE, TABLE_DDL, TYPES, WAKE_TYPE
from tests.chaos.pgbouncer import PgBouncer
from tests.chaos.postgres import PgCluster
from tests.chaos.procs import Broker, Worker
from tests.support import free_port

DATABASE = "forge_chaos"
APP_NAME = "forge-chaos"
ENQUEUE_BATCH = 1000
RECONNECTED = re.compile(r"reconnected to broker .* after ([0-9.]+)s")
SCHEDULE_TYPE = "chaos.tick"
"""The type of the scheduled jobs: no worker runs them, they only count fires."""


@dataclass
class Settings:
    jobs: int = 20_000
    brokers: int = 2
    workers: int = 4
    seed: int | None = None
    concurrency: int = 8
    job_ms: float = 10.0
    """How long each job works before writing its side effect."""
    fail_every: int = 100
    """Every Nth job fails permanently by its handler's choice (0: none)."""
    max_retries: int = 10
    flaky_every: int = 0
    """Every Nth job (never one that fails or is limited) fails its first attempt (0: none)."""
    limited_every: int = 10
    """Every Nth job (never one that fails) is of the limited type (0: none)."""
    kill_interval: tuple[float, float] = (1.0, 4.0)
    max_kills: int | None = None
    kill_until: float = 0.9
    """No kills once this fraction of the jobs is finished."""
    broker_restarts: int = 1
    pg_restarts: int = 1
    pg_stop_seconds: float = 10.0
    broker_kills: int = 0
    """Brokers SIGKILLed mid-drain and left dead; workers then dial every broker."""
    pooler: bool = False
    """Brokers' DATABASE_URL through PgBouncer (transaction mode), DATABASE_DIRECT_URL direct."""
    schedule_every: float = 0.0
    """Seconds between fires of a schedule put before the drain (0: none)."""
    wake_probe: bool = False
    trickle: int = 500
    """The last jobs, enqueued one by one during the drain (each with an idempotency key,
    sent again until answered), to exercise the hand-off to idle workers."""
    broker_env: dict[str, str] = field(default_factory=dict)
    """Laid over the brokers' environment."""
    lease_seconds: int | None = None
    """Default: long enough that leases outlive the PostgreSQL stop (heartbeats every third)."""
    max_xact_age: float = 5.0
    drain_timeout: float = 900.0
    log_dir: Path | None = None
    verbose: bool = True

    def lease(self) -> int:
        if self.lease_seconds is not None:
            return self.lease_seconds
        # A lease survives if a heartbeat lands within its last two thirds: the stop, the
        # server's start, and one failed beat (the broker's pool wait) must fit in a third.
        return max(6, math.ceil(3 * (self.pg_stop_seconds + 4)))


@dataclass
class Kill:
    worker_id: str
    pid: int
    at: datetime


@dataclass
class BrokerKill:
    broker: str
    at: datetime
    workers: list[str]
    """The workers with a lease stream on it when it was killed."""
    runs_after: dict[str, int] = field(default_factory=dict)
    """Executions each of those workers started after the kill, through the other brokers."""
    reconnect_seconds: dict[str, float] = field(default_factory=dict)
    """How long each of those workers was disconnected, from its log."""


@dataclass
class Probe:
    broker: str
    method: str
    code: str
    seconds: float


@dataclass
class Event:
    name: str
    at: float
    done_before: int
    seconds: float


@dataclass
class Record:
    """What the driver did and saw."""

    kills: list[Kill] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    broker_restarts: int = 0
    broker_kills: list[BrokerKill] = field(default_factory=list)
    pg_restarts: int = 0
    pg_stops: int = 0
    xact_samples: int = 0
    xact_missed: int = 0
    max_xact_age: float = 0.0
    limited_max: int = 0  # the most jobs of the limited type seen PROCESSING at once
    max_xact_query: str = ""
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    drained: bool = False
    schedule_fires: int = 0
    retried: int = 0
    """Jobs that ran more than one attempt (a failed one, or a lease rescued from a killed worker)."""
    wake_seconds: float | None = None
    """From enqueue to lease of the job enqueued to idle workers (database clock)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Result:
    settings: Settings
    seed: int
    lease_seconds: int
    record: Record
    findings: Findings
    log_dir: Path

    @property
    def violations(self) -> list[str]:
        return self.findings.violations


class Run:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.seed = settings.seed if settings.seed is not None else random.SystemRandom().randrange(1 << 31)
        # One generator per thread, so a seed replays the same choices in each.
        self.rng = random.Random(self.seed)
        self.kill_rng = random.Random(self.seed + 1)
        self.lease_seconds = settings.lease()
        self.rec = Record()
        self.cluster: PgCluster | None = None
        self.dsn = ""
        self.log_dir = Path(".")
        self.drain_started = time.monotonic()
        self.brokers: list[Broker] = []
        self.bouncer: PgBouncer | None = None
        self.workers: list[Worker] = []  # the current process of each worker slot
        self.generation = 0
        self.started = time.monotonic()
        self.finished = threading.Event()
        self.job_ids: list[str] = []

    # -- reporting -----------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.s.verbose:
            print(f"[{time.monotonic() - self.started:7.1f}s] {message}", flush=True)

    # -- the run -------------------------------------------------------------------------------

    def execute(self) -> Result:
        s = self.s
        self.cluster = PgCluster()
        self.log_dir = log_dir = s.log_dir or self.cluster.root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        findings: Findings | None = None
        try:
            self.say(f"seed {self.seed}; PostgreSQL from {self.cluster.bin}; logs in {log_dir}")
            self.cluster.init().start()
            with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            self.dsn = self.cluster.dsn(DATABASE)
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(TABLE_DDL)

            env = {"FORGE_RESCUE_INTERVAL": "0.25", "FORGE_BACKOFF_BASE": "0.2",
                   "FORGE_POLL_INTERVAL": "1", "FORGE_STATS_INTERVAL": "0.5",
                   "FORGE_POOL_TIMEOUT": "1", "FORGE_POOL_MAX": "20",
                   "FORGE_RETENTION": str(7 * 86400),
                   "FORGE_METRICS_PORT": "0",  # brokers side by side: no shared metrics port
                   **s.broker_env}
            broker_dsn = self.dsn
            if s.pooler:
                self.bouncer = PgBouncer(self.cluster).start()
                broker_dsn = self.bouncer.dsn(DATABASE)
                env["DATABASE_DIRECT_URL"] = self.dsn
                self.say(f"PgBouncer (transaction mode) on port {self.bouncer.port}")
            self.brokers = [Broker(i, broker_dsn, free_port(), log_dir, env)
                            for i in range(s.brokers)]
            self.brokers[0].start()  # migrates; the others find the schema in place
            with ThreadPoolExecutor() as pool:
                list(pool.map(lambda b: b.start(), self.brokers[1:]))
            self.say(f"{s.brokers} brokers serving: {', '.join(b.target for b in self.brokers)}")

            self.workers = [self.new_worker(i) for i in range(s.workers)]
            for w in self.workers:
                if not w.wait_connected():
                    raise RuntimeError(f"{w.name} did not connect:\n{w.log_tail()}")
            self.say(f"{s.workers} workers connected (concurrency {s.concurrency}, "
                     f"lease {self.lease_seconds}s)")

            with Client(self.brokers[0].target) as client:
                client.update_queue(LIMITED_TYPE, concurrency_limit=LIMIT)
                if s.schedule_every:
                    client.put_schedule("chaos-tick", SCHEDULE_TYPE, every=s.schedule_every)
            self.enqueue()
            threads = [threading.Thread(target=self.sample, name="sampler", daemon=True),
                       threading.Thread(target=self.kill_loop, name="killer", daemon=True),
                       threading.Thread(target=self.trickle, name="trickle", daemon=True)]
            for t in threads:
                t.start()
            try:
                self.script()
                self.wait_drained()
            finally:
                self.finished.set()
                for t in threads:
                    t.join(30)
            if s.wake_probe:
                self.probe_wake()
            self.count_outcomes()
            self.say("checking")
            with self.connect() as conn:
                row = conn.execute("SELECT count(*) FROM forge.jobs WHERE attempts = 1 "
                                   "AND leased_at = created_at").fetchone()
                self.say(f"{row[0] if row else 0} jobs ran once, handed off by their INSERT")
            with psycopg.connect(self.dsn, autocommit=True) as conn:  # kept for a post-mortem
                conn.execute("CREATE TABLE chaos_kills (worker_id text, pid int, at timestamptz)")
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO chaos_kills VALUES (%s, %s, %s)",
                                    [(k.worker_id, k.pid, k.at) for k in self.rec.kills])
            findings = check(self.dsn, killed={k.worker_id: k.at for k in self.rec.kills},
                             expected_jobs=s.jobs, fail_every=s.fail_every,
                             limited_sampled_max=self.rec.limited_max)
        finally:
            for w in self.workers:
                w.stop()
            for b in self.brokers:
                b.stop()
            if self.bouncer is not None:
                self.bouncer.stop()
            if findings is not None and not findings.violations and s.log_dir is None:
                self.cluster.destroy()
            else:
                with contextlib.suppress(Exception):
                    self.cluster.stop("fast")
        self.add_driver_findings(findings)
        return Result(s, self.seed, self.lease_seconds, self.rec, findings, log_dir)

    def new_worker(self, slot: int) -> Worker:
        """Start a workerd process for ``slot``; slots are split between the brokers."""
        self.generation += 1
        target = (",".join(b.target for b in self.brokers) if self.s.broker_kills
                  else self.brokers[slot % len(self.brokers)].target)
        return Worker(f"w{slot}-g{self.generation}", target, self.log_dir, effects_dsn=self.dsn,
                      concurrency=self.s.concurrency, lease_seconds=self.lease_seconds).start()

    def enqueue(self) -> None:
        s = self.s
        t0 = time.monotonic()
        batched = s.jobs - self.trickled()
        with Client(self.brokers[0].target, timeout=60) as client:
            for start in range(0, batched, ENQUEUE_BATCH):
                reqs = [self.job(n) for n in range(start, min(batched, start + ENQUEUE_BATCH))]
                self.job_ids += [j.id for j in client.enqueue_batch(reqs)]
        self.rec.enqueue_seconds = time.monotonic() - t0
        self.drain_started = t0
        self.say(f"enqueued {batched} jobs in {self.rec.enqueue_seconds:.1f}s with EnqueueBatch; "
                 f"{self.trickled()} more follow one by one during the drain")

    def trickled(self) -> int:
        return min(self.s.trickle, self.s.jobs)

    def job(self, n: int) -> pb.EnqueueRequest:
        """The ``n``th job: the same whichever way it is enqueued."""
        s = self.s
        payload: dict[str, Any] = {"n": n, "ms": s.job_ms}
        type_ = JOB_TYPE
        if s.fail_every and n % s.fail_every == s.fail_every - 1:
            payload["fail"] = True
        elif s.limited_every and n % s.limited_every == s.limited_every // 2:
            type_ = LIMITED_TYPE
        elif s.flaky_every and n % s.flaky_every == 0:
            payload["flaky"] = True
        key = f"chaos-{n}" if n >= s.jobs - self.trickled() else None
        return enqueue_request(type_, payload, max_retries=s.max_retries, idempotency_key=key)

    def trickle(self) -> None:
        """Enqueue the last ``trickle`` jobs one by one, through each broker in turn, sending
        each again (same idempotency key: never twice) until some broker answers it."""
        # From half way, one every 0.1 s: the first go to busy workers (PENDING), the later
        # ones, once the backlog is gone, to idle ones (handed off), through the faults left.
        self.wait_progress(0.5)
        channels = [grpc.insecure_channel(b.target) for b in self.brokers]
        try:
            stubs = [pb_grpc.BrokerStub(ch) for ch in channels]
            for n in range(self.s.jobs - self.trickled(), self.s.jobs):
                req = self.job(n)
                for attempt in range(100_000):
                    if self.finished.is_set():
                        return
                    try:
                        stubs[(n + attempt) % len(stubs)].Enqueue(req, timeout=5)
                        break
                    except grpc.RpcError:
                        time.sleep(0.2)  # that broker or the database is away: another, later
                time.sleep(0.1)
        finally:
            for ch in channels:
                ch.close()

    # -- progress ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2,
                             application_name=APP_NAME) as conn:
            yield conn

    def done_count(self) -> int | None:
        """Jobs in a final state, or None while the database is away."""
        try:
            with self.connect() as conn:
                row = conn.execute("SELECT count(*) FROM forge.jobs WHERE type = ANY(%s) AND status IN "
                                   "('COMPLETED', 'DEAD', 'CANCELLED')", (list(TYPES),)).fetchone()
                return int(row[0]) if row else 0
        except psycopg.OperationalError:
            return None

    def wait_progress(self, fraction: float) -> int:
        target = fraction * self.s.jobs
        while True:
            done = self.done_count()
            if done is not None and done >= target:
                return done
            time.sleep(0.2)

    def wait_drained(self) -> None:
        deadline = time.monotonic() + self.s.drain_timeout
        last_report = 0.0
        while time.monotonic() < deadline:
            done = self.done_count()
            if done is not None and done >= self.s.jobs:
                self.rec.drained = True
                break
            if time.monotonic() - last_report > 5:
                self.say(f"draining: {done if done is not None else '?'}/{self.s.jobs} finished")
                last_report = time.monotonic()
            time.sleep(0.2)
        self.rec.drain_seconds = time.monotonic() - self.drain_started
        self.say(f"{'drained' if self.rec.drained else 'NOT drained'} after {self.rec.drain_seconds:.1f}s")

    # -- the chaos -----------------------------------------------------------------------------

    def script(self) -> None:
        """The scheduled faults, each once a share of the queue is finished."""
        s = self.s
        plan: list[tuple[str, Callable[[], None]]] = (
            [("broker restart", self.restart_broker)] * s.broker_restarts
            + [("broker kill", self.kill_broker)] * s.broker_kills
            + [("postgres crash-restart", self.restart_postgres)] * s.pg_restarts
            + ([("postgres stop", self.stop_postgres)] if s.pg_stop_seconds > 0 else []))
        for i, (name, action) in enumerate(plan):
            fraction = 0.1 + 0.5 * i / max(1, len(plan) - 1) if len(plan) > 1 else 0.3
            done = self.wait_progress(fraction)
            t0 = time.monotonic()
            self.say(f"{name} ({done}/{s.jobs} finished)")
            action()
            took = time.monotonic() - t0
            with self.rec.lock:
                self.rec.events.append(Event(name, t0 - self.started, done, took))
            self.say(f"{name} done in {took:.1f}s")

    def restart_broker(self) -> None:
        broker = self.rng.choice(self.brokers)
        broker.stop()
        broker.start()
        self.rec.broker_restarts += 1

    def kill_broker(self) -> None:
        """SIGKILL the live broker holding the most lease streams; it stays dead."""
        with self.connect() as conn:
            rows = conn.execute("SELECT broker_id, array_agg(DISTINCT worker_id)"
                                " FROM forge.workers GROUP BY 1").fetchall()
        killed = {k.broker for k in self.rec.broker_kills}
        streams = {str(b): list(ws) for b, ws in rows if b not in killed}
        victim = max((b for b in self.brokers if b.name not in killed and b.alive),
                     key=lambda b: len(streams.get(b.name, [])))
        at = datetime.now(UTC)
        victim.kill9()
        self.rec.broker_kills.append(BrokerKill(victim.name, at, streams.get(victim.name, [])))
        self.say(f"SIGKILL {victim.name}, which served {streams.get(victim.name, [])}")

    def count_outcomes(self) -> None:
        """What the checks do not count: runs after broker kills, schedule fires, retries."""
        with self.connect() as conn:
            for k in self.rec.broker_kills:
                rows = conn.execute("SELECT worker_id, count(*) FROM chaos_effects"
                                    " WHERE worker_id = ANY(%s) AND started_at > %s GROUP BY 1",
                                    (k.workers, k.at)).fetchall()
                k.runs_after = {w: 0 for w in k.workers} | {str(w): int(n) for w, n in rows}
                for w in self.workers:
                    found = RECONNECTED.search(w.log_text()) if w.worker_id in k.workers else None
                    if found:
                        k.reconnect_seconds[w.worker_id] = float(found.group(1))
            row = conn.execute("SELECT count(*) FILTER (WHERE type = %s),"
                               " count(*) FILTER (WHERE type = ANY(%s) AND attempts > 1)"
                               " FROM forge.jobs", (SCHEDULE_TYPE, list(TYPES))).fetchone()
            assert row is not None
            self.rec.schedule_fires, self.rec.retried = int(row[0]), int(row[1])

    def probe_wake(self) -> None:
        """With the workers idle (the queue drained, a second's pause), one job: how long from
        its enqueue to its lease, by the database clock."""
        live = [b for b in self.brokers if b.alive]
        time.sleep(1.0)
        with Client(live[0].target) as client:
            job = client.enqueue(WAKE_TYPE, {"n": -1})
        deadline = time.monotonic() + 30
        with self.connect() as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT extract(epoch FROM leased_at - created_at)::float8"
                                   " FROM forge.jobs WHERE id = %s AND leased_at IS NOT NULL",
                                   (job.id,)).fetchone()
                if row is not None:
                    self.rec.wake_seconds = float(row[0])
                    return
                time.sleep(0.05)

    def restart_postgres(self) -> None:
        assert self.cluster is not None
        self.cluster.stop("immediate")
        self.cluster.start()
        self.rec.pg_restarts += 1

    def stop_postgres(self) -> None:
        """Stop PostgreSQL for pg_stop_seconds; meanwhile every broker must answer UNAVAILABLE."""
        assert self.cluster is not None
        self.cluster.stop("fast")
        stopped = time.monotonic()
        deadline = max(2.0, self.s.pg_stop_seconds - 0.5)
        calls = [(b, m) for b in self.brokers for m in ("GetJob", "Enqueue")]
        with ThreadPoolExecutor(len(calls)) as pool:
            probes = list(pool.map(lambda c: self.probe(c[0].target, c[1], deadline), calls))
        self.rec.probes += probes
        for p in probes:
            self.say(f"  while stopped, {p.broker} {p.method}: {p.code} in {p.seconds:.2f}s")
        time.sleep(max(0.0, stopped + self.s.pg_stop_seconds - time.monotonic()))
        self.cluster.start()
        self.rec.pg_stops += 1

    def probe(self, target: str, method: str, deadline: float) -> Probe:
        t0 = time.monotonic()
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.BrokerStub(channel)
            try:
                if method == "GetJob":
                    stub.GetJob(pb.GetJobRequest(id=self.rng.choice(self.job_ids)), timeout=deadline)
                else:
                    stub.Enqueue(enqueue_request("chaos-probe", {"probe": True}), timeout=deadline)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
        return Probe(target, method, code, time.monotonic() - t0)

    def kill_loop(self) -> None:
        s = self.s
        while not self.finished.wait(self.kill_rng.uniform(*s.kill_interval)):
            if s.max_kills is not None and len(self.rec.kills) >= s.max_kills:
                return
            done = self.done_count()
            if done is not None and done >= s.kill_until * s.jobs:
                return
            slot = self.kill_rng.randrange(len(self.workers))
            victim = self.workers[slot]
            at = datetime.now(UTC)
            victim.kill9()
            with self.rec.lock:
                self.rec.kills.append(Kill(victim.worker_id, victim.pid, at))
            self.workers[slot] = self.new_worker(slot)
            self.say(f"SIGKILL {victim.worker_id} (pid {victim.pid}); replaced by "
                     f"{self.workers[slot].worker_id}")

    def sample(self) -> None:
        """Every second: the age of the oldest transaction that is not idle and not ours; every
        fifth of a second: how many jobs of the limited type are PROCESSING."""
        conn: psycopg.Connection[Any] | None = None
        tick = 0
        while not self.finished.wait(0.2):
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=1,
                                           application_name=APP_NAME)
                running = conn.execute("SELECT count(*) FROM forge.jobs WHERE type = %s"
                                       " AND status = 'PROCESSING'", (LIMITED_TYPE,)).fetchone()
                self.rec.limited_max = max(self.rec.limited_max, int(running[0]) if running else 0)
                tick += 1
                if tick % 5:
                    continue
                row = conn.execute(
                    "SELECT extract(epoch FROM clock_timestamp() - xact_start)::float8,"
                    " coalesce(application_name, '') || ' [' || coalesce(state, '') || '] '"
                    " || left(query, 160)"
                    " FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    " AND state IS DISTINCT FROM 'idle' AND xact_start IS NOT NULL"
                    " AND application_name IS DISTINCT FROM %s"
                    " ORDER BY xact_start LIMIT 1", (APP_NAME,)).fetchone()
                self.rec.xact_samples += 1
                if row is not None and row[0] > self.rec.max_xact_age:
                    self.rec.max_xact_age = float(row[0])
                    self.rec.max_xact_query = " ".join(str(row[1]).split())
            except psycopg.Error:
                self.rec.xact_missed += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    # -- the driver's own findings -------------------------------------------------------------

    def add_driver_findings(self, findings: Findings) -> None:
        s, rec, v = self.s, self.rec, findings.violations
        if not rec.drained:
            v.append(f"the queue did not drain within {s.drain_timeout:g}s")
        if len(rec.broker_kills) != s.broker_kills:
            v.append(f"broker kills: {len(rec.broker_kills)}, planned {s.broker_kills}")
        for k in rec.broker_kills:
            if not k.workers:
                v.append(f"{k.broker} had no worker when it was killed: it tested nothing")
            stuck = [w for w, n in k.runs_after.items() if n == 0]
            if stuck:
                v.append(f"{stuck} ran nothing after {k.broker}, their broker, was killed")
        if s.wake_probe and rec.wake_seconds is None:
            v.append("the job enqueued to idle workers was not leased within 30 s")
        if rec.broker_restarts != s.broker_restarts:
            v.append(f"broker restarts: {rec.broker_restarts}, planned {s.broker_restarts}")
        if rec.pg_restarts != s.pg_restarts:
            v.append(f"postgres restarts: {rec.pg_restarts}, planned {s.pg_restarts}")
        for e in rec.events:
            if e.done_before >= s.jobs:
                v.append(f"{e.name} came after the queue had drained: it tested nothing")
        for p in rec.probes:
            if p.code != "UNAVAILABLE":
                what = "hung until its deadline" if p.code == "DEADLINE_EXCEEDED" else f"answered {p.code}"
                v.append(f"with PostgreSQL stopped, {p.broker} {p.method} {what} (want UNAVAILABLE)")
        if rec.max_xact_age > s.max_xact_age:
            v.append(f"oldest transaction {rec.max_xact_age:.2f}s > {s.max_xact_age:g}s: "
                     f"{rec.max_xact_query}")
        if rec.xact_samples == 0:
            v.append("pg_stat_activity was never sampled")


def run(settings: Settings) -> Result:
    return Run(settings).execute()


def summary(result: Result) -> str:
    """The figures, one per line."""
    s, rec, f = result.settings, result.record, result.findings
    codes: dict[str, int] = {}
    for p in rec.probes:
        codes[p.code] = codes.get(p.code, 0) + 1
    answered = ", ".join(f"{c} ×{n}" for c, n in sorted(codes.items())) or "none"
    rate = s.jobs / rec.drain_seconds if rec.drain_seconds else 0.0
    lines = [
        f"forge chaos: seed {result.seed}; {s.brokers} brokers, {s.workers} workers "
        f"(concurrency {s.concurrency}, lease {result.lease_seconds}s), {s.job_ms:g} ms per job",
        f"  jobs                {f.jobs:>8}  ({f.completed} completed, {f.dead_by_choice} dead by "
        f"their handler's choice)",
        f"  drain               {rec.drain_seconds:>8.1f}s ({rate:.0f} jobs/s, enqueue "
        f"{rec.enqueue_seconds:.1f}s)",
        f"  kills (SIGKILL)     {len(rec.kills):>8}",
        f"  broker restarts     {rec.broker_restarts:>8}",
        *(f"  broker killed       {k.broker:>8}  (its workers ran {k.runs_after} jobs after; "
          f"reconnected after {k.reconnect_seconds} s)" for k in rec.broker_kills),
        f"  postgres restarts   {rec.pg_restarts:>8}  (crash: pg_ctl stop -m immediate, start)",
        f"  postgres stops      {rec.pg_stops:>8}  ({s.pg_stop_seconds:g}s; brokers answered {answered})",
        f"  executions          {f.executions:>8}  ({rec.retried} jobs took more than one attempt)",
        f"  duplicates          {f.duplicates:>8}  ({f.duplicates_explained} of them after their "
        f"worker was killed mid-job)",
        f"  lost                {f.lost:>8}",
        f"  without side effect {f.missing_effects:>8}",
        f"  overlapping leases  {f.overlaps:>8}",
        f"  {LIMITED_TYPE} running {f.limited_running_max:>4} at most (limit {LIMIT})",
        f"  oldest transaction  {rec.max_xact_age:>8.2f}s max over {rec.xact_samples} samples "
        f"({rec.xact_missed} missed while PostgreSQL was down; limit {s.max_xact_age:g}s)",
    ]
    if s.pooler:
        lines.append("  through PgBouncer   transaction mode (LISTEN and migrations direct)")
    if s.schedule_every:
        lines.append(f"  schedule fires      {rec.schedule_fires:>8}  (every {s.schedule_every:g}s)")
    if rec.wake_seconds is not None:
        lines.append(f"  idle wake-up        {rec.wake_seconds:>8.3f}s from enqueue to lease")
    if rec.max_xact_query:
        lines.append(f"    oldest was: {rec.max_xact_query[:150]}")
    if result.violations:
        lines.append(f"VIOLATIONS ({len(result.violations)}); logs in {result.log_dir}:")
        lines += [f"  - {v}" for v in result.violations]
    else:
        lines.append("result: OK, no violations")
    return "\n".join(lines)
