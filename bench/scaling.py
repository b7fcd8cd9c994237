"""The figures of docs/scaling.md, measured on this machine.

    python -m bench.scaling [--jobs 50000] [--rows 1000000] [--only cost,saturation,retention]
                            [--concurrency 100] [--prefetch 900] [--json bench/results/scaling.json]

Runs its own PostgreSQL cluster (the system's PostgreSQL 15 when installed, for
``pg_stat_statements``; fsync and full-page writes on, as in production), real broker and
workerd subprocesses, and the ``bench.noop`` handler.

- **cost**: one broker, two workerd (``--concurrency`` and ``--prefetch`` of each, by default
  ``make bench``'s 100 and 900: claims and settles of up to 1,000 jobs; ``--concurrency 16
  --prefetch 0`` gives statements of a few jobs each). ``--jobs`` jobs are enqueued
  (EnqueueBatch, 500 a call) with their queue paused, analyzed (as ``make bench`` does), then the
  queue is resumed and drained. For each phase:
  CPU seconds of the broker, the workerd and PostgreSQL per 1,000 jobs (``/proc/PID/stat``), statements
  per job (``pg_stat_statements`` calls in the queue's database), and WAL bytes per job
  (``pg_current_wal_lsn()`` before and after, and ``pg_stat_statements.wal_bytes``).
- **saturation**: the same drain at 1/2/3 brokers with 2 workerd per broker, and enqueue with
  1/2/4 concurrent clients: jobs per second, the cores each process kind used, the busiest
  PostgreSQL process's cores, and the cores the whole machine kept busy (``/proc/stat``: the
  machine is shared, so what the stack did not get, other work did).
- **retention**: ``--rows`` finished jobs removed the way the broker does it (``delete_finished_jobs``,
  1,000 rows a statement) then ``VACUUM``, against the same rows in one partition of a table
  partitioned by finish time, dropped with ``DETACH PARTITION`` + ``DROP TABLE``: seconds and
  WAL bytes of each.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, LiteralString

import psycopg

from bench.forge_bench import COMPLETED_COUNT, Params
from forge.client import Client, enqueue_request
from forge_broker.migrate import migrate
from forge_broker.sql import q
from tests.chaos.postgres import SYSTEM_BIN, PgCluster
from tests.support import BrokerProcess, WorkerdProcess, wait_until

JOB_TYPE = "bench.noop"
BATCH = 500
WORKERS_PER_BROKER = 2
MARK = "/* bench.scaling */"
"""Our own queries carry this, so pg_stat_statements figures leave them out."""
# The production defaults of the broker's timers (the test harness shortens them).
BROKER_ENV = {"FORGE_METRICS_PORT": "0", "FORGE_POOL_MAX": "20", "FORGE_RESCUE_INTERVAL": "1",
              "FORGE_POLL_INTERVAL": "5", "FORGE_STATS_INTERVAL": "1"}


@dataclass
class Snapshot:
    at: float
    lsn: int
    statements: int
    statement_wal: int
    cpu: dict[str, float]
    postgres: dict[int, tuple[float, str]]
    """CPU seconds and process title of each PostgreSQL process."""
    busy: float
    """CPU seconds the whole machine spent busy (every process, ours or not)."""


@dataclass
class Phase:
    """One phase of a run, per job where it says so."""

    jobs: int
    seconds: float
    jobs_per_second: float
    cpu_ms_per_job: dict[str, float]
    """CPU milliseconds per job by process kind: broker, workerd, postgres (= CPU seconds per
    1,000 jobs)."""
    cores: dict[str, float]
    """CPU seconds per wall second, by process kind."""
    statements_per_job: float
    wal_bytes_per_job: float
    statement_wal_bytes_per_job: float
    load_average: float
    """The machine's 1-minute load average at the phase's end: its other work competes too."""
    machine_busy_cores: float
    """Cores the whole machine kept busy (``/proc/stat``), the stack's and everyone else's."""
    postgres_busiest: dict[str, Any]
    """The PostgreSQL process that used the most CPU: its cores and its process title."""


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Phase] = field(default_factory=dict)
    saturation: list[dict[str, Any]] = field(default_factory=list)
    workerd: dict[str, int] = field(default_factory=dict)
    """Each workerd's concurrency and prefetch, in every phase."""
    retention: dict[str, dict[str, float]] = field(default_factory=dict)


