"""The /metrics HTTP endpoint the broker and workerd serve (prometheus_client's server, on a
daemon thread)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import start_wsgi_server

log = logging.getLogger("forge.metrics")


class Exporter:
    """Serves ``registry`` at http://host:port/metrics until ``close``; port 0 picks a free one."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_wsgi_server(port, addr=host, registry=registry)
        self.port = int(self._server.server_port)
        log.info("metrics at http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
