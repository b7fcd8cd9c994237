"""Stored values to proto messages (the other direction is forge_broker.validate)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from forge.v1 import broker_pb2 as pb
from forge_broker.models import (
    JobRow,
    JobStatus,
    LeasedRow,
    NewJob,
    QueueSettings,
    ScheduleRow,
    Snapshot,
    Throughput,
    TypeCounts,
)
from forge_broker.schedules import schedule_of
from forge_common import structs

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUS = {status: pb.Job.Status.Value(status) for status in JobStatus}


_PENDING = pb.Job(status=pb.Job.PENDING)

_seen: dict[datetime, tuple[int, int]] = {}


def set_ts(field: Timestamp, value: datetime) -> None:
    """Fill ``field`` from an aware datetime: integer arithmetic, a third of FromDatetime's cost
    (this runs four times for every leased job). Conversions are remembered, because the rows
    of a batch share their times: one claim's updated_at and lease_expires_at, one INSERT's
    created_at and, usually, run_at."""
    known = _seen.get(value)
    if known is None:
        d = value - _EPOCH
        known = (d.days * 86400 + d.seconds, d.microseconds * 1000)
        if len(_seen) >= 1024:
            _seen.clear()
        _seen[value] = known
    field.seconds, field.nanos = known


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    set_ts(out, value)
    return out


def job(row: JobRow) -> pb.Job:
    msg = pb.Job()
    fill_job(msg, row)
    return msg


def fill_job(msg: pb.Job, row: JobRow) -> None:
    """Write ``row`` into ``msg`` in place: building sub-messages and passing them to a
    constructor copies them, and this runs for every job leased."""
    msg.id = str(row.id)
    msg.type = row.type
    msg.priority = row.priority
    msg.max_retries = row.max_retries
    msg.attempts = row.attempts
    msg.status = _STATUS[row.status]
    if row.last_error:
        msg.last_error = row.last_error
    if row.worker_id:
        msg.worker_id = row.worker_id
    if row.idempotency_key:
        msg.idempotency_key = row.idempotency_key
        msg.schedule = schedule_of(row.idempotency_key) or ""
    if row.concurrency_key:
        msg.concurrency_key = row.concurrency_key
    if row.trace_context:
        msg.trace_context.update(row.trace_context)
    _set_struct(msg.payload, row.payload)
    set_ts(msg.run_at, row.run_at)
    set_ts(msg.created_at, row.created_at)
    set_ts(msg.updated_at, row.updated_at)
    if row.result is not None:
        _set_struct(msg.result, row.result)
    if row.lease_expires_at is not None:
        set_ts(msg.lease_expires_at, row.lease_expires_at)
    if row.leased_at is not None:
        set_ts(msg.leased_at, row.leased_at)
    finished = _attempt_end(row)
    if finished is not None:
        set_ts(msg.finished_at, finished)
    for entry in row.errors or ():
        _add_attempt_error(msg.errors.add(), entry)


def _attempt_end(row: JobRow) -> datetime | None:
    """When the job's last attempt ended: none while one runs; an acked one at the ack, the
    COMPLETED job's last change; any other in finished_at (see migration 011)."""
    if row.status is JobStatus.PROCESSING:
        return None
    return row.updated_at if row.status is JobStatus.COMPLETED else row.finished_at


def _add_attempt_error(out: pb.AttemptError, entry: dict[str, Any]) -> None:
    """One entry of the attempt history (see forge.attempt_error) into ``out``."""
    out.attempt = entry["attempt"]
    out.error = entry["error"] or ""
    out.worker_id = entry["worker_id"] or ""
    set_ts(out.at, datetime.fromisoformat(entry["at"]))
    if entry["started_at"] is not None:
        set_ts(out.started_at, datetime.fromisoformat(entry["started_at"]))


