"""API tokens with roles, enforced by a real broker: who may call what, and what it answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from forge import Client, ForgeClientError
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from forge_broker.auth import (
    ADMIN,
    METHOD_ROLES,
    PRODUCER,
    WORKER,
    AuthInterceptor,
    load_tokens,
    required_roles,
)
from forge_broker.errors import InvalidArgument
from tests.security_support import Tokens, bearer
from tests.support import (
    BrokerProcess,
    drop_database,
    free_port,
    lease_one,
    new_database,
    run_module,
)

TOKENS = Tokens.fresh()


@pytest.fixture(scope="module")
def secured(pg_admin_dsn: str, template_dsn: str) -> Iterator[BrokerProcess]:
    """One broker with a producer, a worker and an admin token, shared by this module (tests use
    job types of their own). Logging at DEBUG, so the log test sees everything it could leak."""
    dsn = new_database(pg_admin_dsn)
    broker = BrokerProcess(dsn, args=["--log-level", "DEBUG"], FORGE_BROKER_ID="auth-test",
                           FORGE_TOKENS=TOKENS.env).start()
    yield broker
    broker.stop()
    drop_database(pg_admin_dsn, dsn)


@pytest.fixture(scope="module")
def channel(secured: BrokerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(secured.target) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.BrokerStub:
    return pb_grpc.BrokerStub(channel)


def code_of(call: object) -> grpc.StatusCode:
    """Run ``call`` (a zero-argument lambda) and return the status code it failed with."""
    with pytest.raises(grpc.RpcError) as info:
        result = call()  # type: ignore[operator]
        if hasattr(result, "__next__"):
            next(result)  # a server stream fails on its first read
    return info.value.code()  # type: ignore[no-any-return, attr-defined]


def first_lease(stub: pb_grpc.BrokerStub, token: str, job_type: str) -> pb.LeasedJob:
    return lease_one(stub, job_type, worker=f"auth-{job_type}", metadata=bearer(token))


# -- no token, unknown token ---------------------------------------------------------------------

def test_calls_without_a_token_are_unauthenticated(stub: pb_grpc.BrokerStub) -> None:
    assert code_of(lambda: stub.Enqueue(pb.EnqueueRequest(type="auth.none"), timeout=5)) \
        == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: stub.Stats(pb.StatsRequest(), timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    # server-streaming methods are refused the same way
    assert code_of(lambda: stub.Lease(pb.LeaseRequest(worker_id="w"), timeout=5)) \
        == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: stub.WatchStats(pb.WatchStatsRequest(), timeout=5)) \
        == grpc.StatusCode.UNAUTHENTICATED
    # and the two-way one
    assert code_of(lambda: stub.EnqueueStream(iter([pb.EnqueueStreamRequest()]), timeout=5)) \
        == grpc.StatusCode.UNAUTHENTICATED


def test_an_unknown_or_malformed_token_is_unauthenticated(stub: pb_grpc.BrokerStub) -> None:
    for md in (bearer("not-a-configured-token-at-all"), bearer(TOKENS.admin + "x"),
               (("authorization", f"Basic {TOKENS.admin}"),), (("authorization", TOKENS.admin),)):
        assert code_of(lambda md=md: stub.Stats(pb.StatsRequest(), timeout=5, metadata=md)) \
            == grpc.StatusCode.UNAUTHENTICATED


def test_the_refusal_says_how_to_authenticate(stub: pb_grpc.BrokerStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Stats(pb.StatsRequest(), timeout=5)
    assert "Bearer" in info.value.details()  # type: ignore[attr-defined]


# -- roles ---------------------------------------------------------------------------------------

def test_producer_may_enqueue_and_read_but_not_lease_settle_cancel_or_touch_the_dlq(
        stub: pb_grpc.BrokerStub) -> None:
    md = bearer(TOKENS.producer)
    job = stub.Enqueue(pb.EnqueueRequest(type="auth.producer"), timeout=5, metadata=md).job
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="auth.producer")]),
                      timeout=5, metadata=md)
    assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5, metadata=md).id == job.id
    assert stub.ListJobs(pb.ListJobsRequest(type="auth.producer"), timeout=5, metadata=md).jobs
    [streamed] = stub.EnqueueStream(
        iter([pb.EnqueueStreamRequest(request_id=1, job=pb.EnqueueRequest(type="auth.producer"))]),
        timeout=5, metadata=md)
    assert streamed.request_id == 1 and streamed.enqueued.created
    stub.Stats(pb.StatsRequest(), timeout=5, metadata=md)
    watch = stub.WatchStats(pb.WatchStatsRequest(), timeout=5, metadata=md)
    next(watch)
    watch.cancel()

    denied = grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: stub.Lease(pb.LeaseRequest(worker_id="p"), timeout=5, metadata=md)) == denied
    assert code_of(lambda: stub.Ack(pb.AckRequest(job_id=job.id, lease_token=job.id), timeout=5,
                                    metadata=md)) == denied
    assert code_of(lambda: stub.Nack(pb.NackRequest(job_id=job.id, lease_token=job.id), timeout=5,
                                     metadata=md)) == denied
    assert code_of(lambda: stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=5,
                                          metadata=md)) == denied
    assert code_of(lambda: stub.ListDeadJobs(pb.ListDeadJobsRequest(), timeout=5, metadata=md)) == denied
    assert code_of(lambda: stub.RetryDeadJob(pb.RetryDeadJobRequest(id=job.id), timeout=5,
                                             metadata=md)) == denied
    # and nothing was changed by the refused cancel
    assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5, metadata=md).status == pb.Job.PENDING


def test_queues_are_read_by_producers_and_admins_and_changed_by_admins_only(
        stub: pb_grpc.BrokerStub) -> None:
    admin, producer, worker = (bearer(t) for t in (TOKENS.admin, TOKENS.producer, TOKENS.worker))
    denied = grpc.StatusCode.PERMISSION_DENIED
    changes = [
        lambda md: stub.PauseQueue(pb.PauseQueueRequest(type="auth.queue"), timeout=5, metadata=md),
        lambda md: stub.ResumeQueue(pb.ResumeQueueRequest(type="auth.queue"), timeout=5,
                                    metadata=md),
        lambda md: stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(
            type="auth.queue", concurrency_limit=9)), timeout=5, metadata=md),
    ]
    for change in changes:
        assert code_of(lambda: change(producer)) == denied  # noqa: B023 (called at once)
        assert code_of(lambda: change(worker)) == denied  # noqa: B023
    for change in changes:
        change(admin)
    reads = [
        lambda md: stub.GetQueue(pb.GetQueueRequest(type="auth.queue"), timeout=5, metadata=md),
        lambda md: stub.ListQueues(pb.ListQueuesRequest(), timeout=5, metadata=md),
    ]
    for read in reads:
        assert code_of(lambda: read(worker)) == denied  # noqa: B023
        read(admin)
    queue = stub.GetQueue(pb.GetQueueRequest(type="auth.queue"), timeout=5, metadata=producer)
    # The producer's and worker's refused changes changed nothing.
    assert not queue.paused and queue.concurrency_limit == 9


def test_permission_denied_names_the_role_needed(stub: pb_grpc.BrokerStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.CancelJob(pb.CancelJobRequest(id="x"), timeout=5, metadata=bearer(TOKENS.producer))
    details = info.value.details()  # type: ignore[attr-defined]
    assert "producer" in details and "CancelJob" in details and "admin" in details


def test_worker_may_lease_heartbeat_ack_and_nack_but_not_enqueue_or_read(
        stub: pb_grpc.BrokerStub) -> None:
    md = bearer(TOKENS.worker)
    first = stub.Enqueue(pb.EnqueueRequest(type="auth.worker"), timeout=5,
                         metadata=bearer(TOKENS.producer)).job
    leased = first_lease(stub, TOKENS.worker, "auth.worker")
    assert leased.job.id == first.id
    lease = pb.LeaseRef(job_id=leased.job.id, lease_token=leased.lease_token)
    stub.Heartbeat(pb.HeartbeatRequest(leases=[lease]), timeout=5, metadata=md)
    stub.Ack(pb.AckRequest(job_id=leased.job.id, lease_token=leased.lease_token), timeout=5,
             metadata=md)

    second = stub.Enqueue(pb.EnqueueRequest(type="auth.worker"), timeout=5,
                          metadata=bearer(TOKENS.producer)).job
    leased = first_lease(stub, TOKENS.worker, "auth.worker")
    assert leased.job.id == second.id
    out = stub.Nack(pb.NackRequest(job_id=second.id, lease_token=leased.lease_token, error="no"),
                    timeout=5, metadata=md)
    assert out.status == pb.Job.PENDING

    admin = bearer(TOKENS.admin)
    assert stub.GetJob(pb.GetJobRequest(id=first.id), timeout=5, metadata=admin).status \
        == pb.Job.COMPLETED

    denied = grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: stub.Enqueue(pb.EnqueueRequest(type="auth.worker"), timeout=5,
                                        metadata=md)) == denied
    assert code_of(lambda: stub.GetJob(pb.GetJobRequest(id=first.id), timeout=5, metadata=md)) == denied
    assert code_of(lambda: stub.CancelJob(pb.CancelJobRequest(id=second.id), timeout=5,
                                          metadata=md)) == denied


def test_admin_may_call_everything(stub: pb_grpc.BrokerStub, secured: BrokerProcess) -> None:
    md = bearer(TOKENS.admin)
    job = stub.Enqueue(pb.EnqueueRequest(type="auth.admin", max_retries=0), timeout=5,
                       metadata=md).job
    leased = first_lease(stub, TOKENS.admin, "auth.admin")
    stub.Heartbeat(pb.HeartbeatRequest(leases=[pb.LeaseRef(job_id=job.id,
                                                            lease_token=leased.lease_token)]),
                   timeout=5, metadata=md)
    assert stub.Nack(pb.NackRequest(job_id=job.id, lease_token=leased.lease_token, error="x"),
                     timeout=5, metadata=md).status == pb.Job.DEAD
    dead = stub.ListDeadJobs(pb.ListDeadJobsRequest(type="auth.admin"), timeout=5, metadata=md)
    assert [j.id for j in dead.jobs] == [job.id]
    assert stub.RetryDeadJob(pb.RetryDeadJobRequest(id=job.id), timeout=5,
                             metadata=md).status == pb.Job.PENDING
    assert stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=5,
                          metadata=md).status == pb.Job.CANCELLED
    stub.Stats(pb.StatsRequest(), timeout=5, metadata=md)
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="auth.admin2")]),
                      timeout=5, metadata=md)
    assert stub.ListJobs(pb.ListJobsRequest(type="auth.admin2"), timeout=5, metadata=md).jobs
    # through the Python client too: FORGE_TOKEN's keyword twin
    with Client(secured.target, token=TOKENS.admin) as client:
        assert client.get(job.id).status == pb.Job.CANCELLED
        assert client.dead(type="auth.admin").jobs == []


def test_python_client_sends_its_token_on_every_call(secured: BrokerProcess) -> None:
    with Client(secured.target, token=TOKENS.producer) as client:
        job = client.enqueue("auth.client", {"n": 1})
        assert client.get(job.id).id == job.id
        with pytest.raises(ForgeClientError) as info:
            client.cancel(job.id)
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    with Client(secured.target) as anonymous, pytest.raises(ForgeClientError) as info:
        anonymous.stats()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_async_client_sends_its_token_on_unary_and_streaming_calls(
        secured: BrokerProcess) -> None:
    from forge import AsyncClient

    async with AsyncClient(secured.target, token=TOKENS.worker) as client:
        await client.stub.Enqueue(pb.EnqueueRequest(type="auth.async"), timeout=5,
                                  metadata=bearer(TOKENS.producer))
        stream = client.stub.Lease(pb.LeaseRequest(worker_id="async", types=["auth.async"]),
                                   timeout=10)
        batch = await stream.read()
        stream.cancel()
        assert batch.jobs[0].job.type == "auth.async"
        with pytest.raises(ForgeClientError) as info:
            await client.stats()
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED


# -- health and reflection -----------------------------------------------------------------------

def test_health_is_open_without_a_token(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "forge.v1.Broker"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_any_valid_token(channel: grpc.Channel) -> None:
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)

    def ask(metadata: tuple[tuple[str, str], ...] | None) -> list[str]:
        replies = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5,
            metadata=metadata)
        return [s.name for r in replies for s in r.list_services_response.service]

    with pytest.raises(grpc.RpcError) as info:
        ask(None)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    for token in TOKENS.all():
        assert "forge.v1.Broker" in ask(bearer(token))


# -- logs ----------------------------------------------------------------------------------------

def test_tokens_never_appear_in_the_broker_log(stub: pb_grpc.BrokerStub,
                                               secured: BrokerProcess) -> None:
    # provoke every kind of event: success, refusal for the role, an unknown token
    stub.Stats(pb.StatsRequest(), timeout=5, metadata=bearer(TOKENS.producer))
    code_of(lambda: stub.CancelJob(pb.CancelJobRequest(id="x"), timeout=5,
                                   metadata=bearer(TOKENS.worker)))
    code_of(lambda: stub.Stats(pb.StatsRequest(), timeout=5, metadata=bearer("unknown-" + TOKENS.admin)))
    log = secured.log_text()
    assert "auth on: 3 API tokens (ingest=producer, fleet=worker, ops=admin)" in log
    assert "token fleet (role worker) refused for /forge.v1.Broker/CancelJob" in log
    for token in TOKENS.all():
        assert token not in log
        assert token[5:] not in log  # not even the random part


# -- configuration -------------------------------------------------------------------------------

def test_broker_refuses_to_listen_beyond_loopback_without_tokens(dsn: str) -> None:
    out = run_module("forge_broker", env={"DATABASE_URL": dsn, "FORGE_HOST": "0.0.0.0",
                                          "GRPC_PORT": str(free_port()), "FORGE_TOKENS": "",
                                          "FORGE_TOKENS_FILE": "", "FORGE_METRICS_PORT": "0"})
    assert out.returncode != 0
    assert "FORGE_HOST 0.0.0.0" in out.stderr
    assert "FORGE_TOKENS" in out.stderr and "FORGE_TOKENS_FILE" in out.stderr


def test_broker_with_tokens_listens_beyond_loopback(dsn: str, tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# name role token\n\nops admin {TOKENS.admin}\n")
    broker = BrokerProcess(dsn, FORGE_HOST="0.0.0.0", FORGE_TOKENS_FILE=str(tokens_file)).start()
    try:
        with Client(broker.target, token=TOKENS.admin) as client:
            assert client.stats() is not None
    finally:
        broker.stop()


def test_bad_token_entries_stop_the_broker_naming_the_variable_not_the_token(dsn: str) -> None:
    secret = "s3cret-" + TOKENS.admin
    out = run_module("forge_broker", env={"DATABASE_URL": dsn, "GRPC_PORT": str(free_port()),
                                          "FORGE_TOKENS": f"ok:admin:{TOKENS.admin},bad:boss:{secret}",
                                          "FORGE_METRICS_PORT": "0"})
    assert out.returncode != 0
    assert "FORGE_TOKENS: entry 2 (bad): the role must be one of producer, worker, admin" in out.stderr
    assert secret not in out.stderr + out.stdout and TOKENS.admin not in out.stderr + out.stdout


@pytest.mark.parametrize("tokens, message, secret", [
    (f"ok:admin:{TOKENS.admin},,", "FORGE_TOKENS: entry 2: is empty", TOKENS.admin),
    ("ops:admin:short-token", "FORGE_TOKENS: entry 1 (ops): the token must be 16", "short-token"),
    ("admin:admin:CHANGE-ME-ADMIN-TOKEN-0000", "FORGE_TOKENS: entry 1 (admin): the token is a "
     "placeholder", "CHANGE-ME-ADMIN-TOKEN-0000"),
], ids=["blank entry", "short token", "deploy placeholder"])
def test_broker_refuses_to_start_with_a_blank_entry_a_short_token_or_a_placeholder(
        dsn: str, tokens: str, message: str, secret: str) -> None:
    out = run_module("forge_broker", env={"DATABASE_URL": dsn, "GRPC_PORT": str(free_port()),
                                          "FORGE_TOKENS": tokens, "FORGE_METRICS_PORT": "0"})
    assert out.returncode != 0
    assert message in out.stderr
    assert secret not in out.stderr + out.stdout


def test_token_configuration_accepts_a_list_and_a_file_and_refuses_bad_entries(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("# comment\n\n  ci  worker  " + "w" * 20 + "  \n")
    tokens = load_tokens({"FORGE_TOKENS": f" a:producer:{'p' * 16} , b:admin:{'a' * 16}:with:colons",
                          "FORGE_TOKENS_FILE": str(f)})
    assert [(t.name, t.role) for t in tokens] == [("a", PRODUCER), ("b", ADMIN), ("ci", WORKER)]
    assert "p" * 16 not in repr(tokens)

    bad = {
        "no fields": ({"FORGE_TOKENS": "x" * 30}, "FORGE_TOKENS: entry 1: must be name:role:token"),
        "short": ({"FORGE_TOKENS": "a:admin:short"}, "FORGE_TOKENS: entry 1 (a): the token must be 16"),
        "role": ({"FORGE_TOKENS": f"a:root:{'r' * 20}"}, "entry 1 (a): the role must be one of"),
        "name": ({"FORGE_TOKENS": f"a b:admin:{'r' * 20}"}, "entry 1: the name must be"),
        "dup token": ({"FORGE_TOKENS": f"a:admin:{'r' * 20},b:worker:{'r' * 20}"},
                      "entry 2 (b): the same token as FORGE_TOKENS entry 1"),
        "dup name": ({"FORGE_TOKENS": f"a:admin:{'r' * 20},a:worker:{'q' * 20}"},
                     "entry 2: the name a is already used"),
        "file line": ({"FORGE_TOKENS_FILE": str(f) + ".missing"}, "FORGE_TOKENS_FILE: cannot read"),
        "blank": ({"FORGE_TOKENS": f"a:admin:{'r' * 20}, ,"}, "FORGE_TOKENS: entry 2: is empty"),
        "placeholder": ({"FORGE_TOKENS": f"a:admin:{'r' * 20}CHANGE-ME"},
                        "FORGE_TOKENS: entry 1 (a): the token is a placeholder"),
    }
    for what, (env, message) in bad.items():
        with pytest.raises(InvalidArgument) as info:
            load_tokens(env)
        assert message in str(info.value), what
        assert "r" * 20 not in str(info.value)
    f.write_text("# only comments\n\n")
    with pytest.raises(InvalidArgument, match=r"FORGE_TOKENS_FILE: .* holds no token"):
        load_tokens({"FORGE_TOKENS_FILE": str(f)})
    f.write_text("ops admin\n")
    with pytest.raises(InvalidArgument, match="FORGE_TOKENS_FILE: line 1: must be `name role token`"):
        load_tokens({"FORGE_TOKENS_FILE": str(f)})


def test_only_admin_may_put_or_delete_a_schedule_and_producers_may_read_them(
        stub: pb_grpc.BrokerStub) -> None:
    put = pb.Schedule(name="auth.nightly", cron="0 3 * * *",
                      job=pb.EnqueueRequest(type="auth.report"))
    get = pb.GetScheduleRequest(name="auth.nightly")
    denied = grpc.StatusCode.PERMISSION_DENIED
    for role in (TOKENS.producer, TOKENS.worker):
        md = bearer(role)
        assert code_of(lambda md=md: stub.PutSchedule(put, timeout=5, metadata=md)) == denied
    admin = bearer(TOKENS.admin)
    assert stub.PutSchedule(put, timeout=5, metadata=admin).name == "auth.nightly"
    producer = bearer(TOKENS.producer)
    assert stub.GetSchedule(get, timeout=5, metadata=producer).cron == "0 3 * * *"
    assert stub.ListSchedules(pb.ListSchedulesRequest(), timeout=5, metadata=producer).schedules
    delete = pb.DeleteScheduleRequest(name="auth.nightly")
    assert code_of(lambda: stub.DeleteSchedule(delete, timeout=5, metadata=producer)) == denied
    assert code_of(lambda: stub.GetSchedule(get, timeout=5, metadata=bearer(TOKENS.worker))) \
        == denied
    stub.DeleteSchedule(delete, timeout=5, metadata=admin)


def test_only_admin_may_retry_purge_or_cancel_in_bulk(stub: pb_grpc.BrokerStub) -> None:
    only = pb.JobFilter(type="auth.bulk")
    calls = [(stub.RetryDeadJobs, pb.RetryDeadJobsRequest(filter=only)),
             (stub.PurgeDeadJobs, pb.PurgeDeadJobsRequest(filter=only)),
             (stub.CancelJobs, pb.CancelJobsRequest(filter=only))]
    admin = bearer(TOKENS.admin)
    for method, request in calls:
        for role in (TOKENS.producer, TOKENS.worker):
            md = bearer(role)
            assert code_of(lambda m=method, r=request, md=md: m(r, timeout=5, metadata=md)) \
                == grpc.StatusCode.PERMISSION_DENIED
        assert method(request, timeout=5, metadata=admin).count == 0


# -- the role table ------------------------------------------------------------------------------

def test_every_broker_rpc_has_an_explicit_role_entry() -> None:
    """A new RPC is admin-only until given roles in broker/forge_broker/auth.py's METHOD_ROLES; this test
    makes adding one a decision rather than an accident (workers could not call it)."""
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Broker"].methods}
    assert methods == set(METHOD_ROLES)


def test_unlisted_methods_and_services_are_admin_only_and_health_is_open() -> None:
    assert required_roles("/forge.v1.Broker/SomethingNew") == frozenset({ADMIN})
    assert required_roles("/other.v1.Service/Method") == frozenset({ADMIN})
    assert required_roles("/grpc.health.v1.Health/Check") is None
    assert required_roles("/grpc.health.v1.Health/Watch") is None
    assert required_roles("/forge.v1.Broker/Lease") == frozenset({WORKER, ADMIN})
    assert required_roles("/forge.v1.Broker/Enqueue") == frozenset({PRODUCER, ADMIN})
    assert required_roles("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") \
        == frozenset({PRODUCER, WORKER, ADMIN})


def test_token_lookup_finds_the_presented_token_only() -> None:
    auth = AuthInterceptor(load_tokens({"FORGE_TOKENS": TOKENS.env}))
    assert auth.identify(bearer(TOKENS.worker)) is not None
    assert auth.identify(bearer(TOKENS.worker))
    found = auth.identify((("x-other", "1"), ("authorization", f"bearer  {TOKENS.admin} ")))
    assert found is not None and found.role == ADMIN
    assert auth.identify(bearer(TOKENS.worker[:-1])) is None
    assert auth.identify(()) is None
    assert auth.identify(None) is None


def test_only_loopback_addresses_count_as_loopback(tmp_path: Path) -> None:
    from forge_common.exposure import exposure_problem, is_loopback

    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"ops admin {TOKENS.admin}\n")

    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "broker.internal", "localhost.evil.example"):
        assert not is_loopback(host), host
    assert exposure_problem("0.0.0.0", "FORGE_HOST", {"FORGE_TOKENS_FILE": str(tokens_file)}) is None
    assert exposure_problem("127.0.0.1", "FORGE_HOST", {}) is None
    problem = exposure_problem("0.0.0.0", "FORGE_HOST", {"FORGE_TOKENS": "  "})
    assert problem is not None and "FORGE_TOKENS" in problem
