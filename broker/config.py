"""The broker's configuration: one typed object, read from the environment once."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import InvalidArgument


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(name, f"not a number: {raw!r}") from None
    if value <= 0:
        raise InvalidArgument(name, f"must be positive, got {raw!r}")
    return value


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(name, f"not an integer: {raw!r}") from None


@dataclass(frozen=True)
class Config:
    """Everything the broker can be told. See docs/operations.md for each variable."""

    database_url: str | None = None
    """PostgreSQL DSN; None starts the embedded server with its data in ``data_dir``."""
    data_dir: Path = Path(".forge")
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    broker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    tick_seconds: float = 1.0
    """Stats snapshot period, and the cadence of worker-registry refresh and counter folding."""
    rescue_interval: float = 1.0
    """Seconds between sweeps for expired leases."""
    backoff_base: float = 5.0
    """Retry delay after the first failed attempt; doubles each attempt, capped at an hour."""
    retention_seconds: float = 24 * 3600.0
    """How long COMPLETED and CANCELLED jobs are kept."""
    pool_min: int = 2
    pool_max: int = 10
    pool_timeout: float = 5.0
    """Seconds a call waits for a database connection before failing with UNAVAILABLE."""
    statement_timeout_ms: int = 30_000
    poll_seconds: float = 5.0
    """Safety net: the dispatcher looks for work this often even with no NOTIFY."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        """Read ``FORGE_*``, ``DATABASE_URL`` and ``GRPC_PORT``; InvalidArgument names a bad one."""
        e = dict(os.environ if env is None else env)
        defaults = cls()
        return cls(
            database_url=e.get("DATABASE_URL") or None,
            data_dir=Path(e.get("FORGE_DATA_DIR") or defaults.data_dir),
            host=e.get("FORGE_HOST") or defaults.host,
            grpc_port=_int(e, "GRPC_PORT", defaults.grpc_port),
            broker_id=e.get("FORGE_BROKER_ID") or defaults.broker_id,
            tick_seconds=_float(e, "FORGE_STATS_INTERVAL", defaults.tick_seconds),
            rescue_interval=_float(e, "FORGE_RESCUE_INTERVAL", defaults.rescue_interval),
            backoff_base=_float(e, "FORGE_BACKOFF_BASE", defaults.backoff_base),
            retention_seconds=_float(e, "FORGE_RETENTION", defaults.retention_seconds),
            pool_min=_int(e, "FORGE_POOL_MIN", defaults.pool_min),
            pool_max=_int(e, "FORGE_POOL_MAX", defaults.pool_max),
            pool_timeout=_float(e, "FORGE_POOL_TIMEOUT", defaults.pool_timeout),
            statement_timeout_ms=_int(e, "FORGE_STATEMENT_TIMEOUT_MS", defaults.statement_timeout_ms),
            poll_seconds=_float(e, "FORGE_POLL_INTERVAL", defaults.poll_seconds),
        )
