"""workerd: Forge's worker daemon, and the API handlers are written against.

    from workerd import handler, Retry, Fail, JobContext

    @handler("email", timeout=30)
    def send_email(job: JobContext) -> dict[str, object]:
        ...
"""

from workerd.context import Cancellation, JobContext
from workerd.errors import Fail, Retry
from workerd.registry import REGISTRY, Registry, handler

__all__ = ["REGISTRY", "Cancellation", "Fail", "JobContext", "Registry", "Retry", "handler"]
