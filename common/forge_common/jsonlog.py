"""One JSON object per log line, shared by every Forge process (broker, gateway, workerd).

Each line has ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``msg``; then the
process's fixed fields (workerd adds ``worker_id``), any ``extra={...}`` given to the logging
call, and ``exc`` with the traceback when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", **fields, **extras}`` plus ``exc`` when there is one."""

    def __init__(self, fields: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self.fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **self.fields,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def wants_json(value: str | None) -> bool:
    """Whether a FORGE_LOG_FORMAT-style setting asks for JSON lines."""
    return (value or "").strip().lower() == "json"


def setup(level: str | int, *, json_lines: bool, fields: Mapping[str, object] | None = None) -> None:
    """Send every log record at ``level`` or above to stderr, as plain text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(fields) if json_lines else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
