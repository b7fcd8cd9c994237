"""``forge-gateway`` / ``python -m forge_gateway``: serve the REST gateway with uvicorn."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Sequence

import uvicorn

from forge_common import grpcenv, jsonlog, tracing
from forge_gateway.app import create_app
from forge_gateway.config import Config
from forge_gateway.connections import fit_open_files, guarded_protocol
from forge_gateway.routes import TemplateError


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM. Logs ``gateway listening on HOST:PORT`` once it accepts."""
    config = Config.from_args(argv)
    jsonlog.setup(config.log_level, json_lines=config.log_json)
    tracing.setup("forge-gateway")
    try:
        app = create_app(config)
    except TemplateError as e:
        logging.getLogger("gateway").error("bad google.api.http annotation: %s", e)
        return 2
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            # Pinned to h11 (not "auto") because the connection cap and header deadline live
            # in a subclass of its protocol; websockets are not part of the API.
            http=guarded_protocol(fit_open_files(config.max_connections), config.header_timeout),
            ws="none",
            loop=config.event_loop,
            timeout_keep_alive=config.keep_alive_timeout,
            log_level=config.log_level,
            # Streams (SSE, NDJSON) are cancelled on disconnect; give them no grace to linger.
            timeout_graceful_shutdown=5,
            access_log=config.log_level == "debug",
            # JSON lines: uvicorn's loggers go to the root handler instead of its own.
            log_config=None if config.log_json else uvicorn.config.LOGGING_CONFIG,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        )
    )
    _announce_when_started(server, config)
    server.run()
    return 0 if server.started else 1


def _announce_when_started(server: uvicorn.Server, config: Config) -> None:
    # uvicorn logs its own banner, but tests and scripts wait for the same line every Forge
    # service prints, with the port actually bound (port 0 picks a free one).
    original = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original(sockets=sockets)
        if not server.started:
            return
        port = config.port
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
        logging.getLogger("gateway").info(
            "gateway listening on %s:%d (broker %s, %s event loop, gRPC on %s)", config.host,
            port, config.broker, config.event_loop, grpcenv.engine()
        )

    server.startup = startup  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main())
