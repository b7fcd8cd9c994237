"""The gateway's configuration: one typed object, read from the command line and environment once.

Command-line flags win over environment variables, which win over the defaults.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from forge.security import ChannelSecurity, SecurityConfigError
from forge_common.exposure import exposure_problem

DEFAULT_MAX_BODY = 2 * 1024 * 1024


def _default_static_dir() -> Path | None:
    """The dashboard build next to this checkout (``<repo>/dashboard/dist``), if it exists."""
    candidate = Path(__file__).resolve().parents[2] / "dashboard" / "dist"
    return candidate if candidate.is_dir() else None


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
        parser.add_argument(
            "--broker",
            default=e.get("FORGE_BROKER") or cls.broker,
            help="broker gRPC target host:port (env FORGE_BROKER, default %(default)s)",
        )
        parser.add_argument(
            "--host",
            default=e.get("FORGE_GATEWAY_HOST") or cls.host,
            help="address to listen on (env FORGE_GATEWAY_HOST, default %(default)s)",
        )
        parser.add_argument(
            "--port",
            type=_port,
            default=e.get("PORT") or str(cls.port),
            help="HTTP port (env PORT, default %(default)s)",
        )
        parser.add_argument(
            "--max-body",
            type=_positive_int,
            default=e.get("FORGE_GATEWAY_MAX_BODY") or str(DEFAULT_MAX_BODY),
            help="largest request body in bytes (env FORGE_GATEWAY_MAX_BODY, default %(default)s)",
        )
        parser.add_argument(
            "--timeout",
            type=_positive_float,
            default=e.get("FORGE_GATEWAY_TIMEOUT") or str(cls.timeout),
            help="deadline of unary calls in seconds (env FORGE_GATEWAY_TIMEOUT, "
            "default %(default)s)",
        )
        parser.add_argument(
            "--static-dir",
            default=e.get("FORGE_DASHBOARD_DIR"),
            help="dashboard build to serve at / (env FORGE_DASHBOARD_DIR, "
            "default: dashboard/dist of this checkout if built; '' serves none)",
        )
        parser.add_argument(
            "--log-level",
            default=e.get("FORGE_LOG_LEVEL") or cls.log_level,
            choices=["critical", "error", "warning", "info", "debug"],
        )
        parser.add_argument(
            "--log-json",
            action="store_true",
            default=(e.get("FORGE_LOG_FORMAT") or "").strip().lower() == "json",
            help="log one JSON object per line (env FORGE_LOG_FORMAT=json)",
        )
        parser.add_argument(
            "--tls-cert",
            default=e.get("FORGE_GATEWAY_TLS_CERT") or None,
            help="certificate chain (PEM) to serve HTTPS (env FORGE_GATEWAY_TLS_CERT)",
        )
        parser.add_argument(
            "--tls-key",
            default=e.get("FORGE_GATEWAY_TLS_KEY") or None,
            help="the certificate's private key (env FORGE_GATEWAY_TLS_KEY)",
        )
        parser.add_argument(
            "--broker-ca",
            default=None,
            help="CA (PEM) to dial the broker over TLS (env FORGE_CA_FILE; default plain text)",
        )
        parser.add_argument(
            "--broker-client-cert",
            default=None,
            help="client certificate for a broker requiring mutual TLS "
            "(env FORGE_TLS_CLIENT_CERT)",
        )
        parser.add_argument(
            "--broker-client-key",
            default=None,
            help="its private key (env FORGE_TLS_CLIENT_KEY)",
        )
        ns = parser.parse_args(argv)
        problem = exposure_problem(ns.host, "--host", e)
        if problem is not None:
            parser.error(problem)
        if bool(ns.tls_cert) != bool(ns.tls_key):
            parser.error("--tls-cert and --tls-key go together: set both or neither")
        for flag, value in (("--tls-cert", ns.tls_cert), ("--tls-key", ns.tls_key)):
            if value and not Path(value).is_file():
                parser.error(f"{flag}: no such file: {value}")
        try:
            broker_security = ChannelSecurity.from_env(
                e, ca_file=ns.broker_ca, client_cert=ns.broker_client_cert,
                client_key=ns.broker_client_key, use_token=False)
            broker_security.credentials()  # unreadable files are a bad option, said now
        except SecurityConfigError as err:
            parser.error(str(err))
        static: Path | None
        if ns.static_dir is None:
            static = _default_static_dir()
        elif ns.static_dir == "":
            static = None
        else:
            static = Path(ns.static_dir).resolve()
            if not static.is_dir():
                parser.error(f"--static-dir: not a directory: {ns.static_dir}")
        # argparse applies `type` to string defaults too, so env values are validated alike.
        return cls(
            broker=ns.broker,
            host=ns.host,
            port=ns.port,
            max_body=ns.max_body,
            timeout=ns.timeout,
            static_dir=static,
            log_level=ns.log_level,
            log_json=ns.log_json,
            tls_cert=Path(ns.tls_cert) if ns.tls_cert else None,
            tls_key=Path(ns.tls_key) if ns.tls_key else None,
            broker_security=broker_security,
        )


def _port(raw: str) -> int:
    value = _int(raw)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}")
    return value


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {raw!r}")
    return value


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {raw!r}")
    return value
