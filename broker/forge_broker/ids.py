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


def uuid7s(n: int) -> list[str]:
    """``n`` fresh version-7 UUIDs as canonical text (lowercase, hyphenated), in increasing
    order, also after the ids of this process's previous call. Written straight as text,
    since that is how a batch enqueue sends them (to PostgreSQL, and in its answer).

    RFC 9562's monotonic random method: the ids of one call share their first 24 characters
    (the millisecond, the version, a 12-bit counter that orders the calls of one millisecond,
    the variant and 14 random bits) and count up in the last 48 bits from a random start. One
    format per id: random bits per id cost a batch of 1,000 a tenth of its broker time. Two
    brokers' calls in one millisecond collide only when 22 random bits match and their counts
    overlap: less likely than with 62 random bits per id, for batches of a thousand."""
    global _last_ms, _counter
    rand = int.from_bytes(os.urandom(9), "big")
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, rand & 0xFF  # start low, leave room to count
        elif _counter < 0xFFF:
            # The same (or an earlier) millisecond: keep order with the counter.
            _counter += 1
        else:
            _last_ms, _counter = _last_ms + 1, 0
        stamp, counter = _last_ms & _MS_MASK, _counter
    h = f"{stamp:012x}"
    head = f"{h[:8]}-{h[8:]}-7{counter:03x}-{0x8000 | (rand >> 58):04x}-"
    start = (rand >> 8 & _TAIL_MASK) % (_TAIL_MASK + 1 - n)
    return [f"{head}{t:012x}" for t in range(start, start + n)]


_TAIL_MASK = (1 << 48) - 1


def as_uuid(text: str, new: Any = object.__new__, set_: Any = object.__setattr__,
            safe: uuid.SafeUUID = uuid.SafeUUID.unknown) -> uuid.UUID:
    """The UUID of canonical text (as ``uuid7s`` makes) at half the cost of ``uuid.UUID(text)``,
    whose argument checks are most of it. (UUID keeps its state in two slots, ``int`` and
    ``is_safe``, set here as its constructor sets them.)"""
    u: uuid.UUID = new(uuid.UUID)
    set_(u, "int", int(text.replace("-", ""), 16))
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
