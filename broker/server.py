"""Assemble and run the broker: database, migrations, dispatch, maintenance, gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from broker.completer import Completer
from broker.config import Config
from broker.dispatch import Dispatcher
from broker.embedded import start_embedded
from broker.maintenance import Maintenance
from broker.migrate import migrate
from broker.servicer import BrokerServicer
from broker.stats import StatsHub
from broker.store import Store
from forge.v1 import broker_pb2, broker_pb2_grpc

log = logging.getLogger("forge.broker")

SERVICE_NAME = broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Broker:
    """A running broker. ``start`` returns once it serves; ``stop`` drains and closes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dsn = ""
        self.port = 0
        self.server: grpc.aio.Server | None = None
        self.health = HealthServicer()
        self._health_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.config
        if cfg.database_url:
            self.dsn = cfg.database_url
        else:
            self.dsn = await asyncio.to_thread(start_embedded, cfg.data_dir)
        applied = await asyncio.to_thread(migrate, self.dsn)
        if applied:
            log.info("database migrated to version %d", applied[-1])
        self.store = Store(self.dsn, min_size=cfg.pool_min, max_size=cfg.pool_max,
                           statement_timeout_ms=cfg.statement_timeout_ms,
                           backoff_base=cfg.backoff_base, pool_timeout=cfg.pool_timeout)
        await self.store.open()
        self.dispatcher = Dispatcher(self.store, broker_id=cfg.broker_id,
                                     poll_seconds=cfg.poll_seconds)
        self.stats = StatsHub(self.store, cfg.tick_seconds)
        self.maintenance = Maintenance(self.store, self.dispatcher, cfg)

        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ])
        broker_pb2_grpc.add_BrokerServicer_to_server(
            BrokerServicer(self.store, self.dispatcher, self.stats,
                           Completer(self.store, self.dispatcher.settled)), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME], server)
        self.port = server.add_insecure_port(f"{cfg.host}:{cfg.grpc_port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.host}:{cfg.grpc_port}")
        await self.dispatcher.start()
        await self.maintenance.start()
        await server.start()
        self.server = server
        await self._set_health(True)
        self._health_task = asyncio.create_task(self._watch_database(), name="health")
        log.info("broker %s listening on %s:%d", cfg.broker_id, cfg.host, self.port)

    async def _set_health(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_database(self) -> None:
        """SERVING only while the database answers: load balancers route around an outage."""
        serving = True
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            ok = await self.store.ping()
            if ok != serving:
                log.warning("database %s", "reachable again: SERVING" if ok
                            else "unreachable: NOT_SERVING")
                await self._set_health(ok)
                serving = ok

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING at once, end lease streams, let unary calls finish, close the pool."""
        if self._health_task is not None:
            self._health_task.cancel()
        await self.health.enter_graceful_shutdown()
        await self.maintenance.stop()
        await self.dispatcher.stop()
        await self.stats.stop()
        if self.server is not None:
            await self.server.stop(grace)
        await self.store.close()
        log.info("broker stopped")


async def serve(config: Config) -> None:
    """Run a broker until SIGTERM or SIGINT."""
    broker = Broker(config)
    await broker.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("shutting down")
    await broker.stop()
