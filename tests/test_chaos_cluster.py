"""The chaos run's own PostgreSQL tools start without fork handlers running.

Run as root, the cluster runs its tools (``initdb``, ``pg_ctl``) as an unprivileged user. Asked
to change user itself, Python forks rather than vforks, and a forked child runs gRPC's fork
handlers before it execs: with a gRPC channel just closed, about one child in 300 to 1,500 died of
SIGSEGV or SIGABRT, and a CI run lost its chaos test to a ``pg_ctl start`` that did. A vforked
child runs no fork handlers, so this test counts them rather than waiting for a rare crash.
"""

from __future__ import annotations

import ctypes
import subprocess

from tests.chaos.postgres import PgCluster

_forks = [0]
_handler: list[object] = []  # the registered callback, kept alive for as long as the process


def _count_fork() -> None:
    _forks[0] += 1


def forks() -> int:
    """Forks of this process so far, counted by a fork handler registered on the first call
    (once for the process: a handler cannot be taken back; it only counts). glibc exports the
    registration as __register_atfork (pthread_atfork is a static wrapper)."""
    if not _handler:
        _handler.append(ctypes.CFUNCTYPE(None)(_count_fork))
        ctypes.CDLL(None).__register_atfork(_handler[0], None, None, None)
    return _forks[0]


def test_the_counter_sees_a_fork() -> None:
    """The check below means something: a child that must fork is counted."""
    before = forks()
    subprocess.run(["true"], check=True, preexec_fn=lambda: None)
    assert forks() == before + 1


def test_the_clusters_tools_run_without_fork_handlers() -> None:
    cluster = PgCluster()
    try:
        before = forks()
        cluster.run_tool("pg_ctl", "--version")
        assert forks() == before, "the tool's child was forked: gRPC's fork handlers ran in it"
    finally:
        cluster.destroy()
