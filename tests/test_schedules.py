"""Periodic schedules: fire times (daylight saving, catch-up), the API and its validation, REST,
and real brokers firing each time exactly once, however many of them run."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import httpx
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from forge import Client, ForgeClientError
from forge.client import schedule_message
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from forge_broker.schedules import (
    TimingError,
    fire_key,
    next_cron,
    next_every,
    schedule_of,
)
from tests.support import BrokerProcess, WorkerdProcess, start_broker, start_gateway, wait_until

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- fire times, as functions of fixed datetimes ------------------------------------------------

def test_a_daily_0230_in_berlin_fires_at_0300_when_the_clock_skips_0230_in_march() -> None:
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day.
    fire = next_cron("30 2 * * *", BERLIN, utc(2025, 3, 29, 12))
    assert fire == utc(2025, 3, 30, 1)  # 03:00 CEST, the moment the clock jumps past 02:30
    assert fire.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    assert next_cron("30 2 * * *", BERLIN, fire) == utc(2025, 3, 31, 0, 30)  # 02:30 CEST again


def test_a_daily_0230_in_berlin_fires_once_when_the_clock_repeats_0230_in_october() -> None:
    # 2025-10-26: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice that day.
    fire = next_cron("30 2 * * *", BERLIN, utc(2025, 10, 25, 12))
    assert fire == utc(2025, 10, 26, 0, 30)  # the first 02:30 (CEST)
    assert fire.astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CEST"
    tomorrow = utc(2025, 10, 27, 1, 30)  # 02:30 CET
    assert next_cron("30 2 * * *", BERLIN, fire) == tomorrow
    # Asked from inside the repeated hour (02:15 CET, after the first 02:30): not again today.
    assert next_cron("30 2 * * *", BERLIN, utc(2025, 10, 26, 1, 15)) == tomorrow


def test_an_every_minute_expression_runs_on_absolute_time_through_both_changes() -> None:
    assert next_cron("*/15 * * * *", BERLIN, utc(2025, 3, 30, 0, 50)) == utc(2025, 3, 30, 1)
    assert next_cron("*/15 * * * *", BERLIN, utc(2025, 10, 26, 0, 50)) == utc(2025, 10, 26, 1)


def test_aliases_and_time_zones_give_the_cron_times() -> None:
    after = utc(2025, 6, 15, 10, 20)  # a Sunday
    assert next_cron("@hourly", UTC, after) == utc(2025, 6, 15, 11)
    assert next_cron("@daily", UTC, after) == utc(2025, 6, 16)
    assert next_cron("@weekly", UTC, after) == utc(2025, 6, 22)
    assert next_cron("@monthly", UTC, after) == utc(2025, 7, 1)
    assert next_cron("@yearly", UTC, after) == utc(2026, 1, 1)
    assert next_cron("0 9 * * MON-FRI", BERLIN, after) == utc(2025, 6, 16, 7)  # 09:00 CEST


def test_an_expression_that_never_fires_or_is_malformed_is_a_timing_error() -> None:
    for expr in ("61 * * * *", "* * 31 2 *", "* * */20 * 1L", "* * * * * *", "@often", ""):
        with pytest.raises(TimingError):
            next_cron(expr, UTC, utc(2025, 1, 1))


def test_every_keeps_its_period_from_the_previous_fire_and_skips_missed_times() -> None:
    anchor = utc(2025, 1, 1, 12)
    ten = timedelta(minutes=10)
    assert next_every(ten, anchor, anchor) == utc(2025, 1, 1, 12, 10)
    # 35 minutes late: the fires at :10, :20 and :30 are not made up, the next one is :40.
    assert next_every(ten, anchor, anchor + timedelta(minutes=35)) == utc(2025, 1, 1, 12, 40)
    assert next_every(ten, anchor, anchor + timedelta(minutes=40)) == utc(2025, 1, 1, 12, 50)


def test_the_fire_key_names_the_schedule_and_the_time_in_rfc3339_utc() -> None:
    at = datetime(2030, 1, 2, 4, 0, tzinfo=BERLIN)
    assert fire_key("nightly", at) == "schedule:nightly:2030-01-02T03:00:00Z"
    assert fire_key("a:b", utc(2030, 1, 2, 3, 0, 0, 500000)) == "schedule:a:b:2030-01-02T03:00:00.500000Z"
    assert schedule_of("schedule:a:b:2030-01-02T03:00:00.500000Z") == "a:b"
    assert schedule_of("schedule:nightly:2030-01-02T03:00:00Z") == "nightly"
    for key in (None, "", "order-17", "schedule:", "schedule:x:yesterday"):
        assert schedule_of(key) is None


# -- the API against a real broker ---------------------------------------------------------------

def put(stub: broker_pb2_grpc.BrokerStub, schedule: pb.Schedule) -> pb.Schedule:
    resp: pb.Schedule = stub.PutSchedule(schedule, timeout=10)
    return resp


def every(seconds: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def big_payload() -> Struct:
    s = Struct()
    s.update({"blob": "x" * (1 << 20)})
    return s


def test_bad_schedules_are_refused_naming_the_field_and_nothing_is_stored(
        stub: broker_pb2_grpc.BrokerStub) -> None:
    def schedule(**fields: Any) -> pb.Schedule:
        base: dict[str, Any] = {"name": "s", "cron": "0 3 * * *", "job": pb.EnqueueRequest(type="t")}
        return pb.Schedule(**{**base, **fields})

    run_at = Timestamp(seconds=2_000_000_000)
    cases: dict[str, pb.Schedule] = {
        "cron: Bad minute": schedule(cron="61 * * * *"),
        "cron: Bad day-of-month": schedule(cron="* * 31 2 *"),
        "cron: '* * */20 * 1L' never fires": schedule(cron="* * */20 * 1L"),
        "cron: must have five fields": schedule(cron="* * * * * *"),
        "timezone: unknown time zone 'Mars/Olympus'": schedule(timezone="Mars/Olympus"),
        "job.type: is required": schedule(job=pb.EnqueueRequest()),
        "name: is required": schedule(name=""),
        "name: must be 1 to 128": schedule(name="bad name"),
        "every: must be from 1s": pb.Schedule(name="s", every=every(0.5),
                                              job=pb.EnqueueRequest(type="t")),
        "cron: set exactly one of cron and every": schedule(every=every(60)),
        "cron: set exactly one": pb.Schedule(name="s", job=pb.EnqueueRequest(type="t")),
        "job.payload: is larger than": schedule(job=pb.EnqueueRequest(type="t",
                                                                      payload=big_payload())),
        "job.priority: must be in": schedule(job=pb.EnqueueRequest(type="t", priority=5000)),
        "job.run_at: must be empty": schedule(job=pb.EnqueueRequest(type="t", run_at=run_at)),
        "job.idempotency_key: must be empty": schedule(
            job=pb.EnqueueRequest(type="t", idempotency_key="k")),
    }
    for expected, bad in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            put(stub, bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, expected
        assert info.value.details().startswith(expected), (expected, info.value.details())
    assert list(stub.ListSchedules(pb.ListSchedulesRequest(), timeout=10).schedules) == []


def test_get_and_delete_of_a_missing_schedule_are_not_found(stub: broker_pb2_grpc.BrokerStub) -> None:
    for call in (lambda: stub.GetSchedule(pb.GetScheduleRequest(name="nope"), timeout=10),
                 lambda: stub.DeleteSchedule(pb.DeleteScheduleRequest(name="nope"), timeout=10)):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "schedule nope not found" in info.value.details()


def test_put_get_list_and_delete_round_trip_ignoring_read_only_fields(broker: BrokerProcess) -> None:
    with Client(broker.target) as client:
        schedule = schedule_message("nightly", "report", {"kind": "daily"}, cron="0 3 * * *",
                                    timezone="Europe/Berlin", priority=5, max_retries=1)
        schedule.last_job_id = "made-up"  # read-only: ignored
        schedule.next_run_at.FromDatetime(datetime(2001, 1, 1))
        stored = client.stub.PutSchedule(schedule, timeout=10)
        assert stored.last_job_id == "" and not stored.HasField("last_run_at")
        next_run = stored.next_run_at.ToDatetime(tzinfo=UTC)
        assert next_run > datetime.now(UTC) and next_run.astimezone(BERLIN).hour == 3
        assert (stored.job.type, dict(stored.job.payload), stored.job.priority,
                stored.job.max_retries) == ("report", {"kind": "daily"}, 5, 1)
        assert stored.timezone == "Europe/Berlin" and stored.HasField("created_at")
        assert client.get_schedule("nightly") == stored

        client.put_schedule("ping", "ping", every=30)
        assert client.put_schedule("hourly", "report", cron="@hourly").timezone == "UTC"
        first = client.list_schedules(page_size=2)
        assert [s.name for s in first.schedules] == ["hourly", "nightly"]
        rest = client.list_schedules(page_size=2, page_token=first.next_page_token)
        assert [s.name for s in rest.schedules] == ["ping"] and rest.next_page_token == ""

        client.delete_schedule("nightly")
        with pytest.raises(ForgeClientError) as info:
            client.get_schedule("nightly")
        assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_replacing_a_schedule_recomputes_next_run_at_only_when_its_timing_changes(
        broker: BrokerProcess) -> None:
    with Client(broker.target) as client:
        first = client.put_schedule("report", "report", cron="0 3 * * *").next_run_at
        again = client.put_schedule("report", "report", {"new": "payload"}, cron="0 3 * * *")
        assert again.next_run_at == first  # same timing: kept, so a re-put never skips a fire
        later = client.put_schedule("report", "report", cron="0 4 * * *").next_run_at
        assert later.ToDatetime() - first.ToDatetime() in (timedelta(hours=1), timedelta(hours=-23))
        put_at = datetime.now(UTC)
        periodic = client.put_schedule("report", "report", every=3600).next_run_at
        assert abs(periodic.ToDatetime(tzinfo=UTC) - (put_at + timedelta(hours=1))) < timedelta(seconds=5)


def test_rest_routes_put_get_list_delete_and_answer_400_and_404(broker: BrokerProcess) -> None:
    gw = start_gateway(broker.target)
    try:
        with httpx.Client(base_url=gw.url, timeout=20) as http:
            bad = http.put("/v1/schedules/x", json={"cron": "61 * * * *", "job": {"type": "t"}})
            assert bad.status_code == 400 and bad.json()["message"].startswith("cron:")
            assert http.get("/v1/schedules/x").status_code == 404
            assert http.delete("/v1/schedules/x").status_code == 404

            ok = http.put("/v1/schedules/nightly:eu", json={
                "cron": "@daily", "timezone": "Europe/Berlin",
                "job": {"type": "report", "payload": {"a": 1}, "maxRetries": 2}})
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert body["name"] == "nightly:eu" and body["job"]["maxRetries"] == 2
            assert "nextRunAt" in body
            assert http.get("/v1/schedules/nightly:eu").json() == body
            assert [s["name"] for s in http.get("/v1/schedules").json()["schedules"]] == ["nightly:eu"]
            assert http.delete("/v1/schedules/nightly:eu").status_code == 200
            assert http.get("/v1/schedules").json()["schedules"] == []
            routes = http.get("/openapi.json").json()["paths"]
            assert set(routes["/v1/schedules/{name}"]) == {"get", "put", "delete"}
            assert set(routes["/v1/schedules"]) == {"get"}
    finally:
        gw.stop()


# -- firing, with real brokers -------------------------------------------------------------------

def fires(dsn: str, name: str) -> list[tuple[datetime, datetime]]:
    """(fire time, created_at) of each job schedule ``name`` enqueued, by fire time; the fire
    time is read from the job's idempotency key."""
    prefix = f"schedule:{name}:"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT idempotency_key, created_at FROM forge.jobs "
                            "WHERE starts_with(idempotency_key, %s)", (prefix,)).fetchall()
    return sorted((datetime.fromisoformat(key.removeprefix(prefix)), created)
                  for key, created in rows)


