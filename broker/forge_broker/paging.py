"""ListJobs page tokens: the order key of a page's last row, tied to the listing's order and
filter, so that a token is only ever read by the listing that made it."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime
from typing import Any

import orjson

from forge_broker.errors import InvalidArgument
from forge_broker.models import JobFilter, JobRow, Order, PageKey

_NOT_OURS = "not a token returned by a previous page"


def _fingerprint(order: Order, where: JobFilter) -> str:
    # repr names every field of the filter with its value, in a fixed order.
    return hashlib.sha256(f"{order}|{where!r}".encode()).hexdigest()[:16]


def encode(order: Order, where: JobFilter, last: JobRow) -> str:
    """The token of the page after ``last``."""
    key: dict[str, Any] = {"f": _fingerprint(order, where), "i": last.id.hex}
    if order in (Order.RUN_AT, Order.PRIORITY):
        key["r"] = last.run_at.isoformat()
    if order == Order.PRIORITY:
        key["p"] = last.priority
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode(token: str, order: Order, where: JobFilter) -> PageKey | None:
    """Where the page of ``token`` starts; None for the first page. A token that is not one,
    or one of another order or filter, is INVALID_ARGUMENT naming page_token."""
    if not token:
        return None
    try:
        key = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        fingerprint = key["f"]
        page = PageKey(uuid.UUID(hex=key["i"]),
                       datetime.fromisoformat(key["r"]) if "r" in key else None,
                       int(key["p"]) if "p" in key else None)
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise InvalidArgument("page_token", _NOT_OURS) from None
    if fingerprint != _fingerprint(order, where):
        raise InvalidArgument("page_token", "is from a listing with another order or filter: "
                                            "pass the same filter and order as its first page")
    return page
