"""gRPC's I/O engine for a Forge service's process, chosen before grpc is first imported (and,
for the broker, gRPC's fork handlers turned off: ``no_fork_handlers``).

grpcio 1.6x onwards moves each connection's reads and writes to its EventEngine: a poller
thread that hands every read to a thread pool, which hands it to the completion queue that
``grpc.aio``'s own poller thread drains into the event loop. The older iomgr engine reads in the
thread draining the completion queue, one thread hop fewer per message each way. Measured on
loopback (docs/benchmarks.md, "Sixth pass"): a unary round trip back to back 0.63 → 0.37 ms,
an idle job from enqueue to its handler ~0.15 ms sooner. Both engines ship in grpcio and are
chosen by its ``GRPC_EXPERIMENTS`` variable, which grpc reads once, when it is imported: so
each service's package (``forge_broker``, ``forge_workerd``, ``forge_gateway``) calls
``prefer_iomgr()`` as it is imported, before any of its modules imports grpc.

A value the operator set wins, even an empty one (``GRPC_EXPERIMENTS=`` keeps grpc's own
defaults). The client library leaves the choice to its user's process (docs/operations.md).
"""

from __future__ import annotations

import os
import sys

VAR = "GRPC_EXPERIMENTS"
IOMGR = "-event_engine_client,-event_engine_listener"
"""Turns off the EventEngine for connecting and for listening; other experiments keep
grpc's defaults."""


def prefer_iomgr() -> None:
    """Set ``GRPC_EXPERIMENTS`` to ``IOMGR`` unless it is set or grpc is already imported (too
    late to matter for this process, and children should not inherit a choice this process did
    not make)."""
    if VAR not in os.environ and "grpc" not in sys.modules:
        os.environ[VAR] = IOMGR


FORK_VAR = "GRPC_ENABLE_FORK_SUPPORT"


def no_fork_handlers() -> None:
    """Set ``GRPC_ENABLE_FORK_SUPPORT`` to ``0`` under the same conditions as ``prefer_iomgr``.

    gRPC's fork handlers prepare a forked child to go on using gRPC. The broker's only children
    are PostgreSQL's tools (``pg_ctl``, which the embedded default runs at start and at exit), and
    they exec at once. Run as root, the embedded server changes user for them, so Python forks
    rather than vforks, and the handlers ran in the child between fork and exec: after a gRPC
    channel closed, about one such child in 300 to 1,500 died of SIGSEGV or SIGABRT (a chaos
    test lost its ``pg_ctl start`` that way). With the handlers off, none in 1,500."""
    if FORK_VAR not in os.environ and "grpc" not in sys.modules:
        os.environ[FORK_VAR] = "0"


def engine() -> str:
    """What this process's gRPC reads and writes with, for the start-up log line: ``iomgr`` when
    ``GRPC_EXPERIMENTS`` turns the EventEngine off for both connecting and listening, else
    ``EventEngine``."""
    off = {part.strip() for part in os.environ.get(VAR, "").split(",")}
    return "iomgr" if set(IOMGR.split(",")) <= off else "EventEngine"