def fired(dsn: str, name: str) -> list[datetime]:
    """The fire times of the jobs schedule ``name`` enqueued, oldest first."""
    return [at for at, _ in fires(dsn, name)]


def db_now(dsn: str) -> datetime:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


def test_a_fired_job_names_its_schedule(broker: BrokerProcess, dsn: str) -> None:
    with Client(broker.target) as client:
        client.put_schedule("tick", "tick", {"n": 1}, every=1)
        assert wait_until(lambda: client.get_schedule("tick").last_job_id != "", timeout=10)
        stored = client.get_schedule("tick")
        job = client.get(stored.last_job_id)
        assert job.schedule == "tick" and dict(job.payload) == {"n": 1}
        assert job.idempotency_key == fire_key("tick", stored.last_run_at.ToDatetime(tzinfo=UTC))
        assert client.enqueue("plain").schedule == ""


def test_a_schedules_concurrency_key_is_kept_and_given_to_each_job_it_fires(
        broker: BrokerProcess) -> None:
    with Client(broker.target) as client:
        client.stub.PutSchedule(pb.Schedule(
            name="keyed", every=Duration(seconds=1),
            job=pb.EnqueueRequest(type="keyed", concurrency_key="tenant-7")), timeout=5)
        assert client.get_schedule("keyed").job.concurrency_key == "tenant-7"
        assert wait_until(lambda: client.get_schedule("keyed").last_job_id != "", timeout=10)
        assert client.get(client.get_schedule("keyed").last_job_id).concurrency_key == "tenant-7"


