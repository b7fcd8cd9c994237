"""Edge validation: proto requests become typed values, or InvalidArgument naming the field."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import orjson
from google.protobuf.struct_pb2 import Struct

from forge.v1 import broker_pb2 as pb
from forge_broker import schedules
from forge_broker.errors import InvalidArgument, echo
from forge_broker.ids import all_canonical, canonical, parse_id
from forge_broker.models import (
    AckItem,
    JobFilter,
    JobStatus,
    Lease,
    NackItem,
    NewJob,
    NewSchedule,
    Order,
    QueueSettings,
)
from forge_common import structs
from forge_common.names import TYPE_NAME, TYPE_NAME_RULE

Req = TypeVar("Req")
Item = TypeVar("Item")

MAX_PAYLOAD_BYTES = 1 << 20
MAX_BATCH = 10_000
MAX_ERROR_CHARS = 4 * 1024
"""Longest error text kept (a nack's, a cancel's reason), as last_error and in each attempt's
entry of Job.errors, which holds one per failed attempt: longer text is cut, and marked."""
MAX_KEY_CHARS = 255
MAX_WORKER_ID_CHARS = 128
PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 50, 500
MAX_EVERY = timedelta(days=366)
MAX_OLDER_THAN = 100 * 366 * 86400.0


@functools.lru_cache(maxsize=4096)
def _is_type_name(value: str) -> bool:
    """TYPE_NAME matches ``value``: remembered, since a batch names one type a thousand times
    and the match cost a tenth of its validation."""
    return TYPE_NAME.fullmatch(value) is not None


def check_type(field: str, value: str) -> str:
    if not _is_type_name(value):
        problem = "is required" if value == "" else TYPE_NAME_RULE
        raise InvalidArgument(field, problem)
    return value


# A \u0000 escape in JSON text, not one whose backslash is itself escaped (a literal "\\u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def check_text(field: str, value: str) -> str:
    """PostgreSQL text cannot hold NUL: refuse it at the edge rather than fail in the database."""
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL (\\u0000) characters")
    return value


def clean_text(value: str) -> str:
    """Free-form text (errors, reasons) keeps its content; NULs become U+FFFD."""
    return value.replace("\x00", "\ufffd")


def struct_json(field: str, value: Struct) -> str:
    """``value`` as compact JSON text, at most 1 MiB and ``structs.MAX_DEPTH`` levels deep, with
    no NUL characters."""
    return struct_payload(field, value)[1]


def struct_payload(field: str, value: Struct) -> tuple[dict[str, Any], str]:
    """``value`` as a dict and as compact JSON text, checked as ``struct_json`` says."""
    try:
        obj = structs.to_python(value)
    except ValueError:
        raise InvalidArgument(field, "numbers must be finite") from None
    # Deeper would be stored, then fail to decode wherever a Job carries it (a lease, a listing).
    if structs.deeper_than(obj):
        raise InvalidArgument(field, _TOO_DEEP)
    # orjson: a tenth of the json module's cost per payload, and the same compact UTF-8 text.
    raw = orjson.dumps(obj)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(field, f"is larger than {MAX_PAYLOAD_BYTES} bytes as JSON")
    text = raw.decode()
    _no_nul_escape(field, text)
    return obj, text


def _no_nul_escape(field: str, text: str) -> None:
    """JSON text writes NUL (in keys and values alike) as the escape \\u0000, which jsonb
    cannot hold."""
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InvalidArgument(field, "must not contain NUL (\\u0000) characters")


def json_payload(field: str, text: str) -> tuple[dict[str, Any], str]:
    """``text`` (a client's JSON text) as a dict and as the text to store, checked as
    ``struct_json`` says; orjson is strict JSON: no NaN or Infinity, no trailing data, no lone
    surrogate, no raw control character, no number that is infinite as a double.

    The text stored is the dict written again by orjson, not the client's: valid JSON numbers
    exist that PostgreSQL's numeric cannot hold (1e-20000; more than 16,383 digits after the
    point), and spliced into ``_jobs_json`` they would fail the whole INSERT with a database
    error instead of a refusal naming the field. Written again, every number is one a double
    or a 64-bit integer holds, as a Struct payload's are; it costs a fraction of parsing."""
    # A character is at most 4 bytes in UTF-8: only a long text needs encoding to be measured.
    if len(text) * 4 > MAX_PAYLOAD_BYTES and len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(field, f"is larger than {MAX_PAYLOAD_BYTES} bytes as UTF-8")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(field, f"is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise InvalidArgument(field, f"must be a JSON object, not {_JSON_KINDS[type(obj)]}")
    # Every level opens with a bracket: with few of them (in strings too) it cannot be too deep.
    if (len(text) > structs.MAX_DEPTH and text.count("{") + text.count("[") > structs.MAX_DEPTH
            and structs.deeper_than(obj)):
        raise InvalidArgument(field, _TOO_DEEP)
    _no_nul_escape(field, text)
    return obj, orjson.dumps(obj).decode()


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}
_TOO_DEEP = (f"nests objects and arrays more than {structs.MAX_DEPTH} levels deep (the object "
             "itself is level 1)")


