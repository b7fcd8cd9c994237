"""Failover: the primary dies mid-drain, its streaming standby is promoted, and the same brokers
and workers (none restarted) finish the drain on the new primary.

Real processes throughout: a primary and a streaming standby built from the machine's
PostgreSQL binaries, two brokers whose DATABASE_URL lists both hosts with
``target_session_attrs=read-write``, two workerd recording each execution in a file, and a
client enqueuing through gRPC before, during and after the failover. Each run prints a table
of what was lost and what ran twice. A synchronous standby loses nothing that was answered;
an asynchronous one may lose the commits it had not received, which is measured, not denied.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest

from forge import Client, ForgeClientError
from forge.client import enqueue_request
from tests.chaos.postgres import PgCluster
from tests.handlers.executions import JOB_TYPE
from tests.support import BrokerProcess, WorkerdProcess, free_port, wait_until, workers

pytestmark = pytest.mark.slow

JOBS = 3000
BATCH = 50
PACE = 0.25  # seconds between two enqueue batches of the second half: 7.5 s of them
WORK_MS = 20  # each job's work: 8 running at once drain about 400 a second, so a backlog forms
KILL_AFTER = 800  # executions before the primary's replication stalls, then it is killed
STALL = 0.5  # seconds the standby receives nothing before the primary dies
TAIL = 500  # jobs enqueued only once the standby is promoted
LEASE_SECONDS = 5  # longer than the outage, so acks held back by it are still accepted after it
DB = "forge"


@dataclass
class Pair:
    primary: PgCluster
    standby: PgCluster

    @property
    def url(self) -> str:
        """Both hosts: libpq tries them in turn and keeps the first that accepts writes."""
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
                f"/{DB}?target_session_attrs=read-write&connect_timeout=2")


def build_pair(clusters: list[PgCluster], *, synchronous: bool) -> Pair:
    """A primary and its streaming standby, both running; ``clusters`` gets each as it is made."""
    primary, standby = PgCluster(), PgCluster()
    clusters += [primary, standby]
    primary.init().start()
    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DB}")
    primary.standby(standby).start()
    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
        if synchronous:
            # Set after the base backup, so the standby (once promoted) waits for no one.
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
        want = "sync" if synchronous else "async"
        assert wait_until(lambda: one(conn, "SELECT sync_state FROM pg_stat_replication") == want,
                          timeout=20), "the standby did not start streaming"
    return Pair(primary, standby)


def one(conn: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def clusters() -> Iterator[list[PgCluster]]:
    """PostgreSQL clusters the test makes, each destroyed at its end."""
    made: list[PgCluster] = []
    yield made
    for cluster in made:
        cluster.destroy()


@dataclass
class Enqueuer:
    """Enqueues JOBS jobs in batches through the brokers in turn, retrying through whatever
    fails: the first half at once (a backlog to drain), the rest paced, so that enqueuing goes
    on through the failover; the last TAIL jobs wait for ``failed_over``, so some are always
    enqueued after it. Keeps the id of every job whose batch got a successful answer, and when
    it got it."""

    targets: list[str]
    answered: list[tuple[float, str]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    failed_over: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="enqueuer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        clients = [Client(t, timeout=5) for t in self.targets]
        try:
            turn = 0
            while (n := len(self.answered)) < JOBS:
                client = clients[turn % len(clients)]
                turn += 1
                try:
                    jobs = client.enqueue_batch([enqueue_request(JOB_TYPE, {"n": n + i, "ms": WORK_MS})
                                                 for i in range(BATCH)])
                except ForgeClientError as exc:
                    self.failures[exc.code.name] += 1
                    time.sleep(0.1)
                    continue
                now = time.monotonic()
                self.answered.extend((now, job.id) for job in jobs)
                if n >= JOBS // 2:
                    time.sleep(PACE)
                if n + BATCH >= JOBS - TAIL:
                    self.failed_over.wait(60)
        finally:
            for client in clients:
                client.close()

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"enqueuing did not finish: {len(self.answered)} answered"

    def ids(self, before: float = float("inf")) -> set[str]:
        return {job_id for at, job_id in self.answered if at < before}


def executions(path: Path) -> Counter[str]:
    """Runs per job id, from the file the handler appends to."""
    return Counter(path.read_text().split()) if path.exists() else Counter()


def statuses(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return {str(i): s for i, s in conn.execute("SELECT id, status FROM forge.jobs").fetchall()}


def completed(jobs: dict[str, str]) -> set[str]:
    return {i for i, s in jobs.items() if s == "COMPLETED"}


def stall_replication(primary: PgCluster) -> tuple[object, int]:
    """Stop the primary's WAL sender (SIGSTOP), as a network that stops delivering would: from
    here on the standby receives nothing. Returns the standby's replay lag as the primary last
    reported it (the window a healthy link leaves), and the WAL sender's pid."""
    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT replay_lag, pid FROM pg_stat_replication").fetchone()
    assert row is not None
    os.kill(row[1], signal.SIGSTOP)
    return row[0], int(row[1])


