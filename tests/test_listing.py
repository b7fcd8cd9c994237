"""ListJobs' filters, orders and keyset pages; the bulk calls' matching fields and dry runs;
GetThroughput. Against a real broker and PostgreSQL, over gRPC and over REST through a real
gateway, and, for the plans, the statements the broker composes run on a million jobs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg import sql

from forge import Client
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from forge_broker.models import JobFilter, JobStatus, Order, PageKey
from forge_broker.sql import q
from forge_broker.store import filter_fragments, list_statement
from tests.support import (
    BrokerProcess,
    drop_database,
    lease_one,
    new_database,
)

Stub = broker_pb2_grpc.BrokerStub
MILLION = 1_000_000


# -- plans at a million jobs ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def million(pg_admin_dsn: str, template_dsn: str) -> Iterator[str]:
    """One database for the module holding 1,000,000 jobs: 70 % COMPLETED, 15 % PENDING (2 in
    15 of those scheduled a day ahead), 5 % each DEAD, CANCELLED and PROCESSING; ten types of
    two prefixes; every 7th job with one of 1,000 concurrency keys, every 3rd with an
    idempotency key; created over the last ~28 h."""
    url = new_database(pg_admin_dsn)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO forge.jobs (type, status, priority, run_at, created_at, updated_at,
                                    concurrency_key, idempotency_key, worker_id, lease_token,
                                    lease_expires_at)
            SELECT (ARRAY['email.send', 'email.bounce', 'email.digest', 'sms.send', 'sms.receipt',
                          'report.daily', 'report.weekly', 'image.resize', 'image.crop',
                          'webhook'])[i / 3 %% 10 + 1],
                   s.status, i / 7 %% 5 - 2,
                   now() - (i %% 86400) * interval '1 second'
                     + CASE WHEN s.status = 'PENDING' AND i %% 10 = 0
                            THEN interval '1 day' ELSE interval '0' END,
                   now() - (%(n)s - i) * interval '100 milliseconds',
                   now() - (%(n)s - i) * interval '100 milliseconds',
                   CASE WHEN i %% 7 = 0 THEN 'tenant-' || i %% 1000 END,
                   CASE WHEN i %% 3 = 0 THEN 'idem-' || i END,
                   CASE WHEN s.status <> 'PENDING' THEN 'worker-' || i %% 20 END,
                   CASE WHEN s.status = 'PROCESSING' THEN gen_random_uuid() END,
                   CASE WHEN s.status = 'PROCESSING' THEN now() + interval '1 hour' END
            FROM generate_series(1, %(n)s) AS i
            CROSS JOIN LATERAL (SELECT CASE WHEN i %% 100 < 70 THEN 'COMPLETED'
                                            WHEN i %% 100 < 85 THEN 'PENDING'
                                            WHEN i %% 100 < 90 THEN 'DEAD'
                                            WHEN i %% 100 < 95 THEN 'CANCELLED'
                                            ELSE 'PROCESSING' END AS status) AS s
            """, {"n": MILLION})
        conn.execute("ANALYZE forge.jobs")
    yield url
    drop_database(pg_admin_dsn, url)


def _filters() -> dict[str, JobFilter]:
    now = datetime.now(UTC)
    some_id = uuid.UUID(int=0)
    cases = {
        "no filter": JobFilter(),
        "type": JobFilter(type="sms.send"),
        "type_prefix": JobFilter(type_prefix="email."),
        "concurrency_key": JobFilter(concurrency_key="tenant-42"),
        "idempotency_key": JobFilter(idempotency_key="idem-3000"),
        "created range": JobFilter(created_after=now - timedelta(hours=3),
                                   created_before=now - timedelta(hours=2)),
        "query (a key)": JobFilter(query="tenant-42"),
        "query (an id)": JobFilter(query=str(some_id)),
        "status and type": JobFilter(status=JobStatus.DEAD, type="sms.send"),
        "scheduled": JobFilter(status=JobStatus.PENDING, run_after=now),
        "scheduled of a type": JobFilter(status=JobStatus.PENDING, run_after=now,
                                         type="email.send"),
    }
    for status in JobStatus:
        cases[f"status {status}"] = JobFilter(status=status)
    return cases


