"""A handler that records each execution as one line (the job's id) appended to the file named
by ``TEST_EXECUTIONS_FILE``. Outside the database on purpose: the failover tests count runs
across the loss of the primary, which may take rows of the queue's own database with it."""

from __future__ import annotations

import os
import time
from typing import Any

from forge_workerd import JobContext, handler

JOB_TYPE = "recorded"


@handler(JOB_TYPE)
def recorded(job: JobContext) -> dict[str, Any]:
    """Works ``ms`` milliseconds of the payload (so jobs are in flight when the primary dies),
    then records its run."""
    time.sleep(float(job.payload.get("ms", 0)) / 1000)
    # One write(2) on an O_APPEND file: lines from concurrent workers never interleave.
    fd = os.open(os.environ["TEST_EXECUTIONS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{job.id}\n".encode())
    finally:
        os.close(fd)
    return {}
