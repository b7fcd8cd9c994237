"""The ``forge`` CLI and the embedded default, run as a user would: real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format

from forge import Client
from forge.v1 import broker_pb2 as pb
from forge_broker.migrate import available
from tests.support import BrokerProcess, run_module


def forge(broker: BrokerProcess, *args: str, cwd: Path | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    forge_bin = shutil.which("forge", path=os.path.dirname(sys.executable))
    assert forge_bin, "the forge console script is installed beside the interpreter"
    return subprocess.run([forge_bin, "--broker", broker.target, *args], capture_output=True,
                          text=True, timeout=30, cwd=cwd, input=stdin)


@pytest.mark.slow
def test_cli_enqueue_get_stats_and_dlq(broker: BrokerProcess, tmp_path: Path) -> None:
    out = forge(broker, "enqueue", "email", '{"to": "a@b.c"}', "--priority", "10",
                "--max-retries", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["type"] == "email" and job["priority"] == 10 and job["status"] == "PENDING"
    assert job["payload"] == {"to": "a@b.c"}

    got = json.loads(forge(broker, "get", job["id"]).stdout)
    assert got["id"] == job["id"]

    with Client(broker.target) as client:
        stream = client.stub.Lease(pb.LeaseRequest(worker_id="cli-test"), timeout=10)
        leased = next(iter(stream)).jobs[0]
        stream.cancel()
        client.stub.Nack(pb.NackRequest(job_id=leased.job.id, lease_token=leased.lease_token,
                                        error="smtp down"), timeout=5)

    dead = json.loads(forge(broker, "dlq", "list").stdout)
    assert [j["id"] for j in dead["jobs"]] == [job["id"]]
    assert dead["jobs"][0]["lastError"] == "smtp down"
    retried = json.loads(forge(broker, "dlq", "retry", job["id"]).stdout)
    assert retried["status"] == "PENDING"

    stats = json.loads(forge(broker, "stats").stdout)
    assert "computedAt" in stats

    missing = forge(broker, "get", "0190d6a4-0000-7000-8000-000000000000")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    bad = forge(broker, "enqueue", "bad type")
    assert bad.returncode == 1 and "type:" in bad.stderr


@pytest.mark.slow
def test_cli_queue_pause_set_get_list_and_resume(broker: BrokerProcess) -> None:
    paused = json.loads(forge(broker, "queue", "pause", "mail").stdout)
    assert paused["type"] == "mail" and paused["paused"] is True
    out = forge(broker, "queue", "set", "mail", "--concurrency", "3", "--rate", "20/500ms")
    assert out.returncode == 0, out.stderr
    changed = json.loads(out.stdout)
    assert changed["concurrencyLimit"] == 3 and changed["paused"] is True
    assert changed["rateLimit"] == {"limit": 20, "period": "0.500s"}
    # Only the options given change.
    keyed = json.loads(forge(broker, "queue", "set", "mail", "--key-concurrency", "1").stdout)
    assert (keyed["concurrencyLimit"], keyed["keyConcurrencyLimit"]) == (3, 1)
    unrated = json.loads(forge(broker, "queue", "set", "mail", "--rate", "0").stdout)
    assert unrated["rateLimit"] == {}  # no limit, no period
    assert json.loads(forge(broker, "queue", "get", "mail").stdout)["concurrencyLimit"] == 3
    listed = json.loads(forge(broker, "queue", "list").stdout)
    assert [q["type"] for q in listed["queues"]] == ["mail"]
    assert json.loads(forge(broker, "queue", "resume", "mail").stdout)["paused"] is False
    bad = forge(broker, "queue", "set", "mail", "--concurrency", "-1")
    assert bad.returncode == 1 and "queue.concurrency_limit:" in bad.stderr
    usage = forge(broker, "queue", "set", "mail", "--rate", "fast")
    assert usage.returncode == 2 and "not a rate" in usage.stderr
    keyed_job = json.loads(forge(broker, "enqueue", "mail", "--concurrency-key", "t1").stdout)
    assert keyed_job["concurrencyKey"] == "t1"


def test_forge_migrate_uses_database_url(empty_dsn: str, tmp_path: Path) -> None:
    def migrate() -> subprocess.CompletedProcess[str]:
        return run_module("forge.cli", "migrate", env={"DATABASE_URL": empty_dsn}, cwd=tmp_path, timeout=60)

    first = migrate()
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["applied"] == [m.version for m in available()]
    assert json.loads(migrate().stdout)["applied"] == []


@pytest.mark.slow
def test_broker_without_database_url_runs_embedded_postgres_and_keeps_data(tmp_path: Path) -> None:
    broker = BrokerProcess(None, cwd=tmp_path)  # DATABASE_URL unset: PostgreSQL in tmp_path/.forge
    broker.start(timeout=60)
    try:
        with Client(broker.target) as client:
            job = client.enqueue("email", {"to": "x@y.z"})
    finally:
        assert broker.stop(30) == 0
    assert (tmp_path / ".forge" / "pgdata" / "PG_VERSION").exists()
    broker.start(timeout=60)
    try:
        with Client(broker.target) as client:
            assert client.get(job.id).payload["to"] == "x@y.z"
    finally:
        broker.stop(30)


@pytest.mark.slow
def test_cli_schedule_put_get_list_delete(broker: BrokerProcess) -> None:
    put = forge(broker, "schedule", "put", "nightly", "--cron", "0 3 * * *", "--timezone",
                "Europe/Berlin", "--type", "report", "--payload", '{"kind": "daily"}',
                "--priority", "5", "--max-retries", "1")
    assert put.returncode == 0, put.stderr
    stored = json.loads(put.stdout)
    assert (stored["name"], stored["cron"], stored["timezone"]) == ("nightly", "0 3 * * *",
                                                                    "Europe/Berlin")
    assert stored["job"] == {"type": "report", "payload": {"kind": "daily"}, "priority": 5,
                             "maxRetries": 1}
    assert "nextRunAt" in stored
    ping = forge(broker, "schedule", "put", "ping", "--every", "1m30s", "--type", "ping",
                 "--paused")
    assert ping.returncode == 0, ping.stderr
    assert json.loads(ping.stdout)["every"] == "90s" and json.loads(ping.stdout)["paused"]

    assert json.loads(forge(broker, "schedule", "get", "nightly").stdout) == stored
    listed = json.loads(forge(broker, "schedule", "list").stdout)
    assert [s["name"] for s in listed["schedules"]] == ["nightly", "ping"]
    deleted = forge(broker, "schedule", "delete", "nightly")
    assert deleted.returncode == 0 and deleted.stdout == ""
    missing = forge(broker, "schedule", "get", "nightly")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "forge: NOT_FOUND: schedule nightly not found"

    bad_cron = forge(broker, "schedule", "put", "x", "--cron", "61 * * * *", "--type", "t")
    assert bad_cron.returncode == 1
    assert bad_cron.stderr.strip() == "forge: INVALID_ARGUMENT: cron: Bad minute in '61 * * * *'"
    both = forge(broker, "schedule", "put", "x", "--cron", "@daily", "--every", "1m", "--type", "t")
    assert both.returncode == 2 and len(both.stderr.splitlines()) == 1
    bad_every = forge(broker, "schedule", "put", "x", "--every", "soon", "--type", "t")
    assert bad_every.returncode == 2 and "not a period: 'soon'" in bad_every.stderr


def _jobs_of(broker: BrokerProcess, type_: str) -> list[pb.Job]:
    with Client(broker.target) as client:
        return list(client.list(type=type_, order="OLDEST", page_size=100).jobs)


@pytest.mark.slow
def test_cli_enqueue_many_enqueues_a_job_per_line_in_batches(broker: BrokerProcess,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    # CRLF endings, blank lines, and a string holding U+2028 (a line break to str.splitlines).
    path.write_bytes('{"n": 1}\r\n\r\n{"n": 2}\n{"n": 3, "s": "é\u2028x"}\n  \n{}\n{"n": 5}\n'
                     .encode())
    out = forge(broker, "enqueue-many", "cli.many", str(path), "--batch", "2", "--priority", "3")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["created"] == 5 and len(answer["ids"]) == 5
    with Client(broker.target) as client:
        jobs = [client.get(job_id) for job_id in answer["ids"]]
    assert [json_format.MessageToDict(j.payload) for j in jobs] == [
        {"n": 1}, {"n": 2}, {"n": 3, "s": "é\u2028x"}, {}, {"n": 5}]
    assert {(j.type, j.priority, j.status) for j in jobs} == {("cli.many", 3, pb.Job.PENDING)}


@pytest.mark.slow
def test_cli_enqueue_many_reads_standard_input(broker: BrokerProcess) -> None:
    out = forge(broker, "enqueue-many", "cli.stdin", stdin='{"n": 1}\n{"n": 2}\n')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["created"] == 2
    assert [json_format.MessageToDict(j.payload) for j in _jobs_of(broker, "cli.stdin")] == [
        {"n": 1}, {"n": 2}]


@pytest.mark.slow
def test_cli_enqueue_many_with_a_bad_line_names_it_and_enqueues_nothing(
        broker: BrokerProcess, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"n": 1}\n{"n": 2\n[1]\n')
    out = forge(broker, "enqueue-many", "cli.bad", str(path))
    assert out.returncode == 1 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("forge: line 2: payload is not valid JSON"), line
    assert _jobs_of(broker, "cli.bad") == []
    empty = forge(broker, "enqueue-many", "cli.bad", stdin="\n\n")
    assert empty.returncode == 1 and "no payload" in empty.stderr
    refused = forge(broker, "enqueue-many", "bad type", stdin='{"n": 1}\n')
    assert refused.returncode == 1 and refused.stdout == ""
    [line] = refused.stderr.strip().splitlines()
    assert "template.type" in line and line.endswith("nothing from line 1 on was enqueued"), line


@pytest.mark.slow
def test_cli_enqueue_many_names_the_line_the_broker_refused_and_keeps_the_batches_before(
        broker: BrokerProcess, tmp_path: Path) -> None:
    """The broker refuses a payload nested too deeply (the client's JSON check lets it by): its
    batch is not enqueued, and the error names the line, not the batch's entry."""
    deep = '{"a": ' + "[" * 25 + "]" * 25 + "}"
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(['{"n": 1}', '{"n": 2}', '{"n": 3}', "", deep, '{"n": 6}']) + "\n")
    out = forge(broker, "enqueue-many", "cli.refused", str(path), "--batch", "2")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "line 5: nests" in line and "nothing from line 3 on was enqueued" in line, line
    assert "the 2 jobs before it were" in line and "payloads_json" not in line
    printed = json.loads(out.stdout)["ids"]
    assert [j.id for j in _jobs_of(broker, "cli.refused")] == printed and len(printed) == 2
