"""Maintenance against a real PostgreSQL: each service does its job, and one that fails every
round neither stops nor delays the others."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, LiteralString

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from forge_broker.completer import Completer
from forge_broker.config import Config
from forge_broker.dispatch import Dispatcher
from forge_broker.loops import every
from forge_broker.maintenance import (
    Cleaner,
    CounterFolder,
    Maintenance,
    Reconciler,
    Rescuer,
    Scheduler,
    WorkerRegistry,
)
from forge_broker.metrics import Metrics
from forge_broker.models import AckItem, JobFilter, Lease, NewJob, NewSchedule, Order
from forge_broker.schedules import fire_key
from forge_broker.store import Store


def job(type: str = "email", max_retries: int = 3) -> NewJob:
    return NewJob(type=type, payload_json="{}", max_retries=max_retries)


async def sql(dsn: str, text: LiteralString) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection; its rows, if it returns any."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(text)
        return await cur.fetchall() if cur.description else []


async def expire_leases(dsn: str) -> None:
    await sql(dsn, "UPDATE forge.jobs SET lease_expires_at = now() - interval '1 second' "
                   "WHERE status = 'PROCESSING'")


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> bool:
    """Whether ``check`` comes true within ``seconds``."""
    for _ in range(int(seconds / 0.02)):
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


def samples(metrics: Metrics) -> dict[tuple[str, str], float]:
    """Every counter sample as {(name, type label): value}."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, s.labels.get("type", ""))] = s.value
    return out


@pytest.fixture
async def dispatcher(store: Store) -> AsyncIterator[Dispatcher]:
    """A running dispatcher on ``store`` that looks for work every 0.1 s."""
    d = Dispatcher(store, broker_id="maintenance-test", poll_seconds=0.1)
    await d.start()
    yield d
    await d.stop()


async def test_rescuer_turns_expired_leases_into_failed_attempts_and_counts_them(
        store: Store, dsn: str, dispatcher: Dispatcher) -> None:
    (retried, _), (dead, _) = await store.enqueue([job(max_retries=1), job(max_retries=0)])
    await store.claim("w", [], 10, 30)
    metrics = Metrics()
    rescuer = Rescuer(store, dispatcher, metrics, interval=1)
    await rescuer.run()
    assert (await store.get(retried.id)).status == "PROCESSING"  # not expired: left alone
    await expire_leases(dsn)
    await rescuer.run()
    assert (await store.get(retried.id)).status == "PENDING"
    assert "lease expired" in ((await store.get(retried.id)).last_error or "")
    assert (await store.get(dead.id)).status == "DEAD"
    counted = samples(metrics)
    assert counted[("forge_jobs_failed_total", "(unknown)")] == 1
    assert counted[("forge_jobs_dead_total", "(unknown)")] == 1


async def test_counter_folder_folds_every_delta_into_the_counters(store: Store, dsn: str) -> None:
    await store.enqueue([job("fold") for _ in range(5)])
    assert await sql(dsn, "SELECT count(*) FROM forge.job_count_deltas") != [(0,)]
    await CounterFolder(store, interval=1).run()
    assert await sql(dsn, "SELECT count(*) FROM forge.job_count_deltas") == [(0,)]
    assert await sql(dsn, "SELECT status, n FROM forge.job_counts WHERE type = 'fold'") == [
        ("PENDING", 5)]


async def test_worker_registry_refreshes_this_brokers_streams_and_deletes_dead_ones(
        store: Store, dsn: str, dispatcher: Dispatcher) -> None:
    live = await dispatcher.open("live-worker", ["email"], 10, 30)
    await store.register_stream(uuid.uuid4(), "orphan-worker", "dead-broker", ["email"], 10)
    await sql(dsn, "UPDATE forge.workers SET last_seen = now() - interval '1 minute'")
    await WorkerRegistry(store, dispatcher, interval=1).run()
    rows = await sql(dsn, "SELECT stream_id, worker_id, last_seen > now() - interval '10 seconds' "
                          "FROM forge.workers")
    assert rows == [(live.stream_id, "live-worker", True)]


async def test_reconciler_frees_a_full_stream_of_a_job_acked_on_another_broker(
        store: Store, dispatcher: Dispatcher, completer: Completer) -> None:
    stream = await dispatcher.open("w", ["email"], 1, 30)
    await store.enqueue([job()])
    [row] = await asyncio.wait_for(anext(stream.batches()), 5)
    # ``completer`` tells no dispatcher: as for an ack that reached another broker.
    await completer.ack(AckItem(Lease(str(row.id), str(row.lease_token))))
    assert stream.capacity() == 0
    await Reconciler(dispatcher, interval=1).run()
    assert stream.capacity() == 1