def test_a_paused_schedule_fires_nothing_and_resumes_from_the_next_time_after_now(
        broker: BrokerProcess, dsn: str) -> None:
    with Client(broker.target) as client:
        paused = client.put_schedule("tick", "tick", every=1, paused=True)
        assert not paused.HasField("next_run_at")
        time.sleep(2.5)
        assert fired(dsn, "tick") == []
        resumed_at = db_now(dsn)
        resumed = client.put_schedule("tick", "tick", every=1)
        assert resumed.next_run_at.ToDatetime(tzinfo=UTC) > resumed_at
        assert wait_until(lambda: len(fired(dsn, "tick")) >= 2, timeout=10)
        assert all(at > resumed_at for at in fired(dsn, "tick"))


@pytest.mark.slow
def test_two_brokers_fire_an_every_second_schedule_exactly_once_per_second(
        dsn: str, broker: BrokerProcess) -> None:
    second = start_broker(dsn)
    try:
        with Client(broker.target) as client:
            client.put_schedule("tick", "tick", every=1)
        time.sleep(10)
        with Client(second.target) as client:
            client.put_schedule("tick", "tick", every=1, paused=True)
    finally:
        second.stop()
    times = fired(dsn, "tick")
    assert 9 <= len(times) <= 11, times
    late = max(made - at for at, made in fires(dsn, "tick"))
    assert late < timedelta(seconds=1), f"a job was enqueued {late} after its fire time"
    # One job per fire time, and no fire time skipped: each a second after the one before.
    assert {b - a for a, b in itertools.pairwise(times)} == {timedelta(seconds=1)}


