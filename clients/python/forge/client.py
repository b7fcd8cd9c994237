"""Typed wrappers around the generated forge.v1 stubs.

Both clients speak to one broker target (``host:port``, default ``FORGE_BROKER`` or
``localhost:50051``), give every call a deadline, and return the proto messages themselves
(``forge.v1.broker_pb2.Job`` and friends), so nothing is lost in translation.

Security (see :mod:`forge.security`): ``token`` (default ``FORGE_TOKEN``) is sent as
``authorization: Bearer`` metadata on every call; ``ca_file`` (default ``FORGE_CA_FILE``)
switches the channel to TLS, with ``FORGE_TLS_CLIENT_CERT``/``FORGE_TLS_CLIENT_KEY`` for mutual
TLS. Or pass a ready ``security=ChannelSecurity(...)``. Nothing set: a plain channel, no token.

Only ``AsyncClient`` is written by hand: ``Client``, at the end of this file, is generated from
it by ``scripts/sync_client.py``, so the two always have the same methods, arguments and docs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from forge.security import ChannelSecurity
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT = 10.0

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
# A unary method of the stub; Client's is the blocking one, AsyncClient's the awaitable one.
_Unary: TypeAlias = grpc.UnaryUnaryMultiCallable
_AsyncUnary: TypeAlias = grpc.aio.UnaryUnaryMultiCallable


class ForgeClientError(Exception):
    """A call failed; ``code`` is the gRPC status code, ``details`` the broker's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def default_target() -> str:
    return os.environ.get("FORGE_BROKER") or DEFAULT_TARGET


def enqueue_request(type: str, payload: Mapping[str, Any] | None = None, *,
                    priority: int | None = None, max_retries: int | None = None,
                    run_at: datetime | None = None,
                    idempotency_key: str | None = None) -> pb.EnqueueRequest:
    """Build an EnqueueRequest; unset options take the broker's defaults."""
    req = pb.EnqueueRequest(type=type, idempotency_key=idempotency_key or "")
    if payload is not None:
        s = Struct()
        s.update(dict(payload))
        req.payload.CopyFrom(s)
    if priority is not None:
        req.priority = priority
    if max_retries is not None:
        req.max_retries = max_retries
    if run_at is not None:
        ts = Timestamp()
        ts.FromDatetime(run_at)
        req.run_at.CopyFrom(ts)
    return req


def _status(name: str | None) -> pb.Job.Status.ValueType:
    return pb.Job.Status.Value(name.upper()) if name else pb.Job.STATUS_UNSPECIFIED


def _error(exc: grpc.RpcError) -> ForgeClientError:
    # AioRpcError (the async client's) is not a grpc.Call, but has the same two methods.
    if isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return ForgeClientError(exc.code(), exc.details() or "")
    return ForgeClientError(grpc.StatusCode.UNKNOWN, str(exc))


def _security(security: ChannelSecurity | None, token: str | None,
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
    with _security(security, None, None).channel(target) as channel:
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


class AsyncClient:
    """asyncio client with the same methods as ``Client``, each a coroutine."""

    def __init__(self, target: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 token: str | None = None, ca_file: str | None = None,
                 security: ChannelSecurity | None = None) -> None:
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = _security(security, token, ca_file).aio_channel(self.target)
        self.stub = pb_grpc.BrokerStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, rpc: _AsyncUnary[_Req, _Resp], request: _Req) -> _Resp:
        try:
            return await rpc(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    async def enqueue(
        self, type: str, payload: Mapping[str, Any] | None = None, *, priority: int | None = None,
        max_retries: int | None = None, run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> pb.Job:
        """Enqueue one job; returns it (the existing one for a known idempotency key)."""
        req = enqueue_request(type, payload, priority=priority, max_retries=max_retries,
                              run_at=run_at, idempotency_key=idempotency_key)
        resp = await self._call(self.stub.Enqueue, req)
        return resp.job

    async def enqueue_batch(self, requests: Sequence[pb.EnqueueRequest]) -> list[pb.Job]:
        """Enqueue all of ``requests`` or none; jobs come back in request order."""
        resp = await self._call(self.stub.EnqueueBatch, pb.EnqueueBatchRequest(jobs=requests))
        return list(resp.jobs)

    async def get(self, job_id: str) -> pb.Job:
        """The job with this id; ForgeClientError NOT_FOUND when there is none."""
        return await self._call(self.stub.GetJob, pb.GetJobRequest(id=job_id))

    async def list(
        self, *, status: str | None = None, type: str | None = None, page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListJobsResponse:
        """One page of jobs, newest first; ``status`` is a name such as ``"DEAD"``."""
        req = pb.ListJobsRequest(status=_status(status), type=type or "", page_size=page_size,
                                 page_token=page_token)
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


# --- Generated from AsyncClient by scripts/sync_client.py: edit AsyncClient, then run it. ---


class Client:
    """Blocking client. Use as a context manager, or call ``close()``."""

    def __init__(self, target: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 token: str | None = None, ca_file: str | None = None,
                 security: ChannelSecurity | None = None) -> None:
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = _security(security, token, ca_file).channel(self.target)
        self.stub = pb_grpc.BrokerStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, rpc: _Unary[_Req, _Resp], request: _Req) -> _Resp:
        try:
            return rpc(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def enqueue(
        self, type: str, payload: Mapping[str, Any] | None = None, *, priority: int | None = None,
        max_retries: int | None = None, run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> pb.Job:
        """Enqueue one job; returns it (the existing one for a known idempotency key)."""
        req = enqueue_request(type, payload, priority=priority, max_retries=max_retries,
                              run_at=run_at, idempotency_key=idempotency_key)
        resp = self._call(self.stub.Enqueue, req)
        return resp.job

    def enqueue_batch(self, requests: Sequence[pb.EnqueueRequest]) -> list[pb.Job]:
        """Enqueue all of ``requests`` or none; jobs come back in request order."""
        resp = self._call(self.stub.EnqueueBatch, pb.EnqueueBatchRequest(jobs=requests))
        return list(resp.jobs)

    def get(self, job_id: str) -> pb.Job:
        """The job with this id; ForgeClientError NOT_FOUND when there is none."""
        return self._call(self.stub.GetJob, pb.GetJobRequest(id=job_id))

    def list(
        self, *, status: str | None = None, type: str | None = None, page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListJobsResponse:
        """One page of jobs, newest first; ``status`` is a name such as ``"DEAD"``."""
        req = pb.ListJobsRequest(status=_status(status), type=type or "", page_size=page_size,
                                 page_token=page_token)
        return self._call(self.stub.ListJobs, req)

    def cancel(self, job_id: str, reason: str = "") -> pb.Job:
        """Cancel a PENDING, PROCESSING or DEAD job; returns it."""
        return self._call(self.stub.CancelJob, pb.CancelJobRequest(id=job_id, reason=reason))

    def stats(self) -> pb.QueueStats:
        """A snapshot of the queue's counts."""
        return self._call(self.stub.Stats, pb.StatsRequest())

    def dead(
        self, *, type: str | None = None, page_size: int = 0, page_token: str = "",
    ) -> pb.ListDeadJobsResponse:
        """One page of the dead-letter queue, newest first."""
        req = pb.ListDeadJobsRequest(type=type or "", page_size=page_size, page_token=page_token)
        return self._call(self.stub.ListDeadJobs, req)

    def retry_dead(self, job_id: str) -> pb.Job:
        """Send a DEAD job back to the queue; returns it, PENDING."""
        return self._call(self.stub.RetryDeadJob, pb.RetryDeadJobRequest(id=job_id))