def _set_struct(field: Struct, value: dict[str, Any]) -> None:
    """Fill ``field`` from ``value``; a value stored deeper than the limit (before it existed)
    is sent ``structs.clipped``, so that the answer holding it still decodes."""
    field.update(structs.clipped(value) if structs.deeper_than(value) else value)


def draft_enqueued(out: pb.EnqueueBatchResponse, sent: Sequence[pb.EnqueueRequest],
                   jobs: Sequence[NewJob]) -> None:
    """One Job per request entry into ``out``, with what the request alone decides: the broker
    builds this while the INSERT runs, and ``finish_enqueued`` adds the rest. Each starts as a
    copy of one template (a copy in C); a payload is copied as the message that was sent, or
    built from the dict that JSON text (payload_json, an entry of payloads_json) was parsed
    into.
    Called again with the next part of a batch, it adds that part's jobs after the others."""
    start = len(out.jobs)
    out.jobs.extend([_PENDING] * len(jobs))
    for msg, req, job in zip(out.jobs[start:], sent, jobs, strict=True):
        msg.type = job.type
        msg.priority = job.priority
        msg.max_retries = job.max_retries
        if job.idempotency_key:
            msg.idempotency_key = job.idempotency_key
            msg.schedule = schedule_of(job.idempotency_key) or ""
        if job.concurrency_key:
            msg.concurrency_key = job.concurrency_key
        if req.HasField("payload"):
            msg.payload.CopyFrom(req.payload)
        elif job.payload:
            msg.payload.update(job.payload)


def finish_enqueued(out: pb.EnqueueBatchResponse, results: Sequence[tuple[JobRow, bool]]) -> None:
    """Complete ``draft_enqueued``'s answer from the INSERT's results. New jobs share the
    statement's time; an entry that found an existing job (its idempotency key) is that job."""
    now = next((row.created_at for row, created in results if created), None)
    times = pb.Job()
    if now is not None:
        set_ts(times.run_at, now)
        set_ts(times.created_at, now)
        set_ts(times.updated_at, now)
    for msg, (row, created) in zip(out.jobs, results, strict=True):
        if not created or row.created_at != now:
            msg.Clear()
            fill_job(msg, row)
            continue
        msg.id = str(row.id)
        msg.MergeFrom(times)
        if row.run_at != now:
            set_ts(msg.run_at, row.run_at)


UNDELIVERABLE_DEPTH = (
    f"payload nests objects and arrays more than {structs.MAX_DEPTH} levels deep (stored before "
    "that limit): a full-view lease (JOB_VIEW_FULL) cannot carry it, and a handler must not get "
    "it cut; a JOB_VIEW_LEAN worker can take it after RetryDeadJob")

Refused = list[tuple[JobRow, str]]
"""Leased rows a LeaseResponse cannot carry, each with the reason."""


def lease_response(rows: Sequence[JobRow] | Sequence[LeasedRow]) -> tuple[pb.LeaseResponse, Refused]:
    """Leased rows as one LeaseResponse, each job with the token of its lease; LeasedRows in
    the lean view (JOB_VIEW_LEAN). Full-view rows that it cannot carry are left out and
    returned with the reason, so that they fail alone instead of with their batch."""
    resp = pb.LeaseResponse()
    refused: Refused = []
    add = resp.jobs.add
    processing = pb.Job.PROCESSING
    for row in rows:
        if isinstance(row, LeasedRow):
            leased = add(lease_token=row.lease_token, payload_json=row.payload_json)
            job = leased.job
            job.id = row.id
            job.type = row.type
            job.priority = row.priority
            job.attempts = row.attempts
            job.max_retries = row.max_retries
            job.status = processing
            if row.trace_context is not None:
                job.trace_context.update(row.trace_context)
        elif structs.deeper_than(row.payload):
            refused.append((row, UNDELIVERABLE_DEPTH))
        else:
            leased = add(lease_token=str(row.lease_token))
            try:
                fill_job(leased.job, row)
            except Exception as exc:  # whatever a stored row holds, it fails alone
                del resp.jobs[-1]
                refused.append((row, f"could not be encoded for a lease stream: {exc!r}"))
    return resp, refused


