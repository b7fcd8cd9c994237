"""Fire times of periodic schedules, and the idempotency key that makes each fire one job.

Pure functions on datetimes, no database and no clock of their own: the store asks them with
PostgreSQL's ``now()``, and tests with fixed times.

Cron expressions are read by cronsim, which follows Debian's cron, daylight saving included: for
an expression with fixed minute and hour fields, a fire time in the hour the clock skips fires
when it jumps (02:30 on the spring-forward day fires at 03:00), and one in the hour the clock
repeats fires once, at its first occurrence. Expressions with a ``*`` or a step in the minute or
hour field run on absolute time through both changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from forge_broker.models import DueSchedule, Fire, NewSchedule, ScheduleRow

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
MAX_CRON_CHARS = 256
MAX_TIMEZONE_CHARS = 64
MIN_EVERY = timedelta(seconds=1)
KEY_PREFIX = "schedule:"
# schedule:{name}:{RFC 3339 UTC}; a name may hold ":" itself, so the time is matched from the end.
_KEY = re.compile(r"schedule:(.+):\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


class TimingError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


@cache
def zone(name: str) -> tzinfo:
    """The time zone called ``name`` (IANA), UTC for ""; TimingError when there is none.
    Cached: each is looked up once, and the scheduler asks for it once per schedule per fire."""
    if not name or name == "UTC":
        return UTC
    if len(name) > MAX_TIMEZONE_CHARS:
        raise TimingError(f"must be at most {MAX_TIMEZONE_CHARS} characters")
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # KeyError: ZoneInfoNotFoundError
        raise TimingError(f"unknown time zone {name!r}; an IANA name such as "
                          "'Europe/Berlin', or empty for UTC") from None


def next_cron(expr: str, tz: tzinfo, after: datetime) -> datetime:
    """The first fire time of ``expr`` (read in ``tz``) strictly after ``after``, in UTC.
    TimingError for an expression that is malformed or never fires (within 50 years)."""
    fields = ALIASES.get(expr.strip().lower(), expr)
    if len(fields.split()) != 5:
        raise TimingError("must have five fields (minute hour day-of-month month day-of-week) "
                          f"or be one of {', '.join(ALIASES)}")
    try:
        times = CronSim(fields, after.astimezone(tz))
        at = next(times)
        # Read in local time, a time in an hour the clock repeats can come out before ``after``.
        while at <= after:
            at = next(times)
    except CronSimError as exc:
        raise TimingError(f"{exc} in {expr!r}") from None
    except StopIteration:
        raise TimingError(f"{expr!r} never fires") from None
    return at.astimezone(UTC)


def next_every(every: timedelta, anchor: datetime, after: datetime) -> datetime:
    """The first time of ``anchor + k·every`` (k ≥ 1) strictly after ``after``."""
    if after < anchor:
        return anchor + every
    return anchor + every * ((after - anchor) // every + 1)


def next_fire(cron: str | None, every: timedelta | None, timezone: str, anchor: datetime,
              after: datetime) -> datetime:
    """A schedule's first fire time after ``after``: on its cron expression, or on its period
    counted from ``anchor`` (its previous fire time, or the time it was put)."""
    if cron is not None:
        return next_cron(cron, zone(timezone), after)
    assert every is not None
    return next_every(every, anchor, after)


def check_cron(expr: str, tz: tzinfo) -> None:
    """TimingError unless ``expr`` is a five-field expression that fires."""
    if len(expr) > MAX_CRON_CHARS:
        raise TimingError(f"must be at most {MAX_CRON_CHARS} characters")
    next_cron(expr, tz, datetime.now(UTC))


def fire_key(name: str, at: datetime) -> str:
    """The idempotency key of the job fired by schedule ``name`` at ``at``, the time in RFC 3339
    UTC (with microseconds only when it has any)."""
    return f"{KEY_PREFIX}{name}:{at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"


def schedule_of(key: str | None) -> str | None:
    """The schedule named by an idempotency key of ``fire_key``'s form, else None."""
    if not key or not key.startswith(KEY_PREFIX):
        return None
    m = _KEY.fullmatch(key)
    return m.group(1) if m else None


def plan(due: Sequence[DueSchedule]) -> tuple[list[Fire], list[tuple[str, str]]]:
    """Each due schedule's fire: its key (for the fire time it was due at) and its next fire
    time, the first one after the round's ``now`` (catch-up: one fire, however many times were
    missed). Also the schedules whose next time cannot be computed, with why.

    A thousand schedules due at once are usually a few timings: a cron expression's next time
    after ``now`` is computed once per expression and zone."""
    fires: list[Fire] = []
    broken: list[tuple[str, str]] = []
    cron_next: dict[tuple[str, str], datetime] = {}
    for s in due:
        try:
            if s.cron is not None:
                at = cron_next.get((s.cron, s.timezone))
                if at is None:
                    at = cron_next[s.cron, s.timezone] = next_cron(s.cron, zone(s.timezone), s.now)
            else:
                at = next_fire(None, s.every, s.timezone, s.next_run_at, s.now)
        except TimingError as exc:
            broken.append((s.name, str(exc)))
            continue
        fires.append(Fire(s.name, fire_key(s.name, s.next_run_at), at))
    return fires, broken


def next_after_put(old: ScheduleRow | None, new: NewSchedule, now: datetime) -> datetime | None:
    """``next_run_at`` of ``new`` put at ``now`` over ``old`` (the stored one, if any): none
    while paused; kept when a replacement leaves cron, every and timezone as they were on an
    unpaused schedule, so putting the same schedule again never delays or skips a fire; else
    the first fire time after now."""
    if new.paused:
        return None
    if (old is not None and old.next_run_at is not None
            and (old.cron, old.every, old.timezone) == (new.cron, new.every, new.timezone)):
        return old.next_run_at
    return next_fire(new.cron, new.every, new.timezone, now, now)
