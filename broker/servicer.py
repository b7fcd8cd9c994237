"""The gRPC servicer: translates between forge.v1 messages and the store, nothing more."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg
from psycopg_pool import PoolTimeout

from broker import convert, validate
from broker.batcher import Batcher
from broker.completer import Completer
from broker.dispatch import Dispatcher
from broker.errors import (
    FailedPrecondition,
    ForgeError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from broker.models import JobRow, NackOutcome, NewJob
from broker.stats import StatsHub
from broker.store import Store
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc

log = logging.getLogger("forge.servicer")

_CODES: dict[type[ForgeError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_UNAVAILABLE = (psycopg.OperationalError, PoolTimeout, OSError)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]


def _status_for(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for a failed call. Internals stay in the log, not in the answer."""
    if isinstance(exc, ForgeError):
        return _CODES.get(type(exc), grpc.StatusCode.INTERNAL), str(exc)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "database statement timed out"
    if isinstance(exc, _UNAVAILABLE):
        return grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}"
    log.error("%s failed", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}; see the broker log"


def unary(fn: Callable[[Any, Req, Ctx], Awaitable[Resp]]) -> Callable[[Any, Req, Ctx], Awaitable[Resp]]:
    """Turn the broker's errors into gRPC statuses for a unary method."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: Ctx) -> Resp:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            await context.abort(*_status_for(exc, fn.__name__))
            raise  # abort() always raises; this keeps type checkers content

    return wrapper


class BrokerServicer(pb_grpc.BrokerServicer):
    def __init__(self, store: Store, dispatcher: Dispatcher, stats: StatsHub,
                 completer: Completer) -> None:
        self.store = store
        # Enqueue and EnqueueBatch calls that arrive together share one INSERT (group commit);
        # each call is still all or nothing.
        self.inserter: Batcher[NewJob, tuple[JobRow, bool]] = Batcher(
            store.enqueue, max_items=validate.MAX_BATCH, name="inserter")
        self.dispatcher = dispatcher
        self.stats = stats
        self.completer = completer

    @unary
    async def Enqueue(self, request: pb.EnqueueRequest, context: Ctx) -> pb.EnqueueResponse:
        [(row, created)] = await self.inserter.submit([validate.new_job(request)])
        return pb.EnqueueResponse(job=convert.job(row), created=created)

    @unary
    async def EnqueueBatch(self, request: pb.EnqueueBatchRequest,
                           context: Ctx) -> pb.EnqueueBatchResponse:
        results = await self.inserter.submit(validate.new_jobs(request))
        return pb.EnqueueBatchResponse(jobs=[convert.job(row) for row, _ in results],
                                       created=sum(1 for _, created in results if created))

    async def Lease(self, request: pb.LeaseRequest,
                    context: Ctx) -> AsyncIterator[pb.LeaseResponse]:
        try:
            if not request.worker_id or len(request.worker_id) > validate.MAX_WORKER_ID_CHARS:
                raise InvalidArgument("worker_id", "must be 1 to 128 characters")
            validate.check_text("worker_id", request.worker_id)
            for i, t in enumerate(request.types):
                validate.check_type(f"types[{i}]", t)
            max_in_flight = request.max_in_flight or 8
            if not 1 <= max_in_flight <= 1000:
                raise InvalidArgument("max_in_flight", f"must be in [1, 1000], got {max_in_flight}")
            stream = await self.dispatcher.open(request.worker_id, list(request.types),
                                                max_in_flight,
                                                validate.lease_seconds(request.lease_seconds))
        except Exception as exc:
            await context.abort(*_status_for(exc, "Lease"))
        try:
            async for rows in stream.batches():
                yield pb.LeaseResponse(jobs=[
                    pb.LeasedJob(job=convert.job(row), lease_token=str(row.lease_token))
                    for row in rows])
        finally:
            await self.dispatcher.close(stream)

    @unary
    async def Ack(self, request: pb.AckRequest, context: Ctx) -> pb.AckResponse:
        await self.completer.ack(validate.ack(request))
        return pb.AckResponse()

    @unary
    async def Nack(self, request: pb.NackRequest, context: Ctx) -> pb.NackResponse:
        outcome = await self.completer.nack(validate.nack(request))
        resp = pb.NackResponse(status=pb.Job.Status.Value(outcome.status))
        if outcome.status == "PENDING":
            resp.run_at.CopyFrom(convert.ts(outcome.run_at))
        return resp

    @unary
    async def Settle(self, request: pb.SettleRequest, context: Ctx) -> pb.SettleResponse:
        acks, nacks = validate.settle(request)
        ack_results, nack_results = await self.completer.settle(acks, nacks)
        return pb.SettleResponse(
            acks=[self._settle_result(a.lease.job_id, r) for a, r in zip(acks, ack_results, strict=True)],
            nacks=[self._settle_result(n.lease.job_id, r)
                   for n, r in zip(nacks, nack_results, strict=True)])

    @staticmethod
    def _settle_result(job_id: uuid.UUID, result: NackOutcome | BaseException | None
                       ) -> pb.SettleResult:
        out = pb.SettleResult(job_id=str(job_id))
        if isinstance(result, BaseException):
            code, message = _status_for(result, "Settle")
            out.code, out.message = code.value[0], message
        elif result is None:
            out.status = pb.Job.COMPLETED
        else:
            out.status = pb.Job.Status.Value(result.status)
            if result.status == "PENDING":
                out.run_at.CopyFrom(convert.ts(result.run_at))
        return out

    @unary
    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: Ctx) -> pb.HeartbeatResponse:
        if not 1 <= len(request.leases) <= validate.MAX_BATCH:
            raise InvalidArgument("leases", f"must hold 1 to {validate.MAX_BATCH} leases")
        leases = [validate.lease(f"leases[{i}].", le.job_id, le.lease_token)
                  for i, le in enumerate(request.leases)]
        deadline, lost = await self.store.extend(leases,
                                                 validate.lease_seconds(request.lease_seconds))
        self.dispatcher.settled(lost)
        if deadline is None:
            raise FailedPrecondition(
                "none of the leases is held any more (rescued, cancelled or finished): "
                + ", ".join(str(j) for j in lost[:10]))
        return pb.HeartbeatResponse(lease_expires_at=convert.ts(deadline),
                                    lost_job_ids=[str(j) for j in lost])

    @unary
    async def GetJob(self, request: pb.GetJobRequest, context: Ctx) -> pb.Job:
        return convert.job(await self.store.get(validate.job_id("id", request.id)))

    @unary
    async def ListJobs(self, request: pb.ListJobsRequest, context: Ctx) -> pb.ListJobsResponse:
        status = None
        if request.status != pb.Job.STATUS_UNSPECIFIED:
            status = pb.Job.Status.Name(request.status)
        if request.type:
            validate.check_type("type", request.type)
        jobs, token = await self._page(status, request.type or None, request.page_size,
                                       request.page_token)
        return pb.ListJobsResponse(jobs=jobs, next_page_token=token)

    @unary
    async def CancelJob(self, request: pb.CancelJobRequest, context: Ctx) -> pb.Job:
        job_id = validate.job_id("id", request.id)
        reason = validate.error_text(f"cancelled: {request.reason}") if request.reason else None
        row = await self.store.cancel(job_id, reason)
        self.dispatcher.settled([job_id])
        return convert.job(row)

    @unary
    async def ListDeadJobs(self, request: pb.ListDeadJobsRequest,
                           context: Ctx) -> pb.ListDeadJobsResponse:
        if request.type:
            validate.check_type("type", request.type)
        jobs, token = await self._page("DEAD", request.type or None, request.page_size,
                                       request.page_token)
        return pb.ListDeadJobsResponse(jobs=jobs, next_page_token=token)

    @unary
    async def RetryDeadJob(self, request: pb.RetryDeadJobRequest, context: Ctx) -> pb.Job:
        return convert.job(await self.store.retry_dead(validate.job_id("id", request.id)))

    @unary
    async def Stats(self, request: pb.StatsRequest, context: Ctx) -> pb.QueueStats:
        return convert.stats(await self.stats.current())

    async def WatchStats(self, request: pb.WatchStatsRequest,
                         context: Ctx) -> AsyncIterator[pb.QueueStats]:
        interval = self.stats.tick
        if request.HasField("interval"):
            interval = request.interval.seconds + request.interval.nanos / 1e9
            if interval < 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "interval: must not be negative")
        try:
            async for snap in self.stats.watch(interval):
                yield convert.stats(snap)
        except Exception as exc:
            await context.abort(*_status_for(exc, "WatchStats"))

    async def _page(self, status: str | None, type_: str | None, size: int,
                    token: str) -> tuple[list[pb.Job], str]:
        limit = validate.page_size(size)
        rows = await self.store.list_jobs(status=status, type=type_,
                                     before=validate.page_token(token), limit=limit + 1)
        next_token = str(rows[limit - 1].id) if len(rows) > limit else ""
        return [convert.job(r) for r in rows[:limit]], next_token
