"""``forge-broker``: run the broker (configuration from the environment, see forge_broker.config)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from forge_broker.config import Config
from forge_broker.errors import InvalidArgument
from forge_broker.server import serve
from forge_common import eventloop, jsonlog, settings, tracing
from forge_common.exposure import exposure_problem


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="forge-broker",
        description="Forge broker. Configured by environment: DATABASE_URL (unset: embedded "
                    "PostgreSQL in ./.forge), GRPC_PORT (50051), FORGE_HOST (127.0.0.1), "
                    "FORGE_* (see docs/operations.md).")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-json", action="store_true",
                        default=jsonlog.wants_json(os.environ.get("FORGE_LOG_FORMAT")),
                        help="log one JSON object per line [FORGE_LOG_FORMAT=json]")
    parser.add_argument("--tls-cert", default=None, type=_file("--tls-cert"),
                        help="certificate chain (PEM) to serve gRPC over TLS [FORGE_TLS_CERT]")
    parser.add_argument("--tls-key", default=None, type=_file("--tls-key"),
                        help="the certificate's private key (PEM) [FORGE_TLS_KEY]")
    parser.add_argument("--tls-client-ca", default=None, type=_file("--tls-client-ca"),
                        help="CA (PEM) for client certificates: require mutual TLS "
                             "[FORGE_TLS_CLIENT_CA]")
    args = parser.parse_args(argv)
    jsonlog.setup(args.log_level, json_lines=args.log_json)
    tracing.setup("forge-broker")
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every pg_ctl call
    try:
        config = _with_flags(Config.from_env(), args)
        config.check()
    except InvalidArgument as exc:
        sys.exit(f"forge-broker: bad configuration: {exc}")
    if not config.tokens:
        problem = exposure_problem(config.host, "FORGE_HOST", {})
        if problem is not None:
            sys.exit(f"forge-broker: {problem}")
    try:
        eventloop.run(serve(config), config.event_loop)
    except KeyboardInterrupt:
        pass


def _file(flag: str) -> Callable[[str], Path]:
    return settings.argparse_type(flag, settings.existing_file)


def _with_flags(config: Config, args: argparse.Namespace) -> Config:
    """The TLS flags win over their variables."""
    return dataclasses.replace(config, tls_cert=args.tls_cert or config.tls_cert,
                               tls_key=args.tls_key or config.tls_key,
                               tls_client_ca=args.tls_client_ca or config.tls_client_ca)


if __name__ == "__main__":
    main()