def timestamp(field: str, msg: Any) -> datetime:
    try:
        dt: datetime = msg.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, f"not a valid timestamp ({exc})") from None
    return dt


def new_job(req: pb.EnqueueRequest) -> NewJob:
    """Validate one EnqueueRequest.

    A batch runs this a thousand times, ahead of its first COPY and again while each part is
    inserted, so the common job (a type and payload_json) takes no call it can skip: empty keys
    are not checked, and the tuple is made without NewJob's keyword constructor."""
    type_ = req.type
    if not _is_type_name(type_):
        check_type("type", type_)
    priority = req.priority if req.HasField("priority") else 0
    if not -1000 <= priority <= 1000:
        raise InvalidArgument("priority", f"must be in [-1000, 1000], got {priority}")
    max_retries = req.max_retries if req.HasField("max_retries") else 3
    if not 0 <= max_retries <= 100:
        raise InvalidArgument("max_retries", f"must be in [0, 100], got {max_retries}")
    text = req.payload_json
    if text:
        if req.HasField("payload"):
            raise InvalidArgument("payload_json", "set payload or payload_json, not both")
        payload, text = json_payload("payload_json", text)
    elif req.HasField("payload"):
        payload, text = struct_payload("payload", req.payload)
    else:
        payload, text = {}, "{}"
    run_at = timestamp("run_at", req.run_at) if req.HasField("run_at") else None
    key, concurrency_key = req.idempotency_key, req.concurrency_key
    return _NEW_JOB(NewJob, (type_, text, priority, max_retries, run_at,
                             _key("idempotency_key", key) if key else None, payload,
                             _key("concurrency_key", concurrency_key) if concurrency_key else None,
                             None, None))


_NEW_JOB = tuple.__new__
"""NewJob from all its fields in order, as its ``_make`` does, without the keyword handling."""


def _key(field: str, value: str) -> str | None:
    """An optional key of at most MAX_KEY_CHARS characters; "" is none."""
    check_text(field, value)
    if len(value) > MAX_KEY_CHARS:
        raise InvalidArgument(field, f"must be at most {MAX_KEY_CHARS} characters")
    return value or None


def new_batch(req: pb.EnqueueBatchRequest) -> tuple[Sequence[pb.EnqueueRequest], list[NewJob]]:
    """Validate every job of a batch, with the requests they came from (as ``new_job_parts``
    gives them); a refusal names the entry (``jobs[3].priority``, ``payloads_json[3]``)."""
    return next(new_job_parts(req, MAX_BATCH, MAX_BATCH))


def batch_len(req: pb.EnqueueBatchRequest) -> int:
    """How many jobs an EnqueueBatch request holds, in either form (unchecked)."""
    return len(req.jobs) or len(req.payloads_json)


def new_job_parts(req: pb.EnqueueBatchRequest, first: int, size: int
                  ) -> Iterator[tuple[Sequence[pb.EnqueueRequest], list[NewJob]]]:
    """A batch's jobs in parts, ``first`` jobs then ``size`` at a time, each validated only
    when it is taken, with the requests it came from (for a batch in columns, the template
    once per job). The batch's form and size, and its template, are checked before the
    first part."""
    if _in_columns(req):
        template = _template(req.template)
        texts = req.payloads_json
        _count("payloads_json", "payloads", len(texts))
        for start, end in _part_bounds(len(texts), first, size):
            yield [req.template] * (end - start), _from_template(template, texts[start:end], start)
    else:
        _count("jobs", "jobs", len(req.jobs))
        for start, end in _part_bounds(len(req.jobs), first, size):
            sent = req.jobs[start:end]
            yield sent, _items("jobs", sent, new_job, start)


