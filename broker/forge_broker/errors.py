"""The broker's own error classes (the servicer maps each to one gRPC status code), and the
database's failures grouped by what the broker does about them."""

from __future__ import annotations

import psycopg


class ForgeError(Exception):
    """Base of every error the broker reports to a caller."""


class InvalidArgument(ForgeError):
    """A request field is malformed or out of range. ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


MAX_ECHO_CHARS = 64


def echo(value: str) -> str:
    """``value`` quoted for an error message, cut to MAX_ECHO_CHARS characters plus "…": a
    caller's bad value is worth showing, but not whole (a 10,000-character id would outgrow
    the gRPC status metadata, and a log line)."""
    if len(value) <= MAX_ECHO_CHARS:
        return repr(value)
    return f"{value[:MAX_ECHO_CHARS]!r}…"


class NotFound(ForgeError):
    """No job has the given id (or no schedule the given name)."""


class FailedPrecondition(ForgeError):
    """The job exists but is not in a state that allows the operation (or the lease is stale)."""


class ResourceExhausted(ForgeError):
    """A limit was reached."""


# What the database (or the way to it) can raise. PoolTimeout (no pooled connection within
# FORGE_POOL_TIMEOUT) and PoolClosed are psycopg.OperationalErrors, so they need no entry of
# their own; neither does TimeoutError, an OSError.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.Error,  # anything the server or the driver reports, a failed statement included
    OSError,  # a socket error psycopg did not wrap; TimeoutError too
)
"""Failures a background loop logs and retries on its next round: the database may be back,
or the statement may succeed then (a deadlock, a serialization failure, a table restored)."""

DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # connection lost or refused, no pooled connection in time
    OSError,
    # The server refused a write: a demoted (or fenced) primary. The store drops that
    # connection, and the next one goes to the host that takes writes (see DATABASE_URL).
    psycopg.errors.ReadOnlySqlTransaction,
)
"""Failures a caller gets as UNAVAILABLE, worth retrying elsewhere or later. Narrower than
DATABASE_ERRORS on purpose: an IntegrityError or a ProgrammingError is a broker bug that the
same call would hit again, so it is INTERNAL (and logged), not UNAVAILABLE."""
