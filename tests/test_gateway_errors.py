"""Errors through the gateway: gRPC status → HTTP status, the Status body, and the gateway's own
refusals (bad JSON, unknown fields, body limit, no route, broker down or hung)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from forge.v1 import broker_pb2 as pb
from tests.gateway_support import SEED_JOB, silent_server, unique_type
from tests.support import BrokerProcess, free_port, start_gateway

pytest_plugins = ["tests.gateway_fixtures"]


def assert_status(r: httpx.Response, http_status: int, code: int, *words: str) -> None:
    """The response is ``http_status`` with a google.rpc.Status body of gRPC ``code`` whose
    message contains each of ``words``."""
    assert r.status_code == http_status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert body["details"] == [] or isinstance(body["details"], list)
    for w in words:
        assert w in body["message"], (w, body["message"])


# --- rows of the table the real broker produces ------------------------------------------------


def test_invalid_argument_is_400_naming_the_field(http: httpx.Client) -> None:
    r = http.post("/v1/jobs", json={"type": "email", "priority": 5000})
    assert_status(r, 400, 3, "priority")
    r = http.post("/jobs", json={**SEED_JOB, "type": "not a valid type!"})
    assert_status(r, 400, 3, "type")
    r = http.get("/v1/jobs/not-a-uuid")
    assert_status(r, 400, 3, "id")


def test_failed_precondition_is_400(http: httpx.Client) -> None:
    job = http.post("/jobs", json={"type": unique_type()}).json()
    # Retrying a job that is not DEAD.
    r = http.post(f"/dlq/{job['id']}/retry")
    assert_status(r, 400, 9)
    # Acking with a lease token the job never had.
    r = http.post(f"/v1/jobs/{job['id']}:ack", json={"leaseToken": str(uuid.uuid4())})
    assert_status(r, 400, 9)


def test_not_found_is_404(http: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    assert_status(http.get(f"/jobs/{missing}"), 404, 5)
    assert_status(http.post(f"/dlq/{missing}/retry"), 404, 5)
    assert_status(http.post(f"/v1/jobs/{missing}:cancel"), 404, 5)


# --- the gateway's own answers ----------------------------------------------------------------


def test_malformed_json_is_400(http: httpx.Client) -> None:
    r = http.post("/jobs", content=b'{"type": "email",', headers={"content-type": "application/json"})
    assert_status(r, 400, 3, "malformed JSON")
    r = http.post("/jobs", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert_status(r, 400, 3, "UTF-8")
    r = http.post("/jobs", json=["not", "an", "object"])
    assert_status(r, 400, 3, "JSON object")


def test_unknown_fields_are_400_naming_them(http: httpx.Client) -> None:
    assert_status(http.post("/jobs", json={**SEED_JOB, "colour": "red"}), 400, 3, "colour")
    assert_status(
        http.post("/jobs", json={**SEED_JOB, "payload": "not an object"}), 400, 3, "payload"
    )
    assert_status(http.post("/jobs", json={**SEED_JOB, "priority": "high"}), 400, 3, "priority")
    assert_status(http.get("/v1/jobs", params={"colour": "red"}), 400, 3, "colour")
    assert_status(http.get("/v1/jobs", params={"status": "SLEEPING"}), 400, 3, "SLEEPING")
    assert_status(http.get("/v1/jobs", params={"page_size": "ten"}), 400, 3, "page_size")
    # A route without a body refuses one instead of silently dropping it.
    r = http.post(f"/dlq/{uuid.uuid4()}/retry", json={"force": True})
    assert_status(r, 400, 3, "no request body")


def post_raw(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return http.post(path, content=body, headers={"content-type": "application/json"})


def test_an_integer_past_the_range_of_a_double_is_400_naming_the_field(
    http: httpx.Client,
) -> None:
    for digits in (310, 309, 5000):  # overflows a double; silently 1e308; past int() limits
        body = b'{"type": "gw.numbers", "payload": {"n": ' + b"1" * digits + b"}}"
        assert_status(post_raw(http, "/v1/jobs", body), 400, 3, "payload.n", f"{digits} digits")
    batch = (b'{"jobs": [' + b'{"type": "gw.numbers"}, ' * 3
             + b'{"type": "gw.numbers", "payload": {"n": -' + b"9" * 310 + b"}}]}")
    assert_status(post_raw(http, "/v1/jobs:batch", batch), 400, 3, "jobs[3].payload.n")
    body = b'{"type": "gw.numbers", "priority": ' + b"9" * 310 + b"}"
    assert_status(post_raw(http, "/v1/jobs", body), 400, 3, "priority")


def test_nan_infinity_and_numbers_that_overflow_are_400_naming_the_field(
    http: httpx.Client,
) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-2.5E+999"):
        body = b'{"type": "gw.numbers", "payload": {"list": [1, ' + literal + b"]}}"
        assert_status(post_raw(http, "/v1/jobs", body), 400, 3, "payload.list[1]")
        body = b'{"type": "gw.numbers", "priority": ' + literal + b"}"
        assert_status(post_raw(http, "/v1/jobs", body), 400, 3, "priority")


def test_an_integer_field_given_a_fraction_or_a_value_out_of_range_is_400_naming_it(
    http: httpx.Client,
) -> None:
    for value in (1.5, 2**31, -(2**63) - 1):
        r = http.post("/v1/jobs", json={"type": "gw.numbers", "priority": value})
        assert_status(r, 400, 3, "priority")


def test_a_key_given_twice_is_400_naming_it(http: httpx.Client) -> None:
    body = b'{"type": "gw.numbers", "payload": {"a": 1, "a": 2}}'
    assert_status(post_raw(http, "/v1/jobs", body), 400, 3, "payload", "'a'")
    body = b'{"type": "gw.numbers", "priority": 1, "priority": 9}'
    assert_status(post_raw(http, "/v1/jobs", body), 400, 3, "'priority'")


def test_numbers_a_double_holds_still_pass(http: httpx.Client) -> None:
    body = (b'{"type": "gw.numbers", "payload": {"big": 1e308, "small": -4.9e-324, '
            b'"whole": 9007199254740991, "u64": 18446744073709551615}}')
    r = post_raw(http, "/v1/jobs", body)
    assert r.status_code == 200, r.text
    payload = r.json()["job"]["payload"]
    assert payload["big"] == 1e308 and payload["whole"] == 9007199254740991


def test_unknown_route_is_404_and_wrong_method_405(http: httpx.Client) -> None:
    assert_status(http.get("/v1/nothing-here"), 404, 5, "/v1/nothing-here")
    r = http.delete("/v1/jobs")
    assert_status(r, 405, 12)
    assert r.headers["allow"] == "GET, POST"
    assert_status(http.put("/stats"), 405, 12)


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    big = b'{"type": "email", "payload": {"blob": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    r = http.post("/jobs", content=big, headers={"content-type": "application/json"})
    assert_status(r, 413, 8, "limit")

    # Without a Content-Length (chunked upload) the limit holds while reading.
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    r = http.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert_status(r, 413, 8, "limit")
    # Just under the limit is fine as far as the gateway is concerned (the broker then judges
    # the payload: at most 1 MiB, so this one is a 400 from the broker, not a 413).
    under = b'{"type": "email", "payload": {"blob": "' + b"x" * (1024 * 1024 + 10) + b'"}}'
    r = http.post("/jobs", content=under, headers={"content-type": "application/json"})
    assert_status(r, 400, 3, "payload")


def test_configured_body_limit() -> None:
    broker_port = free_port()
    gw = start_gateway(f"127.0.0.1:{broker_port}", "--max-body", "100")
    try:
        body = b'{"type": "email", "payload": {"x": "' + b"y" * 100 + b'"}}'
        r = httpx.post(gw.url + "/jobs", content=body, timeout=10)
        assert_status(r, 413, 8, "100 bytes")
    finally:
        gw.stop()


# --- the broker unreachable or hung -----------------------------------------------------------


@pytest.fixture(scope="module")
def orphan_gateway() -> Iterator[str]:
    """A gateway whose broker address has nothing listening."""
    gw = start_gateway(f"127.0.0.1:{free_port()}", "--timeout", "5")
    yield gw.url
    gw.stop()


def test_broker_down_is_503_quickly(orphan_gateway: str) -> None:
    started = time.monotonic()
    r = httpx.get(orphan_gateway + "/stats", timeout=10)
    assert_status(r, 503, 14, "broker unavailable")
    r = httpx.post(orphan_gateway + "/jobs", json=SEED_JOB, timeout=10)
    assert_status(r, 503, 14)
    # Streams too: an HTTP error, not a 200 that never says anything.
    r = httpx.get(orphan_gateway + "/v1/stats:watch", timeout=10)
    assert_status(r, 503, 14)
    assert time.monotonic() - started < 4.0  # well under the 5 s deadline: no waiting it out


def test_hung_broker_hits_the_deadline_504() -> None:
    with silent_server() as target:
        gw = start_gateway(target, "--timeout", "0.5")
        try:
            started = time.monotonic()
            r = httpx.get(gw.url + "/stats", timeout=10)
            elapsed = time.monotonic() - started
        finally:
            gw.stop()
    assert_status(r, 504, 4)
    assert 0.4 < elapsed < 3.0


# --- every row of the table, from a gRPC server answering with each code -----------------------

TABLE = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class _Answering(grpc.GenericRpcHandler):
    """Answers forge.v1.Broker/GetJob with the status code named by the requested id, and
    records the metadata of every call."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str | bytes]] = []

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method != "/forge.v1.Broker/GetJob":
            return None

        def get_job(request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.Job:
            self.metadata.append(dict(context.invocation_metadata()))
            if request.id == "OK":
                return pb.Job(id="OK")
            context.abort(grpc.StatusCode[request.id], f"answered {request.id}")
            raise AssertionError("abort raises")

        return grpc.unary_unary_rpc_method_handler(
            get_job,
            request_deserializer=pb.GetJobRequest.FromString,
            response_serializer=pb.Job.SerializeToString,
        )


@pytest.fixture(scope="module")
def answering() -> Iterator[tuple[str, _Answering]]:
    """A gateway in front of a gRPC server that answers GetJob with any status code."""
    from concurrent import futures

    handler = _Answering()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    gw = start_gateway(f"127.0.0.1:{port}")
    yield gw.url, handler
    gw.stop()
    server.stop(grace=None)


@pytest.mark.parametrize("code", list(TABLE), ids=lambda c: c.name)
def test_every_grpc_code_maps_as_grpc_gateway_does(
    answering: tuple[str, _Answering], code: grpc.StatusCode
) -> None:
    url, _ = answering
    r = httpx.get(f"{url}/v1/jobs/{code.name}", timeout=10)
    assert_status(r, TABLE[code], code.value[0], f"answered {code.name}")


def test_authorization_and_request_id_are_forwarded_as_metadata(
    answering: tuple[str, _Answering],
) -> None:
    url, handler = answering
    r = httpx.get(
        f"{url}/jobs/OK",
        headers={
            "Authorization": "Bearer s3cret",
            "X-Request-Id": "req-42",
            "Grpc-Metadata-Tenant": "acme",
            "Cookie": "not=forwarded",
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "req-42"
    md = handler.metadata[-1]
    assert md["authorization"] == "Bearer s3cret"
    assert md["x-request-id"] == "req-42"
    assert md["tenant"] == "acme"
    assert "cookie" not in md


def test_gateway_recovers_when_the_broker_comes_back(broker: BrokerProcess) -> None:
    gw = start_gateway(broker.target)
    try:
        assert httpx.get(gw.url + "/stats", timeout=10).status_code == 200
        broker.stop()
        assert_status(httpx.get(gw.url + "/stats", timeout=10), 503, 14)
        broker.start()
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline:
            status = httpx.get(gw.url + "/stats", timeout=10).status_code
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
    finally:
        gw.stop()