def _part_bounds(n: int, first: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each part of ``n`` items: ``first`` items, then ``size`` at a time."""
    starts = [0, *range(first, n, size)]
    return zip(starts, [*starts[1:], n], strict=True)


def _in_columns(req: pb.EnqueueBatchRequest) -> bool:
    """Whether the batch is in columns (template and payloads_json); a batch in both forms is
    refused."""
    columns = len(req.payloads_json) > 0 or req.HasField("template")
    if columns and len(req.jobs) > 0:
        raise InvalidArgument("payloads_json", "set jobs, or template and payloads_json, not both")
    return columns


def _template(req: pb.EnqueueRequest) -> NewJob:
    """A batch's template, validated as an Enqueue; it carries no payload and no key."""
    payload = "payload" if req.HasField("payload") else "payload_json" if req.payload_json else ""
    if payload:
        raise InvalidArgument(f"template.{payload}",
                              "must be empty: each entry of payloads_json is one job's payload")
    if req.idempotency_key:
        raise InvalidArgument("template.idempotency_key", "must be empty: a key names one job")
    try:
        return new_job(req)
    except InvalidArgument as exc:
        raise InvalidArgument(f"template.{exc.field}", exc.problem) from None


def _from_template(template: NewJob, texts: Sequence[str], start: int) -> list[NewJob]:
    """One job per payload text, each ``template`` with that payload; a refusal names the
    entry, counting from ``start``. The loop a batch in columns spends its validation in: one
    JSON check per job, and the tuple made by position (see ``new_job``)."""
    type_, _, priority, max_retries, run_at, _, _, concurrency_key, _, _ = template
    out: list[NewJob] = []
    append = out.append
    for i, text in enumerate(texts, start):
        if text:
            try:
                payload, text = json_payload("payloads_json", text)
            except InvalidArgument as exc:
                raise InvalidArgument(f"payloads_json[{i}]", exc.problem) from None
        else:
            payload, text = {}, "{}"
        append(_NEW_JOB(NewJob, (type_, text, priority, max_retries, run_at, None, payload,
                                 concurrency_key, None, None)))
    return out


def ids_only(req: pb.EnqueueBatchRequest) -> bool:
    """An EnqueueBatch request's answer: True for ANSWER_IDS."""
    if req.answer not in (pb.EnqueueBatchRequest.ANSWER_JOBS, pb.EnqueueBatchRequest.ANSWER_IDS):
        raise InvalidArgument("answer", f"must be ANSWER_JOBS (0) or ANSWER_IDS (1), got {req.answer}")
    return req.answer == pb.EnqueueBatchRequest.ANSWER_IDS


def _count(field: str, noun: str, n: int) -> None:
    if not 1 <= n <= MAX_BATCH:
        raise InvalidArgument(field, f"must hold 1 to {MAX_BATCH} {noun}, got {n}")


def job_id(field: str, value: str) -> uuid.UUID:
    parsed = parse_id(value)
    if parsed is None:
        raise InvalidArgument(field, "is required" if not value else f"not a valid job id: {echo(value)}")
    return parsed


def lease(ref: pb.LeaseRef | pb.AckRequest | pb.NackRequest) -> Lease:
    """The job id and lease token of an ack, a nack or a heartbeat's lease."""
    jid = canonical(ref.job_id)
    if jid is None:
        raise InvalidArgument("job_id", "is required" if not ref.job_id
                              else f"not a valid job id: {echo(ref.job_id)}")
    tok = canonical(ref.lease_token)
    if tok is None:
        raise InvalidArgument("lease_token", "is required" if not ref.lease_token else "malformed")
    return Lease(jid, tok)


def leases(req: pb.HeartbeatRequest) -> list[Lease]:
    if not 1 <= len(req.leases) <= MAX_BATCH:
        raise InvalidArgument("leases", f"must hold 1 to {MAX_BATCH} leases")
    return _items("leases", req.leases, lease)


MAX_IN_FLIGHT_DEFAULT = 8


def max_in_flight(value: int, limit: int) -> int:
    """A Lease request's max_in_flight (0: the default, 8) within the broker's limit
    (FORGE_MAX_IN_FLIGHT)."""
    if value == 0:
        return min(MAX_IN_FLIGHT_DEFAULT, limit)
    if not 1 <= value <= limit:
        raise InvalidArgument("max_in_flight", f"must be in [1, {limit}] (FORGE_MAX_IN_FLIGHT), "
                                               f"got {value}")
    return value


def lease_seconds(value: int) -> int:
    if value == 0:
        return 30
    if not 1 <= value <= 3600:
        raise InvalidArgument("lease_seconds", f"must be in [1, 3600], got {value}")
    return value


def lean_view(value: int) -> bool:
    """A Lease request's job_view: True for JOB_VIEW_LEAN."""
    if value not in (pb.LeaseRequest.JOB_VIEW_FULL, pb.LeaseRequest.JOB_VIEW_LEAN):
        raise InvalidArgument("job_view", f"must be JOB_VIEW_FULL (0) or JOB_VIEW_LEAN (1), got {value}")
    return value == pb.LeaseRequest.JOB_VIEW_LEAN


def error_text(value: str) -> str:
    value = clean_text(value)
    return value if len(value) <= MAX_ERROR_CHARS else value[: MAX_ERROR_CHARS - 15] + "... (truncated)"


def cancel_reason(value: str) -> str | None:
    """A cancel's reason as the jobs' last_error; None (keep theirs) when none was given."""
    return error_text(f"cancelled: {value}") if value else None


def retry_after(req: pb.NackRequest) -> float | None:
    if not req.HasField("retry_after"):
        return None
    seconds = req.retry_after.seconds + req.retry_after.nanos / 1e9
    if not (0 <= seconds <= 366 * 86400) or math.isnan(seconds):
        raise InvalidArgument("retry_after", "must be between 0 and 366 days")
    return seconds


def ack(req: pb.AckRequest) -> AckItem:
    result = struct_json("result", req.result) if req.HasField("result") else None
    return AckItem(lease(req), result)


def nack(req: pb.NackRequest) -> NackItem:
    return NackItem(lease(req), error_text(req.error), retry_after(req), req.permanent)


def _plain_acks(reqs: Sequence[pb.AckRequest]) -> list[AckItem]:
    """The acks of a Settle when none carries a result and every id and token is canonical, as
    workerd sends them: checked together (a Settle of 1,000 acks: 1.3 µs per ack, against
    3.7 checked one by one).
    Empty when any is not; ``ack`` then checks each, and names a bad one."""
    # One pass over the items: each read of an item makes a Python object of it (reading them
    # once per field cost twice as much).
    job_ids: list[str] = []
    tokens: list[str] = []
    add_id, add_token = job_ids.append, tokens.append
    for r in reqs:
        if r.HasField("result"):
            return []
        add_id(r.job_id)
        add_token(r.lease_token)
    if not all_canonical(job_ids + tokens):
        return []
    return [AckItem(Lease(j, t)) for j, t in zip(job_ids, tokens, strict=True)]


def settle(req: pb.SettleRequest) -> tuple[list[AckItem], list[NackItem]]:
    """Validate every item of a SettleRequest; each job may appear once in all."""
    total = len(req.acks) + len(req.nacks)
    if not 1 <= total <= MAX_BATCH:
        raise InvalidArgument("acks", f"acks and nacks must hold 1 to {MAX_BATCH} items in all, "
                                      f"got {total}")
    # Field names ("acks[3].job_id") are spelled out only for an error, not for each of the
    # hundreds of items a Settle carries.
    acks = _plain_acks(req.acks) or _items("acks", req.acks, ack)
    nacks = _items("nacks", req.nacks, nack)
    if len({i.lease.job_id for i in acks} | {i.lease.job_id for i in nacks}) < total:
        seen: set[str] = set()
        named = [(f"acks[{i}].job_id", a.lease.job_id) for i, a in enumerate(acks)]
        named += [(f"nacks[{i}].job_id", n.lease.job_id) for i, n in enumerate(nacks)]
        for field, job in named:
            if job in seen:
                raise InvalidArgument(field, f"job {job} appears more than once")
            seen.add(job)
    return acks, nacks


def _items(name: str, reqs: Sequence[Req], check: Callable[[Req], Item], first: int = 0
           ) -> list[Item]:
    """``check`` each of ``reqs``; a refusal names the item (``acks[3].lease_token``), counting
    from ``first``."""
    out: list[Item] = []
    for i, req in enumerate(reqs, first):
        try:
            out.append(check(req))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{name}[{i}].{exc.field}", exc.problem) from None
    return out


def job_status(field: str, value: pb.Job.Status.ValueType) -> JobStatus | None:
    """A Job.Status filter: None for unspecified; a number the enum does not name is refused."""
    if value == pb.Job.STATUS_UNSPECIFIED:
        return None
    try:
        return JobStatus(pb.Job.Status.Name(value))
    except ValueError:
        raise InvalidArgument(field, f"not a job status: {value}") from None


def page_size(value: int) -> int:
    if value == 0:
        return PAGE_SIZE_DEFAULT
    if not 1 <= value <= PAGE_SIZE_MAX:
        raise InvalidArgument("page_size", f"must be in [1, {PAGE_SIZE_MAX}], got {value}")
    return value


_ORDERS = {pb.ListJobsRequest.ORDER_UNSPECIFIED: Order.NEWEST,
           pb.ListJobsRequest.NEWEST: Order.NEWEST, pb.ListJobsRequest.OLDEST: Order.OLDEST,
           pb.ListJobsRequest.RUN_AT: Order.RUN_AT, pb.ListJobsRequest.PRIORITY: Order.PRIORITY}


_ONE_STATUS_ORDERS = (Order.RUN_AT, Order.PRIORITY)
"""Orders served by indexes that hold no COMPLETED job (an entry per ack would cost every ack:
migration 013), so they list one status other than COMPLETED."""


def list_query(req: pb.ListJobsRequest) -> tuple[JobFilter, Order]:
    """ListJobs' filter and order."""
    order = _ORDERS.get(req.order)
    if order is None:
        raise InvalidArgument("order", f"not a listing order: {req.order}")
    where = JobFilter(
        **_matching(req, ""),
        worker_id=_key("worker_id", req.worker_id),
        updated_after=_time(req, "updated_after", ""),
        updated_before=_time(req, "updated_before", ""))
    _range("", "updated_after", where.updated_after, "updated_before", where.updated_before)
    if order in _ONE_STATUS_ORDERS and where.status in (None, JobStatus.COMPLETED):
        raise InvalidArgument("order", "RUN_AT and PRIORITY list the jobs of one status other "
                                       "than COMPLETED; list COMPLETED jobs, or every status, "
                                       "NEWEST or OLDEST")
    return where, order


def _matching(msg: pb.ListJobsRequest | pb.JobFilter, prefix: str) -> dict[str, Any]:
    """The fields ListJobsRequest and JobFilter share, by the JobFilter field each sets; a
    refusal names the field with ``prefix`` before it (``filter.``)."""
    after = _time(msg, "created_after", prefix)
    before = _time(msg, "created_before", prefix)
    _range(prefix, "created_after", after, "created_before", before)
    return {
        "status": job_status(f"{prefix}status", msg.status),
        "type": check_type(f"{prefix}type", msg.type) if msg.type else None,
        "type_prefix": (check_type(f"{prefix}type_prefix", msg.type_prefix)
                        if msg.type_prefix else None),
        "concurrency_key": _key(f"{prefix}concurrency_key", msg.concurrency_key),
        "idempotency_key": _key(f"{prefix}idempotency_key", msg.idempotency_key),
        "created_after": after,
        "created_before": before,
        "query": _key(f"{prefix}query", msg.query),
        "run_after": _time(msg, "run_after", prefix),
    }


def _time(msg: Any, name: str, prefix: str) -> datetime | None:
    return timestamp(f"{prefix}{name}", getattr(msg, name)) if msg.HasField(name) else None


def _range(prefix: str, low_name: str, low: datetime | None, high_name: str,
           high: datetime | None) -> None:
    if low is not None and high is not None and low >= high:
        raise InvalidArgument(f"{prefix}{low_name}", f"must be before {prefix}{high_name}")


# -- bulk operations ---------------------------------------------------------------------------

DEAD_ONLY = (JobStatus.DEAD,)
UNFINISHED = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.DEAD)
"""The statuses the DLQ calls and CancelJobs act on."""
_CANCEL_NARROWS_TO = (JobStatus.PENDING, JobStatus.PROCESSING)


