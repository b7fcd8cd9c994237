"""The stall watch: closes lease streams whose clients read nothing and settle nothing, so
they give back their unsent jobs and their place (see Dispatcher.close_stalled)."""

from __future__ import annotations

from forge_broker.dispatch import Dispatcher
from forge_broker.maintenance.service import Service


class StallWatch(Service):
    name = "stall_watch"

    def __init__(self, dispatcher: Dispatcher, interval: float) -> None:
        super().__init__(interval)
        self.dispatcher = dispatcher

    async def run(self) -> None:
        await self.dispatcher.close_stalled()
