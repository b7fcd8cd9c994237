"""workerd: Forge's worker daemon, and the API handlers are written against.

    from forge_workerd import handler, Retry, Fail, JobContext

    @handler("email", timeout=30)
    def send_email(job: JobContext) -> dict[str, object]:
        ...

    @handler("report", schedule=Schedule(cron="0 3 * * *", timezone="Europe/Berlin"))
    def nightly_report(job: JobContext) -> None:
        ...
"""

from forge_workerd.context import Cancellation, JobContext
from forge_workerd.errors import Fail, Retry
from forge_workerd.registry import REGISTRY, Registry, Schedule, handler

__all__ = ["REGISTRY", "Cancellation", "Fail", "JobContext", "Registry", "Retry", "Schedule",
           "handler"]
