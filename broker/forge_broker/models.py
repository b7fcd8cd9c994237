"""Plain typed rows and values passed between the store and the rest of the broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple


class JobStatus(StrEnum):
    """A job's status: the values ``forge.jobs.status`` holds and Job.Status names."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    DEAD = "DEAD"
    CANCELLED = "CANCELLED"


@dataclass(slots=True)
class JobRow:
    """One row of ``forge.jobs``, exactly as stored. Not frozen: a frozen dataclass costs ten
    times as much to build, and every enqueued job is one of these."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    priority: int
    max_retries: int
    attempts: int
    status: JobStatus
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    last_error: str | None
    result: dict[str, Any] | None
    worker_id: str | None
    lease_token: uuid.UUID | None
    lease_expires_at: datetime | None
    idempotency_key: str | None
    concurrency_key: str | None = None
    leased_at: datetime | None = None
    errors: list[dict[str, Any]] | None = None
    """The attempt history, oldest first: {"attempt", "at", "error", "worker_id",
    "started_at"} per failed attempt, the times as JSON text (forge.attempt_error)."""
    finished_at: datetime | None = None
    trace_context: dict[str, str] | None = None


@dataclass(slots=True)
class LeasedRow:
    """A job just leased, as much of it as a lean lease stream sends (JOB_VIEW_LEAN):
    the payload as JSON text, and how long it waited since its run_at, in seconds."""

    id: str
    lease_token: str
    type: str
    payload_json: str
    priority: int
    attempts: int
    max_retries: int
    waited: float
    trace_context: dict[str, str] | None = None


class NewJob(NamedTuple):
    """A validated job to enqueue. ``payload_json`` is already serialized and size-checked;
    ``payload`` is the same object as a dict, when the caller has it (else it is parsed)."""

    type: str
    payload_json: str
    priority: int = 0
    max_retries: int = 3
    run_at: datetime | None = None
    idempotency_key: str | None = None
    payload: dict[str, Any] | None = None
    concurrency_key: str | None = None
    trace_context: dict[str, str] | None = None
    """The W3C carrier of the span that enqueued it, while tracing is on."""
    hand_off: HandOff | None = None
    """A waiting lease stream the INSERT leases the job to (``Dispatcher.reserve``)."""


class HandOff(NamedTuple):
    """A lease written by the INSERT that creates a job, for a stream of this broker that waits
    idle for its type: the job skips PENDING, and the claim's round trip and commit with it."""

    stream_id: uuid.UUID
    worker_id: str
    lease_token: str
    lease_seconds: int


class Lease(NamedTuple):
    """A job id and the token of the lease on it, as canonical UUID text (lowercase, with
    hyphens: ``forge_broker.ids.canonical``). Tuples of strings: built for every ack and nack, and
    the ids of jobs in flight are compared and hashed as text, never parsed into UUIDs."""

    job_id: str
    token: str


class AckItem(NamedTuple):
    """A validated ack: the lease and the result as JSON text, if any."""

    lease: Lease
    result_json: str | None = None


class NackItem(NamedTuple):
    """A validated nack: ``retry_after`` (seconds) overrides the backoff; ``permanent`` means DEAD."""

    lease: Lease
    error: str
    retry_after: float | None = None
    permanent: bool = False