def restart_aside(cluster: PgCluster) -> int:
    """Start the killed primary again on a port no broker knows (it would take writes: two
    primaries), after its crash recovery; returns where its WAL ended (its end-of-recovery
    checkpoint's redo point)."""
    cluster.port = free_port()
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(f"port = {cluster.port}\n")
    cluster.start()
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return int(str(one(conn, "SELECT redo_lsn - '0/0'::pg_lsn FROM pg_control_checkpoint()")))


@dataclass
class Run:
    """What a failover run saw: the figures it prints, and the sets its checks need."""

    figures: dict[str, object]
    answered_lost: set[str]  # answered enqueues the new primary lacks
    answered_in_stall: set[str]  # enqueues answered from shortly before the stall to the kill
    acks_lost: set[str]  # COMPLETED on the primary just before the kill, not on the new one
    old_jobs: set[str]  # every job the old primary had committed when it died
    never_run: set[str]  # jobs on the new primary that no worker ran
    run_twice: set[str]  # jobs run twice or more


def fail_over(pair: Pair, effects: Path) -> Run:
    """Enqueue and drain through the loss of the primary and the promotion of its standby."""
    brokers = [BrokerProcess(pair.url, name=f"broker-{i}", FORGE_BACKOFF_BASE="0.2") for i in range(2)]
    enqueuer = Enqueuer([b.target for b in brokers])
    fleet = [WorkerdProcess(b.target, f"worker-{i}", effects_dsn="", concurrency=4,
                            lease_seconds=LEASE_SECONDS, handlers="tests.handlers.executions")
             for i, b in enumerate(brokers)]
    for worker in fleet:
        worker.env["TEST_EXECUTIONS_FILE"] = str(effects)
    new = pair.standby.dsn(DB)
    try:
        for broker in brokers:
            broker.start()
        with workers(*fleet):
            enqueuer.start()
            assert wait_until(lambda: executions(effects).total() >= KILL_AFTER, timeout=30,
                              interval=0.05), "the drain never got going"
            lag, sender = stall_replication(pair.primary)
            stalled_at = time.monotonic()
            time.sleep(STALL)
            # Acks visible on the primary: answered (a synchronous commit becomes visible only
            # once the standby has it; one still waiting for it was not answered either).
            acked = completed(statuses(pair.primary.dsn(DB)))
            os.kill(sender, signal.SIGKILL)  # what it held back never reaches the standby
            pair.primary.stop("immediate")
            killed_at = time.monotonic()
            time.sleep(1.0)  # the brokers meet a dead primary and a standby that refuses writes
            with psycopg.connect(pair.standby.dsn(DB), autocommit=True) as conn:
                replayed = int(str(one(conn, "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")))
            pair.standby.promote()
            promoted_at = time.monotonic()
            enqueuer.failed_over.set()
            at_promotion = statuses(new)
            enqueuer.join(timeout=60)
            assert wait_until(lambda: set(statuses(new).values()) == {"COMPLETED"}, timeout=60,
                              interval=0.2), Counter(statuses(new).values())
            for broker in brokers:
                # The same processes, which followed the promotion on their own.
                assert broker.alive, f"{broker.name} exited:\n{broker.log_text()}"
                assert "listening for job notifications again" in broker.log_text(), broker.name
        # A broker started now finds the primary past the dead first host of the URL.
        brokers.append(BrokerProcess(pair.url, name="broker-late").start())
        for broker in brokers:
            with Client(broker.target) as client:
                stats = client.stats()
            assert (stats.pending, stats.processing) == (0, 0), stats
    finally:
        for broker in brokers:
            broker.stop()
    wal_end = restart_aside(pair.primary)
    old = statuses(pair.primary.dsn(DB))
    final = statuses(new)
    runs = executions(effects)
    first_after = min((at for at, _ in enqueuer.answered if at > killed_at), default=killed_at)
    run = Run(
        figures={
            "answered enqueues": len(enqueuer.answered),
            "answered before the stall": len(enqueuer.ids(before=stalled_at)),
            "answered during the stall": len(enqueuer.ids(before=killed_at)
                                             - enqueuer.ids(before=stalled_at)),
            "answered after the kill": len(enqueuer.ids() - enqueuer.ids(before=killed_at)),
            "answered enqueues lost": len(enqueuer.ids() - final.keys()),
            "jobs on the old primary (at the kill)": len(old),
            "of them missing on the new primary": len(old.keys() - final.keys()),
            "COMPLETED on the old primary": len(completed(old)),
            "COMPLETED as seen on it just before the kill": len(acked),
            "of them not COMPLETED at the promotion": len(acked - completed(at_promotion)),
            "jobs on the new primary (all COMPLETED)": len(final),
            "jobs run twice or more": sum(1 for n in runs.values() if n > 1),
            "runs of jobs the new primary lacks": sum(n for i, n in runs.items() if i not in final),
            "enqueue calls failed": dict(enqueuer.failures),
            "no enqueue answered for (s)": round(first_after - killed_at, 2),
            "promoted after the kill (s)": round(promoted_at - killed_at, 2),
            "replay lag before the stall": lag,
            "WAL the standby never replayed (bytes)": wal_end - replayed,
        },
        answered_lost=enqueuer.ids() - final.keys(),
        # WAL reaches a healthy standby within a millisecond (the replay lag printed): a tenth
        # of a second before the stall is margin enough for what was in flight then.
        answered_in_stall=enqueuer.ids(before=killed_at) - enqueuer.ids(before=stalled_at - 0.1),
        acks_lost=acked - completed(at_promotion),
        old_jobs=set(old),
        never_run=final.keys() - runs.keys(),
        run_twice={i for i, n in runs.items() if n > 1},
    )
    width = max(len(k) for k in run.figures)
    print(f"\nfailover to {pair.standby.port}:")
    for name, value in run.figures.items():
        print(f"  {name:<{width}}  {value}")
    return run


