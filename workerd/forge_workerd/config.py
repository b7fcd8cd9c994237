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

from forge.security import ChannelSecurity, SecurityConfigError
from forge_workerd.errors import ConfigError

DEFAULT_BROKER = "localhost:50051"
DEFAULT_HANDLERS = ("forge_workerd.demo",)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:128]


@dataclass(frozen=True)
class Config:
    """Everything workerd can be told."""

    broker: str = DEFAULT_BROKER
    """The broker's gRPC target, host:port."""
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
        parser.add_argument("--broker", default=e.get("FORGE_BROKER") or DEFAULT_BROKER,
                            help="broker host:port [FORGE_BROKER, default %(default)s]")
        parser.add_argument("--types", default=e.get("WORKERD_TYPES", ""),
                            help="comma-separated job types to lease [WORKERD_TYPES, default: "
                                 "every type with a handler]")
        parser.add_argument("--concurrency", default=e.get("WORKERD_CONCURRENCY", "8"),
                            help="jobs run at once, 1 to 1000 [WORKERD_CONCURRENCY, default 8]")
        parser.add_argument("--prefetch", default=e.get("WORKERD_PREFETCH", "0"),
                            help="jobs leased beyond --concurrency, waiting for a free slot, so a "
                                 "busy worker never waits on the broker between short jobs; "
                                 "0 to 1000 [WORKERD_PREFETCH, default 0]")
        parser.add_argument("--handlers", default=e.get("WORKERD_HANDLERS", ",".join(DEFAULT_HANDLERS)),
                            help="comma-separated modules that define handlers "
                                 "[WORKERD_HANDLERS, default %(default)s]")
        parser.add_argument("--grace", default=e.get("WORKERD_GRACE", "30"),
                            help="seconds to let running jobs finish on SIGTERM "
                                 "[WORKERD_GRACE, default 30]")
        parser.add_argument("--lease-seconds", default=e.get("WORKERD_LEASE_SECONDS", "30"),
                            help="lease length, 1 to 3600 [WORKERD_LEASE_SECONDS, default 30]")
        parser.add_argument("--worker-id", default=e.get("WORKERD_WORKER_ID", ""),
                            help="name shown on leased jobs [WORKERD_WORKER_ID, default host-pid]")
        parser.add_argument("--log-json", action="store_true",
                            default=e.get("WORKERD_LOG_JSON", "").lower() in ("1", "true", "yes"),
                            help="log one JSON object per line [WORKERD_LOG_JSON]")
        parser.add_argument("--log-level", default=e.get("WORKERD_LOG_LEVEL", "INFO"),
                            help="DEBUG, INFO, WARNING or ERROR [WORKERD_LOG_LEVEL, default INFO]")
        parser.add_argument("--metrics-port", default=e.get("WORKERD_METRICS_PORT") or "0",
                            help="serve Prometheus metrics at /metrics on this port, 0 for none "
                                 "[WORKERD_METRICS_PORT, default 0]")
        parser.add_argument("--metrics-host", default=e.get("WORKERD_METRICS_HOST") or "127.0.0.1",
                            help="address of the metrics endpoint "
                                 "[WORKERD_METRICS_HOST, default %(default)s]")
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
                         prefetch=args.prefetch,
                         handlers=args.handlers, grace=args.grace, lease_seconds=args.lease_seconds,
                         worker_id=args.worker_id, log_json=args.log_json, log_level=args.log_level,
                         metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                         security=security)

    @classmethod
    def build(cls, *, broker: str, types: str, concurrency: str, handlers: str, grace: str,
              lease_seconds: str, worker_id: str, log_json: bool, log_level: str,
              prefetch: str = "0", metrics_port: str = "0", metrics_host: str = "127.0.0.1",
              security: ChannelSecurity | None = None) -> Config:
        """Validate raw option values into a Config; ConfigError names the first bad one."""
        if not broker.strip():
            raise ConfigError("--broker: must be host:port")
        n = _int("--concurrency", concurrency)
        if not 1 <= n <= 1000:
            raise ConfigError(f"--concurrency: must be in [1, 1000], got {n}")
        pf = _int("--prefetch", prefetch)
        if not 0 <= pf <= 1000:
            raise ConfigError(f"--prefetch: must be in [0, 1000], got {pf}")
        g = _float("--grace", grace)
        if g < 0:
            raise ConfigError(f"--grace: must not be negative, got {g}")
        ls = _int("--lease-seconds", lease_seconds)
        if not 1 <= ls <= 3600:
            raise ConfigError(f"--lease-seconds: must be in [1, 3600], got {ls}")
        wid = worker_id.strip() or _default_worker_id()
        if len(wid) > 128:
            raise ConfigError("--worker-id: at most 128 characters")
        mods = _csv(handlers)
        if not mods:
            raise ConfigError("--handlers: name at least one module")
        level = log_level.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"--log-level: unknown level {log_level!r}")
        mp = _int("--metrics-port", metrics_port or "0")
        if not 0 <= mp <= 65535:
            raise ConfigError(f"--metrics-port: not a port number: {mp}")
        return cls(broker=broker.strip(), types=_csv(types), concurrency=n, prefetch=pf,
                   handlers=mods, grace=g,
                   lease_seconds=ls, worker_id=wid, log_json=log_json, log_level=level,
                   metrics_port=mp, metrics_host=metrics_host.strip() or "127.0.0.1",
                   security=security or ChannelSecurity())


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}: not an integer: {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: not a number: {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}: must be finite, got {raw!r}")
    return value
