"""Schedules declared by handler modules (``@handler(..., schedule=Schedule(...))``), put on the
broker once when workerd starts.

Putting is idempotent: the broker keeps a schedule's next fire time when its timing is
unchanged, so a fleet of workerd processes restarting puts the same schedule many times and no
fire is delayed or skipped. A schedule an operator paused stays paused: workerd reads it first
and puts it back paused. A failure never stops workerd: an unreachable broker is retried with
backoff, a refusal (a bad expression, a token without the admin role) is logged and left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import grpc

from forge.client import schedule_message
from forge.v1 import broker_pb2 as pb
from forge_workerd.backoff import Backoff
from forge_workerd.link import RETRYABLE, RPC_TIMEOUT, Link
from forge_workerd.registry import Schedule

log = logging.getLogger("workerd.schedules")


async def put_all(link: Link, schedules: Mapping[str, tuple[str, Schedule]]) -> None:
    """Put every declared schedule, each until it is stored or refused."""
    for name, (type_, schedule) in schedules.items():
        try:
            await _put(link, name, type_, schedule)
        except Exception:  # a workerd bug, not the broker's answer: say so, and carry on
            log.exception("schedule %s not put", name)


async def _put(link: Link, name: str, type_: str, schedule: Schedule) -> None:
    backoff = Backoff(0.5, 30.0)
    while True:
        try:
            stored = await _put_once(link, name, type_, schedule)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE:
                log.error("schedule %s not put: %s: %s", name, exc.code().name, exc.details())
                return
            delay = backoff.next()
            # Once at WARNING: an outage's later retries are the lease loop's news as well.
            level = logging.WARNING if delay <= backoff.initial else logging.DEBUG
            log.log(level, "schedule %s not put yet (%s); retrying with backoff", name,
                    exc.code().name)
            await asyncio.sleep(delay)
            continue
        when = (stored.next_run_at.ToDatetime().isoformat() + "Z"
                if stored.HasField("next_run_at") else "never: paused")
        log.info("schedule %s put: next run %s", name, when)
        return


async def _put_once(link: Link, name: str, type_: str, schedule: Schedule) -> pb.Schedule:
    """Put the schedule, paused if it is stored paused now (an operator's pause stands)."""
    try:
        current = await link.stub.GetSchedule(pb.GetScheduleRequest(name=name),
                                              timeout=RPC_TIMEOUT)
        paused = current.paused
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        paused = False
    message = schedule_message(name, type_, schedule.payload, cron=schedule.cron,
                               every=schedule.every, timezone=schedule.timezone,
                               priority=schedule.priority, max_retries=schedule.max_retries,
                               paused=paused)
    return await link.stub.PutSchedule(message, timeout=RPC_TIMEOUT)
