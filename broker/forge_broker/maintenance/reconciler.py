"""The reconciler: a full lease stream drops jobs whose lease ended on another broker (an ack
that a load balancer sent elsewhere), so the stream is refilled (see Dispatcher.reconcile)."""

from __future__ import annotations

from forge_broker.dispatch import Dispatcher
from forge_broker.maintenance.service import Service


class Reconciler(Service):
    name = "reconciler"

    def __init__(self, dispatcher: Dispatcher, interval: float) -> None:
        super().__init__(interval)
        self.dispatcher = dispatcher

    async def run(self) -> None:
        await self.dispatcher.reconcile()
