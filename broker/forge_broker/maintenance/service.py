"""What a maintenance service is: one job, run on its own interval, with its own logger."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import ClassVar


class Service(ABC):
    name: ClassVar[str]
    """Names its task and its logger, ``forge.maintenance.<name>``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.log = logging.getLogger(f"forge.maintenance.{self.name}")

    @abstractmethod
    async def run(self) -> None:
        """One round. What it raises is logged by the runner, and the next round comes on time."""

    async def pause(self) -> None:
        """Wait until the next round is due: one interval, unless the service knows better."""
        await asyncio.sleep(self.interval)