def job_filter(f: pb.JobFilter, allowed: Sequence[JobStatus] = DEAD_ONLY) -> JobFilter:
    """A bulk call's filter; a refusal names the field under ``filter``. ``filter.status`` may
    be one of ``allowed``: DEAD for the DLQ calls, PENDING or PROCESSING for CancelJobs."""
    if len(f.ids) > MAX_BATCH:
        raise InvalidArgument("filter.ids", f"at most {MAX_BATCH} ids, got {len(f.ids)}")
    ids = [job_id(f"filter.ids[{i}]", v) for i, v in enumerate(f.ids)] or None
    where = JobFilter(ids=ids, **_matching(f, "filter."))
    if where.status is not None and where.status not in allowed:
        raise InvalidArgument("filter.status", "must be unset or "
                              + " or ".join(str(s) for s in allowed) + " for this call")
    return where


def purge_filter(req: pb.PurgeDeadJobsRequest) -> JobFilter:
    where = job_filter(req.filter)
    if req.HasField("older_than"):
        seconds = req.older_than.seconds + req.older_than.nanos / 1e9
        if not 0 <= seconds <= MAX_OLDER_THAN:
            raise InvalidArgument("older_than", "must be from 0 to 100 years")
        where = dataclasses.replace(where, older_than=seconds)
    return _not_everything(where, req.all)