@dataclass(frozen=True)
class NackOutcome:
    status: JobStatus
    run_at: datetime


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing or a bulk call covers: those matching every field that is not None
    (see ListJobsRequest and JobFilter in the proto). Each field is one filter_* fragment of
    queries.sql, named after it."""

    type: str | None = None
    ids: list[uuid.UUID] | None = None
    older_than: float | None = None
    """Seconds a job has gone unchanged (PurgeDeadJobs only)."""
    status: JobStatus | None = None
    type_prefix: str | None = None
    concurrency_key: str | None = None
    idempotency_key: str | None = None
    worker_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    query: str | None = None
    """A job id, idempotency key or concurrency key, matched exactly."""
    run_after: datetime | None = None
    """Only jobs whose run_at is later (with status PENDING and now: the scheduled ones)."""


class Order(StrEnum):
    """A listing's order (ListJobsRequest.Order); each is an order_* and an after_* fragment of
    queries.sql, and the columns of its key."""

    NEWEST = "newest"
    OLDEST = "oldest"
    RUN_AT = "run_at"
    PRIORITY = "priority"


class PageKey(NamedTuple):
    """The order key of a page's last row, where the next page starts (the page token's)."""

    id: uuid.UUID
    run_at: datetime | None = None
    priority: int | None = None


@dataclass(frozen=True)
class QueueSettings:
    """One type's flow control (a row of ``forge.queues``); 0 means unlimited."""

    type: str
    paused: bool = False
    concurrency_limit: int = 0
    key_concurrency_limit: int = 0
    rate_limit: int = 0
    rate_period: float = 0.0
    """Seconds; 0 exactly when rate_limit is 0."""

    @property
    def limited(self) -> bool:
        return bool(self.concurrency_limit or self.key_concurrency_limit or self.rate_limit)


@dataclass(frozen=True)
class TypeCounts:
    type: str
    pending: int = 0
    scheduled: int = 0
    processing: int = 0
    completed: int = 0
    dead: int = 0
    cancelled: int = 0
    oldest_pending_age_seconds: float = 0.0
    queue: QueueSettings | None = None
    """The type's settings, when it has any (else unlimited, not paused)."""


@dataclass(frozen=True)
class WorkerRow:
    stream_id: uuid.UUID
    worker_id: str
    broker_id: str
    types: list[str]
    max_in_flight: int
    in_flight: int
    connected_at: datetime
    last_seen: datetime


@dataclass(frozen=True)
class WaitPoint:
    """One minute's queue wait (WaitPoint in the proto)."""

    minute: datetime
    p50_ms: float
    p99_ms: float
    count: int


@dataclass(frozen=True)
class Throughput:
    """What GetThroughput reports: per type, (minute, completed, failed) for each minute of the
    window, oldest first; and each minute's queue wait."""

    types: list[tuple[str, list[tuple[datetime, int, int]]]]
    queue_wait: list[WaitPoint]


@dataclass(frozen=True)
class Snapshot:
    """What Stats reports; see QueueStats in the proto for each field."""

    computed_at: datetime
    types: list[TypeCounts]
    throughput: list[tuple[datetime, int, int]]
    wait_p50_ms: float
    wait_p90_ms: float
    wait_p99_ms: float
    wait_count: int
    wait_window_seconds: int
    workers: list[WorkerRow] = field(default_factory=list)

    def total(self, status: str) -> int:
        return sum(int(getattr(t, status)) for t in self.types)

    @property
    def oldest_pending_age_seconds(self) -> float:
        return max((t.oldest_pending_age_seconds for t in self.types), default=0.0)


@dataclass(frozen=True)
class NewSchedule:
    """A validated PutSchedule: exactly one of ``cron`` and ``every``; ``timezone`` an IANA
    name ("UTC" by default); the job template as ``NewJob`` holds it (no run_at, no key)."""

    name: str
    cron: str | None
    every: timedelta | None
    timezone: str
    job: NewJob
    paused: bool


@dataclass(frozen=True)
class ScheduleRow:
    """One row of ``forge.schedules``, exactly as stored."""

    name: str
    cron: str | None
    every: timedelta | None
    timezone: str
    type: str
    payload: dict[str, Any]
    priority: int
    max_retries: int
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    concurrency_key: str | None = None


@dataclass(frozen=True)
class DueSchedule:
    """A schedule whose fire time has come, as the scheduler locked it; ``now`` is the
    database's time of the round."""

    name: str
    cron: str | None
    every: timedelta | None
    timezone: str
    next_run_at: datetime
    now: datetime


class Fire(NamedTuple):
    """One fire of a due schedule: the job's idempotency key, and the schedule's next fire time."""

    name: str
    key: str
    next_run_at: datetime


class FiredRound(NamedTuple):
    """What one scheduler round did: schedules fired, jobs created (fewer when a key was taken),
    and schedules paused because their next fire time could not be computed, with why."""

    fired: int
    created: int
    paused: list[tuple[str, str]]
