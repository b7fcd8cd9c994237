"""Transactional enqueue: ``forge.enqueue`` (SQL) and ``forge.sql`` (Python) insert a job in the
caller's own transaction, on a real PostgreSQL, with a real broker leasing what commits."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import grpc
import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from forge.sql import ForgeSQLError, enqueue, enqueue_async
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import REPO, BrokerProcess, start_broker

ORDERS = "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)"


def documented_grants() -> str:
    """The GRANT statements docs/operations.md gives for an application role named ``app``, with
    ``{role}`` in its place."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    block = re.search(r"```sql\n(GRANT USAGE ON SCHEMA forge TO app;\n.*?)```", text, re.S)
    assert block, "docs/operations.md gives no GRANT for the application role"
    return block.group(1).replace(" TO app;", " TO {role};")


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An application's connection: not autocommit, an orders table of its own beside Forge's."""
    with psycopg.connect(dsn) as c:
        c.execute(ORDERS)
        c.commit()
        yield c


def jobs(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT id, type, payload, priority, max_retries, status, run_at, "
                         "created_at, idempotency_key, concurrency_key FROM forge.jobs "
                         "ORDER BY id").fetchall()


def order_with_receipt(conn: psycopg.Connection[Any], item: str) -> str:
    conn.execute("INSERT INTO orders (item) VALUES (%s)", (item,))
    return enqueue(conn, "receipt", {"item": item})


def test_a_rolled_back_transaction_leaves_no_job_and_notifies_nobody(
        dsn: str, conn: psycopg.Connection[Any]) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN forge_jobs")
        order_with_receipt(conn, "book")
        conn.rollback()
        assert list(listener.notifies(timeout=1.0)) == []
        assert jobs(dsn) == []
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)

        job_id = order_with_receipt(conn, "lamp")
        assert list(listener.notifies(timeout=0.3)) == [], "nothing is sent before the commit"
        conn.commit()
        woken = list(listener.notifies(timeout=2.0, stop_after=1))
    assert [n.channel for n in woken] == ["forge_jobs"]
    assert [(str(j[0]), j[1], j[2]) for j in jobs(dsn)] == [(job_id, "receipt", {"item": "lamp"})]
    assert conn.execute("SELECT item FROM orders").fetchall() == [("lamp",)]


@pytest.fixture
def polling_slowly(dsn: str) -> Iterator[BrokerProcess]:
    """A broker that polls every 30 s: a job it leases sooner came by the NOTIFY of a commit."""
    proc = start_broker(dsn, FORGE_POLL_INTERVAL="30")
    yield proc
    proc.stop()


def test_a_waiting_lease_stream_gets_nothing_from_a_rollback_and_the_committed_job_at_once(
        polling_slowly: BrokerProcess, conn: psycopg.Connection[Any]) -> None:
    with grpc.insecure_channel(polling_slowly.target) as channel:
        stub = broker_pb2_grpc.BrokerStub(channel)
        stream = stub.Lease(pb.LeaseRequest(worker_id="tx", types=["receipt"]), timeout=30)
        got: list[tuple[float, pb.LeaseResponse]] = []
        reader = threading.Thread(target=lambda: got.append((time.monotonic(), next(stream))))
        reader.start()
        time.sleep(1.0)  # the stream is open and idle
        order_with_receipt(conn, "book")
        conn.rollback()
        time.sleep(1.5)
        assert not got, "a rolled-back job was leased"

        job_id = order_with_receipt(conn, "lamp")
        committed = time.monotonic()
        conn.commit()
        reader.join(timeout=10)
        stream.cancel()
    assert got, "the committed job was not leased"
    leased_at, response = got[0]
    assert [j.job.id for j in response.jobs] == [job_id]
    assert response.jobs[0].job.payload["item"] == "lamp"
    assert leased_at - committed < 2.0, "woken by the commit's NOTIFY, not the 30 s poll"


def test_a_job_is_stored_with_the_defaults_and_times_of_the_enqueue_rpc(
        dsn: str, conn: psycopg.Connection[Any], stub: broker_pb2_grpc.BrokerStub) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    plain = enqueue(conn, "email")
    full = enqueue(conn, "report.daily", {"day": "mon", "n": [1, 2.5, None, True]}, priority=-7,
                   max_retries=0, run_at=later, idempotency_key="report-mon",
                   concurrency_key="tenant-3")
    past = enqueue(conn, "email", run_at=datetime(2001, 1, 1, tzinfo=UTC))
    naive = enqueue(conn, "email", run_at=later.replace(tzinfo=None))
    conn.commit()
    rows = {str(r[0]): r for r in jobs(dsn)}
    assert rows[plain][1:8] == ("email", {}, 0, 3, "PENDING", rows[plain][7], rows[plain][7])
    assert rows[full][1:6] == ("report.daily", {"day": "mon", "n": [1, 2.5, None, True]}, -7, 0,
                               "PENDING")
    assert rows[full][6] == later and rows[full][8:] == ("report-mon", "tenant-3")
    assert rows[past][6] == rows[past][7], "a run_at in the past is now, as Enqueue stores it"
    assert rows[naive][6] == later, "a naive run_at is UTC, as forge.Client reads it"
    assert {uuid.UUID(i).version for i in rows} == {7}

    got = stub.GetJob(pb.GetJobRequest(id=full), timeout=5)
    assert (got.type, got.priority, got.max_retries, got.status) == ("report.daily", -7, 0,
                                                                     pb.Job.PENDING)
    assert got.idempotency_key == "report-mon" and got.concurrency_key == "tenant-3"
    assert dict(got.payload)["day"] == "mon"


def test_a_taken_idempotency_key_returns_the_job_holding_it(
        dsn: str, conn: psycopg.Connection[Any], stub: broker_pb2_grpc.BrokerStub) -> None:
    by_rpc = stub.Enqueue(pb.EnqueueRequest(type="email", idempotency_key="signup-7"),
                          timeout=5).job.id
    assert enqueue(conn, "email", {"other": 1}, idempotency_key="signup-7") == by_rpc
    first = enqueue(conn, "email", idempotency_key="signup-8")
    assert enqueue(conn, "sms", idempotency_key="signup-8") == first, "taken in this transaction"
    conn.commit()
    assert enqueue(conn, "email", idempotency_key="signup-8") == first, "taken by a commit"
    assert enqueue(conn, "email", idempotency_key="") != enqueue(conn, "email",
                                                                 idempotency_key=""), \
        "an empty key is none"
    conn.commit()
    assert len(jobs(dsn)) == 4


BIG = "x" * (1 << 20)
DEEP: dict[str, Any] = {}
_level = DEEP
for _ in range(20):  # DEEP is 21 levels deep
    _level["d"] = {}
    _level = _level["d"]

BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("type", {"type": ""}),
    ("type", {"type": "has space"}),
    ("type", {"type": "x" * 129}),
    ("type", {"type": "email\n"}),
    ("type", {"type": "e\x00mail"}),
    ("priority", {"priority": 1001}),
    ("priority", {"priority": -1001}),
    ("priority", {"priority": 2**31}),
    ("max_retries", {"max_retries": -1}),
    ("max_retries", {"max_retries": 101}),
    ("payload", {"payload": {"blob": BIG}}),
    ("payload", {"payload": DEEP}),
    ("payload", {"payload": {"to": "a\x00b"}}),
    ("payload", {"payload": {"k\x00": 1}}),
    ("payload", {"payload": {"n": float("nan")}}),
    ("payload", {"payload": {"when": datetime.now(UTC)}}),
    ("idempotency_key", {"idempotency_key": "k" * 256}),
    ("idempotency_key", {"idempotency_key": "a\x00b"}),
    ("concurrency_key", {"concurrency_key": "k" * 256}),
    ("concurrency_key", {"concurrency_key": "a\x00b"}),
]


@pytest.mark.parametrize(("field", "call"), BAD_CALLS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_CALLS)])
def test_a_bad_argument_is_refused_naming_its_field(
        dsn: str, conn: psycopg.Connection[Any], field: str, call: dict[str, Any]) -> None:
    args = {"type": "email", **call}
    with pytest.raises(ForgeSQLError) as refused:
        enqueue(conn, args.pop("type"), args.pop("payload", None), **args)
    conn.rollback()
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ") and refused.value.problem
    assert jobs(dsn) == []


SQL_REFUSALS = [
    ("type", "forge.enqueue(NULL)", "type: is required"),
    ("payload", "forge.enqueue('email', '[1]')", "payload: must be a JSON object, got array"),
    ("payload", "forge.enqueue('email', 'null')", "payload: must be a JSON object, got null"),
    ("payload", "forge.enqueue('email', '3')", "payload: must be a JSON object, got number"),
    ("payload", f"forge.enqueue('email', '{{\"a\": {'[' * 20}{']' * 20}}}')",
     "payload: nests objects and arrays more than 20 levels deep (the object itself is level 1)"),
    ("run_at", "forge.enqueue('email', run_at => 'infinity')",
     "run_at: must be a finite time before the year 10000"),
    ("run_at", "forge.enqueue('email', run_at => '10000-01-01 00:00+00')",
     "run_at: must be a finite time before the year 10000"),
    ("priority", "forge.enqueue('email', priority => 5000)",
     "priority: must be in [-1000, 1000], got 5000"),
]


@pytest.mark.parametrize(("field", "call", "message"), SQL_REFUSALS,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(SQL_REFUSALS)])
def test_the_sql_function_refuses_with_sqlstate_22023_and_the_field_as_its_column(
        dsn: str, field: str, call: str, message: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            c.execute(f"SELECT {call}".encode())
    diag = refused.value.diag
    assert (diag.sqlstate, diag.message_primary) == ("22023", message)
    assert (diag.schema_name, diag.table_name, diag.column_name) == ("forge", "jobs", field)
    assert jobs(dsn) == []


def test_a_payload_at_the_limits_is_taken(dsn: str, conn: psycopg.Connection[Any]) -> None:
    deepest: dict[str, Any] = {}
    level = deepest
    for _ in range(19):  # 20 levels, the most there may be
        level["d"] = {}
        level = level["d"]
    enqueue(conn, "email", deepest)
    enqueue(conn, "email", {"blob": "x" * ((1 << 20) - 20)})
    conn.commit()
    assert len(jobs(dsn)) == 2


@pytest.fixture
def app_role(pg_admin_dsn: str, dsn: str) -> Iterator[str]:
    """A login role (cluster-wide, so named for this test alone) given the grants
    docs/operations.md documents on this test's database, and the application's orders table;
    dropped after."""
    role = f"forge_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(role)))
    with psycopg.connect(dsn, autocommit=True) as owner:
        grants = documented_grants()
        assert grants.count("{role}") == 2
        owner.execute(pgsql.SQL(grants).format(role=pgsql.Identifier(role)))  # type: ignore[arg-type]
        owner.execute(ORDERS.replace("orders", "public.orders"))
        owner.execute(pgsql.SQL("GRANT ALL ON public.orders, public.orders_id_seq TO {}")
                      .format(pgsql.Identifier(role)))
    yield role
    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(role)))
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(role)))


def test_a_role_with_only_the_documented_grants_enqueues_but_cannot_touch_the_tables(
        dsn: str, app_role: str) -> None:
    with psycopg.connect(make_conninfo(dsn, user=app_role)) as app:
        assert app.execute("SELECT current_user").fetchone() == (app_role,)
        job_id = order_with_receipt(app, "book")
        app.commit()
        statements: tuple[LiteralString, ...] = (
                          "SELECT * FROM forge.jobs",
                          "INSERT INTO forge.jobs (type) VALUES ('email')",
                          "UPDATE forge.jobs SET priority = 5",
                          "DELETE FROM forge.jobs",
                          "SELECT * FROM forge.job_counts")
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
            app.rollback()
    assert [str(j[0]) for j in jobs(dsn)] == [job_id]


def test_a_role_without_the_execute_grant_cannot_enqueue(pg_admin_dsn: str, dsn: str) -> None:
    role = f"forge_other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(role)))
    try:
        with psycopg.connect(dsn, autocommit=True) as owner:
            owner.execute(pgsql.SQL("GRANT USAGE ON SCHEMA forge TO {}")
                          .format(pgsql.Identifier(role)))
        with psycopg.connect(make_conninfo(dsn, user=role)) as other:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                enqueue(other, "email")
    finally:
        with psycopg.connect(dsn, autocommit=True) as owner:
            owner.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(role)))
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(role)))
    assert jobs(dsn) == []


async def test_an_async_connection_enqueues_in_its_own_transaction(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as aconn:
        await enqueue_async(aconn, "email", {"n": 1})
        await aconn.rollback()
        assert jobs(dsn) == []
        with pytest.raises(ForgeSQLError) as refused:
            await enqueue_async(aconn, "email", priority=1001)
        assert refused.value.field == "priority"
        await aconn.rollback()
        async with aconn.transaction():
            job_id = await enqueue_async(aconn, "email", {"n": 2}, idempotency_key="a-1")
            assert await enqueue_async(aconn, "email", idempotency_key="a-1") == job_id
    assert [(str(j[0]), j[2]) for j in jobs(dsn)] == [(job_id, {"n": 2})]


def test_the_readme_sql_example_enqueues_with_its_commit_and_not_with_a_rollback(
        dsn: str, conn: psycopg.Connection[Any]) -> None:
    [example] = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    rolled_back = example.replace("COMMIT;", "ROLLBACK;")
    assert rolled_back != example
    with psycopg.connect(dsn, autocommit=True) as app:
        app.execute(rolled_back.encode())
        assert jobs(dsn) == []
        app.execute(example.encode())
    assert [(j[1], j[2]) for j in jobs(dsn)] == [("receipt", {"item": "lamp"})]
    assert conn.execute("SELECT item FROM orders").fetchall() == [("lamp",)]
