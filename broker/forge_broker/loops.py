"""The broker's background loops: run a job every N seconds until cancelled, and say when it
starts failing and when it recovers, not on every failed round in between."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from forge_broker.errors import DATABASE_ERRORS


class Outage:
    """The failures of one loop, logged once per run of them: a database outage of an hour is
    one warning and one recovery line, not one warning per round."""

    def __init__(self, log: logging.Logger, name: str) -> None:
        self.log = log
        self.name = name
        self.failures = 0

    def failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures > 1:
            return
        if isinstance(exc, DATABASE_ERRORS):
            self.log.warning("%s failed: %s", self.name, exc)
        else:  # not the database: a bug, so the traceback goes with it
            self.log.error("%s failed", self.name, exc_info=exc)

    def succeeded(self) -> None:
        if self.failures:
            self.log.info("%s recovered after %d failed rounds", self.name, self.failures)
            self.failures = 0


async def every(seconds: float, job: Callable[[], Awaitable[object]], log: logging.Logger,
                name: str, *, at_once: bool = False,
                until: Callable[[], bool] | None = None,
                pause: Callable[[], Awaitable[object]] | None = None) -> None:
    """Run ``job`` every ``seconds`` (the first time after one interval, or at once), until
    cancelled or ``until()`` says so; or, given ``pause``, whenever it returns instead of
    after ``seconds``. A round that raises, whatever the exception, is logged (see Outage) and
    the next round runs on time: one bad round never ends the loop."""
    outage = Outage(log, name)
    wait = not at_once
    while until is None or not until():
        if wait:
            await (asyncio.sleep(seconds) if pause is None else pause())
        wait = True
        try:
            await job()
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.succeeded()


async def cancel(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel these tasks and wait until each has ended."""
    running = [t for t in tasks if t is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
