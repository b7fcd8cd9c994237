"""Exponential backoff with jitter, for reconnecting and for retrying acks."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each drawn from [d/2, d] ("equal
    jitter") so a fleet of workers that lost the same broker does not come back in lockstep."""

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        """The delay to wait now; the following one will be twice as long (up to the maximum)."""
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._next = self.initial
