"""Logging to stderr: plain lines for people, or one JSON object per line for collectors."""

from __future__ import annotations

import logging

from forge_common import jsonlog


class JsonFormatter(jsonlog.JsonFormatter):
    """``{"ts", "level", "logger", "msg", "worker_id"}`` plus extras and ``exc`` when there is one."""

    def __init__(self, worker_id: str) -> None:
        super().__init__({"worker_id": worker_id})


def setup(level: str, *, json_lines: bool, worker_id: str) -> None:
    """Send every log record at ``level`` or above to stderr."""
    jsonlog.setup(level, json_lines=json_lines, fields={"worker_id": worker_id})
    root = logging.getLogger()
    # httpx narrates every request at INFO and grpc every call at DEBUG: noise, not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("grpc").setLevel(max(logging.INFO, root.level))