def stats(snap: Snapshot) -> pb.QueueStats:
    return pb.QueueStats(
        computed_at=ts(snap.computed_at),
        pending=snap.total("pending"),
        scheduled=snap.total("scheduled"),
        processing=snap.total("processing"),
        completed=snap.total("completed"),
        dead=snap.total("dead"),
        cancelled=snap.total("cancelled"),
        oldest_pending_age_seconds=snap.oldest_pending_age_seconds,
        types=[type_stats(t) for t in snap.types],
        throughput=_points(snap.throughput),
        queue_wait=pb.QueueWait(p50_ms=snap.wait_p50_ms, p90_ms=snap.wait_p90_ms,
                                p99_ms=snap.wait_p99_ms, count=snap.wait_count,
                                window_seconds=snap.wait_window_seconds),
        workers=[pb.WorkerInfo(worker_id=w.worker_id, types=w.types, in_flight=w.in_flight,
                               max_in_flight=w.max_in_flight, connected_at=ts(w.connected_at),
                               last_seen=ts(w.last_seen), broker_id=w.broker_id)
                 for w in snap.workers],
    )


def _points(series: list[tuple[datetime, int, int]]) -> list[pb.ThroughputPoint]:
    return [pb.ThroughputPoint(minute=ts(m), completed=c, failed=f) for m, c, f in series]


def throughput(t: Throughput) -> pb.ThroughputResponse:
    return pb.ThroughputResponse(
        types=[pb.TypeThroughput(type=name, points=_points(series)) for name, series in t.types],
        queue_wait=[pb.WaitPoint(minute=ts(w.minute), p50_ms=w.p50_ms, p99_ms=w.p99_ms,
                                 count=w.count) for w in t.queue_wait])


def type_stats(t: TypeCounts) -> pb.TypeStats:
    settings = t.queue or QueueSettings(t.type)
    return pb.TypeStats(type=t.type, pending=t.pending, scheduled=t.scheduled,
                        processing=t.processing, completed=t.completed, dead=t.dead,
                        cancelled=t.cancelled,
                        oldest_pending_age_seconds=t.oldest_pending_age_seconds,
                        paused=settings.paused, concurrency_limit=settings.concurrency_limit,
                        key_concurrency_limit=settings.key_concurrency_limit,
                        rate_limit=rate_limit(settings))


def rate_limit(settings: QueueSettings) -> pb.RateLimit:
    out = pb.RateLimit(limit=settings.rate_limit)
    if settings.rate_limit:
        out.period.FromNanoseconds(round(settings.rate_period * 1e9))
    return out


def queue(counts: TypeCounts) -> pb.Queue:
    """A type's settings and counts as a Queue (every setting present, so JSON shows it)."""
    settings = counts.queue or QueueSettings(counts.type)
    return pb.Queue(type=counts.type, paused=settings.paused,
                    concurrency_limit=settings.concurrency_limit,
                    key_concurrency_limit=settings.key_concurrency_limit,
                    rate_limit=rate_limit(settings), stats=type_stats(counts))


def schedule(row: ScheduleRow) -> pb.Schedule:
    msg = pb.Schedule(name=row.name, cron=row.cron or "", timezone=row.timezone,
                      paused=row.paused, last_job_id=str(row.last_job_id or ""))
    if row.every is not None:
        msg.every.FromTimedelta(row.every)
    job = msg.job
    job.type = row.type
    _set_struct(job.payload, row.payload)
    job.priority = row.priority
    job.max_retries = row.max_retries
    if row.concurrency_key:
        job.concurrency_key = row.concurrency_key
    for field, value in (("next_run_at", row.next_run_at), ("last_run_at", row.last_run_at),
                         ("created_at", row.created_at), ("updated_at", row.updated_at)):
        if value is not None:
            set_ts(getattr(msg, field), value)
    return msg
