"""The broker's configuration: one typed object, read from the environment once."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from forge_broker.auth import ApiToken, load_tokens
from forge_broker.errors import InvalidArgument
from forge_common import eventloop, settings

T = TypeVar("T")


def _read(env: dict[str, str], name: str, default: T, parse: settings.Parse[T]) -> T:
    try:
        return settings.from_env(env, name, default, parse)
    except settings.SettingError as exc:
        raise InvalidArgument(exc.name, exc.problem) from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    return _read(env, name, default, settings.positive_number)


def _int(env: dict[str, str], name: str, default: int) -> int:
    return _read(env, name, default, settings.integer)


def _at_least(env: dict[str, str], name: str, default: int, low: int) -> int:
    return _read(env, name, default, partial(settings.integer, low=low))


def _file(env: dict[str, str], name: str) -> Path | None:
    """A path that must name a readable file, or None when unset."""
    return _read(env, name, None, settings.existing_file)


def _port(env: dict[str, str], name: str, default: int) -> int:
    """A TCP port; set but empty means 0 (off)."""
    return _read(env, name, 0 if name in env else default, settings.port)


@dataclass(frozen=True)
class Config:
    """Everything the broker can be told. See docs/operations.md for each variable."""

    database_url: str | None = None
    """PostgreSQL DSN; None starts the embedded server with its data in ``data_dir``."""
    database_direct_url: str | None = None
    """A session connection to the same database, bypassing a pooler: LISTEN and the
    migrations' session advisory lock use it. Set, it also says that ``database_url`` goes
    through a transaction-mode pooler (see ``Store``); None: everything uses ``database_url``."""
    data_dir: Path = Path(".forge")
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    broker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    tick_seconds: float = 1.0
    """Stats snapshot period, health check and metrics gauges. from_env makes it the default
    of the five intervals after rescue_interval, so FORGE_STATS_INTERVAL alone paces all upkeep
    but the rescue."""
    rescue_interval: float = 1.0
    """Seconds between sweeps for expired leases."""
    fold_interval: float = 1.0
    """Seconds between foldings of counter deltas into the counters Stats reads."""
    workers_interval: float = 1.0
    """Seconds between refreshes of this broker's streams in the worker registry; rows not
    refreshed for ten of these (at least 30 s) are deleted."""
    reconcile_interval: float = 1.0
    """Seconds between checks of full lease streams for jobs settled on another broker."""
    retention_interval: float = 1.0
    """Seconds between retention sweeps."""
    schedule_interval: float = 1.0
    """Longest the scheduler sleeps: it wakes at the next fire time when that is sooner, and at
    once when a PutSchedule reaches this broker; this bounds how late a broker sees a schedule
    put through another one."""
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
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    """Port of the Prometheus /metrics endpoint; 0 turns it off."""
    tokens: tuple[ApiToken, ...] = ()
    """API tokens with roles (FORGE_TOKENS, FORGE_TOKENS_FILE); none turns auth off."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """Certificate chain and key (PEM) to serve gRPC over TLS; None serves plain text."""
    tls_client_ca: Path | None = None
    """CA (PEM) that client certificates must chain to: mutual TLS, required when set."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest gRPC message received; gRPC refuses a larger one (RESOURCE_EXHAUSTED) before
    the broker builds anything from it. 16 MiB holds a full batch of 10,000 jobs with payloads
    of about 1.5 KB (typical ones, 100 to 300 bytes, make 2 to 4 MB); bigger batches are split
    by their sender."""
    max_send_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message sent: a page of ListJobs or a batch of leased jobs with big payloads."""
    max_in_flight: int = 10_000
    """Most jobs one Lease stream may hold at once (its request's max_in_flight): as many as one
    Settle or Heartbeat carries, so a worker settles or extends its whole window in one call.
    Each claim takes at most dispatch.CLAIM_MAX of them."""
    max_lease_streams: int = 1000
    """Most Lease streams open on this broker at once; 0 means no limit."""
    max_streams_per_peer: int = 200
    """Most Lease and WatchStats streams one caller holds on this broker at once (a caller is
    an address, and with auth on a token at an address); 0 means no limit. Above what one big
    worker host opens (a workerd per core), a fifth of max_lease_streams."""
    stream_stall_timeout: float | None = None
    """Seconds a lease stream may wait on a client that reads nothing, settling and
    heartbeating none of its jobs, before it is closed; None: each stream's lease time."""
    event_loop: str = eventloop.DEFAULT
    """The event loop the broker runs on: uvloop (where installed) or asyncio (see
    forge_common.eventloop)."""

    def check(self) -> None:
        """What from_env cannot see alone: settings that only make sense together."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("FORGE_TLS_CERT", "the certificate and FORGE_TLS_KEY go "
                                  "together (--tls-cert, --tls-key): set both or neither")
        if self.database_direct_url is not None and self.database_url is None:
            raise InvalidArgument("DATABASE_DIRECT_URL", "names the direct route to "
                                  "DATABASE_URL's database: set DATABASE_URL too")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidArgument("FORGE_TLS_CLIENT_CA", "mutual TLS needs TLS: set "
                                  "FORGE_TLS_CERT and FORGE_TLS_KEY too")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        """Read ``FORGE_*``, ``DATABASE_URL`` and ``GRPC_PORT``; InvalidArgument names a bad one."""
        e = dict(os.environ if env is None else env)
        defaults = cls()
        tick = _float(e, "FORGE_STATS_INTERVAL", defaults.tick_seconds)
        received = _at_least(e, "FORGE_MAX_MESSAGE_BYTES", defaults.max_message_bytes, 1024 * 1024)
        return cls(
            database_url=e.get("DATABASE_URL") or None,
            database_direct_url=e.get("DATABASE_DIRECT_URL") or None,
            data_dir=Path(e.get("FORGE_DATA_DIR") or defaults.data_dir),
            host=e.get("FORGE_HOST") or defaults.host,
            grpc_port=_int(e, "GRPC_PORT", defaults.grpc_port),
            broker_id=e.get("FORGE_BROKER_ID") or defaults.broker_id,
            tick_seconds=tick,
            rescue_interval=_float(e, "FORGE_RESCUE_INTERVAL", defaults.rescue_interval),
            fold_interval=_float(e, "FORGE_FOLD_INTERVAL", tick),
            workers_interval=_float(e, "FORGE_WORKERS_INTERVAL", tick),
            reconcile_interval=_float(e, "FORGE_RECONCILE_INTERVAL", tick),
            retention_interval=_float(e, "FORGE_RETENTION_INTERVAL", tick),
            schedule_interval=_float(e, "FORGE_SCHEDULE_INTERVAL", tick),
            backoff_base=_float(e, "FORGE_BACKOFF_BASE", defaults.backoff_base),
            retention_seconds=_float(e, "FORGE_RETENTION", defaults.retention_seconds),
            pool_min=_int(e, "FORGE_POOL_MIN", defaults.pool_min),
            pool_max=_int(e, "FORGE_POOL_MAX", defaults.pool_max),
            pool_timeout=_float(e, "FORGE_POOL_TIMEOUT", defaults.pool_timeout),
            statement_timeout_ms=_int(e, "FORGE_STATEMENT_TIMEOUT_MS", defaults.statement_timeout_ms),
            poll_seconds=_float(e, "FORGE_POLL_INTERVAL", defaults.poll_seconds),
            metrics_host=e.get("FORGE_METRICS_HOST") or defaults.metrics_host,
            metrics_port=_port(e, "FORGE_METRICS_PORT", defaults.metrics_port),
            tokens=load_tokens(e),
            tls_cert=_file(e, "FORGE_TLS_CERT"),
            tls_key=_file(e, "FORGE_TLS_KEY"),
            tls_client_ca=_file(e, "FORGE_TLS_CLIENT_CA"),
            max_message_bytes=received,
            # Never below the received limit by default: a broker told to take bigger messages
            # is told to hold bigger jobs, and its pages and lease pushes grow with them.
            max_send_message_bytes=_at_least(e, "FORGE_MAX_SEND_MESSAGE_BYTES",
                                             max(defaults.max_send_message_bytes, received),
                                             1024 * 1024),
            max_in_flight=_at_least(e, "FORGE_MAX_IN_FLIGHT", defaults.max_in_flight, 1),
            max_lease_streams=_at_least(e, "FORGE_MAX_LEASE_STREAMS",
                                        defaults.max_lease_streams, 0),
            max_streams_per_peer=_at_least(e, "FORGE_MAX_STREAMS_PER_PEER",
                                           defaults.max_streams_per_peer, 0),
            stream_stall_timeout=_read(e, "FORGE_STREAM_STALL_TIMEOUT", None,
                                       settings.positive_number),
            event_loop=_read(e, eventloop.VAR, defaults.event_loop, eventloop.kind),
        )