class Cluster:
    """The benchmark's PostgreSQL and the means to read its counters."""

    def __init__(self) -> None:
        self.pg = PgCluster()
        if (SYSTEM_BIN / "pg_ctl").exists():
            self.pg.bin = SYSTEM_BIN  # its contrib has pg_stat_statements; pgserver's lacks it
        self.pg.init()
        with (self.pg.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# bench.scaling: production durability, statement counts\n"
                       "fsync = on\nfull_page_writes = on\nmax_wal_size = '4GB'\n"
                       "shared_preload_libraries = 'pg_stat_statements'\n"
                       "pg_stat_statements.track_utility = on\n")
        self.pg.start()
        self.admin = psycopg.connect(self.pg.dsn(), autocommit=True)
        self.admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.n = 0

    def close(self) -> None:
        self.admin.close()
        self.pg.destroy()

    def new_database(self) -> str:
        self.n += 1
        name = f"forge_scaling_{self.n}"
        self.admin.execute(f"CREATE DATABASE {name}")
        dsn = self.pg.dsn(name)
        migrate(dsn)
        return dsn

    def postgres_cpu(self) -> dict[int, tuple[float, str]]:
        """The postmaster's and its children's (backends, autovacuum, WAL writer…): CPU seconds
        and process title by pid."""
        postmaster = int((self.pg.data / "postmaster.pid").read_text().split()[0])
        children = [int(d.name) for d in Path("/proc").iterdir()
                    if d.name.isdigit() and _stat(int(d.name))[:1] == [str(postmaster)]]
        return {pid: (_cpu_of(pid), _title(pid)) for pid in [postmaster, *children]}

    def snapshot(self, dbname: str, procs: dict[str, list[int]]) -> Snapshot:
        row = self.admin.execute(
            f"{MARK} SELECT (pg_current_wal_lsn() - '0/0')::bigint,"
            " coalesce(sum(s.calls), 0)::bigint, coalesce(sum(s.wal_bytes), 0)::bigint"
            " FROM pg_database d LEFT JOIN pg_stat_statements s ON s.dbid = d.oid"
            "  AND s.query NOT LIKE %s WHERE d.datname = %s",
            (f"%{MARK}%", dbname)).fetchone()
        assert row is not None
        cpu = {kind: sum(_cpu_of(pid) for pid in pids) for kind, pids in procs.items()}
        postgres = self.postgres_cpu()
        cpu["postgres"] = sum(seconds for seconds, _ in postgres.values())
        return Snapshot(time.monotonic(), int(row[0]), int(row[1]), int(row[2]), cpu, postgres,
                        _machine_busy())


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (ppid first); [] once it exited."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1:]
    except (OSError, IndexError):
        return []


