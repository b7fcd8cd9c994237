"""Assemble and run the broker: database, migrations, dispatch, maintenance, gRPC server."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from forge.v1 import broker_pb2
from forge_broker.auth import AuthInterceptor
from forge_broker.completer import Completer
from forge_broker.config import Config
from forge_broker.dispatch import Dispatcher
from forge_broker.embedded import start_embedded
from forge_broker.errors import DATABASE_ERRORS
from forge_broker.loops import cancel, every
from forge_broker.maintenance import Maintenance
from forge_broker.metrics import Metrics, publish_gauges
from forge_broker.migrate import latest_version, migrate, schema_version
from forge_broker.servicer import BrokerServicer, add_to_server
from forge_broker.stats import StatsHub
from forge_broker.store import Store
from forge_broker.streams import StreamCaps
from forge_common import gctune, grpcenv
from forge_common.exporter import Exporter

log = logging.getLogger("forge.broker")

SERVICE_NAME = broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name


class Broker:
    """A running broker. ``start`` returns once it serves; ``stop`` drains and closes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dsn = ""
        self.port = 0
        self.server: grpc.aio.Server | None = None
        self.servicer: BrokerServicer | None = None
        self.health = HealthServicer()
        self._health_task: asyncio.Task[None] | None = None
        self._serving = False
        self.metrics = Metrics()
        self.exporter: Exporter | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        self.schema_needed = latest_version()

    async def start(self) -> None:
        cfg = self.config
        if cfg.database_url:
            self.dsn = cfg.database_url
        else:
            self.dsn = await asyncio.to_thread(start_embedded, cfg.data_dir)
        applied = await asyncio.to_thread(migrate, cfg.database_direct_url or self.dsn)
        if applied:
            log.info("database migrated to version %d", applied[-1])
        self.store = Store(self.dsn, min_size=cfg.pool_min, max_size=cfg.pool_max,
                           statement_timeout_ms=cfg.statement_timeout_ms,
                           backoff_base=cfg.backoff_base, pool_timeout=cfg.pool_timeout,
                           direct_dsn=cfg.database_direct_url)
        await self.store.open()
        self.dispatcher = Dispatcher(self.store, broker_id=cfg.broker_id,
                                     poll_seconds=cfg.poll_seconds,
                                     max_streams=cfg.max_lease_streams,
                                     stall_timeout=cfg.stream_stall_timeout)
        self.stats = StatsHub(self.store, cfg.tick_seconds)
        self.maintenance = Maintenance(self.store, self.dispatcher, cfg, self.metrics)

        auth = _auth(cfg)
        server = grpc.aio.server(interceptors=[auth] if auth else [], options=[
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_send_message_bytes),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ])
        settled = functools.partial(self.dispatcher.settled, by_worker=True)
        streams = StreamCaps(cfg.max_streams_per_peer, auth.identify if auth else None)
        self.servicer = BrokerServicer(self.store, self.dispatcher, self.stats, self.metrics,
                                       Completer(self.store, settled),
                                       max_in_flight=cfg.max_in_flight, streams=streams,
                                       schedules_changed=self.maintenance.scheduler.wake)
        add_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME], server)
        address = f"{cfg.host}:{cfg.grpc_port}"
        creds = _server_credentials(cfg)
        self.port = (server.add_secure_port(address, creds) if creds is not None
                     else server.add_insecure_port(address))
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.host}:{cfg.grpc_port}")
        await self.dispatcher.start()
        await self.maintenance.start()
        await self._set_health(False)  # until the first check below, not the servicer's default
        await server.start()
        self.server = server
        if cfg.metrics_port:
            self._start_metrics()
        self._serving, why = await self._ready()
        if not self._serving:
            log.warning("NOT_SERVING: %s", why)
        await self._set_health(self._serving)
        self._health_task = asyncio.create_task(
            every(cfg.tick_seconds, self._check_database, log, "health check"), name="health")
        log.info("broker %s listening on %s:%d (%s event loop, gRPC on %s)", cfg.broker_id,
                 cfg.host, self.port, cfg.event_loop, grpcenv.engine())
        _log_security(cfg)

    async def _set_health(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    def _start_metrics(self) -> None:
        cfg = self.config
        try:
            self.exporter = Exporter(self.metrics.registry, cfg.metrics_host, cfg.metrics_port)
        except OSError as exc:  # metrics are not worth refusing jobs over; say so loudly
            log.error("metrics endpoint off: cannot listen on %s:%d: %s",
                      cfg.metrics_host, cfg.metrics_port, exc)
            return
        self._metrics_task = asyncio.create_task(publish_gauges(
            self.metrics, self.stats.current,
            lambda: [(s.worker_id, len(s.in_flight)) for s in self.dispatcher.streams],
            cfg.tick_seconds), name="metrics")

    async def _ready(self) -> tuple[bool, str]:
        """Whether to serve: the database answers and its schema is this broker's (or newer).
        Whether it answers is the database gauges' reading too."""
        try:
            async with self.store.pool.connection(timeout=2) as conn:
                version = await schema_version(conn)
        except DATABASE_ERRORS as exc:
            self.metrics.observe_database(False)
            return False, f"database unreachable: {exc}"
        self.metrics.observe_database(True)
        if version < self.schema_needed:
            return False, (f"database schema is at version {version}, this broker needs "
                           f"{self.schema_needed}: run `forge migrate` or restart the broker")
        return True, f"database reachable, schema version {version}"

    async def _check_database(self) -> None:
        """SERVING only while the database answers and its migrations are current: load
        balancers and workers route around an outage or a schema this broker cannot use."""
        ok, why = await self._ready()
        if ok != self._serving:
            if ok:
                log.info("SERVING again: %s", why)
            else:
                log.warning("NOT_SERVING: %s", why)
            await self._set_health(ok)
            self._serving = ok

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING at once, end lease and enqueue streams, let unary calls finish, close
        the pool."""
        # First of all: from here on every health check answers NOT_SERVING, whatever the
        # watcher below might still try to set (the servicer ignores it after this call).
        await self.health.enter_graceful_shutdown()
        log.info("NOT_SERVING: shutting down")
        await cancel((self._health_task, self._metrics_task))
        await self.maintenance.stop()
        await self.dispatcher.stop()
        await self.stats.stop()
        if self.servicer is not None:
            self.servicer.end_enqueue_streams()
        if self.server is not None:
            await self.server.stop(grace)
        await self.store.close()
        if self.exporter is not None:
            self.exporter.close()
        log.info("broker stopped")


def _auth(cfg: Config) -> AuthInterceptor | None:
    """Auth when tokens are configured; with none, no interceptor at all (auth off)."""
    return AuthInterceptor(cfg.tokens) if cfg.tokens else None


def _server_credentials(cfg: Config) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured (mutual TLS with a client CA)."""
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    client_ca = cfg.tls_client_ca.read_bytes() if cfg.tls_client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())],
        root_certificates=client_ca, require_client_auth=client_ca is not None)


def _log_security(cfg: Config) -> None:
    """Say how callers are checked. Token names and roles only: never a token."""
    if cfg.tokens:
        log.info("auth on: %d API tokens (%s)", len(cfg.tokens),
                 ", ".join(f"{t.name}={t.role}" for t in cfg.tokens))
    else:
        log.info("auth off: no FORGE_TOKENS or FORGE_TOKENS_FILE, every caller may call "
                 "everything (allowed on loopback only)")
    if cfg.tls_cert is not None:
        log.info("TLS on (certificate %s)%s", cfg.tls_cert,
                 ", client certificates required" if cfg.tls_client_ca is not None else "")


async def serve(config: Config) -> None:
    """Run a broker until SIGTERM or SIGINT."""
    broker = Broker(config)
    await broker.start()
    gctune.settle()  # this process is the broker's alone, unlike one that embeds a Broker
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("shutting down")
    await broker.stop()
