"""workerd's pieces that need no broker: configuration, the registry, backoff, the command line,
reading Settle's answers."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from forge.v1 import broker_pb2 as pb
from forge_workerd import Fail, JobContext, Registry, Retry, handler
from forge_workerd.backoff import Backoff
from forge_workerd.config import Config
from forge_workerd.errors import ConfigError, HandlerError
from forge_workerd.runner import DONE, Failed, Succeeded, as_result, describe, job_timeout, success
from forge_workerd.settle import _ack_results
from tests.support import free_port, run_module


def test_config_defaults_environment_and_flags() -> None:
    cfg = Config.from_args([], env={})
    assert (cfg.broker, cfg.concurrency, cfg.grace, cfg.lease_seconds) == ("localhost:50051", 8, 30.0, 30)
    assert cfg.handlers == ("forge_workerd.demo",) and cfg.types == () and cfg.worker_id
    assert cfg.heartbeat_interval == 10.0

    env = {"FORGE_BROKER": "b:1", "WORKERD_CONCURRENCY": "3", "WORKERD_TYPES": "a, b",
           "WORKERD_LOG_JSON": "true", "WORKERD_WORKER_ID": "w-env"}
    cfg = Config.from_args([], env=env)
    assert (cfg.broker, cfg.concurrency, cfg.types, cfg.log_json, cfg.worker_id) == (
        "b:1", 3, ("a", "b"), True, "w-env")
    cfg = Config.from_args(["--broker", "c:2", "--concurrency", "5", "--lease-seconds", "6"], env=env)
    assert (cfg.broker, cfg.concurrency, cfg.lease_seconds) == ("c:2", 5, 6)
    assert Config.from_args([], env={}).prefetch == 0
    assert Config.from_args([], env={"WORKERD_PREFETCH": "7"}).prefetch == 7
    assert Config.from_args(["--prefetch", "9"], env={"WORKERD_PREFETCH": "7"}).prefetch == 9
    # Up to a window of 10,000 with the most --concurrency: the broker's default limit.
    assert Config.from_args(["--concurrency", "1000", "--prefetch", "9000"], env={}).prefetch == 9000
    # A variable set but blank counts as unset, as for the broker's and the gateway's.
    assert Config.from_args([], env={"WORKERD_CONCURRENCY": " ", "WORKERD_GRACE": ""}).concurrency == 8


@pytest.mark.parametrize(("argv", "named"), [
    (["--concurrency", "0"], "--concurrency"),
    (["--concurrency", "x"], "--concurrency"),
    (["--prefetch", "-1"], "--prefetch"),
    (["--prefetch", "9001"], "--prefetch"),
    (["--lease-seconds", "3601"], "--lease-seconds"),
    (["--grace", "-1"], "--grace"),
    (["--grace", "nan"], "--grace"),
    (["--metrics-port", "70000"], "--metrics-port"),
    (["--log-level", "loud"], "--log-level"),
    (["--handlers", " , "], "--handlers"),
    (["--worker-id", "w" * 129], "--worker-id"),
])
def test_config_rejects_bad_values_naming_the_option(argv: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config.from_args(argv, env={})


def test_registry_names_timeouts_and_conflicts() -> None:
    reg = Registry()

    @handler("a.b:c-d_1", timeout=2, registry=reg)
    async def one(job: JobContext) -> None:
        return None

    def two(job: JobContext) -> None:
        return None

    assert reg.names() == ["a.b:c-d_1"]
    h = reg.get("a.b:c-d_1")
    assert h is not None and h.is_async and h.timeout == 2
    reg.register("a.b:c-d_1", one)  # the same function again is fine
    with pytest.raises(HandlerError, match="already has a handler"):
        reg.register("a.b:c-d_1", two)
    with pytest.raises(HandlerError, match="1 to 128 characters"):
        reg.register("bad name", two)
    with pytest.raises(HandlerError, match="timeout must be positive"):
        reg.register("t", two, timeout=0)


def test_payload_timeout_and_result_and_error_shapes() -> None:
    reg = Registry()
    h = reg.register("x", lambda job: None, timeout=5)
    assert job_timeout(h, {}) == 5
    assert job_timeout(h, {"_timeout": 0.5}) == 0.5
    assert job_timeout(h, {"_timeout": "soon"}) == 5 and job_timeout(h, {"_timeout": True}) == 5
    assert success(None) is DONE and isinstance(success({"a": 1}), Succeeded)
    result = as_result([1, "a"])
    assert result is not None and dict(result)["value"] is not None
    with pytest.raises((TypeError, ValueError)):
        as_result({"when": object()})

    try:
        raise ValueError("x" * 10_000)
    except ValueError as exc:
        text = describe(exc)
    assert text.startswith("ValueError: xxx") and len(text) <= 4000 and "Traceback" in text
    assert Retry(after=3).after == 3 and Fail("no").message == "no"
    with pytest.raises(ValueError):
        Retry(after=-1)
    assert Failed("e").retry_after is None


def test_backoff_doubles_with_jitter_up_to_its_maximum_and_resets() -> None:
    b = Backoff(0.1, 10.0)
    delays = [b.next() for _ in range(10)]
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2
    assert all(5.0 <= d <= 10.0 for d in delays[8:])
    b.reset()
    assert b.next() <= 0.1


def _workerd(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("forge_workerd", "--broker", f"127.0.0.1:{free_port()}", *args)


def test_command_line_errors_exit_2_with_a_message() -> None:
    out = _workerd("--handlers", "no.such.module")
    assert out.returncode == 2 and "cannot import handler module 'no.such.module'" in out.stderr
    out = _workerd("--types", "nope")
    assert out.returncode == 2 and "--types: no handler for nope" in out.stderr
    out = _workerd("--concurrency", "0")
    assert out.returncode == 2 and "--concurrency" in out.stderr


def test_settle_answers_map_to_their_acks_whole_or_refused_only() -> None:
    acks: list[Any] = ["a", "b", "c"]
    full = [pb.SettleResult(job_id=j) for j in "abc"]  # a broker that answers every ack
    assert [(p, r.job_id if r else None) for p, r in _ack_results(acks, full)] == [
        ("a", "a"), ("b", "b"), ("c", "c")]
    refused = [pb.SettleResult(job_id="c", code=9, index=2)]
    assert [(p, r.code if r else None) for p, r in _ack_results(acks, refused)] == [
        ("a", None), ("b", None), ("c", 9)]
    assert [r for _, r in _ack_results(acks, [])] == [None, None, None]
