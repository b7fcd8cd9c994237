"""Unary Stats end to end: fresh after every write, and during a database outage every caller
gets UNAVAILABLE within about one pool timeout, all at once, then OK again once the database
is back, from the same broker process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.chaos.postgres import PgCluster
from tests.support import BrokerProcess, free_port, start_broker, start_gateway, wait_until

Stub = broker_pb2_grpc.BrokerStub

# Short, so that the outage test is quick; every bound below is a multiple of it.
POOL_TIMEOUT = 2.0
# Room for a loaded, shared machine on top of the timeouts.
SLACK = 4.0
CONCURRENT_CALLS = 8


def test_stats_right_after_enqueue_counts_each_job_pending(dsn: str) -> None:
    # A long tick: a snapshot cached for a tick would still be the one from before the enqueue.
    broker = start_broker(dsn, FORGE_STATS_INTERVAL="30", FORGE_FOLD_INTERVAL="30")
    try:
        with grpc.insecure_channel(broker.target) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            assert stub.Stats(pb.StatsRequest(), timeout=5).pending == 0
            for n in range(1, 4):
                stub.Enqueue(pb.EnqueueRequest(type="fresh"), timeout=5)
                stats = stub.Stats(pb.StatsRequest(), timeout=5)
                assert stats.pending == n
                assert [(t.type, t.pending) for t in stats.types] == [("fresh", n)]
    finally:
        broker.stop()


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A PostgreSQL of this test's own, to stop and start without harming any other test."""
    pg = PgCluster().init()
    pg.start()
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE forge")
        yield pg
    finally:
        pg.destroy()


def serving(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5).status)


def timed_stats(stub: Stub) -> tuple[grpc.StatusCode, float]:
    """One Stats call (with a deadline far past any bound here): its code and its seconds."""
    t0 = time.monotonic()
    try:
        stub.Stats(pb.StatsRequest(), timeout=120)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    return code, time.monotonic() - t0


def timed_watch(stub: Stub) -> tuple[grpc.StatusCode, float]:
    """A WatchStats stream read up to its first snapshot: its code and its seconds."""
    t0 = time.monotonic()
    stream = stub.WatchStats(pb.WatchStatsRequest(), timeout=120)
    try:
        next(stream)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    finally:
        stream.cancel()
    return code, time.monotonic() - t0


def timed_rest_stats(url: str) -> tuple[int, float]:
    t0 = time.monotonic()
    status = httpx.get(f"{url}/v1/stats", timeout=120).status_code
    return status, time.monotonic() - t0


@pytest.mark.slow  # its own PostgreSQL, stopped and started, and waits out pool timeouts
def test_stats_during_a_database_outage_fail_fast_in_parallel_and_recover(
        cluster: PgCluster) -> None:
    # Metrics on: their gauge refresh reads stats snapshots every tick, outage or not.
    broker = BrokerProcess(cluster.dsn("forge"), FORGE_POOL_TIMEOUT=str(POOL_TIMEOUT),
                           FORGE_METRICS_PORT=str(free_port())).start()
    gateway = start_gateway(broker.target)
    try:
        with grpc.insecure_channel(broker.target) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            assert timed_stats(stub)[0] == grpc.StatusCode.OK
            assert timed_rest_stats(gateway.url)[0] == 200

            cluster.stop("fast")
            # The broker has seen the outage once its health says so.
            assert wait_until(lambda: serving(broker.target) == health_pb2.HealthCheckResponse
                              .NOT_SERVING, timeout=30)
            code, single = timed_stats(stub)
            assert code == grpc.StatusCode.UNAVAILABLE
            assert single < POOL_TIMEOUT + SLACK

            with ThreadPoolExecutor(2 * CONCURRENT_CALLS + 1) as pool:
                rest = pool.submit(timed_rest_stats, gateway.url)
                watching = [pool.submit(timed_watch, stub) for _ in range(CONCURRENT_CALLS)]
                calls = list(pool.map(lambda _: timed_stats(stub), range(CONCURRENT_CALLS)))
                watches = [w.result() for w in watching]
                rest_status, rest_seconds = rest.result()
            # In sequence they would take CONCURRENT_CALLS pool timeouts. A single call may
            # have failed at once, on a pooled connection the stop had closed: the bound is
            # tied to the pool timeout then, which a call waiting for a new connection takes.
            bound = 2 * max(single, POOL_TIMEOUT) + SLACK
            for answers in (calls, watches):
                assert [c for c, _ in answers] == [grpc.StatusCode.UNAVAILABLE] * CONCURRENT_CALLS
                assert max(s for _, s in answers) < bound, answers
            assert rest_status == 503
            assert rest_seconds < bound, rest_seconds

            cluster.start()
            assert wait_until(lambda: timed_stats(stub)[0] == grpc.StatusCode.OK, timeout=60,
                              interval=0.5), broker.log_tail()
            assert timed_watch(stub)[0] == grpc.StatusCode.OK
            assert timed_rest_stats(gateway.url)[0] == 200
            assert broker.alive
    finally:
        gateway.stop()
        broker.stop()


# Long enough that a pool retrying with doubling delays (1, 2, 4, 8, 16 s ...) would next try
# well after the database is back.
LONG_OUTAGE = 17.0


@pytest.mark.slow  # waits out a database outage of LONG_OUTAGE seconds
def test_broker_answers_within_seconds_of_the_database_returning_after_a_long_outage(
        cluster: PgCluster) -> None:
    broker = BrokerProcess(cluster.dsn("forge"), FORGE_POOL_TIMEOUT=str(POOL_TIMEOUT)).start()
    try:
        with grpc.insecure_channel(broker.target) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            assert timed_stats(stub)[0] == grpc.StatusCode.OK
            cluster.stop("fast")
            stopped = time.monotonic()
            while time.monotonic() - stopped < LONG_OUTAGE:
                assert timed_stats(stub)[0] == grpc.StatusCode.UNAVAILABLE
                time.sleep(0.5)
            cluster.start()
            back = time.monotonic()
            assert wait_until(lambda: timed_stats(stub)[0] == grpc.StatusCode.OK, timeout=60,
                              interval=0.2), broker.log_tail()
            assert time.monotonic() - back < SLACK + POOL_TIMEOUT
    finally:
        broker.stop()
