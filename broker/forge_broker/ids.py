"""Job ids: time-ordered UUIDs (version 7), made in the broker so batch results map back."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_MS_MASK = (1 << 48) - 1
_RAND_MASK = (1 << 62) - 1
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


def uuid7s(n: int) -> list[uuid.UUID]:
    """``n`` fresh version-7 UUIDs, in increasing order (one lock and one read of the random
    source for the lot: a batch enqueue asks for thousands)."""
    global _last_ms, _counter
    rand = os.urandom(8 * n + 1)
    out: list[uuid.UUID] = []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = rand[-1]  # start low, leave room to count
        else:
            # Same (or an earlier) millisecond: keep order with the 12-bit counter.
            _counter += 1
        for k in range(n):
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            rand_b = int.from_bytes(rand[8 * k:8 * k + 8], "big") & _RAND_MASK
            out.append(_uuid((_last_ms & _MS_MASK) << 80 | _VERSION | _counter << 64
                             | _VARIANT | rand_b))
            _counter += 1
        _counter -= 1
    return out


def _uuid(value: int, new: Any = object.__new__, set_: Any = object.__setattr__,
          safe: uuid.SafeUUID = uuid.SafeUUID.unknown) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to fit, at half the cost: the constructor's
    argument checks are most of it, and a batch enqueue makes thousands of ids. (UUID keeps its
    state in two slots, ``int`` and ``is_safe``, set here as its constructor sets them.)"""
    u: uuid.UUID = new(uuid.UUID)
    set_(u, "int", value)
    set_(u, "is_safe", safe)
    return u


_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


_HEX = b"0123456789abcdef"


def all_canonical(values: Sequence[str]) -> bool:
    """True when every one of ``values`` is canonical UUID text (``canonical`` returns it
    unchanged). Checked together, in a few passes over their concatenation: a Settle of 1,000
    acks carries 2,000 ids, and one regex match each would be most of its validation."""
    n = len(values)
    if not set(map(len, values)) <= {36}:
        return False
    try:
        text = "".join(values).encode("ascii")
    except UnicodeEncodeError:
        return False
    return (all(text[i::36] == b"-" * n for i in (8, 13, 18, 23))
            and len(text.translate(None, _HEX)) == 4 * n)


def canonical(value: str) -> str | None:
    """The UUID in ``value`` as PostgreSQL writes it (lowercase, hyphenated), or None when it is
    not one. Ids that already are in that form, as every id the broker hands out is, are only
    checked: a fifth of the cost of building a UUID, and acks carry two ids each."""
    if _CANONICAL.fullmatch(value):
        return value
    parsed = parse_id(value)
    return None if parsed is None else str(parsed)


def parse_id(value: str) -> uuid.UUID | None:
    """The UUID in ``value``, or None when it is not one."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
