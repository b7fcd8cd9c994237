"""``workerd`` / ``python -m forge_workerd``: run the worker daemon until SIGTERM or SIGINT.

Exit status: 0 after a graceful drain, 1 when the broker refuses the worker's Lease request,
2 for a bad option or a handler module that cannot be loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from forge_common import eventloop, gctune, tracing
from forge_common.exporter import Exporter
from forge_workerd import logs
from forge_workerd.config import Config
from forge_workerd.daemon import Worker
from forge_workerd.errors import BrokerRejected, ConfigError, HandlerError
from forge_workerd.metrics import WorkerMetrics
from forge_workerd.registry import REGISTRY, load_modules

log = logging.getLogger("workerd")


async def serve(config: Config) -> None:
    """Run one Worker on the default registry; the first signal drains, a second cuts the grace."""
    metrics = WorkerMetrics()
    worker = Worker(config, REGISTRY, metrics)
    exporter = None
    if config.metrics_port:
        try:
            exporter = Exporter(metrics.registry, config.metrics_host, config.metrics_port)
        except OSError as exc:
            raise ConfigError(f"--metrics-port: cannot listen on {config.metrics_host}:"
                              f"{config.metrics_port}: {exc}") from exc
    stop = asyncio.Event()
    force = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: stopping; no new jobs", sig.name)
            stop.set()
        elif not force.is_set():
            log.warning("%s again: ending the grace period now", sig.name)
            force.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    gctune.settle()  # the handlers' modules are imported: this process is set up
    try:
        await worker.run(stop, force)
    finally:
        if exporter is not None:
            exporter.close()


def run(config: Config) -> None:
    """Run ``serve`` on a fresh event loop, and close the loop without waiting for threads.

    asyncio.run() would wait for every thread of the loop's default executor, so a handler that
    called ``asyncio.to_thread`` on something that never returns would keep the process from
    exiting after its drain.
    """
    loop = eventloop.factory(config.event_loop)()
    try:
        loop.run_until_complete(serve(config))
    finally:
        try:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # shuts the default executor down without waiting


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _exit(code: int) -> None:
    """Exit with ``code``, even past handler threads that never returned (the interpreter would
    otherwise wait for them forever at exit): their jobs were nacked or will be rescued."""
    stuck = [t for t in threading.enumerate()
             if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if not stuck:
        sys.exit(code)
    log.warning("exiting with %d handler threads still running: %s", len(stuck),
                ", ".join(t.name for t in stuck[:5]))
    tracing.flush()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        config = Config.from_args(argv)
    except ConfigError as exc:
        print(f"workerd: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.setup(config.log_level, json_lines=config.log_json, worker_id=config.worker_id)
    tracing.setup("forge-workerd")
    code = 0
    try:
        load_modules(config.handlers)
        run(config)
    except (ConfigError, HandlerError) as exc:
        log.error("%s", exc)
        code = 2
    except BrokerRejected as exc:
        log.error("%s", exc)
        code = 1
    except KeyboardInterrupt:  # a signal before the handlers were installed
        pass
    _exit(code)


if __name__ == "__main__":
    main()
