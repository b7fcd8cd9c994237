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
    order: one lock and one read of the random source for the lot. Written straight as text,
    since that is how a batch enqueue sends them (to PostgreSQL, and in its answer): a UUID
    object cost more to make and to print than the text, a fifth of a batch's broker time."""
    global _last_ms, _counter
    rand = os.urandom(8 * n + 1).hex()
    out: list[str] = []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int(rand[-2:], 16)  # start low, leave room to count
        else:
            # Same (or an earlier) millisecond: keep order with the 12-bit counter.
            _counter += 1
        prefix = _prefix(_last_ms)
        for k in range(n):
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
                prefix = _prefix(_last_ms)
            j = 16 * k
            # 62 random bits after the variant's two (10): the first hex digit is 8 to b.
            out.append(f"{prefix}{_counter:03x}-{_VARIANT[rand[j]]}{rand[j + 1:j + 4]}-"
                       f"{rand[j + 4:j + 16]}")
            _counter += 1
        _counter -= 1
    return out


def _prefix(ms: int) -> str:
    """The first 15 characters of a version-7 UUID's text for the millisecond ``ms``: its
    48-bit time and the version digit, 7."""
    h = f"{ms & _MS_MASK:012x}"
    return f"{h[:8]}-{h[8:]}-7"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


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
