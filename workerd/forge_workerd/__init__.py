"""workerd: Forge's worker daemon, and the API handlers are written against.

    from forge_workerd import handler, Retry, Fail, JobContext

    @handler("email", timeout=30)
    def send_email(job: JobContext) -> dict[str, object]:
        ...
"""

from forge_workerd.context import Cancellation, JobContext
from forge_workerd.errors import Fail, Retry
from forge_workerd.registry import REGISTRY, Registry, handler

__all__ = ["REGISTRY", "Cancellation", "Fail", "JobContext", "Registry", "Retry", "handler"]