def _allowed(where: JobFilter, order: Order) -> JobFilter | None:
    """The filter a listing in ``order`` runs with: RUN_AT and PRIORITY need a status other
    than COMPLETED (the broker refuses the rest), so a filter without one lists PENDING jobs
    in those orders; None when the broker refuses it."""
    if order in (Order.NEWEST, Order.OLDEST) or where.status not in (None, JobStatus.COMPLETED):
        return where
    return dataclasses.replace(where, status=JobStatus.PENDING) if where.status is None else None


def _seq_scans(plan: dict[str, Any]) -> list[str]:
    found = [plan.get("Relation Name", "?")] if plan["Node Type"] == "Seq Scan" else []
    for child in plan.get("Plans", []):
        found += _seq_scans(child)
    return found


@pytest.mark.slow
def test_every_order_and_filter_is_served_by_an_index_and_answers_fast_at_a_million_jobs(
        million: str) -> None:
    """For each order, with each filter an operator uses that the broker accepts in it, the
    statement the broker runs, first page and a later one, reads indexes only (no Seq Scan in
    its plan) and answers a page of 50 in well under a second with 1,000,000 jobs in the
    table."""
    slow: list[str] = []
    scanned: list[str] = []
    with psycopg.connect(million, autocommit=True) as conn:
        for name, any_order in _filters().items():
            for order in Order:
                if (where := _allowed(any_order, order)) is None:
                    continue
                after = None
                for page in ("first page", "second page"):
                    statement, params = list_statement(where, order, after)
                    params["limit"] = 51
                    label = f"{order} / {name} / {page}"
                    [(plan,)] = conn.execute("EXPLAIN (FORMAT JSON) " + statement, params,
                                             prepare=False).fetchall()
                    if seqs := _seq_scans(plan[0]["Plan"]):
                        scanned.append(f"{label}: Seq Scan on {seqs}")
                    started = time.perf_counter()
                    cur = conn.execute(statement, params, prepare=False)
                    rows = cur.fetchall()
                    if (took := time.perf_counter() - started) > 1.0:
                        slow.append(f"{label}: {took:.2f} s")
                    if rows:
                        last = dict(zip([c.name for c in cur.description or ()], rows[-1],
                                        strict=True))
                        after = PageKey(last["id"], last["run_at"], last["priority"])
    assert scanned == []
    assert slow == []


_ORDER_BY = {Order.NEWEST: "id DESC", Order.OLDEST: "id", Order.RUN_AT: "run_at, id",
             Order.PRIORITY: "priority DESC, run_at, id"}


@pytest.mark.slow
def test_pages_at_a_million_jobs_hold_what_a_plain_sorted_query_answers(million: str) -> None:
    """The index walks (RUN_AT one priority at a time) list exactly the rows, in exactly the
    order, that sorting the whole table would: two pages of each order the broker accepts,
    over every status and over single ones, and over the scheduled jobs."""
    cases = {name: where for name, where in _filters().items()
             if name in ("no filter", "type", "status COMPLETED", "status PENDING",
                         "status DEAD", "status CANCELLED", "created range", "scheduled")}
    with psycopg.connect(million, autocommit=True) as conn:
        for name, any_order in cases.items():
            for order in Order:
                if (where := _allowed(any_order, order)) is None:
                    continue
                statement, params = list_statement(where, order, None)
                first = conn.execute(statement, {**params, "limit": 50}, prepare=False).fetchall()
                statement, params = list_statement(where, order, _key_of(conn, first[-1][0]))
                second = conn.execute(statement, {**params, "limit": 50},
                                      prepare=False).fetchall()
                filters, values = filter_fragments(where)
                plain = sql.SQL("SELECT id FROM forge.jobs WHERE true {} ORDER BY {} LIMIT 100"
                                ).format(sql.SQL("\n").join(sql.SQL(q(f"filter_{f}"))
                                                           for f in filters),
                                         sql.SQL(_ORDER_BY[order]))
                expected = [r[0] for r in conn.execute(plain, values, prepare=False)]
                assert [r[0] for r in first + second] == expected, (order, name)


