"""Typed wrappers around the generated forge.v1 stubs.

Both clients speak to one broker target (``host:port``, default ``FORGE_BROKER`` or
``localhost:50051``), give every call a deadline, and return the proto messages themselves
(``forge.v1.broker_pb2.Job`` and friends), so nothing is lost in translation.

Security (see :mod:`forge.security`): ``token`` (default ``FORGE_TOKEN``) is sent as
``authorization: Bearer`` metadata on every call; ``ca_file`` (default ``FORGE_CA_FILE``)
switches the channel to TLS, with ``FORGE_TLS_CLIENT_CERT``/``FORGE_TLS_CLIENT_KEY`` for mutual
TLS. Or pass a ready ``security=ChannelSecurity(...)``. Nothing set: a plain channel, no token.

Only ``AsyncClient`` is written by hand. ``Client`` is generated from it when the package is
built (``clients/python/sync_client.py``, run by ``make setup`` and by ``pip install``), into
``forge/_sync.py``, never committed: the two always have the same methods, arguments and docs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, overload

import grpc

from forge._calls import (
    BULK_TIMEOUT,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    AsyncUnary,
    ForgeClientError,
    Req,
    Resp,
    batch_answer,
    bulk_filter,
    default_target,
    enqueue_many_request,
    enqueue_request,
    error_from,
    order_value,
    payload_json,
    queue_update,
    schedule_message,
    security_for,
    set_times,
    status_value,
    trace_metadata,
    wait_ready,
)
from forge.security import ChannelSecurity
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc

__all__ = ["DEFAULT_TARGET", "DEFAULT_TIMEOUT", "AsyncClient", "Client", "ForgeClientError",
           "default_target", "enqueue_many_request", "enqueue_request", "payload_json",
           "schedule_message", "wait_ready"]


class AsyncClient:
    """asyncio client with the same methods as ``Client``, each a coroutine."""

    def __init__(self, target: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 token: str | None = None, ca_file: str | None = None,
                 security: ChannelSecurity | None = None) -> None:
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = security_for(security, token, ca_file).aio_channel(self.target)
        self.stub = pb_grpc.BrokerStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, rpc: AsyncUnary[Req, Resp], request: Req, *,
                    bulk: bool = False) -> Resp:
        """``rpc(request)`` within the client's timeout, or BULK_TIMEOUT if that is longer for
        a ``bulk`` call, which answers only once it has worked through every matching job."""
        seconds = max(self.timeout, BULK_TIMEOUT) if bulk else self.timeout
        try:
            return await rpc(request, timeout=seconds, metadata=trace_metadata())
        except grpc.RpcError as exc:
            raise error_from(exc) from None

    async def enqueue(
        self, type: str, payload: Mapping[str, Any] | None = None, *, priority: int | None = None,
        max_retries: int | None = None, run_at: datetime | None = None,
        idempotency_key: str | None = None, concurrency_key: str | None = None,
    ) -> pb.Job:
        """Enqueue one job; returns it (the existing one for a known idempotency key)."""
        req = enqueue_request(type, payload, priority=priority, max_retries=max_retries,
                              run_at=run_at, idempotency_key=idempotency_key,
                              concurrency_key=concurrency_key)
        resp = await self._call(self.stub.Enqueue, req)
        return resp.job

    @overload
    async def enqueue_batch(
        self, requests: Sequence[pb.EnqueueRequest], *, ids_only: Literal[False] = False,
    ) -> list[pb.Job]: ...

    @overload
    async def enqueue_batch(
        self, requests: Sequence[pb.EnqueueRequest], *, ids_only: Literal[True],
    ) -> list[str]: ...

    async def enqueue_batch(
        self, requests: Sequence[pb.EnqueueRequest], *, ids_only: bool = False,
    ) -> list[pb.Job] | list[str]:
        """Enqueue all of ``requests`` or none; jobs come back in request order. With
        ``ids_only``, only their ids (the existing job's for a known idempotency key): a
        cheaper answer (ANSWER_IDS) for both ends."""
        resp = await self._call(self.stub.EnqueueBatch, pb.EnqueueBatchRequest(
            jobs=requests, answer=batch_answer(ids_only)))
        return list(resp.ids) if ids_only else list(resp.jobs)

    @overload
    async def enqueue_many(
        self, type: str, payloads: Iterable[Mapping[str, Any]], *,
        ids_only: Literal[False] = False, priority: int | None = None,
        max_retries: int | None = None, run_at: datetime | None = None,
        concurrency_key: str | None = None,
    ) -> list[pb.Job]: ...

    @overload
    async def enqueue_many(
        self, type: str, payloads: Iterable[Mapping[str, Any]], *, ids_only: Literal[True],
        priority: int | None = None, max_retries: int | None = None,
        run_at: datetime | None = None, concurrency_key: str | None = None,
    ) -> list[str]: ...

    async def enqueue_many(
        self, type: str, payloads: Iterable[Mapping[str, Any]], *, ids_only: bool = False,
        priority: int | None = None, max_retries: int | None = None,
        run_at: datetime | None = None, concurrency_key: str | None = None,
    ) -> list[pb.Job] | list[str]:
        """Enqueue one job of ``type`` per payload, all or none, each with the same options
        (as ``enqueue`` takes them; no idempotency key, which names one job): the batch in
        columns (EnqueueBatch's template and payloads_json), cheaper to send and to check than
        ``enqueue_batch`` with a request per job. Answers as ``enqueue_batch`` does."""
        resp = await self._call(self.stub.EnqueueBatch, enqueue_many_request(
            type, payloads, ids_only=ids_only, priority=priority, max_retries=max_retries,
            run_at=run_at, concurrency_key=concurrency_key))
        return list(resp.ids) if ids_only else list(resp.jobs)

    async def get(self, job_id: str) -> pb.Job:
        """The job with this id; ForgeClientError NOT_FOUND when there is none."""
        return await self._call(self.stub.GetJob, pb.GetJobRequest(id=job_id))

    async def list(
        self, *, status: str | None = None, type: str | None = None, page_size: int = 0,
        page_token: str = "", type_prefix: str | None = None,
        concurrency_key: str | None = None, idempotency_key: str | None = None,
        worker_id: str | None = None, created_after: datetime | None = None,
        created_before: datetime | None = None, updated_after: datetime | None = None,
        updated_before: datetime | None = None, order: str | None = None,
        query: str | None = None, run_after: datetime | None = None,
    ) -> pb.ListJobsResponse:
        """One page of the jobs matching every filter given, in ``order`` (``"NEWEST"``, the
        default, ``"OLDEST"``, ``"RUN_AT"`` or ``"PRIORITY"``); ``status`` is a name such as
        ``"DEAD"``; ``query`` finds a job id, idempotency key or concurrency key;
        ``run_after`` keeps jobs whose run_at is later (``status="PENDING"`` and now: the
        scheduled ones). ``"RUN_AT"`` and ``"PRIORITY"`` need a status other than
        ``"COMPLETED"``. A ``page_token`` is read with the filters and order of the page that
        gave it."""
        req = pb.ListJobsRequest(
            status=status_value(status), type=type or "", page_size=page_size,
            page_token=page_token, type_prefix=type_prefix or "",
            concurrency_key=concurrency_key or "", idempotency_key=idempotency_key or "",
            worker_id=worker_id or "", order=order_value(order), query=query or "")
        set_times(req, created_after=created_after, created_before=created_before,
                  updated_after=updated_after, updated_before=updated_before,
                  run_after=run_after)
        return await self._call(self.stub.ListJobs, req)

    async def cancel(self, job_id: str, reason: str = "") -> pb.Job:
        """Cancel a PENDING, PROCESSING or DEAD job; returns it."""
        return await self._call(self.stub.CancelJob, pb.CancelJobRequest(id=job_id, reason=reason))

    async def stats(self) -> pb.QueueStats:
        """A snapshot of the queue's counts."""
        return await self._call(self.stub.Stats, pb.StatsRequest())

    async def dead(
        self, *, type: str | None = None, page_size: int = 0, page_token: str = "",
    ) -> pb.ListDeadJobsResponse:
        """One page of the dead-letter queue, newest first."""
        req = pb.ListDeadJobsRequest(type=type or "", page_size=page_size, page_token=page_token)
        return await self._call(self.stub.ListDeadJobs, req)

    async def retry_dead(self, job_id: str) -> pb.Job:
        """Send a DEAD job back to the queue; returns it, PENDING."""
        return await self._call(self.stub.RetryDeadJob, pb.RetryDeadJobRequest(id=job_id))

    async def retry_dead_jobs(
        self, *, type: str | None = None, ids: Sequence[str] = (), dry_run: bool = False,
        **matching: Any,
    ) -> pb.BulkResponse:
        """Send every DEAD job of ``type`` and/or ``ids`` (neither: all of them) back to the
        queue; ``count`` says how many (with ``dry_run``, how many it would, changing
        nothing). ``matching``: the other JobFilter fields (``type_prefix``,
        ``concurrency_key``, ``idempotency_key``, ``created_after``, ``created_before``,
        ``status``, ``query``, ``run_after``), as ``list`` takes them."""
        req = pb.RetryDeadJobsRequest(filter=bulk_filter(type, ids, **matching), dry_run=dry_run)
        return await self._call(self.stub.RetryDeadJobs, req, bulk=True)

    async def purge_dead_jobs(
        self, *, type: str | None = None, ids: Sequence[str] = (),
        older_than: timedelta | float | None = None, all: bool = False, dry_run: bool = False,
        **matching: Any,
    ) -> pb.BulkResponse:
        """Delete every DEAD job of ``type`` and/or ``ids``, dead for longer than
        ``older_than`` (a timedelta or seconds) if given; with no filter at all, ``all`` must
        be True. ``count`` says how many went (``dry_run``: would go). ``matching`` as for
        ``retry_dead_jobs``."""
        req = pb.PurgeDeadJobsRequest(filter=bulk_filter(type, ids, **matching), all=all,
                                      dry_run=dry_run)
        if older_than is not None:
            req.older_than.FromTimedelta(older_than if isinstance(older_than, timedelta)
                                         else timedelta(seconds=older_than))
        return await self._call(self.stub.PurgeDeadJobs, req, bulk=True)

    async def cancel_jobs(
        self, *, type: str | None = None, ids: Sequence[str] = (), all: bool = False,
        reason: str = "", dry_run: bool = False, **matching: Any,
    ) -> pb.BulkResponse:
        """Cancel every PENDING, PROCESSING or DEAD job of ``type`` and/or ``ids`` (with
        ``status="PENDING"`` or ``"PROCESSING"`` among ``matching``, only those); with no
        filter at all, ``all`` must be True. ``count`` says how many (``dry_run``: would be).
        ``matching`` as for ``retry_dead_jobs``."""
        req = pb.CancelJobsRequest(filter=bulk_filter(type, ids, **matching), all=all,
                                   reason=reason, dry_run=dry_run)
        return await self._call(self.stub.CancelJobs, req, bulk=True)

    async def throughput(self, window: timedelta | float | None = None) -> pb.ThroughputResponse:
        """Attempts per type and minute, and each minute's queue wait, over the last
        ``window`` (a timedelta or seconds; None: an hour; at most two hours)."""
        req = pb.GetThroughputRequest()
        if window is not None:
            req.window.FromTimedelta(window if isinstance(window, timedelta)
                                     else timedelta(seconds=window))
        return await self._call(self.stub.GetThroughput, req)

    async def list_queues(self) -> pb.ListQueuesResponse:
        """Every type that has jobs or queue settings, by type."""
        return await self._call(self.stub.ListQueues, pb.ListQueuesRequest())

    async def get_queue(self, type: str) -> pb.Queue:
        """One type's queue: its settings (unlimited when never set) and counts."""
        return await self._call(self.stub.GetQueue, pb.GetQueueRequest(type=type))

    async def update_queue(
        self, type: str, *, concurrency_limit: int | None = None,
        key_concurrency_limit: int | None = None, rate: tuple[int, float] | None = None,
        paused: bool | None = None,
    ) -> pb.Queue:
        """Change the settings given and no other (0: unlimited); ``rate`` is (limit, period
        in seconds), (0, 0) for none. Returns the queue."""
        req = queue_update(type, paused=paused, concurrency_limit=concurrency_limit,
                           key_concurrency_limit=key_concurrency_limit, rate=rate)
        return await self._call(self.stub.UpdateQueue, req)

    async def pause_queue(self, type: str) -> pb.Queue:
        """Stop leasing jobs of ``type`` on every broker (running ones finish)."""
        return await self._call(self.stub.PauseQueue, pb.PauseQueueRequest(type=type))

    async def resume_queue(self, type: str) -> pb.Queue:
        """Lease jobs of a paused ``type`` again."""
        return await self._call(self.stub.ResumeQueue, pb.ResumeQueueRequest(type=type))


    async def put_schedule(
        self, name: str, type: str, payload: Mapping[str, Any] | None = None, *,
        cron: str | None = None, every: timedelta | float | None = None, timezone: str = "",
        priority: int | None = None, max_retries: int | None = None, paused: bool = False,
    ) -> pb.Schedule:
        """Create or replace the schedule ``name``: a job of ``type`` with ``payload`` at each
        fire time of ``cron`` (five fields, in ``timezone``, default UTC) or ``every`` period
        (a timedelta or seconds, at least 1 s). Returns it as stored, with its next_run_at."""
        schedule = schedule_message(name, type, payload, cron=cron, every=every,
                                    timezone=timezone, priority=priority,
                                    max_retries=max_retries, paused=paused)
        return await self._call(self.stub.PutSchedule, schedule)

    async def get_schedule(self, name: str) -> pb.Schedule:
        """The schedule called ``name``; ForgeClientError NOT_FOUND when there is none."""
        return await self._call(self.stub.GetSchedule, pb.GetScheduleRequest(name=name))

    async def list_schedules(
        self, *, page_size: int = 0, page_token: str = "",
    ) -> pb.ListSchedulesResponse:
        """One page of schedules, by name."""
        req = pb.ListSchedulesRequest(page_size=page_size, page_token=page_token)
        return await self._call(self.stub.ListSchedules, req)

    async def delete_schedule(self, name: str) -> None:
        """Delete the schedule called ``name`` (the jobs it enqueued stay)."""
        await self._call(self.stub.DeleteSchedule, pb.DeleteScheduleRequest(name=name))


from forge._sync import Client  # noqa: E402  (generated from AsyncClient, which it needs first)
