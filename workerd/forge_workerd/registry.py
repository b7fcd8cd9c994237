"""The handler registry: job type name → the function that runs it, and how long it may take."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from forge_common.names import TYPE_NAME, TYPE_NAME_RULE
from forge_workerd.context import JobContext
from forge_workerd.errors import HandlerError

Result = Mapping[str, Any] | None
SyncFn = Callable[[JobContext], Result]
AsyncFn = Callable[[JobContext], Awaitable[Result]]
HandlerFn = SyncFn | AsyncFn
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Handler:
    """A registered handler. ``timeout`` (seconds) bounds each attempt; None means no bound."""

    name: str
    fn: HandlerFn
    timeout: float | None
    is_async: bool

    @property
    def origin(self) -> str:
        return f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', '?')}"


@dataclass(frozen=True)
class Schedule:
    """A periodic schedule declared with a handler (``@handler("report", schedule=...)``):
    workerd puts it on the broker when it starts, to enqueue a job of the handler's type at each
    fire time. Exactly one of ``cron`` (five fields, read in ``timezone``, default UTC) and
    ``every`` (a timedelta or seconds, at least 1 s); the broker checks them. ``name`` defaults
    to the job type."""

    cron: str | None = None
    every: timedelta | float | None = None
    timezone: str = ""
    payload: Mapping[str, Any] | None = None
    priority: int | None = None
    max_retries: int | None = None
    name: str | None = None


class Registry:
    """Handlers by job type, and the schedules declared with them. The daemon leases exactly the
    types registered here, and puts the schedules when it starts."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self.schedules: dict[str, tuple[str, Schedule]] = {}
        """Declared schedules by name: (job type, schedule)."""

    def register(self, name: str, fn: HandlerFn, *, timeout: float | None = None) -> Handler:
        """Add ``fn`` as the handler of ``name``; HandlerError for a bad name or a second handler."""
        if not TYPE_NAME.fullmatch(name):
            raise HandlerError(f"handler name {name!r}: {TYPE_NAME_RULE}")
        if timeout is not None and not timeout > 0:
            raise HandlerError(f"handler {name!r}: timeout must be positive, got {timeout}")
        new = Handler(name, fn, timeout, inspect.iscoroutinefunction(fn))
        old = self._handlers.get(name)
        # The same function seen twice (a module imported under two names) is not a conflict.
        if old is not None and old.origin != new.origin:
            raise HandlerError(f"job type {name!r} already has a handler: {old.origin}")
        self._handlers[name] = new
        return new

    def add_schedule(self, type: str, schedule: Schedule) -> None:
        """Declare ``schedule`` for jobs of ``type``; HandlerError for a second, different
        schedule of the same name."""
        name = schedule.name or type
        old = self.schedules.get(name)
        if old is not None and old != (type, schedule):
            raise HandlerError(f"schedule {name!r} is declared twice")
        self.schedules[name] = (type, schedule)

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


REGISTRY = Registry()
"""Where ``@handler`` registers unless told otherwise; the daemon runs what is in it."""


def handler(name: str, *, timeout: float | None = None, schedule: Schedule | None = None,
            registry: Registry | None = None) -> Callable[[F], F]:
    """Register the decorated function (sync or async, taking a JobContext) for job type ``name``.

    It returns a JSON object (a dict) stored as the job's result, or None. Raise ``Retry`` to try
    again later, ``Fail`` to give up for good; any other exception is a failed attempt retried
    with backoff. ``timeout`` bounds each attempt in seconds (a job's payload may override it
    with ``_timeout``). ``schedule`` also enqueues such a job periodically (see ``Schedule``).
    """

    def register(fn: F) -> F:
        target = REGISTRY if registry is None else registry
        target.register(name, fn, timeout=timeout)
        if schedule is not None:
            target.add_schedule(name, schedule)
        return fn

    return register


def load_modules(modules: Iterable[str]) -> None:
    """Import each module path so its ``@handler`` decorators run; HandlerError names a failure."""
    for module in modules:
        try:
            importlib.import_module(module)
        except HandlerError:
            raise
        except Exception as exc:
            raise HandlerError(f"cannot import handler module {module!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
