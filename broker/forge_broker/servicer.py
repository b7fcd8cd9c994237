"""The gRPC servicer: translates between forge.v1 messages and the store, nothing more."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import operator
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import grpc
import psycopg
from google.protobuf.message import DecodeError

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from forge_broker import convert, paging, validate
from forge_broker.batcher import Batcher
from forge_broker.completer import Completer
from forge_broker.dispatch import Dispatcher
from forge_broker.errors import (
    DATABASE_UNAVAILABLE,
    FailedPrecondition,
    ForgeError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from forge_broker.metrics import Metrics
from forge_broker.models import (
    JobFilter,
    JobRow,
    JobStatus,
    Lease,
    NackItem,
    NackOutcome,
    NewJob,
    Order,
    TypeCounts,
)
from forge_broker.stats import StatsHub
from forge_broker.store import Store
from forge_broker.streams import StreamCaps
from forge_common import tracing

log = logging.getLogger("forge.servicer")

BATCH_PART = 300
"""EnqueueBatch calls with more jobs are validated and sent in parts of this many, all or none
(one COPY, or INSERTs in one transaction), each part's validation overlapping the database's
work on the one before; smaller ones share the inserter's group commit."""
FIRST_PART = 100
"""The first part of such a call is smaller: nothing overlaps its validation, and the database
waits for it."""

LINGER = 0.001
"""Under load, the least time in seconds between the starts of two enqueue flushes, to gather
more calls into each (see ``Batcher``)."""

ENQUEUE_STREAM_WINDOW = 1000
"""Requests of one EnqueueStream taken and not answered yet, at most: the broker reads the next
once one is answered, so a client that sends faster than jobs go in waits (gRPC's flow control)
instead of piling them up in the broker."""

