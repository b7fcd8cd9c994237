"""The gateway's configuration: one typed object, read from the command line and environment once.

Command-line flags win over environment variables, which win over the defaults.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from forge.security import ChannelSecurity, SecurityConfigError, TargetError, channel_target
from forge_common import eventloop, jsonlog, settings
from forge_common.exposure import exposure_problem
from forge_common.tokens import TokenConfigError, digest, parse_tokens

DEFAULT_MAX_BODY = 2 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 1000


@dataclass(frozen=True)
class Config:
    """Everything the gateway can be told."""

    broker: str = "localhost:50051"
    """gRPC target of the broker (``host:port``)."""
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = DEFAULT_MAX_BODY
    """Largest request body accepted, in bytes; larger ones get 413."""
    timeout: float = 10.0
    """Deadline of every unary gRPC call, in seconds. Streams have none."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Client connections held open at once, streams included; past it the connection waiting
    longest for a request is closed to make room, or, with none waiting, the new one gets 503."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers, counted from when it opened
    or its previous response ended; then it is closed."""
    body_timeout: float = 30.0
    """Seconds a request may take to send its whole body; then 408."""
    keep_alive_timeout: int = 5
    """Seconds an idle connection is kept open after a response."""
    event_loop: str = eventloop.DEFAULT
    """uvicorn's event loop: uvloop (where installed) or asyncio (forge_common.eventloop)."""
    token_digests: tuple[bytes, ...] = field(default=(), repr=False)
    """Digests of the API tokens (FORGE_TOKENS, FORGE_TOKENS_FILE). When there are any, an API
    request without one of them gets 401 before its body is read."""
    static_dir: Path | None = None
    """Where the dashboard's built files are served from at ``/``; None serves none."""
    log_level: str = "info"
    log_json: bool = False
    """One JSON object per log line (FORGE_LOG_FORMAT=json), instead of plain text."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """Certificate chain and key (PEM) to serve HTTPS; None serves plain HTTP."""
    broker_security: ChannelSecurity = field(default_factory=ChannelSecurity)
    """How to dial the broker: TLS (CA, client certificate). Never a token of the gateway's
    own: each request's ``Authorization`` header is forwarded to the broker instead."""

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> Config:
        """Parse flags and ``FORGE_BROKER``, ``PORT``, ``FORGE_GATEWAY_*``, ``FORGE_DASHBOARD_DIR``.

        Exits with status 2 and a message naming the option on a bad value (argparse's way).
        """
        e = os.environ if env is None else env
        parser = argparse.ArgumentParser(
            prog="forge-gateway", description="REST/JSON gateway in front of the Forge broker."
        )
        settings.add_options(parser, OPTIONS, e)
        parser.add_argument(
            "--static-dir",
            default=e.get("FORGE_DASHBOARD_DIR"),
            help="dashboard build to serve at / (default: dashboard/dist of this checkout if "
            "built; '' serves none) [FORGE_DASHBOARD_DIR]",
        )
        parser.add_argument(
            "--log-level",
            default=e.get("FORGE_LOG_LEVEL") or cls.log_level,
            choices=["critical", "error", "warning", "info", "debug"],
        )
        parser.add_argument(
            "--log-json",
            action="store_true",
            default=jsonlog.wants_json(e.get("FORGE_LOG_FORMAT")),
            help="log one JSON object per line [FORGE_LOG_FORMAT=json]",
        )
        for flag, var, help in BROKER_TLS:
            parser.add_argument(flag, default=None, help=f"{help} [{var}]")
        ns = parser.parse_args(argv)
        try:
            problem = exposure_problem(ns.host, "--host", e)
            token_digests = tuple(digest(t.token) for t in parse_tokens(e))
        except TokenConfigError as err:
            parser.error(str(err))
        if problem is not None:
            parser.error(problem)
        if (ns.tls_cert is None) != (ns.tls_key is None):
            parser.error("--tls-cert and --tls-key go together: set both or neither")
        try:
            broker_security = ChannelSecurity.from_env(
                e, ca_file=ns.broker_ca, client_cert=ns.broker_client_cert,
                client_key=ns.broker_client_key, use_token=False)
            broker_security.credentials()  # unreadable files are a bad option, said now
        except SecurityConfigError as err:
            parser.error(str(err))
        try:
            channel_target(ns.broker)  # a broker list with a bad entry too
        except TargetError as err:
            parser.error(f"--broker: {err}")
        if ns.static_dir and not Path(ns.static_dir).is_dir():
            parser.error(f"--static-dir: not a directory: {ns.static_dir}")
        return cls(broker=ns.broker, host=ns.host, port=ns.port, max_body=ns.max_body,
                   timeout=ns.timeout, static_dir=_static_dir(ns.static_dir),
                   log_level=ns.log_level, log_json=ns.log_json, tls_cert=ns.tls_cert,
                   tls_key=ns.tls_key, broker_security=broker_security,
                   max_connections=ns.max_connections, header_timeout=ns.header_timeout,
                   body_timeout=ns.body_timeout, keep_alive_timeout=ns.keep_alive_timeout,
                   token_digests=token_digests, event_loop=ns.event_loop)