def _machine_busy() -> float:
    """CPU seconds all cores spent on user, nice, system, irq and softirq work since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "(exited)"


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 once it exited)."""
    fields = _stat(pid)
    return (int(fields[10]) + int(fields[11])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def phase(jobs: int, a: Snapshot, b: Snapshot) -> Phase:
    seconds = b.at - a.at
    return Phase(
        jobs=jobs, seconds=round(seconds, 2), jobs_per_second=round(jobs / seconds, 1),
        cpu_ms_per_job={k: round(1000 * (b.cpu[k] - a.cpu[k]) / jobs, 4) for k in b.cpu},
        cores={k: round((b.cpu[k] - a.cpu[k]) / seconds, 2) for k in b.cpu},
        statements_per_job=round((b.statements - a.statements) / jobs, 4),
        wal_bytes_per_job=round((b.lsn - a.lsn) / jobs, 1),
        statement_wal_bytes_per_job=round((b.statement_wal - a.statement_wal) / jobs, 1),
        load_average=round(os.getloadavg()[0], 2),
        machine_busy_cores=round((b.busy - a.busy) / seconds, 2),
        postgres_busiest=_busiest(a.postgres, b.postgres, seconds))


def _busiest(a: dict[int, tuple[float, str]], b: dict[int, tuple[float, str]],
             seconds: float) -> dict[str, Any]:
    def used(pid: int) -> float:
        return b[pid][0] - a.get(pid, (0.0, ""))[0]

    pid = max(b, key=used)
    return {"cores": round(used(pid) / seconds, 2), "process": b[pid][1]}


@dataclass(frozen=True)
class Workerd:
    """Each workerd's --concurrency and --prefetch: how many jobs one claim or settle can carry."""

    concurrency: int
    prefetch: int


@contextmanager
def stack(dsn: str, brokers: int, workerd: Workerd) -> Iterator[
        tuple[list[BrokerProcess], list[WorkerdProcess]]]:
    """``brokers`` brokers and WORKERS_PER_BROKER workerd on each, all stopped on exit."""
    bs: list[BrokerProcess] = []
    ws: list[WorkerdProcess] = []
    try:
        for i in range(brokers):
            broker = BrokerProcess(dsn, name=f"broker-{i}")
            broker.env.update(BROKER_ENV)
            bs.append(broker.start())
        with Client(bs[0].target) as client:
            client.pause_queue(JOB_TYPE)
        for i, b in enumerate(bs):
            for j in range(WORKERS_PER_BROKER):
                ws.append(WorkerdProcess(b.target, f"w{i}-{j}", effects_dsn="",
                                         concurrency=workerd.concurrency, lease_seconds=30,
                                         handlers="bench.handlers",
                                         extra=("--types", JOB_TYPE, "--prefetch",
                                                str(workerd.prefetch))).start(wait=False))
        for w in ws:
            w.wait_log("connected to broker", 60)
        yield bs, ws
    finally:
        for w in ws:
            w.stop()
        for b in bs:
            b.stop()


def enqueue(targets: list[str], jobs: int, clients: int) -> None:
    """``jobs`` no-op jobs in EnqueueBatch calls of BATCH, from ``clients`` threads."""
    def one(k: int) -> None:
        with Client(targets[k % len(targets)], timeout=60) as client:
            for _ in range(k, jobs // BATCH, clients):
                client.enqueue_batch([enqueue_request(JOB_TYPE, {}) for _ in range(BATCH)])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def completed(conn: psycopg.Connection[Any]) -> int:
    """From the trigger-kept counters, on one open connection: a ``count(*)`` over forge.jobs or
    a new connection every poll would be PostgreSQL CPU charged to the drain."""
    row = conn.execute(f"{MARK} {COMPLETED_COUNT}", {"type": JOB_TYPE}).fetchone()
    return int(row[0]) if row else 0


def run(cluster: Cluster, jobs: int, brokers: int, workerd: Workerd,
        clients: int = 1) -> dict[str, Phase]:
    """Enqueue ``jobs`` with the queue paused, then drain them: each phase's figures."""
    jobs -= jobs % BATCH
    dsn = cluster.new_database()
    dbname = dsn.rsplit("/", 1)[1].split("?")[0]
    with stack(dsn, brokers, workerd) as (bs, ws), psycopg.connect(dsn, autocommit=True) as conn:
        procs = {"broker": [b.pid for b in bs], "workerd": [w.pid for w in ws]}
        time.sleep(2)  # past start-up: imports and first connections are not per-job costs
        s0 = cluster.snapshot(dbname, procs)
        enqueue([b.target for b in bs], jobs, clients)
        s1 = cluster.snapshot(dbname, procs)
        conn.execute(f"{MARK} ANALYZE forge.jobs")  # as make bench does before its drain
        s2 = cluster.snapshot(dbname, procs)
        with Client(bs[0].target) as client:
            client.resume_queue(JOB_TYPE)
        if not wait_until(lambda: completed(conn) >= jobs, timeout=600, interval=0.05):
            raise RuntimeError(f"drain of {jobs} jobs did not finish")
        s3 = cluster.snapshot(dbname, procs)
    return {"enqueue": phase(jobs, s0, s1), "drain": phase(jobs, s2, s3)}


def retention(cluster: Cluster, rows: int) -> dict[str, dict[str, float]]:
    """Remove ``rows`` finished jobs by DELETE + VACUUM, and by dropping their partition."""
    dsn = cluster.new_database()
    out: dict[str, dict[str, float]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Finished two days ago, ids made as the broker's (UUIDv7 of the creation time).
        conn.execute(f"""{MARK}
            INSERT INTO forge.jobs (id, type, payload, status, attempts, run_at, created_at,
                                    updated_at, result, worker_id)
            SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0')
                    || '7' || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid,
                   'bench.noop', jsonb_build_object('n', g, 'pad', repeat('x', 100)), 'COMPLETED',
                   1, t, t, t + interval '10 ms', '{{"ok": true}}', 'bench-worker'
            FROM generate_series(1, %s) g,
                 LATERAL (SELECT now() - interval '2 days' + g * interval '1 ms' AS t) ts""",
                     (rows,))
        conn.execute("VACUUM ANALYZE forge.jobs")
        # The same rows in one partition of a table partitioned by finish time.
        conn.execute("CREATE TABLE finished (LIKE forge.jobs INCLUDING DEFAULTS)"
                     " PARTITION BY RANGE (updated_at)")
        conn.execute("CREATE TABLE finished_old PARTITION OF finished FOR VALUES FROM"
                     " (now() - interval '3 days') TO (now() - interval '1 day')")
        conn.execute("CREATE TABLE finished_new PARTITION OF finished FOR VALUES FROM"
                     " (now() - interval '1 day') TO (now() + interval '1 day')")
        conn.execute("CREATE INDEX ON finished (id)")
        conn.execute("CREATE INDEX ON finished (status, id)")
        conn.execute("INSERT INTO finished SELECT * FROM forge.jobs")
        conn.execute("VACUUM ANALYZE finished")
        conn.execute("CHECKPOINT")  # both start after a checkpoint: the same full-page writes

        def measured(name: str, statements: list[LiteralString], repeat: bool = False) -> None:
            lsn0, t0 = _lsn(conn), time.monotonic()
            for statement in statements:
                if repeat:
                    while conn.execute(statement, {"retention_seconds": 3600,
                                                   "limit": 1000}).rowcount:
                        pass
                else:
                    conn.execute(statement)
            out[name] = {"seconds": round(time.monotonic() - t0, 2),
                         "wal_bytes": _lsn(conn) - lsn0}

        measured("delete", [q("delete_finished_jobs")], repeat=True)
        measured("vacuum_after_delete", ["VACUUM forge.jobs"])
        conn.execute("CHECKPOINT")
        measured("drop_partition", ["ALTER TABLE finished DETACH PARTITION finished_old",
                                    "DROP TABLE finished_old"])
        left = conn.execute("SELECT count(*) FROM forge.jobs").fetchone()
        out["rows"] = {"removed": rows, "left_in_jobs": int(left[0]) if left else -1}
    return out


def _lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(f"{MARK} SELECT (pg_current_wal_lsn() - '0/0')::bigint").fetchone()
    assert row is not None
    return int(row[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=Params.jobs,
                   help="jobs per cost run (default %(default)s)")
    p.add_argument("--saturation-jobs", type=int, default=Params.jobs,
                   help="jobs per saturation run (default %(default)s)")
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="finished rows removed in the retention runs (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=Params.concurrency,
                   help="each workerd's --concurrency, in every phase (default %(default)s)")
    # 900, not make bench's 1,900: docs/scaling.md's figures were measured with a window of one
    # claim per workerd.
    p.add_argument("--prefetch", type=int, default=900,
                   help="each workerd's --prefetch, in every phase (default %(default)s)")
    p.add_argument("--only", default="cost,saturation,retention")
    p.add_argument("--json", type=Path, default=Path("bench/results/scaling.json"))
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    workerd = Workerd(args.concurrency, args.prefetch)
    cluster = Cluster()
    res = Results(machine={"cpus": os.cpu_count(), "postgres": str(cluster.pg.bin),
                           "note": "cores shared with other work; figures are one run each"},
                  workerd=asdict(workerd))
    try:
        if "cost" in only:
            res.cost = run(cluster, args.jobs, brokers=1, workerd=workerd)
            _say("cost", res.cost)
        if "saturation" in only:
            for brokers in (1, 2, 3):
                r = run(cluster, args.saturation_jobs, brokers=brokers, workerd=workerd)
                res.saturation.append({"brokers": brokers, "workerd": brokers * WORKERS_PER_BROKER,
                                       "clients": 1, **asdict(r["drain"])})
                _say(f"drain, {brokers} broker(s)", r)
            for clients in (1, 2, 4):
                r = run(cluster, args.saturation_jobs, brokers=2, workerd=workerd, clients=clients)
                res.saturation.append({"brokers": 2, "workerd": 4, "clients": clients,
                                       "enqueue": True, **asdict(r["enqueue"])})
                _say(f"enqueue, {clients} client(s)", r)
        if "retention" in only:
            res.retention = retention(cluster, args.rows)
            print(json.dumps(res.retention, indent=1), flush=True)
    finally:
        cluster.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(res), indent=1, default=lambda o: asdict(o)))
    print(f"wrote {args.json}")
    return 0


def _say(what: str, phases: dict[str, Phase]) -> None:
    for name, ph in phases.items():
        print(f"{what} / {name}: {json.dumps(asdict(ph))}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
