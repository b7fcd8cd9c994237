"""``EnqueueStream``: enqueue one job at a time over one open gRPC stream.

A message on an open stream costs the client and the broker about a third of a new call, and an
idle client's job reaches a waiting worker about half a millisecond sooner (docs/benchmarks.md),
so code that enqueues jobs one by one, often, keeps one of these open beside its client::

    async with AsyncClient() as client, EnqueueStream(client) as stream:
        job = await stream.enqueue("email.send", {"to": "a@example.com"})

Any number of tasks may await ``enqueue`` at once: their requests go out as they come, share
the broker's group commit, and each gets its own answer. asyncio only: the blocking ``Client``
has no stream (each of its calls is one Enqueue).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any

import grpc

from forge._calls import ForgeClientError, enqueue_request, error_from, trace_metadata
from forge.client import AsyncClient
from forge.v1 import broker_pb2 as pb

__all__ = ["EnqueueStream"]


class EnqueueStream:
    """An open ``EnqueueStream`` call of ``client``'s broker, from ``async with`` (or ``open``)
    until its end (or ``close``). Every enqueue waits at most the client's timeout for its
    answer. If the stream breaks, each enqueue still unanswered raises ForgeClientError
    (UNAVAILABLE, CANCELLED, ...) and the next one opens a new stream; such a job may or may
    not have been enqueued: give it an idempotency_key to send it again safely."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        # A call takes one write at a time: callers take turns, each writing its own request.
        self._writing = asyncio.Lock()
        self._waiting: dict[int, asyncio.Future[pb.EnqueueResponse]] = {}
        self._ids = itertools.count(1)

    async def __aenter__(self) -> EnqueueStream:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def open(self) -> None:
        """Open the stream now (``enqueue`` opens it when none is open)."""
        if self._call is None:
            self._call = self.client.stub.EnqueueStream(None, metadata=trace_metadata())
            self._reader = asyncio.create_task(self._read(self._call), name="forge-enqueue-stream")

    async def close(self) -> None:
        """Half-close the stream and wait for the answers still due."""
        call, reader = self._call, self._reader
        if call is None or reader is None:
            return
        self._call = self._reader = None
        async with self._writing:
            await _written(call.done_writing())
        await reader

    async def enqueue(
        self, type: str, payload: Mapping[str, Any] | None = None, *, priority: int | None = None,
        max_retries: int | None = None, run_at: datetime | None = None,
        idempotency_key: str | None = None, concurrency_key: str | None = None,
    ) -> pb.Job:
        """``AsyncClient.enqueue`` over the stream: the job (the existing one for a known
        idempotency key)."""
        req = enqueue_request(type, payload, priority=priority, max_retries=max_retries,
                              run_at=run_at, idempotency_key=idempotency_key,
                              concurrency_key=concurrency_key)
        return (await self.send(req)).job

    async def enqueue_id(
        self, type: str, payload: Mapping[str, Any] | None = None, *, priority: int | None = None,
        max_retries: int | None = None, run_at: datetime | None = None,
        idempotency_key: str | None = None, concurrency_key: str | None = None,
    ) -> str:
        """``enqueue``, answered with the job's id alone (ANSWER_IDS): a cheaper answer for
        both ends."""
        req = enqueue_request(type, payload, priority=priority, max_retries=max_retries,
                              run_at=run_at, idempotency_key=idempotency_key,
                              concurrency_key=concurrency_key)
        return (await self.send(req, id_only=True)).job.id

    async def send(self, request: pb.EnqueueRequest, *, id_only: bool = False
                   ) -> pb.EnqueueResponse:
        """Send one EnqueueRequest; its answer, as Enqueue gives it (with ``id_only``, the
        answer's job carries its id alone)."""
        self.open()
        call = self._call
        request_id = next(self._ids)
        answer: asyncio.Future[pb.EnqueueResponse] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        try:
            async with asyncio.timeout(self.client.timeout):
                async with self._writing:
                    failed = await _written(call.write(pb.EnqueueStreamRequest(
                        request_id=request_id, job=request, answer=_ANSWERS[id_only])))
                if failed is not None and not answer.done():
                    answer.set_exception(failed)
                return await answer
        except TimeoutError:
            raise ForgeClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"no answer within {self.client.timeout:g}s") from None
        finally:
            self._waiting.pop(request_id, None)

    async def _read(self, call: Any) -> None:
        """Hand each answer to its request; when the stream ends, fail the ones left."""
        failure = ForgeClientError(grpc.StatusCode.UNAVAILABLE, "the stream ended")
        try:
            async for resp in call:
                answer = self._waiting.get(resp.request_id)
                if answer is None or answer.done():
                    continue  # its caller timed out or went away
                if resp.WhichOneof("result") == "error":
                    answer.set_exception(ForgeClientError(
                        _CODES.get(resp.error.code, grpc.StatusCode.UNKNOWN), resp.error.message))
                else:
                    answer.set_result(resp.enqueued)
        except grpc.RpcError as exc:
            failure = _ended(exc)
        finally:
            if self._call is call:
                self._call = self._reader = None
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_exception(failure)


def _ended(exc: grpc.RpcError) -> ForgeClientError:
    """Why the stream ended, as its waiting enqueues raise it."""
    failure = error_from(exc)
    if failure.code is grpc.StatusCode.INTERNAL and failure.details.endswith("from Core"):
        # gRPC's own verdict on a write to a connection that broke, not the broker's.
        failure = ForgeClientError(grpc.StatusCode.UNAVAILABLE,
                                   f"the connection to the broker broke ({failure.details})")
    return failure


async def _written(write: Awaitable[None]) -> ForgeClientError | None:
    """Await a write (or the half-close) on the stream; None once gRPC has taken it, else
    why not. A write fails only when the stream has ended, and then the reader fails every
    waiting answer with the stream's own error; this one is for an answer it missed."""
    try:
        await write
    except grpc.RpcError as exc:
        return _ended(exc)
    except asyncio.InvalidStateError:  # the call ended before this write
        return ForgeClientError(grpc.StatusCode.UNAVAILABLE, "the stream ended")
    return None


_ANSWERS = (pb.EnqueueBatchRequest.ANSWER_JOBS, pb.EnqueueBatchRequest.ANSWER_IDS)

_CODES = {code.value[0]: code for code in grpc.StatusCode}
