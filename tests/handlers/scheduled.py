"""Handlers that declare schedules, for ``tests/test_schedules.py``: workerd puts the schedules
when it starts, and runs the jobs they enqueue."""

from __future__ import annotations

from typing import Any

from forge_workerd import JobContext, Schedule, handler


@handler("misdeclared", schedule=Schedule(cron="61 * * * *"))
def misdeclared(job: JobContext) -> None:
    """Its schedule is refused (a minute 61): workerd logs that and runs on."""


@handler("nightly_report", schedule=Schedule(cron="0 3 * * *", timezone="Europe/Berlin",
                                             payload={"kind": "nightly"}, max_retries=1))
def nightly_report(job: JobContext) -> dict[str, Any]:
    return {"kind": job.payload["kind"]}


@handler("heartbeat_ping", schedule=Schedule(every=1, name="ping-every-second"))
def heartbeat_ping(job: JobContext) -> dict[str, Any]:
    return {"pinged": True}
