"""The event loop each service runs on: uvloop's where it is installed, else asyncio's own.

Python gRPC spends most of each call in the event loop and grpc's callbacks into it, and
uvloop (libuv) runs the same loop for less: about 15 % less broker CPU per unary call, and
less for each job a worker runs (docs/benchmarks.md). ``FORGE_EVENT_LOOP=asyncio`` runs
asyncio's own loop instead, on a platform uvloop does not build for (Windows) or to rule it out
when chasing a problem; ``uvloop`` insists on it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from forge_common.settings import SettingError

T = TypeVar("T")

VAR = "FORGE_EVENT_LOOP"
KINDS = ("uvloop", "asyncio")
DEFAULT = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
"""uvloop when it is installed (a dependency on every platform it builds for)."""


def kind(name: str, raw: str) -> str:
    """A setting's loop kind (``uvloop`` or ``asyncio``); SettingError naming ``name`` if it is
    neither, or uvloop is asked for and not installed."""
    value = raw.strip().lower()
    if value not in KINDS:
        raise SettingError(name, f"must be uvloop or asyncio, got {raw!r}")
    if value == "uvloop" and DEFAULT != "uvloop":
        raise SettingError(name, "uvloop is not installed here (pip install uvloop), "
                                 "or set asyncio")
    return value


def factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new loop of ``kind`` (checked by ``kind``)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: str) -> T:
    """``asyncio.run(main)`` on a loop of ``kind``."""
    with asyncio.Runner(loop_factory=factory(kind)) as runner:
        return runner.run(main)