async def test_cleaner_deletes_finished_jobs_past_retention_and_keeps_the_rest(
        store: Store, completer: Completer) -> None:
    await store.enqueue([job() for _ in range(3)])
    for row in await store.claim("w", [], 2, 30):
        await completer.ack(AckItem(Lease(str(row.id), str(row.lease_token))))
    cleaner = Cleaner(store, retention_seconds=3600, interval=1)
    await cleaner.run()
    assert len(await store.list_jobs(JobFilter(), Order.NEWEST, None, 10)) == 3
    await asyncio.sleep(0.2)
    cleaner.retention_seconds = 0.1
    await cleaner.run()
    [left] = await store.list_jobs(JobFilter(), Order.NEWEST, None, 10)
    assert left.status == "PENDING"


async def test_a_service_failing_every_round_neither_stops_nor_delays_the_others(
        store: Store, dsn: str, completer: Completer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="forge.maintenance")
    config = Config(rescue_interval=0.05, fold_interval=0.05, workers_interval=0.05,
                    reconcile_interval=0.05, retention_interval=0.05, retention_seconds=0.1)
    maintenance = Maintenance(store, Dispatcher(store, broker_id="isolation-test"), config)

    def registry_lines(word: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "forge.maintenance.worker_registry" and word in r.getMessage()]

    async def registry_failed() -> bool:
        return bool(registry_lines("failed"))

    async def registry_recovered() -> bool:
        return bool(registry_lines("recovered after"))

    (expiring, _), (acked, _) = await store.enqueue([job(), job()])

    async def rescued_and_cleaned() -> bool:
        left = await store.list_jobs(JobFilter(), Order.NEWEST, None, 10)
        return [(r.id, r.status) for r in left] == [(expiring.id, "PENDING")]

    # The worker registry's statements fail on every round from now on: its table is gone.
    await sql(dsn, "ALTER TABLE forge.workers RENAME TO workers_elsewhere")
    await maintenance.start()
    try:
        assert await eventually(registry_failed)
        for row in await store.claim("w", [], 2, 30):
            if row.id == acked.id:
                await completer.ack(AckItem(Lease(str(row.id), str(row.lease_token))))
        await expire_leases(dsn)
        # 40 rounds of the rescuer and the cleaner, however many of the registry's failed.
        assert await eventually(rescued_and_cleaned, seconds=2)
        assert all(t.startswith("worker_registry failed: ") for t in registry_lines("failed"))
        assert len(registry_lines("failed")) == 1  # logged once, not once per failed round
        await sql(dsn, "ALTER TABLE forge.workers_elsewhere RENAME TO workers")
        assert await eventually(registry_recovered)
    finally:
        await maintenance.stop()


