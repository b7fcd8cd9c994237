"""What both clients share: the target and deadline defaults, request building, errors.

The clients themselves are in :mod:`forge.client` (``AsyncClient``, written by hand) and
``forge._sync`` (``Client``, generated from it by ``clients/python/sync_client.py``).
"""

from __future__ import annotations

import json
import json.encoder
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from forge.security import ChannelSecurity
from forge.v1 import broker_pb2 as pb

_inject_trace: Any
try:  # optional: with OpenTelemetry installed, calls carry the caller's trace context
    from opentelemetry.propagate import inject as _inject_trace
except ImportError:  # pragma: no cover - depends on the environment
    _inject_trace = None

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT = 10.0
# A bulk call (RetryDeadJobs...) works through every matching job in batches before it answers:
# a hundred thousand jobs take seconds, a few million minutes. A call cut off by its deadline
# has done part of the work, and calling again does the rest.
BULK_TIMEOUT = 600.0

Req = TypeVar("Req")
Resp = TypeVar("Resp")
# A unary method of the stub; Client's is the blocking one, AsyncClient's the awaitable one.
Unary: TypeAlias = grpc.UnaryUnaryMultiCallable
AsyncUnary: TypeAlias = grpc.aio.UnaryUnaryMultiCallable


class ForgeClientError(Exception):
    """A call failed; ``code`` is the gRPC status code, ``details`` the broker's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def trace_metadata() -> tuple[tuple[str, str], ...] | None:
    """The current OpenTelemetry context as gRPC metadata (``traceparent``, ``tracestate``):
    the broker's span for the call, and the job's attempts, continue the caller's trace. None
    outside a span or without OpenTelemetry installed."""
    if _inject_trace is None:
        return None
    carrier: dict[str, str] = {}
    _inject_trace(carrier)
    return tuple(carrier.items()) or None


def default_target() -> str:
    return os.environ.get("FORGE_BROKER") or DEFAULT_TARGET


def enqueue_request(type: str, payload: Mapping[str, Any] | None = None, *,
                    priority: int | None = None, max_retries: int | None = None,
                    run_at: datetime | None = None,
                    idempotency_key: str | None = None,
                    concurrency_key: str | None = None) -> pb.EnqueueRequest:
    """Build an EnqueueRequest; unset options take the broker's defaults. The payload travels
    as JSON text (payload_json), cheaper at both ends than a Struct: a NaN or infinite number
    in it is a ValueError here, as JSON has neither."""
    req = pb.EnqueueRequest(type=type, idempotency_key=idempotency_key or "",
                            concurrency_key=concurrency_key or "")
    if payload is not None:
        req.payload_json = payload_json(payload)
    if priority is not None:
        req.priority = priority
    if max_retries is not None:
        req.max_retries = max_retries
    if run_at is not None:
        ts = Timestamp()
        ts.FromDatetime(run_at)
        req.run_at.CopyFrom(ts)
    return req


def enqueue_many_request(type: str, payloads: Iterable[Mapping[str, Any]], *, ids_only: bool,
                         priority: int | None = None, max_retries: int | None = None,
                         run_at: datetime | None = None,
                         concurrency_key: str | None = None) -> pb.EnqueueBatchRequest:
    """An EnqueueBatchRequest in columns: one job of ``type`` per payload, each with the same
    options (``enqueue_request``'s), which travel once; each payload as JSON text."""
    req = pb.EnqueueBatchRequest(
        template=enqueue_request(type, priority=priority, max_retries=max_retries,
                                 run_at=run_at, concurrency_key=concurrency_key),
        answer=batch_answer(ids_only))
    req.payloads_json.extend(map(payload_json, payloads))
    return req


def batch_answer(ids_only: bool) -> pb.EnqueueBatchRequest.Answer.ValueType:
    return pb.EnqueueBatchRequest.ANSWER_IDS if ids_only else pb.EnqueueBatchRequest.ANSWER_JOBS


def payload_json(payload: Mapping[str, Any]) -> str:
    """``payload`` as the compact JSON text EnqueueRequest.payload_json carries, as
    ``json.dumps(payload, separators=(",", ":"), allow_nan=False)`` writes it; ValueError for a
    NaN or infinite number, or for a payload that contains itself."""
    obj = payload if type(payload) is dict else dict(payload)
    if _encode is None:  # a Python without json's C accelerator
        return _JSON.encode(obj)
    try:
        return "".join(_encode(obj, 0))
    except RecursionError:
        raise ValueError("payload contains itself, or nests too deeply") from None


# json.dumps with arguments builds an encoder per call: a third of its cost for a small payload.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# The C encoder that _JSON.encode makes on each call, made once (None without json's C
# accelerator), with the arguments JSONEncoder gives it: markers, default, string encoder,
# indent, key and item separators, sort_keys, skipkeys, allow_nan. Called directly, without
# the Python around it, and without markers: 0.7 against 2.2 µs for json.dumps({"n": 5}). The
# markers dict is what detects a cycle, but it is state shared by every call (threads too);
# without it, a cycle recurses until RecursionError, which payload_json reports as ValueError.
_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_encode: Any = _make_encoder and _make_encoder(
    None, _JSON.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False,
    False)


def schedule_message(name: str, type: str, payload: Mapping[str, Any] | None = None, *,
                     cron: str | None = None, every: timedelta | float | None = None,
                     timezone: str = "", priority: int | None = None,
                     max_retries: int | None = None, paused: bool = False) -> pb.Schedule:
    """Build a Schedule to put: exactly one of ``cron`` and ``every`` (a timedelta or seconds);
    the broker judges the rest (unset options take its defaults)."""
    schedule = pb.Schedule(name=name, cron=cron or "", timezone=timezone, paused=paused,
                           job=enqueue_request(type, payload, priority=priority,
                                               max_retries=max_retries))
    if every is not None:
        schedule.every.FromTimedelta(every if isinstance(every, timedelta)
                                     else timedelta(seconds=every))
    return schedule


def bulk_filter(type: str | None, ids: Sequence[str], *, type_prefix: str | None = None,
                concurrency_key: str | None = None, idempotency_key: str | None = None,
                created_after: datetime | None = None, created_before: datetime | None = None,
                status: str | None = None, query: str | None = None,
                run_after: datetime | None = None) -> pb.JobFilter:
    """The JobFilter of a bulk call: jobs matching every field given (None or empty: any), as
    ListJobs with the same fields lists them."""
    out = pb.JobFilter(type=type or "", ids=list(ids), type_prefix=type_prefix or "",
                       concurrency_key=concurrency_key or "",
                       idempotency_key=idempotency_key or "", status=status_value(status),
                       query=query or "")
    set_times(out, created_after=created_after, created_before=created_before,
              run_after=run_after)
    return out


def set_times(msg: pb.JobFilter | pb.ListJobsRequest, **times: datetime | None) -> None:
    """Set each timestamp field of ``msg`` named in ``times`` whose value is not None."""
    for name, value in times.items():
        if value is not None:
            getattr(msg, name).FromDatetime(value)


def order_value(name: str | None) -> pb.ListJobsRequest.Order.ValueType:
    """A ListJobs order by name (NEWEST, OLDEST, RUN_AT, PRIORITY; any case); None: NEWEST."""
    return pb.ListJobsRequest.Order.Value(name.upper()) if name else pb.ListJobsRequest.NEWEST


def status_value(name: str | None) -> pb.Job.Status.ValueType:
    return pb.Job.Status.Value(name.upper()) if name else pb.Job.STATUS_UNSPECIFIED


def error_from(exc: grpc.RpcError) -> ForgeClientError:
    # AioRpcError (the async client's) is not a grpc.Call, but has the same two methods.
    if isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return ForgeClientError(exc.code(), exc.details() or "")
    return ForgeClientError(grpc.StatusCode.UNKNOWN, str(exc))


def security_for(security: ChannelSecurity | None, token: str | None,
              ca_file: str | None) -> ChannelSecurity:
    if security is not None:
        return security
    return ChannelSecurity.from_env(token=token, ca_file=ca_file)


def wait_ready(target: str, timeout: float = 30.0, *,
               security: ChannelSecurity | None = None) -> bool:
    """Block until the broker at ``target`` reports SERVING on grpc.health.v1; False on timeout.
    ``security`` defaults to the environment's (FORGE_CA_FILE...); health needs no token."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with security_for(security, None, None).channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    return False


def queue_update(type: str, *, paused: bool | None = None, concurrency_limit: int | None = None,
                 key_concurrency_limit: int | None = None,
                 rate: tuple[int, float] | None = None) -> pb.UpdateQueueRequest:
    """An UpdateQueueRequest changing the settings given (not None) and no other; ``rate`` is
    (limit, period in seconds), and (0, 0) removes the rate limit."""
    queue = pb.Queue(type=type)
    paths = []
    if paused is not None:
        queue.paused = paused
        paths.append("paused")
    if concurrency_limit is not None:
        queue.concurrency_limit = concurrency_limit
        paths.append("concurrency_limit")
    if key_concurrency_limit is not None:
        queue.key_concurrency_limit = key_concurrency_limit
        paths.append("key_concurrency_limit")
    if rate is not None:
        limit, period = rate
        queue.rate_limit.limit = limit
        if period:
            queue.rate_limit.period.FromNanoseconds(round(period * 1e9))
        paths.append("rate_limit")
    return pb.UpdateQueueRequest(queue=queue, update_mask=FieldMask(paths=paths))