def cancel_filter(req: pb.CancelJobsRequest) -> JobFilter:
    return _not_everything(job_filter(req.filter, _CANCEL_NARROWS_TO), req.all)


def _not_everything(where: JobFilter, everything: bool) -> JobFilter:
    """An empty filter matches every job: refused unless the caller says so with ``all``."""
    if where == JobFilter() and not everything:
        raise InvalidArgument("filter", "is empty, which would match every job: give a type, "
                                        "ids or another filter field (or older_than, to purge), "
                                        "or set all to true")
    return where


MAX_THROUGHPUT_MINUTES = 120
"""What the per-minute rollups keep (prune_rollups)."""


def throughput_minutes(req: pb.GetThroughputRequest) -> int:
    """GetThroughput's window in whole minutes (rounded up); absent or 0 means an hour."""
    if not req.HasField("window"):
        return 60
    seconds = req.window.seconds + req.window.nanos / 1e9
    if not 0 <= seconds <= MAX_THROUGHPUT_MINUTES * 60:
        raise InvalidArgument("window", "must be from 0 to 2 hours (what the rollups keep)")
    return math.ceil(seconds / 60) or 60


# -- queues --------------------------------------------------------------------------------------

MAX_QUEUE_LIMIT = 1_000_000
MAX_RATE_LIMIT = 10_000
"""Most starts per rate period: the rate log (one entry per claim in the window) stays small."""
MAX_RATE_PERIOD = 86_400.0
QueueField = Literal["paused", "concurrency_limit", "key_concurrency_limit", "rate_limit"]
QUEUE_FIELDS: tuple[QueueField, ...] = ("paused", "concurrency_limit", "key_concurrency_limit",
                                        "rate_limit")