async def test_a_round_that_raises_a_bug_is_logged_with_its_traceback_and_run_again(
        caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("forge.maintenance.test")
    rounds = 0
    six_rounds = asyncio.Event()

    async def flaky() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 6:
            six_rounds.set()
        if rounds <= 3:
            raise ZeroDivisionError(f"round {rounds}")

    with caplog.at_level(logging.INFO, logger="forge.maintenance.test"):
        loop = asyncio.create_task(every(0.01, flaky, log, "flaky"))
        await asyncio.wait_for(six_rounds.wait(), 5)
        loop.cancel()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["flaky failed"]
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ZeroDivisionError
    assert "flaky recovered after 3 failed rounds" in caplog.messages


def test_maintenance_intervals_follow_the_stats_interval_unless_set() -> None:
    cfg = Config.from_env({"FORGE_STATS_INTERVAL": "0.5", "FORGE_RETENTION_INTERVAL": "60"})
    assert (cfg.fold_interval, cfg.workers_interval, cfg.reconcile_interval,
            cfg.schedule_interval) == (0.5, 0.5, 0.5, 0.5)
    assert cfg.retention_interval == 60
    assert cfg.rescue_interval == 1  # FORGE_RESCUE_INTERVAL's own default


def every_ten_minutes(name: str = "ten") -> NewSchedule:
    return NewSchedule(name, None, timedelta(minutes=10), "UTC", job("report"), paused=False)


async def test_scheduler_fires_an_overdue_schedule_once_and_moves_it_to_its_first_time_after_now(
        store: Store, dsn: str) -> None:
    await store.put_schedule(every_ten_minutes())
    # 35 minutes overdue, as after an outage: the fires at +10, +20 and +30 were missed.
    await sql(dsn, "UPDATE forge.schedules SET next_run_at = now() - interval '35 minutes'")
    [(was_due,)] = await sql(dsn, "SELECT next_run_at FROM forge.schedules")
    scheduler = Scheduler(store, interval=1)
    await scheduler.run()
    await scheduler.run()  # nothing is due any more
    [(job_id, key, type_)] = await sql(dsn, "SELECT id, idempotency_key, type FROM forge.jobs")
    assert (key, type_) == (fire_key("ten", was_due), "report")
    [(next_run, last_run, last_job)] = await sql(
        dsn, "SELECT next_run_at, last_run_at, last_job_id FROM forge.schedules")
    assert next_run == was_due + timedelta(minutes=40)  # on its period, the first after now
    assert (last_run, last_job) == (was_due, job_id)


async def test_scheduler_fires_a_thousand_schedules_due_in_the_same_second_within_a_second(
        store: Store, dsn: str) -> None:
    # Half on a period, half on cron expressions of many kinds and zones: each computed in Python.
    await sql(dsn, "INSERT INTO forge.schedules (name, every, type, next_run_at) "
                   "SELECT 'every-' || i, i * interval '1 second', 'bulk', now() "
                   "FROM generate_series(1, 500) i")
    await sql(dsn, "INSERT INTO forge.schedules (name, cron, timezone, type, next_run_at) "
                   "SELECT 'cron-' || i, (i % 60) || ' ' || (i % 24) || ' * * ' || (i % 7), "
                   "(ARRAY['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo'])[i % 4 + 1], "
                   "'bulk', now() FROM generate_series(1, 500) i")
    started = time.perf_counter()
    await Scheduler(store, interval=1).run()
    took = time.perf_counter() - started
    assert await sql(dsn, "SELECT count(*), count(DISTINCT idempotency_key) FROM forge.jobs") == [
        (1000, 1000)]
    assert await sql(dsn, "SELECT count(*) FROM forge.schedules WHERE next_run_at > now()") == [
        (1000,)]
    assert took < 1.0, f"1,000 due schedules took {took:.2f}s"


async def test_jobs_a_schedule_fires_wake_a_lease_stream_at_once(store: Store, dsn: str) -> None:
    # Polling once a minute: only the NOTIFY of the insert can bring the job within seconds.
    dispatcher = Dispatcher(store, broker_id="notify-test", poll_seconds=60)
    await dispatcher.start()
    try:
        stream = await dispatcher.open("w", ["report"], 10, 30)
        await store.put_schedule(every_ten_minutes())
        await sql(dsn, "UPDATE forge.schedules SET next_run_at = now()")
        await Scheduler(store, interval=1).run()
        [row] = await asyncio.wait_for(anext(stream.batches()), 5)
        assert row.type == "report"
    finally:
        await dispatcher.stop()


async def test_scheduler_wakes_on_a_put_and_sleeps_only_until_the_next_fire_time(
        store: Store, dsn: str) -> None:
    scheduler = Scheduler(store, interval=30)
    loop = asyncio.create_task(every(scheduler.interval, scheduler.run, scheduler.log,
                                     scheduler.name, pause=scheduler.pause))
    try:
        await asyncio.sleep(0.3)  # the first round found nothing, and sleeps its 30 s interval
        await store.put_schedule(NewSchedule("tick", None, timedelta(seconds=1), "UTC",
                                             job("tick"), paused=False))
        scheduler.wake()

        async def three_fired() -> bool:
            return await sql(dsn, "SELECT count(*) FROM forge.jobs") >= [(3,)]

        assert await eventually(three_fired, seconds=6)
    finally:
        loop.cancel()


async def test_scheduler_pauses_a_schedule_it_cannot_compute_and_fires_the_others(
        store: Store, dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    await store.put_schedule(every_ten_minutes("fine"))
    # Put before its zone left the tz database, say: the row is there, the zone is not.
    await sql(dsn, "INSERT INTO forge.schedules (name, cron, timezone, type, next_run_at) "
                   "VALUES ('lost', '0 3 * * *', 'Mars/Olympus', 'report', now())")
    await sql(dsn, "UPDATE forge.schedules SET next_run_at = now()")
    with caplog.at_level(logging.ERROR, logger="forge.maintenance.scheduler"):
        await Scheduler(store, interval=1).run()
    assert await sql(dsn, "SELECT name, paused, next_run_at IS NULL FROM forge.schedules "
                          "ORDER BY name") == [("fine", False, False), ("lost", True, True)]
    assert await sql(dsn, "SELECT idempotency_key LIKE 'schedule:fine:%' FROM forge.jobs") == [
        (True,)]
    assert any("schedule lost paused" in m and "Mars/Olympus" in m for m in caplog.messages)
