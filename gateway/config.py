"""The gateway's configuration: one typed object, read from the command line and environment once.

Command-line flags win over environment variables, which win over the defaults.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_BODY = 2 * 1024 * 1024


def _default_static_dir() -> Path | None:
    """The dashboard build next to this checkout (``<repo>/dashboard/dist``), if it exists."""
    candidate = Path(__file__).resolve().parent.parent / "dashboard" / "dist"
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
        ns = parser.parse_args(argv)
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
