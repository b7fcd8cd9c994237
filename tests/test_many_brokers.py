"""Three brokers, six workerd dialling all of them (``FORGE_BROKER=h1:p1,h2:p2,h3:p3``), one
broker SIGKILLed mid-drain and left dead: nothing is lost, no lease is held twice, and the
workers that were on the dead broker carry on through the others."""

from __future__ import annotations

import pytest

from forge.client import Client
from tests.chaos.run import Settings, run, summary
from tests.support import BrokerProcess, free_port, run_module

pytestmark = pytest.mark.slow

JOBS = 6000


def test_workers_of_a_killed_broker_carry_on_through_the_others_and_nothing_is_lost() -> None:
    result = run(Settings(
        jobs=JOBS, brokers=3, workers=6, concurrency=8, job_ms=5, fail_every=100,
        broker_kills=1, broker_restarts=0, pg_restarts=0, pg_stop_seconds=0, max_kills=0,
        lease_seconds=5))
    print(summary(result))
    rec, found = result.record, result.findings
    assert result.violations == [], summary(result)
    assert (found.jobs, found.completed, found.dead_by_choice) == (JOBS, JOBS - 60, 60)
    assert found.lost == 0 and found.missing_effects == 0 and found.overlaps == 0
    [kill] = rec.broker_kills
    assert kill.workers and all(n > 0 for n in kill.runs_after.values()), summary(result)
    # The stream broke and the next call reached a live broker: seconds, not a lease time.
    assert kill.reconnect_seconds.keys() == set(kill.workers), summary(result)
    assert max(kill.reconnect_seconds.values()) < 5, summary(result)


@pytest.mark.parametrize("brokers, message", [
    ("127.0.0.1:1,127.0.0.1", "'127.0.0.1': each must be host:port"),
    ("127.0.0.1:1,no-such-host.invalid:2", "cannot resolve no-such-host.invalid"),
])
def test_a_bad_broker_list_stops_workerd_naming_the_entry(brokers: str, message: str) -> None:
    out = run_module("forge_workerd", "--broker", brokers)
    assert out.returncode == 2
    assert "--broker" in out.stderr and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("scheme", ["", "ipv4:"])
def test_the_client_given_a_dead_and_a_live_broker_reaches_the_live_one(
        broker: BrokerProcess, scheme: str) -> None:
    # A list is shuffled per channel: over ten clients, some start at the dead address and move
    # on. gRPC's own URI is passed as it is: every client starts at the dead address.
    targets = f"{scheme}127.0.0.1:{free_port()},{broker.target}"
    for n in range(10):
        with Client(targets, timeout=10) as client:
            job = client.enqueue("listed", {"n": n})
            assert client.get(job.id).id == job.id