def test_failover_to_a_synchronous_standby_loses_nothing_answered_and_the_drain_finishes(
        clusters: list[PgCluster], tmp_path: Path) -> None:
    """The standby stops receiving for STALL seconds, then the primary dies: commits made
    meanwhile wait for the standby, so none is answered, and none answered is lost."""
    run = fail_over(build_pair(clusters, synchronous=True), tmp_path / "executions")
    assert run.figures["answered enqueues"] == JOBS
    assert run.answered_lost == set()
    assert run.acks_lost == set()  # every ack answered before the kill survived it
    assert run.never_run == set()


def test_failover_to_an_asynchronous_standby_loses_only_what_was_answered_while_it_lagged(
        clusters: list[PgCluster], tmp_path: Path) -> None:
    """The same stall with an asynchronous standby: commits are answered without it, so the
    ones it never received are lost. Each loss is accounted for, not denied."""
    run = fail_over(build_pair(clusters, synchronous=False), tmp_path / "executions")
    assert run.figures["answered enqueues"] == JOBS
    # Every answered enqueue it lost was answered while the standby received nothing, and
    # was on the old primary: the window is the replication lag at the kill, nothing else.
    assert run.answered_lost <= run.answered_in_stall & run.old_jobs
    # Every ack it lost (a job COMPLETED on the primary just before the kill, not on the new
    # one) had its job run again: at-least-once, duplicates rather than losses.
    assert run.acks_lost <= run.run_twice
    assert run.never_run == set()


def test_a_primary_turned_read_only_answers_unavailable_and_its_connections_are_dropped(
        clusters: list[PgCluster]) -> None:
    """A primary fenced read-only (as a demoted one is) keeps its sessions open: the broker must
    not keep writing through them, and says UNAVAILABLE (retry), not INTERNAL."""
    cluster = PgCluster()
    clusters.append(cluster)
    cluster.init().start()
    broker: BrokerProcess | None = None
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DB}")
            url = (f"postgresql://postgres@127.0.0.1:{cluster.port}/{DB}"
                   "?target_session_attrs=read-write&connect_timeout=2")
            # A pool timeout shorter than the client's: with no session left to use, the call
            # is answered (UNAVAILABLE) before the client gives up on it.
            broker = BrokerProcess(url, FORGE_POOL_MIN="1", FORGE_POOL_MAX="2",
                                   FORGE_POOL_TIMEOUT="1").start()

            def broker_sessions() -> int:
                return int(str(one(admin, f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{DB}'")))

            with Client(broker.target, timeout=5) as client:
                client.enqueue(JOB_TYPE, {})
                assert broker_sessions() > 0
                admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                admin.execute("SELECT pg_reload_conf()")
                time.sleep(0.5)  # each session reads the new setting before its next statement
                with pytest.raises(ForgeClientError) as refused:
                    client.enqueue(JOB_TYPE, {})
                assert refused.value.code == grpc.StatusCode.UNAVAILABLE, refused.value
                # Writes fail on every session, and no new one is made (read-write is required).
                assert wait_until(lambda: broker_sessions() == 0, timeout=15), broker_sessions()

                admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
                admin.execute("SELECT pg_reload_conf()")

                def enqueued() -> bool:
                    try:
                        client.enqueue(JOB_TYPE, {})
                    except ForgeClientError as exc:
                        assert exc.code == grpc.StatusCode.UNAVAILABLE, exc
                        return False
                    return True

                assert wait_until(enqueued, timeout=30, interval=0.5)
    finally:
        if broker is not None:
            broker.stop()
