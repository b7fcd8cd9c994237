"""workerd's configuration: one typed object, read from the command line and environment once.

Every option has an environment variable (the flag wins), so containers can be configured
without a command line: FORGE_BROKER, WORKERD_TYPES, WORKERD_CONCURRENCY, WORKERD_PREFETCH,
WORKERD_HANDLERS, WORKERD_GRACE, WORKERD_LEASE_SECONDS, WORKERD_WORKER_ID, WORKERD_LOG_JSON,
WORKERD_LOG_LEVEL, WORKERD_METRICS_PORT, WORKERD_METRICS_HOST; and, to reach a broker with tokens
or TLS, FORGE_TOKEN, FORGE_CA_FILE, FORGE_TLS_CLIENT_CERT, FORGE_TLS_CLIENT_KEY (see forge.security).
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from forge.security import ChannelSecurity, SecurityConfigError, TargetError, channel_target
from forge_common import eventloop, settings
from forge_workerd.errors import ConfigError

DEFAULT_BROKER = "localhost:50051"
DEFAULT_HANDLERS = ("forge_workerd.demo",)
MAX_PREFETCH = 9000
"""With the most --concurrency (1000), a window of 10,000: the broker's default FORGE_MAX_IN_FLIGHT,
and as many leases as one Settle or Heartbeat carries."""

# The options with a variable behind them, read as text: Config.build checks them.
OPTIONS = (
    settings.Option("--broker", "FORGE_BROKER", DEFAULT_BROKER,
                    "broker host:port, or several: host1:port1,host2:port2"),
    settings.Option("--types", "WORKERD_TYPES", "",
                    "comma-separated job types to lease (default: every type with a handler)"),
    settings.Option("--concurrency", "WORKERD_CONCURRENCY", "8", "jobs run at once, 1 to 1000"),
    settings.Option("--prefetch", "WORKERD_PREFETCH", "0",
                    "jobs leased beyond --concurrency, waiting for a free slot, so a busy worker "
                    "never waits on the broker between short jobs; 0 to 9000"),
    settings.Option("--handlers", "WORKERD_HANDLERS", ",".join(DEFAULT_HANDLERS),
                    "comma-separated modules that define handlers"),
    settings.Option("--grace", "WORKERD_GRACE", "30",
                    "seconds to let running jobs finish on SIGTERM"),
    settings.Option("--lease-seconds", "WORKERD_LEASE_SECONDS", "30", "lease length, 1 to 3600"),
    settings.Option("--worker-id", "WORKERD_WORKER_ID", "",
                    "name shown on leased jobs (default: host-pid)"),
    settings.Option("--log-level", "WORKERD_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    settings.Option("--metrics-port", "WORKERD_METRICS_PORT", "0",
                    "serve Prometheus metrics at /metrics on this port, 0 for none"),
    settings.Option("--metrics-host", "WORKERD_METRICS_HOST", "127.0.0.1",
                    "address of the metrics endpoint"),
    settings.Option("--event-loop", eventloop.VAR, eventloop.DEFAULT,
                    "the event loop: uvloop or asyncio"),
)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:128]


@dataclass(frozen=True)
class Config:
    """Everything workerd can be told."""

    broker: str = DEFAULT_BROKER
    """The broker's gRPC target: host:port, or several (``h1:p1,h2:p2``) to fail over between."""
    types: tuple[str, ...] = ()
    """Job types to lease; empty means every type that has a handler."""
    concurrency: int = 8
    """Jobs run at once."""
    prefetch: int = 0
    """Jobs leased beyond ``concurrency``: the Lease stream's max_in_flight is the sum."""
    handlers: tuple[str, ...] = DEFAULT_HANDLERS
    """Modules to import for their @handler functions."""
    grace: float = 30.0
    """Seconds in-flight jobs get to finish after SIGTERM before they are nacked."""
    lease_seconds: int = 30
    """Length of each lease; heartbeats renew it every third of that."""
    worker_id: str = ""
    log_json: bool = False
    log_level: str = "INFO"
    metrics_port: int = 0
    """Port of the Prometheus /metrics endpoint; 0 (the default) serves none."""
    metrics_host: str = "127.0.0.1"
    event_loop: str = eventloop.DEFAULT
    """uvloop (where installed) or asyncio: see forge_common.eventloop."""
    security: ChannelSecurity = field(default_factory=ChannelSecurity)
    """Token and TLS settings for dialling the broker; the default is neither."""

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_seconds / 3

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None,
                  env: Mapping[str, str] | None = None) -> Config:
        """Parse ``argv`` over ``env`` (default: the process's); ConfigError names a bad value."""
        e = os.environ if env is None else env
        parser = argparse.ArgumentParser(
            prog="workerd",
            description="Forge worker daemon: leases jobs from the broker over gRPC and runs "
                        "their handlers. Every option also reads an environment variable.")
        settings.add_options(parser, OPTIONS, e)
        parser.add_argument("--log-json", action="store_true",
                            default=e.get("WORKERD_LOG_JSON", "").lower() in ("1", "true", "yes"),
                            help="log one JSON object per line [WORKERD_LOG_JSON]")
        parser.add_argument("--token", default=None,
                            help="API token with the worker role [FORGE_TOKEN; prefer the "
                                 "variable: a flag shows in the process list]")
        parser.add_argument("--ca-file", default=None,
                            help="CA (PEM) to dial the broker over TLS [FORGE_CA_FILE]")
        parser.add_argument("--tls-client-cert", default=None,
                            help="client certificate for mutual TLS [FORGE_TLS_CLIENT_CERT]")
        parser.add_argument("--tls-client-key", default=None,
                            help="client certificate's key [FORGE_TLS_CLIENT_KEY]")
        args = parser.parse_args(argv)
        try:
            security = ChannelSecurity.from_env(e, token=args.token, ca_file=args.ca_file,
                                                client_cert=args.tls_client_cert,
                                                client_key=args.tls_client_key)
            security.credentials()  # a missing or unreadable file is a bad option, said now
        except SecurityConfigError as exc:
            raise ConfigError(str(exc)) from None
        return cls.build(broker=args.broker, types=args.types, concurrency=args.concurrency,
                         prefetch=args.prefetch, handlers=args.handlers, grace=args.grace,
                         lease_seconds=args.lease_seconds, worker_id=args.worker_id,
                         log_json=args.log_json, log_level=args.log_level,
                         metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                         event_loop=args.event_loop,
                         security=security)

    @classmethod
    def build(cls, *, broker: str, types: str, concurrency: str, handlers: str, grace: str,
              lease_seconds: str, worker_id: str, log_json: bool, log_level: str,
              prefetch: str = "0", metrics_port: str = "0", metrics_host: str = "127.0.0.1",
              event_loop: str = eventloop.DEFAULT,
              security: ChannelSecurity | None = None) -> Config:
        """Validate raw option values into a Config; ConfigError names the first bad one."""
        try:
            return cls(
                broker=_broker(broker), types=_names(types),
                concurrency=settings.integer("--concurrency", concurrency, 1, 1000),
                prefetch=settings.integer("--prefetch", prefetch, 0, MAX_PREFETCH),
                handlers=_handlers(handlers), grace=settings.number("--grace", grace, low=0),
                lease_seconds=settings.integer("--lease-seconds", lease_seconds, 1, 3600),
                worker_id=_worker_id(worker_id), log_json=log_json, log_level=_level(log_level),
                metrics_port=settings.port("--metrics-port", metrics_port or "0"),
                metrics_host=metrics_host.strip() or "127.0.0.1",
                event_loop=eventloop.kind("--event-loop", event_loop),
                security=security or ChannelSecurity())
        except settings.SettingError as exc:
            raise ConfigError(str(exc)) from None


def _names(raw: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _broker(raw: str) -> str:
    """host:port, a gRPC target URI, or a comma-separated list of brokers (each host:port)."""
    if not raw.strip():
        raise settings.SettingError("--broker", "must be host:port")
    try:
        channel_target(raw.strip())
    except TargetError as exc:
        raise settings.SettingError("--broker", str(exc)) from None
    return raw.strip()


def _handlers(raw: str) -> tuple[str, ...]:
    if not _names(raw):
        raise settings.SettingError("--handlers", "name at least one module")
    return _names(raw)


def _worker_id(raw: str) -> str:
    wid = raw.strip() or _default_worker_id()
    if len(wid) > 128:
        raise settings.SettingError("--worker-id", "at most 128 characters")
    return wid


def _level(raw: str) -> str:
    if raw.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise settings.SettingError("--log-level", f"unknown level {raw!r}")
    return raw.upper()
