"""validate.new_job builds NewJob positionally (it runs a thousand times per batch): what it
builds must equal NewJob made by keyword, field for field, so a field added to NewJob, or two
swapped, fails here rather than somewhere a job is stored."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from forge.v1 import broker_pb2 as pb
from forge_broker.models import NewJob
from forge_broker.validate import new_job


def test_a_plain_job_is_the_newjob_its_keywords_make() -> None:
    assert new_job(pb.EnqueueRequest(type="mail.send")) == NewJob(
        type="mail.send", payload_json="{}", payload={})
    assert new_job(pb.EnqueueRequest(type="mail.send", payload_json='{"to": "a@b.c"}')) == NewJob(
        type="mail.send", payload_json='{"to":"a@b.c"}', payload={"to": "a@b.c"})


def test_every_option_lands_in_its_own_field() -> None:
    run_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(run_at)
    req = pb.EnqueueRequest(type="mail.send", payload_json='{"n":1}', priority=7, max_retries=9,
                            run_at=ts, idempotency_key="key-1", concurrency_key="tenant-2")
    assert new_job(req) == NewJob(
        type="mail.send", payload_json='{"n":1}', priority=7, max_retries=9, run_at=run_at,
        idempotency_key="key-1", payload={"n": 1}, concurrency_key="tenant-2",
        trace_context=None, hand_off=None)
    assert len(new_job(req)) == len(NewJob._fields)
