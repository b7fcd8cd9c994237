"""The memory trimmer: hands the heap pages that big requests freed back to the system.

glibc keeps freed memory in its heaps (one per thread that allocated: gRPC's threads receive
the messages, the event loop's thread parses them) for reuse, and returns little of it on its
own. Measured on a broker with the 16 MiB message limit: eight EnqueueBatch calls of 16 MB
(10,001 jobs each, so validation refuses them), sent at once and then in turn, left it 300 to
420 MB above its 57 MB baseline; malloc_trim(0) brought it back to about 100 MB.
MALLOC_ARENA_MAX=2 alone left 180 to 320 MB, so the broker trims instead.

A round trims when glibc's heaps hold at least TRIM_AT free bytes (mallinfo2, summed over every
heap). Pages a trim gave back still count as free chunks, so once memory was freed in bulk most
rounds find little to give back: measured, such a trim takes 1 to 4 ms, in a thread of its own.
Rounds are TRIM_INTERVAL apart so that memory a busy broker frees and takes again at once is not
handed back and faulted in over and over. Under another C library (musl, macOS) there is nothing
to call and the service does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

from forge_broker.maintenance.service import Service

TRIM_AT = 32 * 1024 * 1024
"""Free bytes held in glibc's heaps that make a round trim them."""

TRIM_INTERVAL = 5.0
"""Seconds between the trimmer's rounds."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc() -> tuple[Callable[[], int], Callable[[int], int]] | None:
    """(free bytes held in glibc's heaps, malloc_trim), or None without glibc 2.33 or later."""
    try:
        libc = ctypes.CDLL(None)
        info, trim = libc.mallinfo2, libc.malloc_trim
    except (AttributeError, OSError):
        return None
    info.restype = _MallInfo2
    trim.argtypes = [ctypes.c_size_t]
    return (lambda: int(info().fordblks)), trim


class MemoryTrimmer(Service):
    name = "memory_trimmer"

    def __init__(self, interval: float = TRIM_INTERVAL) -> None:
        super().__init__(interval)
        self._glibc = _glibc()

    async def run(self) -> None:
        if self._glibc is None:
            return
        free_bytes, trim = self._glibc
        # In a thread, both: they walk every heap, and ctypes lets go of the GIL meanwhile.
        free = await asyncio.to_thread(free_bytes)
        if free >= TRIM_AT:
            await asyncio.to_thread(trim, 0)
            self.log.debug("gave back up to %d MB of freed heap memory", free >> 20)
