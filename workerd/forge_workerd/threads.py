"""A pool of daemon threads for sync handlers.

Why not concurrent.futures.ThreadPoolExecutor: its threads are joined at interpreter exit and
its size is fixed, so one sync handler that ignores its timeout or the shutdown grace would
hold a slot forever and keep the process from exiting. Here a thread that is stuck is simply
not idle: new work gets a new thread, and exit does not wait for daemon threads.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

IDLE_SECONDS = 60.0
"""An idle thread exits after this long, so a burst does not leave threads behind."""


class DaemonPool:
    """Runs callables on daemon threads, reusing idle ones, and hands results to asyncio futures."""

    def __init__(self, name: str = "workerd-job") -> None:
        self._name = name
        self._work: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on a pool thread; the returned future (of the running loop) gets its outcome.

        Cancelling the future does not stop the thread; the result is then discarded.
        """
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._count += 1
            else:
                self._idle -= 1
        self._work.put((fn, fut))
        if spawn:
            threading.Thread(target=self._serve, name=f"{self._name}-{self._count}", daemon=True).start()
        return fut

    def _serve(self) -> None:
        while True:
            try:
                fn, fut = self._work.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # Exit only if no submit has counted on this thread meanwhile.
                    if self._idle > 0:
                        self._idle -= 1
                        return
                continue
            try:
                result = fn()
            except BaseException as exc:  # a handler's SystemExit is still just its failure
                _deliver(fut, None, exc)
            else:
                _deliver(fut, result, None)
            with self._lock:
                self._idle += 1


def _deliver(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    def settle() -> None:
        if fut.cancelled():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    try:
        fut.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop is closed: workerd is exiting and nobody waits for this result
