"""Transactional enqueue: a job inserted in the caller's own psycopg transaction on the broker's
database, so it exists if and only if that transaction commits.

``enqueue(conn, ...)`` (a ``psycopg.Connection``) and ``enqueue_async(conn, ...)`` (a
``psycopg.AsyncConnection``) call the SQL function ``forge.enqueue`` (migration 010) and return
the job's id. Nothing is committed here: the caller's transaction decides. A refused argument
raises ``ForgeSQLError`` naming the field; PostgreSQL then has aborted the caller's transaction,
as any failed statement does, so roll it back (leaving a ``with conn.transaction():`` block by
the exception does).

This bypasses the broker and its gRPC auth: database roles are the control (docs/operations.md,
"Transactional enqueue"). Needs psycopg: ``pip install 'forge-client[sql]'``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, LiteralString

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError as exc:  # forge-client alone has no database driver
    raise ImportError("forge.sql needs psycopg: pip install 'forge-client[sql]'") from exc

__all__ = ["ForgeSQLError", "enqueue", "enqueue_async"]

_CALL: LiteralString = (
    "SELECT forge.enqueue(type => %s::text, payload => %s::jsonb, priority => %s::integer, "
    "max_retries => %s::integer, run_at => %s::timestamptz, idempotency_key => %s::text, "
    "concurrency_key => %s::text)")

# A \u0000 escape in JSON text, not one whose backslash is itself escaped (a literal "\\u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_INT32 = range(-(2**31), 2**31)


class ForgeSQLError(ValueError):
    """``forge.enqueue`` refused an argument: ``field`` names it, ``problem`` says why (the
    message is ``field: problem``, as the broker's INVALID_ARGUMENT)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def enqueue(conn: psycopg.Connection[Any], type: str, payload: Mapping[str, Any] | None = None,
            *, priority: int | None = None, max_retries: int | None = None,
            run_at: datetime | None = None, idempotency_key: str | None = None,
            concurrency_key: str | None = None) -> str:
    """Enqueue a job in ``conn``'s current transaction; return its id (the existing job's when
    ``idempotency_key`` is taken). Options left None take the broker's defaults; a naive
    ``run_at`` is UTC, as ``forge.Client`` reads it."""
    params = _params(type, payload, priority, max_retries, run_at, idempotency_key,
                     concurrency_key)
    try:
        row = conn.execute(_CALL, params).fetchone()
    except pg_errors.InvalidParameterValue as exc:
        _raise_refusal(exc)
        raise
    assert row is not None  # a SELECT of a function answers one row
    return str(row[0])


async def enqueue_async(conn: psycopg.AsyncConnection[Any], type: str,
                        payload: Mapping[str, Any] | None = None, *,
                        priority: int | None = None, max_retries: int | None = None,
                        run_at: datetime | None = None, idempotency_key: str | None = None,
                        concurrency_key: str | None = None) -> str:
    """``enqueue`` on an asyncio connection."""
    params = _params(type, payload, priority, max_retries, run_at, idempotency_key,
                     concurrency_key)
    try:
        cur = await conn.execute(_CALL, params)
    except pg_errors.InvalidParameterValue as exc:
        _raise_refusal(exc)
        raise
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


def _params(type: str, payload: Mapping[str, Any] | None, priority: int | None,
            max_retries: int | None, run_at: datetime | None, idempotency_key: str | None,
            concurrency_key: str | None) -> tuple[Any, ...]:
    """The call's parameters. Checked here is only what cannot reach ``forge.enqueue`` to be
    judged there: NUL (PostgreSQL refuses it in text and jsonb alike), numbers JSON has no text
    for, and integers no ``integer`` holds."""
    for field, text in (("type", type), ("idempotency_key", idempotency_key),
                        ("concurrency_key", concurrency_key)):
        if text is not None and "\x00" in text:
            raise ForgeSQLError(field, "must not contain NUL (\\u0000) characters")
    for field, number in (("priority", priority), ("max_retries", max_retries)):
        if number is not None and number not in _INT32:
            raise ForgeSQLError(field, f"must be a 32-bit integer, got {number}")
    if run_at is not None and run_at.tzinfo is None:
        run_at = run_at.replace(tzinfo=UTC)
    return (type, _payload_json(payload), priority, max_retries, run_at, idempotency_key,
            concurrency_key)


def _payload_json(payload: Mapping[str, Any] | None) -> str | None:
    if payload is None:
        return None
    try:
        text = json.dumps(dict(payload), allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise ForgeSQLError("payload", "numbers must be finite") from None
    except TypeError as exc:
        raise ForgeSQLError("payload", f"is not JSON: {exc}") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ForgeSQLError("payload", "must not contain NUL (\\u0000) characters")
    return text


def _raise_refusal(exc: pg_errors.InvalidParameterValue) -> None:
    """Raise ``forge.enqueue``'s refusal as a ForgeSQLError; return for any other 22023."""
    field = exc.diag.column_name
    if exc.diag.schema_name == "forge" and field:
        message = exc.diag.message_primary or ""
        raise ForgeSQLError(field, message.removeprefix(f"{field}: ")) from exc