"""What UpdateQueue may change (update_mask paths, also accepted in lowerCamelCase)."""
_BY_JSON_NAME = {f: pb.Queue.DESCRIPTOR.fields_by_name[f].json_name for f in QUEUE_FIELDS}

Change = Callable[[QueueSettings], QueueSettings]
"""An UpdateQueue's change, applied to the current settings under the queue row's lock."""


def queue_update(req: pb.UpdateQueueRequest) -> tuple[str, Change]:
    """The type an UpdateQueueRequest names and its change. Every field is checked first, so a
    refusal changes nothing."""
    queue = req.queue
    if req.type and queue.type and req.type != queue.type:
        raise InvalidArgument("queue.type", f"{echo(queue.type)} differs from type "
                                            f"{echo(req.type)}; give one, or the same")
    type_ = check_type("type", req.type or queue.type)
    if req.HasField("update_mask") and req.update_mask.paths:
        paths = [_queue_path(p) for p in req.update_mask.paths]
    else:
        paths = [f for f in QUEUE_FIELDS if queue.HasField(f)]
    if not paths:
        raise InvalidArgument("update_mask", "names no field to change: give update_mask, or "
                                             f"set some of {', '.join(QUEUE_FIELDS)} in queue")
    fields: dict[str, Any] = {}
    for path in paths:
        if path == "rate_limit":
            fields["rate_limit"], fields["rate_period"] = rate_limit(queue.rate_limit)
        elif path == "paused":
            fields["paused"] = queue.paused
        else:
            fields[path] = _queue_limit(f"queue.{path}", getattr(queue, path))
    return type_, lambda current: dataclasses.replace(current, **fields)


