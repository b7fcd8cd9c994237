"""``forge-broker``: run the broker (configuration from the environment, see broker.config)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from broker.config import Config
from broker.errors import InvalidArgument
from broker.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="forge-broker",
        description="Forge broker. Configured by environment: DATABASE_URL (unset: embedded "
                    "PostgreSQL in ./.forge), GRPC_PORT (50051), FORGE_HOST (127.0.0.1), "
                    "FORGE_* (see docs/operations.md).")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every pg_ctl call
    try:
        config = Config.from_env()
    except InvalidArgument as exc:
        sys.exit(f"forge-broker: bad configuration: {exc}")
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