def _static_dir(raw: str | None) -> Path | None:
    """``--static-dir``: unset means the dashboard build next to this checkout
    (``<repo>/dashboard/dist``) if there is one; empty means none."""
    if raw is None:
        built = Path(__file__).resolve().parents[2] / "dashboard" / "dist"
        return built if built.is_dir() else None
    return Path(raw).resolve() if raw else None


# Flags whose variable supplies the default; a bad value from either exits 2 naming the flag.
OPTIONS = (
    settings.Option("--broker", "FORGE_BROKER", Config.broker,
                    "broker gRPC target host:port, or several: host1:port1,host2:port2"),
    settings.Option("--host", "FORGE_GATEWAY_HOST", Config.host, "address to listen on"),
    settings.Option("--port", "PORT", Config.port, "HTTP port", settings.port),
    settings.Option("--max-body", "FORGE_GATEWAY_MAX_BODY", DEFAULT_MAX_BODY,
                    "largest request body in bytes", partial(settings.integer, low=1)),
    settings.Option("--timeout", "FORGE_GATEWAY_TIMEOUT", Config.timeout,
                    "deadline of unary calls in seconds", settings.positive_number),
    settings.Option("--max-connections", "FORGE_GATEWAY_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS,
                    "client connections open at once, streams included",
                    partial(settings.integer, low=1)),
    settings.Option("--header-timeout", "FORGE_GATEWAY_HEADER_TIMEOUT", Config.header_timeout,
                    "seconds a connection may take to send a request's headers",
                    settings.positive_number),
    settings.Option("--body-timeout", "FORGE_GATEWAY_BODY_TIMEOUT", Config.body_timeout,
                    "seconds a request may take to send its body", settings.positive_number),
    settings.Option("--keep-alive-timeout", "FORGE_GATEWAY_KEEP_ALIVE_TIMEOUT",
                    Config.keep_alive_timeout, "seconds an idle connection is kept after a "
                    "response", partial(settings.integer, low=1)),
    settings.Option("--tls-cert", "FORGE_GATEWAY_TLS_CERT", None,
                    "certificate chain (PEM) to serve HTTPS", settings.existing_file),
    settings.Option("--tls-key", "FORGE_GATEWAY_TLS_KEY", None, "the certificate's private key",
                    settings.existing_file),
    settings.Option("--event-loop", eventloop.VAR, eventloop.DEFAULT,
                    "the event loop: uvloop or asyncio", eventloop.kind),
)
# How to dial the broker; ChannelSecurity.from_env reads the variables when a flag is not given.
BROKER_TLS = (
    ("--broker-ca", "FORGE_CA_FILE", "CA (PEM) to dial the broker over TLS (default plain text)"),
    ("--broker-client-cert", "FORGE_TLS_CLIENT_CERT",
     "client certificate for a broker requiring mutual TLS"),
    ("--broker-client-key", "FORGE_TLS_CLIENT_KEY", "its private key"),
)