def _key_of(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> PageKey:
    row = conn.execute("SELECT id, run_at, priority FROM forge.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None
    return PageKey(*row)


# -- ListJobs over gRPC --------------------------------------------------------------------------

def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def enqueue(stub: Stub, *jobs: pb.EnqueueRequest) -> list[pb.Job]:
    return list(stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=list(jobs)), timeout=10).jobs)


def listed(stub: Stub, **fields: Any) -> list[str]:
    """Ids of every job ListJobs lists with ``fields``, all pages read, in order."""
    ids: list[str] = []
    token = ""
    while True:
        page = stub.ListJobs(pb.ListJobsRequest(page_token=token, **fields), timeout=10)
        ids += [j.id for j in page.jobs]
        if not (token := page.next_page_token):
            return ids


def refusal(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: grpc.RpcError = info.value
    return err


def test_list_jobs_filters_by_type_prefix_keys_worker_time_ranges_and_search(
        stub: Stub) -> None:
    before = datetime.now(UTC)
    email, bounce, sms, keyed, idem = enqueue(
        stub, pb.EnqueueRequest(type="email.send"), pb.EnqueueRequest(type="email.bounce"),
        pb.EnqueueRequest(type="sms.send"),
        pb.EnqueueRequest(type="sms.send", concurrency_key="tenant-1"),
        pb.EnqueueRequest(type="report", idempotency_key="nightly-2026-12-06"))
    leased = lease_one(stub, "email.bounce", worker="worker-a")
    between = datetime.now(UTC)
    [late] = enqueue(stub, pb.EnqueueRequest(type="email.send"))
    stub.CancelJob(pb.CancelJobRequest(id=sms.id), timeout=10)

    assert listed(stub, type_prefix="email.") == [late.id, bounce.id, email.id]
    assert listed(stub, type_prefix="email.", type="email.send") == [late.id, email.id]
    assert listed(stub, concurrency_key="tenant-1") == [keyed.id]
    assert listed(stub, idempotency_key="nightly-2026-12-06") == [idem.id]
    assert listed(stub, worker_id="worker-a") == [leased.job.id]
    assert listed(stub, created_after=_ts(before), created_before=_ts(between)) == [
        idem.id, keyed.id, sms.id, bounce.id, email.id]
    assert listed(stub, created_after=_ts(between)) == [late.id]
    # Changed since: the job enqueued and the one cancelled after `between`.
    assert listed(stub, updated_after=_ts(between)) == [late.id, sms.id]
    assert listed(stub, updated_before=_ts(between)) == [idem.id, keyed.id, bounce.id, email.id]
    # Search: an id, an idempotency key or a concurrency key, exactly.
    assert listed(stub, query=sms.id) == [sms.id]
    assert listed(stub, query="nightly-2026-12-06") == [idem.id]
    assert listed(stub, query="tenant-1") == [keyed.id]
    assert listed(stub, query="tenant") == []
    assert listed(stub, query="tenant-1", status=pb.Job.PROCESSING) == []


def test_each_order_lists_in_its_order_and_pages_neither_skip_nor_repeat_jobs_enqueued_meanwhile(
        stub: Stub) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    jobs = enqueue(stub, *[pb.EnqueueRequest(type="order.test", priority=p % 3 - 1,
                                             run_at=_ts(soon + timedelta(minutes=p % 5)))
                           for p in range(23)])
    by_id = {j.id: j for j in jobs}

    def run_at(j: pb.Job) -> datetime:
        return j.run_at.ToDatetime(tzinfo=UTC)

    expected = {
        pb.ListJobsRequest.NEWEST: sorted(jobs, key=lambda j: j.id, reverse=True),
        pb.ListJobsRequest.OLDEST: sorted(jobs, key=lambda j: j.id),
        pb.ListJobsRequest.RUN_AT: sorted(jobs, key=lambda j: (run_at(j), j.id)),
        pb.ListJobsRequest.PRIORITY: sorted(jobs, key=lambda j: (-j.priority, run_at(j), j.id)),
    }
    expected[pb.ListJobsRequest.ORDER_UNSPECIFIED] = expected[pb.ListJobsRequest.NEWEST]
    for order, want in expected.items():
        seen: list[str] = []
        token = ""
        while True:
            page = stub.ListJobs(pb.ListJobsRequest(order=order, page_size=4, page_token=token,
                                                    type="order.test", status=pb.Job.PENDING),
                                 timeout=10)
            seen += [j.id for j in page.jobs]
            # Jobs enqueued between pages, sorting anywhere in the order.
            enqueue(stub, pb.EnqueueRequest(type="order.test", priority=1),
                    pb.EnqueueRequest(type="order.test", priority=-1,
                                      run_at=_ts(soon + timedelta(minutes=2))))
            if not (token := page.next_page_token):
                break
        old = [i for i in seen if i in by_id]
        assert old == [j.id for j in want], pb.ListJobsRequest.Order.Name(order)
        assert len(seen) == len(set(seen))


def test_run_after_lists_the_scheduled_jobs_and_bulk_calls_act_on_the_same_set(
        stub: Stub) -> None:
    now = datetime.now(UTC)
    runnable, later, soon, past = enqueue(
        stub, pb.EnqueueRequest(type="sched.a"),
        pb.EnqueueRequest(type="sched.a", run_at=_ts(now + timedelta(hours=2)), priority=5),
        pb.EnqueueRequest(type="sched.a", run_at=_ts(now + timedelta(hours=1))),
        pb.EnqueueRequest(type="sched.a", run_at=_ts(now - timedelta(hours=1))))
    scheduled = {"status": pb.Job.PENDING, "run_after": _ts(datetime.now(UTC))}
    for order in pb.ListJobsRequest.Order.values():
        ids = listed(stub, order=order, page_size=1, **scheduled)
        assert sorted(ids) == sorted([later.id, soon.id]), order
    assert listed(stub, order=pb.ListJobsRequest.RUN_AT, **scheduled) == [soon.id, later.id]
    assert listed(stub, order=pb.ListJobsRequest.PRIORITY, **scheduled) == [later.id, soon.id]
    assert runnable.id not in listed(stub, run_after=scheduled["run_after"])
    assert past.id in listed(stub, run_after=_ts(now - timedelta(hours=3)))
    dry = stub.CancelJobs(pb.CancelJobsRequest(filter=pb.JobFilter(
        type="sched.a", status=pb.Job.PENDING, run_after=scheduled["run_after"]), dry_run=True),
        timeout=10)
    assert dry.count == 2


def test_bad_listing_input_is_invalid_argument_naming_the_field(stub: Stub) -> None:
    enqueue(stub, *[pb.EnqueueRequest(type="bad.input") for _ in range(3)])
    now = datetime.now(UTC)
    first = stub.ListJobs(pb.ListJobsRequest(page_size=1), timeout=10)
    assert first.next_page_token
    bad = {
        "created_after": pb.ListJobsRequest(created_after=_ts(now), created_before=_ts(now)),
        "updated_after": pb.ListJobsRequest(updated_after=_ts(now + timedelta(seconds=1)),
                                            updated_before=_ts(now)),
        "created_before": pb.ListJobsRequest(created_before=Timestamp(seconds=-10**12)),
        "order": pb.ListJobsRequest(order=99),  # type: ignore[arg-type]
        "type_prefix": pb.ListJobsRequest(type_prefix="email/"),
        "idempotency_key": pb.ListJobsRequest(idempotency_key="k" * 256),
        "page_token": pb.ListJobsRequest(page_token="not-a-token"),
    }
    for field, request in bad.items():
        err = refusal(lambda request=request: stub.ListJobs(request, timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err)
        assert err.details().startswith(f"{field}: "), err.details()
    # RUN_AT and PRIORITY list one status other than COMPLETED (no index holds the rest in
    # those orders).
    for order in (pb.ListJobsRequest.RUN_AT, pb.ListJobsRequest.PRIORITY):
        for status in (pb.Job.STATUS_UNSPECIFIED, pb.Job.COMPLETED):
            err = refusal(lambda order=order, status=status: stub.ListJobs(
                pb.ListJobsRequest(order=order, status=status), timeout=10))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.details().startswith("order: RUN_AT and PRIORITY list the jobs of one "
                                            "status other than COMPLETED"), err.details()
    # A token read with another order or another filter than its first page's.
    for other in (pb.ListJobsRequest(order=pb.ListJobsRequest.OLDEST, page_size=1),
                  pb.ListJobsRequest(type="bad.input", page_size=1),
                  pb.ListJobsRequest(page_size=1, query="x")):
        other.page_token = first.next_page_token
        err = refusal(lambda other=other: stub.ListJobs(other, timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("page_token: "), err.details()
    # The same filter and order (another page size) reads it.
    assert stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=first.next_page_token),
                         timeout=10).jobs


# -- REST ------------------------------------------------------------------------------------------

def test_list_jobs_filters_and_orders_over_rest(rest: httpx.Client, stub: Stub) -> None:
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    a, b, _ = enqueue(stub, pb.EnqueueRequest(type="email.a"), pb.EnqueueRequest(type="email.b"),
                      pb.EnqueueRequest(type="sms.a"))
    r = rest.get(f"/v1/jobs?order=OLDEST&createdAfter={start}&typePrefix=email.")
    assert r.status_code == 200, r.text
    assert [j["id"] for j in r.json()["jobs"]] == [a.id, b.id]
    r = rest.get("/v1/jobs", params={"order": "PRIORITY", "type_prefix": "email.",
                                     "status": "PENDING", "pageSize": 1})
    assert r.status_code == 200, r.text
    token = r.json()["nextPageToken"]
    r = rest.get("/v1/jobs", params={"order": "PRIORITY", "typePrefix": "email.",
                                     "status": "PENDING", "pageToken": token})
    assert r.status_code == 200 and len(r.json()["jobs"]) == 1, r.text
    r = rest.get("/v1/jobs", params={"order": "NEWEST", "typePrefix": "email.",
                                     "status": "PENDING", "pageToken": token})
    assert r.status_code == 400 and r.json()["message"].startswith("page_token: "), r.text
    r = rest.get("/v1/jobs", params={"createdAfter": "2026-12-02T00:00:00Z",
                                     "createdBefore": "2026-12-01T00:00:00Z"})
    assert r.status_code == 400 and r.json()["message"].startswith("created_after: "), r.text
    for params in ({"order": "RUN_AT"}, {"order": "PRIORITY", "status": "COMPLETED"}):
        r = rest.get("/v1/jobs", params=params)
        assert r.status_code == 400 and r.json()["message"].startswith("order: "), r.text
    later = enqueue(stub, pb.EnqueueRequest(type="email.c", run_at=_ts(
        datetime.now(UTC) + timedelta(hours=1))))[0]
    r = rest.get("/v1/jobs", params={"status": "PENDING", "order": "RUN_AT",
                                     "runAfter": datetime.now(UTC).isoformat()})
    assert r.status_code == 200 and [j["id"] for j in r.json()["jobs"]] == [later.id], r.text
    r = rest.get("/v1/jobs", params={"order": "SIDEWAYS"})
    assert r.status_code == 400 and "order" in r.json()["message"], r.text
    r = rest.get("/v1/jobs", params={"query": a.id})
    assert [j["id"] for j in r.json()["jobs"]] == [a.id]


# -- bulk calls with the listing's filter ---------------------------------------------------------

def add_jobs(dsn: str, type_: str, n: int, status: str = "DEAD", key: str | None = None) -> None:
    """``n`` jobs of ``type_`` in ``status`` (DEAD, PENDING or CANCELLED), in one INSERT."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO forge.jobs (type, status, concurrency_key) "
                     "SELECT %s, %s, %s FROM generate_series(1, %s)", (type_, status, key, n))


def statuses(dsn: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT type, status, count(*) FROM forge.jobs GROUP BY 1, 2")
        return {(t, s): n for t, s, n in rows}


def test_bulk_calls_match_as_the_listing_does_and_dry_runs_change_nothing(
        stub: Stub, broker: BrokerProcess) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "mail.send", 4)
    add_jobs(broker.dsn, "mail.bounce", 3, key="tenant-9")
    add_jobs(broker.dsn, "sms.send", 2)
    by_prefix = pb.JobFilter(type_prefix="mail.")
    # What the dashboard lists is what the call acts on.
    assert len(listed(stub, status=pb.Job.DEAD, type_prefix="mail.")) == 7
    dry = stub.RetryDeadJobs(pb.RetryDeadJobsRequest(filter=by_prefix, dry_run=True), timeout=10)
    assert dry.count == 7
    assert statuses(broker.dsn)[("mail.send", "DEAD")] == 4
    dry = stub.PurgeDeadJobs(pb.PurgeDeadJobsRequest(
        filter=pb.JobFilter(concurrency_key="tenant-9"), dry_run=True), timeout=10)
    assert dry.count == 3
    # A filter that sets any field is not empty: no `all` needed.
    purged = stub.PurgeDeadJobs(pb.PurgeDeadJobsRequest(
        filter=pb.JobFilter(query="tenant-9")), timeout=10)
    assert purged.count == 3
    retried = stub.RetryDeadJobs(pb.RetryDeadJobsRequest(filter=by_prefix), timeout=10)
    assert retried.count == 4
    assert statuses(broker.dsn) == {("mail.send", "PENDING"): 4, ("sms.send", "DEAD"): 2}
    # CancelJobs narrowed to one status leaves the others.
    running = lease_one(stub, "mail.send", worker="w")
    pending_only = pb.JobFilter(type="mail.send", status=pb.Job.PENDING)
    dry = stub.CancelJobs(pb.CancelJobsRequest(filter=pending_only, dry_run=True), timeout=10)
    assert dry.count == 3
    assert stub.CancelJobs(pb.CancelJobsRequest(filter=pending_only), timeout=10).count == 3
    assert stub.GetJob(pb.GetJobRequest(id=running.job.id), timeout=10).status == \
        pb.Job.PROCESSING
    created_range = pb.JobFilter(created_after=_ts(datetime.now(UTC) - timedelta(hours=1)))
    assert stub.CancelJobs(pb.CancelJobsRequest(filter=created_range, dry_run=True),
                           timeout=10).count == 3  # the running mail.send and two dead sms
    assert statuses(broker.dsn) == {("mail.send", "CANCELLED"): 3,
                                    ("mail.send", "PROCESSING"): 1, ("sms.send", "DEAD"): 2}


def test_bulk_filter_status_outside_what_the_call_acts_on_is_invalid_argument(
        stub: Stub) -> None:
    calls = [
        lambda: stub.RetryDeadJobs(pb.RetryDeadJobsRequest(
            filter=pb.JobFilter(status=pb.Job.PENDING)), timeout=10),
        lambda: stub.PurgeDeadJobs(pb.PurgeDeadJobsRequest(
            filter=pb.JobFilter(status=pb.Job.COMPLETED)), timeout=10),
        lambda: stub.CancelJobs(pb.CancelJobsRequest(
            filter=pb.JobFilter(status=pb.Job.DEAD)), timeout=10),
        lambda: stub.CancelJobs(pb.CancelJobsRequest(
            filter=pb.JobFilter(status=pb.Job.CANCELLED)), timeout=10),
    ]
    for call in calls:
        err = refusal(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("filter.status: "), err.details()
    now = _ts(datetime.now(UTC))
    err = refusal(lambda: stub.CancelJobs(pb.CancelJobsRequest(filter=pb.JobFilter(
        created_after=now, created_before=now)), timeout=10))
    assert err.details().startswith("filter.created_after: "), err.details()
    # The DLQ calls take DEAD, which they act on anyway.
    assert stub.RetryDeadJobs(pb.RetryDeadJobsRequest(
        filter=pb.JobFilter(status=pb.Job.DEAD), dry_run=True), timeout=10).count == 0


# -- GetThroughput -------------------------------------------------------------------------------

def test_get_throughput_shows_acks_and_nacks_per_type_and_minute_and_the_queue_wait(
        stub: Stub, rest: httpx.Client) -> None:
    enqueue(stub, pb.EnqueueRequest(type="tp.a"), pb.EnqueueRequest(type="tp.a"),
            pb.EnqueueRequest(type="tp.b"))
    for type_, outcome in (("tp.a", "ack"), ("tp.a", "nack"), ("tp.b", "ack")):
        leased = lease_one(stub, type_)
        if outcome == "ack":
            stub.Ack(pb.AckRequest(job_id=leased.job.id, lease_token=leased.lease_token),
                     timeout=10)
        else:
            stub.Nack(pb.NackRequest(job_id=leased.job.id, lease_token=leased.lease_token,
                                     error="boom"), timeout=10)
    resp = stub.GetThroughput(pb.GetThroughputRequest(), timeout=10)
    assert [t.type for t in resp.types] == ["tp.a", "tp.b"]
    for t in resp.types:
        assert len(t.points) == 60
        minutes = [p.minute.ToDatetime(tzinfo=UTC) for p in t.points]
        assert minutes == sorted(minutes) and minutes[-1] >= datetime.now(UTC) - timedelta(
            minutes=1)
    a, b = ({p.minute.seconds: (p.completed, p.failed) for p in t.points if p.completed or p.failed}
            for t in resp.types)
    # Everything happened within a second or two: in the current minute, or the one before.
    assert sum(c for c, _ in a.values()) == 1 and sum(f for _, f in a.values()) == 1
    assert sum(c for c, _ in b.values()) == 1 and sum(f for _, f in b.values()) == 0
    assert set(a) <= {t.points[-1].minute.seconds for t in resp.types} | {
        resp.types[0].points[-2].minute.seconds}
    assert len(resp.queue_wait) == 60
    assert sum(w.count for w in resp.queue_wait) == 3
    for w in resp.queue_wait:
        assert (w.count == 0) == (w.p50_ms == 0 and w.p99_ms == 0)
        assert w.p50_ms <= w.p99_ms

    short = stub.GetThroughput(pb.GetThroughputRequest(window=Duration(seconds=90)), timeout=10)
    assert len(short.queue_wait) == 2 and all(len(t.points) == 2 for t in short.types)
    longest = stub.GetThroughput(pb.GetThroughputRequest(window=Duration(seconds=7200)),
                                 timeout=10)
    assert len(longest.queue_wait) == 120
    for window in (Duration(seconds=7201), Duration(seconds=-60)):
        err = refusal(lambda window=window: stub.GetThroughput(
            pb.GetThroughputRequest(window=window), timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("window: "), err.details()

    r = rest.get("/v1/stats/throughput", params={"window": "600s"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [t["type"] for t in body["types"]] == ["tp.a", "tp.b"]
    assert len(body["queueWait"]) == 10
    r = rest.get("/v1/stats/throughput", params={"window": "3h"})
    assert r.status_code == 400, r.text


# -- CLI and Python client -----------------------------------------------------------------------

def forge(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    forge_bin = shutil.which("forge", path=os.path.dirname(sys.executable))
    assert forge_bin, "the forge console script is installed beside the interpreter"
    return subprocess.run([forge_bin, "--broker", broker.target, *args], capture_output=True,
                          text=True, timeout=60)


def forge_ids(broker: BrokerProcess, *args: str) -> list[str]:
    out = forge(broker, "list", *args)
    assert out.returncode == 0, out.stderr
    return [j["id"] for j in json.loads(out.stdout).get("jobs", [])]


@pytest.mark.slow
def test_cli_list_filters_orders_and_bulk_dry_runs(broker: BrokerProcess, stub: Stub) -> None:
    assert broker.dsn
    old_email = enqueue(stub, pb.EnqueueRequest(type="email.a", priority=5,
                                                concurrency_key="tenant-7"))[0]
    with psycopg.connect(broker.dsn, autocommit=True) as conn:  # created two hours ago
        conn.execute("UPDATE forge.jobs SET created_at = now() - interval '2 hours'")
    email, sms = enqueue(stub, pb.EnqueueRequest(type="email.b", idempotency_key="k-1"),
                         pb.EnqueueRequest(type="sms.a", priority=-5))
    leased = lease_one(stub, "sms.a", worker="cli-worker")

    assert forge_ids(broker, "--type-prefix", "email.") == [email.id, old_email.id]
    assert forge_ids(broker, "--type-prefix", "email.", "--order", "oldest") == [
        old_email.id, email.id]
    assert forge_ids(broker, "--status", "pending", "--order", "PRIORITY") == [
        old_email.id, email.id]
    assert forge_ids(broker, "--since", "1h") == [sms.id, email.id]
    assert forge_ids(broker, "--until", "1h") == [old_email.id]
    now = datetime.now(UTC).isoformat()
    assert forge_ids(broker, "--until", now, "--since", "3h") == [sms.id, email.id, old_email.id]
    assert forge_ids(broker, "--key", "tenant-7") == [old_email.id]
    assert forge_ids(broker, "--idempotency-key", "k-1") == [email.id]
    assert forge_ids(broker, "--worker", "cli-worker") == [leased.job.id]
    assert forge_ids(broker, "--query", sms.id) == [sms.id]
    first = json.loads(forge(broker, "list", "--status", "pending", "--order", "run_at",
                             "--page-size", "1").stdout)
    rest = forge_ids(broker, "--status", "pending", "--order", "run_at", "--page-token",
                     first["nextPageToken"])
    assert len(rest) == 1
    bad = forge(broker, "list", "--order", "sideways")
    assert bad.returncode == 2 and "unknown order" in bad.stderr
    bad = forge(broker, "list", "--since", "yesterday")
    assert bad.returncode == 2 and "not a time" in bad.stderr
    bad = forge(broker, "list", "--order", "oldest", "--page-token", first["nextPageToken"])
    assert bad.returncode == 1 and "page_token: " in bad.stderr
    bad = forge(broker, "list", "--order", "run_at")
    assert bad.returncode == 1 and "order: " in bad.stderr
    later = enqueue(stub, pb.EnqueueRequest(type="later.a", run_at=_ts(
        datetime.now(UTC) + timedelta(hours=1))))[0]
    assert forge_ids(broker, "--status", "pending", "--run-after", "0") == [later.id]
    assert forge_ids(broker, "--run-after", "2h", "--order", "oldest") == [
        old_email.id, email.id, sms.id, later.id]

    for args, count in ((("cancel", "--type", "email.a", "--dry-run"), "1"),
                        (("dlq", "retry", "--all", "--dry-run"), None),
                        (("dlq", "purge", "--all", "--dry-run"), None)):
        out = forge(broker, *args)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout).get("count") == count  # proto3 JSON leaves 0 out
    assert stub.GetJob(pb.GetJobRequest(id=old_email.id), timeout=10).status == pb.Job.PENDING
    out = forge(broker, "cancel", old_email.id, "--dry-run")
    assert out.returncode == 2 and "--dry-run" in out.stderr


def test_python_client_lists_with_filters_and_orders_and_counts_dry_runs(
        broker: BrokerProcess) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "dlq.py", 3, key="tenant-3")
    with Client(broker.target) as client:
        a = client.enqueue("py.a", priority=3)
        b = client.enqueue("py.b", idempotency_key="py-key")
        c = client.enqueue("py.c", run_at=datetime.now(UTC) + timedelta(hours=1))
        page = client.list(order="priority", status="PENDING", type_prefix="py.", page_size=1)
        assert [j.id for j in page.jobs] == [a.id]
        page = client.list(order="PRIORITY", status="PENDING", type_prefix="py.", page_size=1,
                           page_token=page.next_page_token)
        assert [j.id for j in page.jobs] == [b.id]
        scheduled = client.list(status="PENDING", run_after=datetime.now(UTC), order="RUN_AT")
        assert [j.id for j in scheduled.jobs] == [c.id]
        assert [j.id for j in client.list(query="py-key").jobs] == [b.id]
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        assert len(client.list(created_after=hour_ago, status="DEAD").jobs) == 3
        assert client.retry_dead_jobs(concurrency_key="tenant-3", dry_run=True).count == 3
        assert client.purge_dead_jobs(created_after=hour_ago, dry_run=True).count == 3
        assert client.cancel_jobs(status="PENDING", run_after=datetime.now(UTC),
                                  dry_run=True).count == 1
        assert client.cancel_jobs(status="PENDING", type_prefix="py.", dry_run=True).count == 3
        assert client.cancel_jobs(status="PENDING", type_prefix="py.").count == 3
        assert len(client.throughput(timedelta(minutes=5)).queue_wait) == 5
