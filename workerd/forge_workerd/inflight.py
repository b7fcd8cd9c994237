"""The jobs this worker holds leases on: received, running, or being acked."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from forge.v1 import broker_pb2 as pb
from forge_workerd.context import JobContext
from forge_workerd.registry import Handler


class Phase(enum.Enum):
    QUEUED = "queued"      # delivered, waiting for a free slot
    RUNNING = "running"    # its handler is running
    SETTLING = "settling"  # its ack or nack is being sent


@dataclass(eq=False, slots=True)
class Held:
    """One lease held by this worker. ``deadline`` is when the lease ends (monotonic clock)
    unless a heartbeat extends it; ``lost`` is set once the broker says it is no longer ours;
    ``task`` is the slot running it, while it runs."""

    job: pb.Job
    token: str
    handler: Handler | None
    ctx: JobContext
    deadline: float
    phase: Phase = Phase.QUEUED
    lost: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def job_id(self) -> str:
        return self.job.id

    def ref(self) -> pb.LeaseRef:
        return pb.LeaseRef(job_id=self.job.id, lease_token=self.token)


class InFlight:
    """The held leases, by lease token (a job re-leased to us has a new token)."""

    def __init__(self) -> None:
        self._by_token: dict[str, Held] = {}

    def add(self, held: Held) -> None:
        self._by_token[held.token] = held

    def discard(self, held: Held) -> None:
        self._by_token.pop(held.token, None)

    def __iter__(self) -> Iterator[Held]:
        return iter(list(self._by_token.values()))

    def __len__(self) -> int:
        return len(self._by_token)

    def held(self) -> list[Held]:
        """Leases still ours, as far as we know: the ones to heartbeat."""
        return [h for h in self._by_token.values() if not h.lost]

    def in_phase(self, phase: Phase) -> list[Held]:
        return [h for h in self._by_token.values() if h.phase is phase]