@pytest.mark.slow
def test_a_broker_stopped_across_three_fire_times_catches_up_with_one_job(
        dsn: str, broker: BrokerProcess) -> None:
    with Client(broker.target) as client:
        client.put_schedule("tick", "tick", every=1)
        assert wait_until(lambda: len(fired(dsn, "tick")) >= 2, timeout=10)
    broker.stop()
    last_before = fired(dsn, "tick")[-1]
    time.sleep(4)
    broker.start()
    assert wait_until(lambda: len([t for t in fired(dsn, "tick") if t > last_before]) >= 3,
                      timeout=10)
    after = [(at, made) for at, made in fires(dsn, "tick") if at > last_before]
    (caught_up, caught_up_at), (following, _) = after[0], after[1]
    # Three or more fire times passed with no broker up...
    assert caught_up_at - last_before > timedelta(seconds=3.5)
    # ...and made one job, for the first of them; the next fire is the first time after that.
    assert caught_up == last_before + timedelta(seconds=1)
    assert caught_up_at < following <= caught_up_at + timedelta(seconds=1)


@pytest.mark.slow
def test_schedules_declared_by_a_handler_module_are_put_when_workerd_starts(
        broker: BrokerProcess, dsn: str) -> None:
    worker = WorkerdProcess(broker.target, "scheduling-worker", effects_dsn=dsn,
                            handlers="tests.handlers.scheduled")
    try:
        broker.stop()  # workerd starts first, and keeps trying
        worker.start(wait=False)
        worker.wait_log("schedule misdeclared not put yet (UNAVAILABLE)")
        broker.start()
        worker.wait_log("schedule misdeclared not put: INVALID_ARGUMENT: cron: Bad minute")
        worker.wait_log("schedule ping-every-second put")
        worker.wait_log("schedule nightly_report put")
        with Client(broker.target) as client:
            nightly = client.get_schedule("nightly_report")
            assert (nightly.cron, nightly.timezone, nightly.job.type, dict(nightly.job.payload),
                    nightly.job.max_retries) == ("0 3 * * *", "Europe/Berlin", "nightly_report",
                                                 {"kind": "nightly"}, 1)
            # The every-second one fires, and workerd runs what it enqueues.
            assert wait_until(lambda: client.list(status="COMPLETED",
                                                  type="heartbeat_ping").jobs != [], timeout=10)
            # An operator's pause outlives a workerd restart.
            client.put_schedule("nightly_report", "nightly_report", cron="0 3 * * *",
                                paused=True)
            worker.stop()
            worker.start()
            worker.wait_log("schedule nightly_report put: next run never: paused")
            assert client.get_schedule("nightly_report").paused
    finally:
        worker.stop()
