"""workerd: Forge's worker daemon, and the API handlers are written against.

    from forge_workerd import handler, Retry, Fail, JobContext

    @handler("email", timeout=30)
    def send_email(job: JobContext) -> dict[str, object]:
        ...

    @handler("report", schedule=Schedule(cron="0 3 * * *", timezone="Europe/Berlin"))
    def nightly_report(job: JobContext) -> None:
        ...
"""

from forge_common import grpcenv as _grpcenv

_grpcenv.prefer_iomgr()  # before the imports below, which import grpc

from forge_workerd.context import Cancellation, JobContext  # noqa: E402
from forge_workerd.errors import Fail, Retry  # noqa: E402
from forge_workerd.registry import REGISTRY, Registry, Schedule, handler  # noqa: E402

__all__ = ["REGISTRY", "Cancellation", "Fail", "JobContext", "Registry", "Retry", "Schedule",
           "handler"]