_CODES: dict[type[ForgeError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]


_ID, _CREATED = operator.itemgetter(0), operator.itemgetter(1)
"""An (id, created) result's parts."""
_TYPE = operator.attrgetter("type")


def _traced(jobs: list[NewJob], carrier: dict[str, str] | None) -> list[NewJob]:
    """``jobs`` carrying the enqueue span's context ``carrier``, while tracing is on."""
    return jobs if carrier is None else [j._replace(trace_context=carrier) for j in jobs]


def _status_for(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for a failed call. Internals stay in the log, not in the answer."""
    if isinstance(exc, ForgeError):
        return _CODES.get(type(exc), grpc.StatusCode.INTERNAL), str(exc)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "database statement timed out"
    if isinstance(exc, DATABASE_UNAVAILABLE):
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
            code, details = _status_for(exc, fn.__name__)
        # Not context.abort(): the exception it raises stays in the call's state, whose frames
        # hold the request (and the failed call's own, through the exception's context) in a
        # reference cycle until the next full collection: a refused 16 MB batch stayed in memory.
        # With a code set, gRPC sends the status and drops the response.
        context.set_code(code)
        context.set_details(details)
        return cast(Resp, None)

    return wrapper


@dataclasses.dataclass(frozen=True)
class _Ended:
    """An EnqueueStream's last item: every request taken is answered; ``stopping``, because
    the broker is shutting down (else the client half-closed)."""

    stopping: bool


def _stream_job(req: pb.EnqueueRequest) -> NewJob:
    """An EnqueueStream request's job, validated; a refusal names the field under ``job``."""
    try:
        return validate.new_job(req)
    except InvalidArgument as exc:
        raise InvalidArgument(f"job.{exc.field}", exc.problem) from None


def _refuse(resp: pb.EnqueueStreamResponse, exc: BaseException) -> None:
    """Answer a stream request with the status its failure would end a call with."""
    if isinstance(exc, asyncio.CancelledError):
        code, details = grpc.StatusCode.UNAVAILABLE, "the broker is shutting down"
    else:
        code, details = _status_for(exc, "EnqueueStream")
    resp.error.code = code.value[0]
    resp.error.message = details


@contextlib.contextmanager
def _enqueue_span(method: str, context: Ctx) -> Iterator[dict[str, str]]:
    """The broker's span for an enqueue call, child of the caller's context (its metadata), and
    that span's context as the carrier to store with each job."""
    parent = tracing.carrier(context.invocation_metadata() or ())
    with tracing.span(f"forge.v1.Broker/{method}", parent, {"rpc.system": "grpc",
                      "rpc.service": "forge.v1.Broker", "rpc.method": method},
                      tracing.SpanKind.SERVER):
        yield tracing.current_carrier()


class BrokerServicer(pb_grpc.BrokerServicer):
    def __init__(self, store: Store, dispatcher: Dispatcher, stats: StatsHub,
                 metrics: Metrics, completer: Completer, *, max_in_flight: int = 1000,
                 streams: StreamCaps | None = None,
                 schedules_changed: Callable[[], None] = lambda: None) -> None:
        self.store = store
        # Enqueue and EnqueueBatch calls that arrive together share one INSERT (group commit);
        # each call is still all or nothing. One flush at a time, under load starting 1 ms or
        # more after the last started: from 16 clients several calls per INSERT (measured:
        # Enqueue 1.0k → 1.6–2.0k calls/s against none; 1 ms rather than 2 since EnqueueStream's
        # clients are back with their next request within it: 2.4–2.8k → 2.8–3.2k jobs/s,
        # Enqueue unchanged; counted from the start, not the end: 1.05 ×, docs/benchmarks.md).
        self.inserter: Batcher[NewJob, tuple[JobRow, bool]] = Batcher(
            self._insert, max_items=validate.MAX_BATCH, name="inserter", concurrency=1,
            linger=LINGER)
        # The same for EnqueueBatch calls that ask for ids alone (ANSWER_IDS): their jobs skip
        # building the rows that a full answer needs.
        self.id_inserter: Batcher[NewJob, tuple[str, bool]] = Batcher(
            self.store.enqueue_ids, max_items=validate.MAX_BATCH, name="id_inserter",
            concurrency=1, linger=LINGER)
        self.dispatcher = dispatcher
        self.stats = stats
        self.completer = completer
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        """Most jobs a Lease request may ask to hold (FORGE_MAX_IN_FLIGHT)."""
        self.streams = streams or StreamCaps(0)
        """Lease, WatchStats and EnqueueStream streams per caller (FORGE_MAX_STREAMS_PER_PEER)."""
        self._aborting: set[asyncio.Task[None]] = set()
        self._traced_takes: set[asyncio.Task[None]] = set()
        self._stream_readers: set[asyncio.Task[None]] = set()
        self.schedules_changed = schedules_changed
        """Called after a PutSchedule: wakes this broker's scheduler (its next fire may be sooner)."""

    @unary
    async def Enqueue(self, request: pb.EnqueueRequest, context: Ctx) -> pb.EnqueueResponse:
        if tracing.TRACER is not None:
            with _enqueue_span("Enqueue", context) as carrier:
                return await self._enqueue([validate.new_job(request)._replace(
                    trace_context=carrier)])
        return await self._enqueue([validate.new_job(request)])

    async def _enqueue(self, job: list[NewJob]) -> pb.EnqueueResponse:
        [(row, created)] = await self._start_enqueue(job[0])
        resp = pb.EnqueueResponse()
        self._enqueued(resp, row, created)
        return resp

    def _start_enqueue(self, new: NewJob) -> asyncio.Future[list[tuple[JobRow, bool]]]:
        """Hand ``new`` to the inserter, leased to a stream of this broker that waits idle for
        its type if there is one (a hand-off); its row once inserted."""
        if new.run_at is None:
            hand = self.dispatcher.reserve(new.type)
            if hand is not None:
                new = new._replace(hand_off=hand)
        return self.inserter.start([new])

    def _enqueued(self, resp: pb.EnqueueResponse, row: JobRow, created: bool, *,
                  id_only: bool = False) -> None:
        """Fill the answer to one Enqueue, in place (a constructor would copy the Job); with
        ``id_only`` (an EnqueueStream request's ANSWER_IDS) its job carries the id alone."""
        if created:
            self.metrics.enqueued(row.type)
        resp.created = created
        if id_only:
            resp.job.id = str(row.id)
        else:
            convert.fill_job(resp.job, row)

    async def EnqueueStream(self, requests: AsyncIterator[pb.EnqueueStreamRequest],
                            context: Ctx) -> AsyncIterator[pb.EnqueueStreamResponse]:
        answers: asyncio.Queue[pb.EnqueueStreamResponse | Malformed | _Ended] = asyncio.Queue()
        reader = asyncio.create_task(self._take_stream(requests, answers, context),
                                     name="enqueue-stream")
        self._stream_readers.add(reader)
        reader.add_done_callback(self._stream_readers.discard)
        try:
            while not isinstance(answer := await answers.get(), _Ended):
                if isinstance(answer, Malformed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, answer.detail)
                yield answer
            if answer.stopping:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "the broker is shutting down; send the next request again")
        finally:
            reader.cancel()

    def end_enqueue_streams(self) -> None:
        """Shutting down: every EnqueueStream takes no more requests, answers the ones it
        took, then ends UNAVAILABLE (the client sends the rest to another broker)."""
        for reader in self._stream_readers:
            reader.cancel()

    async def _take_stream(self, requests: AsyncIterator[pb.EnqueueStreamRequest],
                           answers: asyncio.Queue[pb.EnqueueStreamResponse | Malformed | _Ended],
                           context: Ctx) -> None:
        """Take an EnqueueStream's requests as they come, each answered into ``answers`` once
        its INSERT is done (or at once if refused); after the client's half-close, or this
        task's cancel (the broker stopping), and the last answer, _Ended. Requests in flight do
        not hold the reader, so the ones a client sends without waiting share a flush."""
        window = asyncio.Semaphore(ENQUEUE_STREAM_WINDOW)
        unanswered = 0
        settled = asyncio.Event()
        settled.set()

        def answer(resp: pb.EnqueueStreamResponse) -> None:
            nonlocal unanswered
            answers.put_nowait(resp)
            window.release()
            unanswered -= 1
            if not unanswered:
                settled.set()

        stopping = False
        try:
            async for request in requests:
                if isinstance(request, Malformed):
                    answers.put_nowait(request)
                    return
                await window.acquire()
                unanswered += 1
                settled.clear()
                alone = self.inserter.idle
                self._take(request, context, answer)
                if alone:
                    # The flush it started sends its INSERT before the next read is set up (on
                    # a busy broker, the flushes already running carry the request instead).
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            stopping = True
        except Exception as exc:  # the stream broke under the reader: nothing to answer to
            log.info("EnqueueStream ended while reading: %s", exc)
            answers.put_nowait(_Ended(stopping=False))
            return
        await settled.wait()
        answers.put_nowait(_Ended(stopping))

    def _take(self, request: pb.EnqueueStreamRequest, context: Ctx,
              answer: Callable[[pb.EnqueueStreamResponse], None]) -> None:
        """Start one EnqueueStream request; ``answer`` gets its response when it is done."""
        resp = pb.EnqueueStreamResponse(request_id=request.request_id)
        try:
            job = _stream_job(request.job)
        except Exception as exc:
            _refuse(resp, exc)
            answer(resp)
            return
        id_only = request.answer == pb.EnqueueBatchRequest.ANSWER_IDS
        if tracing.TRACER is not None:
            task = asyncio.create_task(self._take_traced(job, context, resp, answer, id_only))
            self._traced_takes.add(task)
            task.add_done_callback(self._traced_takes.discard)
            return
        self._start_enqueue(job).add_done_callback(
            functools.partial(self._answer_take, resp, answer, id_only))

    async def _take_traced(self, job: NewJob, context: Ctx, resp: pb.EnqueueStreamResponse,
                           answer: Callable[[pb.EnqueueStreamResponse], None],
                           id_only: bool) -> None:
        """``_take`` in a span of its own (a child of the stream's context) that lasts until
        the job is in."""
        with _enqueue_span("EnqueueStream", context) as carrier:
            done = self._start_enqueue(job._replace(trace_context=carrier))
            await asyncio.wait([done])
        self._answer_take(resp, answer, id_only, done)

    def _answer_take(self, resp: pb.EnqueueStreamResponse,
                     answer: Callable[[pb.EnqueueStreamResponse], None], id_only: bool,
                     done: asyncio.Future[list[tuple[JobRow, bool]]]) -> None:
        if done.cancelled():
            _refuse(resp, asyncio.CancelledError())
        elif (exc := done.exception()) is not None:
            _refuse(resp, exc)
        else:
            [(row, created)] = done.result()
            self._enqueued(resp.enqueued, row, created, id_only=id_only)
        answer(resp)

    async def _insert(self, jobs: list[NewJob]) -> list[tuple[JobRow, bool]]:
        """The inserter's flush: one INSERT, then each job it leased goes to its stream. Here
        rather than in the call: a call cancelled meanwhile must not strand its job's lease."""
        if all(job.hand_off is None for job in jobs):
            return await self.store.enqueue(jobs)
        handed = False

        async def hand_over(ids: Sequence[str], now: datetime) -> None:
            # Every job is new: each leased one goes to its stream before the answers are made.
            nonlocal handed
            handed = True
            for job, job_id in zip(jobs, ids, strict=True):
                if job.hand_off is not None:
                    await self.dispatcher.hand_over(job.hand_off, job, job_id, now)
            await asyncio.sleep(0)  # the streams' tasks send them now

        try:
            results = await self.store.enqueue(jobs, inserted=hand_over)
        except BaseException:
            for job in jobs:
                if job.hand_off is not None:
                    self.dispatcher.unreserve(job.hand_off)  # a no-op once handed over
            raise
        if not handed:  # some job's idempotency key was taken: that one leased nothing
            for job, (row, created) in zip(jobs, results, strict=True):
                if job.hand_off is None:
                    continue
                if created:
                    await self.dispatcher.hand_over(job.hand_off, job, str(row.id), row.created_at)
                else:
                    self.dispatcher.unreserve(job.hand_off)
        return results

    @unary
    async def EnqueueBatch(self, request: pb.EnqueueBatchRequest,
                           context: Ctx) -> pb.EnqueueBatchResponse:
        if tracing.TRACER is not None:
            with _enqueue_span("EnqueueBatch", context) as carrier:
                return await self._enqueue_batch(request, carrier)
        return await self._enqueue_batch(request, None)

    async def _enqueue_batch(self, request: pb.EnqueueBatchRequest,
                             carrier: dict[str, str] | None) -> pb.EnqueueBatchResponse:
        if validate.ids_only(request):
            return await self._enqueue_batch_ids(request, carrier)
        resp = pb.EnqueueBatchResponse()
        if validate.batch_len(request) > BATCH_PART:
            results = await self.store.enqueue_chunks(self._batch_parts(
                request, carrier, functools.partial(convert.draft_enqueued, resp)))
        else:
            sent, jobs = validate.new_batch(request)
            jobs = _traced(jobs, carrier)
            inserted = self.inserter.start(jobs)
            # A flush starting now sends its INSERT at this await (a running one takes these
            # jobs next); either way the answer is drafted while the database works.
            await asyncio.sleep(0)
            convert.draft_enqueued(resp, sent, jobs)
            results = await inserted
        self._count_enqueued(row.type for row, created in results if created)
        resp.created = sum(1 for _, created in results if created)
        convert.finish_enqueued(resp, results)
        return resp

    async def _enqueue_batch_ids(self, request: pb.EnqueueBatchRequest,
                                 carrier: dict[str, str] | None) -> pb.EnqueueBatchResponse:
        """EnqueueBatch answering ids alone (ANSWER_IDS): no Job is built for the answer."""
        jobs: list[NewJob] = []
        if validate.batch_len(request) > BATCH_PART:
            results = await self.store.enqueue_chunks_ids(self._batch_parts(
                request, carrier, lambda _sent, part: jobs.extend(part)))
        else:
            jobs = _traced(validate.new_batch(request)[1], carrier)
            results = await self.id_inserter.submit(jobs)
        # Through map and C callables where it can: this runs after the commit, while the
        # client waits, and a generator over a thousand jobs costs it a few tenths of a ms.
        created = sum(map(_CREATED, results))
        self._count_enqueued(map(_TYPE, jobs) if created == len(jobs) else
                             (job.type for job, (_, new) in zip(jobs, results, strict=True) if new))
        return pb.EnqueueBatchResponse(created=created, ids=list(map(_ID, results)))

    def _count_enqueued(self, types: Iterable[str]) -> None:
        """The enqueued metric for new jobs of ``types``, one update per type."""
        for type_, n in collections.Counter(types).items():
            self.metrics.enqueued(type_, n)

    @staticmethod
    def _batch_parts(request: pb.EnqueueBatchRequest, carrier: dict[str, str] | None,
                     taken: Callable[[Sequence[pb.EnqueueRequest], list[NewJob]], object]
                     ) -> Iterator[list[NewJob]]:
        """A large batch for ``Store.enqueue_chunks``, validated a part at a time: each part is
        checked, and handed to ``taken`` (to draft its answer), while the database takes in the
        part before it."""
        for sent, jobs in validate.new_job_parts(request, FIRST_PART, BATCH_PART):
            jobs = _traced(jobs, carrier)
            yield jobs
            taken(sent, jobs)

    async def Lease(self, request: pb.LeaseRequest,
                    context: Ctx) -> AsyncIterator[pb.LeaseResponse]:
        try:
            if not request.worker_id or len(request.worker_id) > validate.MAX_WORKER_ID_CHARS:
                raise InvalidArgument("worker_id", "must be 1 to 128 characters")
            validate.check_text("worker_id", request.worker_id)
            for i, t in enumerate(request.types):
                validate.check_type(f"types[{i}]", t)
            max_in_flight = validate.max_in_flight(request.max_in_flight, self.max_in_flight)
            lease_seconds = validate.lease_seconds(request.lease_seconds)
            lean = validate.lean_view(request.job_view)
            stream = await self.dispatcher.open(
                request.worker_id, list(request.types), max_in_flight, lease_seconds, lean=lean,
                on_stall=functools.partial(self._abort_stalled, context))
        except Exception as exc:
            await context.abort(*_status_for(exc, "Lease"))
        try:
            # Headers now rather than with the first push: an abort while that push is stuck
            # would send them a second time, which gRPC refuses (see _abort_stalled).
            await context.send_initial_metadata(())
            async for rows in stream.batches():
                self.metrics.delivered(rows)
                resp, refused = convert.lease_response(rows)
                if resp.jobs:
                    yield resp
                # After the others are on their way: if the stream ends meanwhile, only these
                # wait out their leases.
                if refused:
                    await self._dead_letter(refused)
        finally:
            await self.dispatcher.close(stream)

    async def _dead_letter(self, refused: convert.Refused) -> None:
        """Leased jobs a stream cannot carry go to the dead-letter queue at once, each on its
        own, with the reason as last_error: sent, they would break the stream for their whole
        batch (then expire, and be leased again, at every neighbour's cost)."""
        nacks = [NackItem(Lease(str(row.id), str(row.lease_token)), validate.error_text(why),
                          permanent=True) for row, why in refused]
        _, outcomes = await self.completer.settle([], nacks)
        dead = []
        for item, outcome in zip(nacks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("could not dead-letter job %s (%s); its lease will expire instead",
                            item.lease.job_id, outcome)
            else:
                dead.append(item.lease.job_id)
                log.warning("dead-lettered job %s, which a lease stream cannot carry: %s",
                            item.lease.job_id, item.error)
        self.metrics.settled_jobs(dead, "dead", by_worker=False)

    def _abort_stalled(self, context: Ctx, details: str) -> None:
        """End a lease stream the dispatcher closed while its RPC is stuck in a write that the
        client never takes. The status goes out after what is queued: a client that reads again
        learns why, and the call is gone once its client is."""

        async def abort() -> None:
            if context.done():
                return
            with contextlib.suppress(Exception):  # abort() raises, always
                await context.abort(grpc.StatusCode.ABORTED, details)

        task = asyncio.create_task(abort(), name="abort stalled lease stream")
        self._aborting.add(task)
        task.add_done_callback(self._aborting.discard)

    @unary
    async def Ack(self, request: pb.AckRequest, context: Ctx) -> pb.AckResponse:
        item = validate.ack(request)
        await self.completer.ack(item)
        self.metrics.settled_job(item.lease.job_id, "completed")
        return pb.AckResponse()

    @unary
    async def Nack(self, request: pb.NackRequest, context: Ctx) -> pb.NackResponse:
        item = validate.nack(request)
        outcome = await self.completer.nack(item)
        retried = outcome.status == JobStatus.PENDING
        self.metrics.settled_job(item.lease.job_id, "failed" if retried else "dead")
        resp = pb.NackResponse(status=pb.Job.Status.Value(outcome.status))
        if retried:
            resp.run_at.CopyFrom(convert.ts(outcome.run_at))
        return resp

    @unary
    async def Settle(self, request: pb.SettleRequest, context: Ctx) -> pb.SettleResponse:
        acks, nacks = validate.settle(request)
        ack_results, nack_results = await self.completer.settle(acks, nacks)
        # Each answer names the job as the caller spelled it.
        resp = pb.SettleResponse()
        add, completed = resp.acks.add, pb.Job.COMPLETED
        acked: list[str] = []
        answer_all = not request.refused_acks_only
        for i, (req, item, result) in enumerate(zip(request.acks, acks, ack_results, strict=True)):
            if result is None:
                acked.append(item.lease.job_id)
                if answer_all:
                    add(job_id=req.job_id, status=completed, index=i)
            else:
                self._settle_result(add(job_id=req.job_id, index=i), item.lease.job_id, result)
        self.metrics.settled_jobs(acked, "completed")
        for nreq, nitem, nresult in zip(request.nacks, nacks, nack_results, strict=True):
            self._settle_result(resp.nacks.add(job_id=nreq.job_id), nitem.lease.job_id, nresult)
        return resp

    def _settle_result(self, out: pb.SettleResult, job_id: str,
                       result: NackOutcome | BaseException) -> None:
        """Fill in place the answer for a refused item or a nack that landed."""
        if isinstance(result, BaseException):
            code, message = _status_for(result, "Settle")
            out.code, out.message = code.value[0], message
        else:
            out.status = pb.Job.Status.Value(result.status)
            retried = result.status == JobStatus.PENDING
            self.metrics.settled_job(job_id, "failed" if retried else "dead")
            if retried:
                convert.set_ts(out.run_at, result.run_at)

    @unary
    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: Ctx) -> pb.HeartbeatResponse:
        leases = validate.leases(request)
        deadline, lost = await self.store.extend(leases, validate.lease_seconds(request.lease_seconds))
        self.dispatcher.settled(lost)
        self.dispatcher.heartbeated(le.job_id for le in leases)
        self.metrics.forget(lost)
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
        where, order = validate.list_query(request)
        jobs, token = await self._page(where, order, request.page_size, request.page_token)
        return pb.ListJobsResponse(jobs=jobs, next_page_token=token)

    @unary
    async def CancelJob(self, request: pb.CancelJobRequest, context: Ctx) -> pb.Job:
        job_id = validate.job_id("id", request.id)
        reason = validate.cancel_reason(request.reason)
        row = await self.store.cancel(job_id, reason)
        self.dispatcher.settled([str(job_id)])
        self.metrics.forget([str(job_id)])
        return convert.job(row)

    @unary
    async def ListDeadJobs(self, request: pb.ListDeadJobsRequest,
                           context: Ctx) -> pb.ListDeadJobsResponse:
        where = JobFilter(status=JobStatus.DEAD, type=(
            validate.check_type("type", request.type) if request.type else None))
        jobs, token = await self._page(where, Order.NEWEST, request.page_size,
                                       request.page_token)
        return pb.ListDeadJobsResponse(jobs=jobs, next_page_token=token)

    @unary
    async def RetryDeadJob(self, request: pb.RetryDeadJobRequest, context: Ctx) -> pb.Job:
        return convert.job(await self.store.retry_dead(validate.job_id("id", request.id)))

    @unary
    async def RetryDeadJobs(self, request: pb.RetryDeadJobsRequest,
                            context: Ctx) -> pb.BulkResponse:
        where = validate.job_filter(request.filter)
        if request.dry_run:
            return pb.BulkResponse(count=await self.store.count_matching(where,
                                                                         validate.DEAD_ONLY))
        return pb.BulkResponse(count=await self.store.retry_dead_many(where))

    @unary
    async def PurgeDeadJobs(self, request: pb.PurgeDeadJobsRequest,
                            context: Ctx) -> pb.BulkResponse:
        where = validate.purge_filter(request)
        if request.dry_run:
            return pb.BulkResponse(count=await self.store.count_matching(where,
                                                                         validate.DEAD_ONLY))
        return pb.BulkResponse(count=await self.store.purge_dead_many(where))

    @unary
    async def CancelJobs(self, request: pb.CancelJobsRequest, context: Ctx) -> pb.BulkResponse:
        where = validate.cancel_filter(request)
        reason = validate.cancel_reason(request.reason)
        if request.dry_run:
            return pb.BulkResponse(count=await self.store.count_matching(where,
                                                                         validate.UNFINISHED))
        count, running = await self.store.cancel_many(where, reason)
        self.dispatcher.settled(running)
        self.metrics.forget(running)
        return pb.BulkResponse(count=count)

    @unary
    async def GetThroughput(self, request: pb.GetThroughputRequest,
                            context: Ctx) -> pb.ThroughputResponse:
        return convert.throughput(await self.store.throughput(
            validate.throughput_minutes(request)))

    @unary
    async def Stats(self, request: pb.StatsRequest, context: Ctx) -> pb.QueueStats:
        # Read fresh, not from the watchers' cache: the counters are cheap to read, and a
        # caller who just enqueued expects to see the job.
        return convert.stats(await self.store.snapshot())

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

    @unary
    async def GetQueue(self, request: pb.GetQueueRequest, context: Ctx) -> pb.Queue:
        return await self._queue(validate.check_type("type", request.type))

    @unary
    async def ListQueues(self, request: pb.ListQueuesRequest,
                         context: Ctx) -> pb.ListQueuesResponse:
        snap = await self.store.snapshot()
        return pb.ListQueuesResponse(queues=[convert.queue(t) for t in snap.types])

    @unary
    async def UpdateQueue(self, request: pb.UpdateQueueRequest, context: Ctx) -> pb.Queue:
        type_, change = validate.queue_update(request)
        await self.store.update_queue(type_, change)
        return await self._queue(type_)

    @unary
    async def PauseQueue(self, request: pb.PauseQueueRequest, context: Ctx) -> pb.Queue:
        return await self._set_paused(request.type, True)

    @unary
    async def ResumeQueue(self, request: pb.ResumeQueueRequest, context: Ctx) -> pb.Queue:
        return await self._set_paused(request.type, False)

    async def _set_paused(self, type_: str, paused: bool) -> pb.Queue:
        validate.check_type("type", type_)
        await self.store.update_queue(type_, lambda q: dataclasses.replace(q, paused=paused))
        return await self._queue(type_)

    async def _queue(self, type_: str) -> pb.Queue:
        """The queue of ``type_`` as it is now: any type has one, configured or not."""
        snap = await self.store.snapshot()
        found = next((t for t in snap.types if t.type == type_), TypeCounts(type_))
        return convert.queue(found)

    @unary
    async def PutSchedule(self, request: pb.Schedule, context: Ctx) -> pb.Schedule:
        row = await self.store.put_schedule(validate.schedule(request))
        self.schedules_changed()
        return convert.schedule(row)

    @unary
    async def GetSchedule(self, request: pb.GetScheduleRequest, context: Ctx) -> pb.Schedule:
        return convert.schedule(await self.store.get_schedule(validate.check_type("name",
                                                                                  request.name)))

    @unary
    async def ListSchedules(self, request: pb.ListSchedulesRequest,
                            context: Ctx) -> pb.ListSchedulesResponse:
        limit = validate.page_size(request.page_size)
        rows = await self.store.list_schedules(validate.schedule_page_token(request.page_token),
                                               limit + 1)
        token = rows[limit - 1].name if len(rows) > limit else ""
        return pb.ListSchedulesResponse(schedules=[convert.schedule(r) for r in rows[:limit]],
                                        next_page_token=token)

    @unary
    async def DeleteSchedule(self, request: pb.DeleteScheduleRequest,
                             context: Ctx) -> pb.DeleteScheduleResponse:
        await self.store.delete_schedule(validate.check_type("name", request.name))
        return pb.DeleteScheduleResponse()

    async def _page(self, where: JobFilter, order: Order, size: int,
                    token: str) -> tuple[list[pb.Job], str]:
        limit = validate.page_size(size)
        rows = await self.store.list_jobs(where, order, paging.decode(token, order, where),
                                          limit + 1)
        next_token = paging.encode(order, where, rows[limit - 1]) if len(rows) > limit else ""
        return [convert.job(r) for r in rows[:limit]], next_token


class Malformed:
    """A request whose bytes are not a valid message (truncated, invalid UTF-8, nested too
    deep, a bad wire type): the method answers INVALID_ARGUMENT instead of grpc's UNKNOWN."""

    def __init__(self, type_name: str, exc: Exception) -> None:
        self.detail = f"request is not a valid {type_name} message: {exc}"


def _parser(cls: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, RecursionError, ValueError) as exc:
            return Malformed(cls.DESCRIPTOR.full_name, exc)

    return parse


def _refusing_malformed(fn: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
    if streaming:
        async def stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.detail)
            async for item in fn(request, context):
                yield item

        return stream

    async def call(request: Any, context: Ctx) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.detail)
        return await fn(request, context)

    return call


def add_to_server(servicer: BrokerServicer, server: grpc.aio.Server) -> None:
    """``add_BrokerServicer_to_server``, except that requests which do not parse are answered
    INVALID_ARGUMENT (grpc's own deserialization failure is UNKNOWN, and logs a traceback)."""
    service = pb.DESCRIPTOR.services_by_name["Broker"]
    handlers = {}
    for method in service.methods:
        request = _parser(getattr(pb, method.input_type.name))
        response = getattr(pb, method.output_type.name).SerializeToString
        fn = getattr(servicer, method.name)
        if method.server_streaming:
            fn = servicer.streams.counted(fn)
        fn = _refusing_malformed(fn, method.server_streaming)
        make = (grpc.stream_stream_rpc_method_handler if method.client_streaming
                else grpc.unary_stream_rpc_method_handler if method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(fn, request_deserializer=request, response_serializer=response)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]