def _queue_path(path: str) -> QueueField:
    for name in QUEUE_FIELDS:
        if path in (name, _BY_JSON_NAME[name]):
            return name
    raise InvalidArgument("update_mask", f"{echo(path)} is not a field UpdateQueue changes; "
                                         f"one of {', '.join(QUEUE_FIELDS)}")


def _queue_limit(field: str, value: int) -> int:
    if not 0 <= value <= MAX_QUEUE_LIMIT:
        raise InvalidArgument(field, f"must be in [0, {MAX_QUEUE_LIMIT}] (0: unlimited), "
                                     f"got {value}")
    return value


def rate_limit(rate: pb.RateLimit) -> tuple[int, float]:
    """A RateLimit as (limit, period in seconds); (0, 0.0) removes the limit."""
    if not 0 <= rate.limit <= MAX_RATE_LIMIT:
        raise InvalidArgument("queue.rate_limit.limit", f"must be in [0, {MAX_RATE_LIMIT}] "
                                                        f"(0: no rate limit), got {rate.limit}")
    if not rate.HasField("period"):
        if rate.limit:
            raise InvalidArgument("queue.rate_limit.period", "is required with a limit")
        return 0, 0.0
    period = rate.period.seconds + rate.period.nanos / 1e9
    if not 0 < period <= MAX_RATE_PERIOD:
        raise InvalidArgument("queue.rate_limit.period",
                              f"must be more than 0 and at most {MAX_RATE_PERIOD:.0f} s, "
                              f"got {period} s")
    if not rate.limit:
        raise InvalidArgument("queue.rate_limit.limit", "must be at least 1 with a period "
                                                        "(a limit of 0 and no period: no limit)")
    return rate.limit, period


def schedule(s: pb.Schedule) -> NewSchedule:
    """Validate a PutSchedule; its read-only fields (next_run_at, last_run_at, ...) are ignored."""
    check_type("name", s.name)
    timezone = s.timezone or "UTC"
    try:
        tz = schedules.zone(timezone)
    except schedules.TimingError as exc:
        raise InvalidArgument("timezone", str(exc)) from None
    if bool(s.cron) == s.HasField("every"):
        raise InvalidArgument("cron", "set exactly one of cron and every")
    every = None
    if s.HasField("every"):
        every = timedelta(seconds=s.every.seconds, microseconds=s.every.nanos // 1000)
        if not schedules.MIN_EVERY <= every <= MAX_EVERY:
            raise InvalidArgument("every", f"must be from 1s to {MAX_EVERY.days} days, got "
                                           f"{s.every.seconds + s.every.nanos / 1e9:g}s")
    else:
        try:
            schedules.check_cron(s.cron, tz)
        except schedules.TimingError as exc:
            raise InvalidArgument("cron", str(exc)) from None
    if s.job.HasField("run_at"):
        raise InvalidArgument("job.run_at", "must be empty: each fire sets it")
    if s.job.idempotency_key:
        raise InvalidArgument("job.idempotency_key", "must be empty: each fire sets it")
    try:
        job = new_job(s.job)
    except InvalidArgument as exc:
        raise InvalidArgument(f"job.{exc.field}", exc.problem) from None
    return NewSchedule(s.name, s.cron or None, every, timezone, job, s.paused)


def schedule_page_token(value: str) -> str:
    """A ListSchedules page token: the last name of the previous page, or "" for the first."""
    if value and not TYPE_NAME.fullmatch(value):
        raise InvalidArgument("page_token", "not a token returned by a previous page")
    return value
