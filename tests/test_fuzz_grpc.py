"""The broker's gRPC API fed malformed messages: every method answers with a clean status.

Requests are raw bytes sent through generic ``channel.unary_unary`` / ``unary_stream`` calls
with identity serializers, so nothing on the client side can tidy them up: random bytes,
truncated valid messages, fields with the wrong wire type, huge and negative numbers, deep and
odd ``Struct`` payloads, invalid UTF-8 in string fields. Whatever arrives, the broker must answer
success or a deliberate status (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, …), never
INTERNAL or UNKNOWN, and never hang: a ``Lease`` or ``WatchStats`` stream given junk ends at
once with an error instead of waiting for its deadline.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge.v1 import broker_pb2 as pb
from tests.support import BrokerProcess, drop_database, new_database, start_broker

pytestmark = pytest.mark.slow

SERVICE = pb.DESCRIPTOR.services_by_name["Broker"]
UNARY_DEADLINE = 10.0
STREAM_DEADLINE = 3.0
# Answers that mean the broker failed rather than judged the request.
UNCLEAN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@dataclass(frozen=True)
class Method:
    name: str
    input: Descriptor
    streaming: bool

    @property
    def path(self) -> str:
        return f"/{SERVICE.full_name}/{self.name}"

    def parses(self, data: bytes) -> bool:
        """Whether the request's own message type accepts ``data`` (client-side check)."""
        cls = getattr(pb, self.input.name)
        try:
            cls.FromString(data)
        except (DecodeError, RecursionError, ValueError):
            return False
        return True


METHODS = [Method(m.name, m.input_type, m.server_streaming) for m in SERVICE.methods]
UNARY = [m for m in METHODS if not m.streaming]
STREAMS = [m for m in METHODS if m.streaming]


# -- protobuf wire format, by hand -------------------------------------------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers as protobuf sends them: ten bytes, two's complement
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


INVALID_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"ok\xfe\xff", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"]
EXTREME_INTS = [0, -1, 1, 2**31 - 1, -(2**31), 2**31, 2**32, 2**63 - 1, -(2**63), 2**64 - 1,
                1000, -1000, 1001, -1001, 3600, 3601, 10_000, 10_001]


def struct_value(depth: int, leaf: bytes = b"") -> bytes:
    """A google.protobuf.Value nesting ``depth`` Structs and ListValues, alternately."""
    value = leaf or length_delimited(3, b"leaf")  # string_value
    for level in range(depth):
        if level % 2:
            inner = length_delimited(1, value)  # ListValue.values
            value = length_delimited(6, inner)  # Value.list_value
        else:
            entry = length_delimited(1, b"k") + length_delimited(2, value)  # map entry
            value = length_delimited(5, length_delimited(1, entry))  # Value.struct_value
    return value


def struct_with(key: bytes, value: bytes) -> bytes:
    """A google.protobuf.Struct holding one ``key: value`` field."""
    return length_delimited(1, length_delimited(1, key) + length_delimited(2, value))


# Odd Values: NaN and infinite numbers, unknown kinds, an enum out of range, nothing at all.
ODD_VALUES = [
    tag(2, 1) + struct.pack("<d", float("nan")),
    tag(2, 1) + struct.pack("<d", float("inf")),
    tag(2, 1) + struct.pack("<d", -float("inf")),
    tag(2, 1) + struct.pack("<d", 1e308),
    tag(1, 0) + varint(7),  # null_value = 7: not a NullValue
    tag(4, 0) + varint(2**64 - 1),  # bool_value with a huge varint
    b"",  # a Value with no kind
    length_delimited(3, b"\x00nul inside"),
    length_delimited(3, b"\xff\xfe"),
    tag(15, 0) + varint(1),  # an unknown field
]


# -- strategies --------------------------------------------------------------------------------

def field_value(f: FieldDescriptor, depth: int) -> st.SearchStrategy[bytes]:
    """One encoded field of ``f``'s own wire type, with hostile but well-formed content."""
    n = f.number
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if f.message_type.full_name == "google.protobuf.Struct":
            return st.one_of(
                st.integers(0, 150).map(lambda d: length_delimited(n, struct_with(b"p", struct_value(d)))),
                st.sampled_from(ODD_VALUES).map(lambda v: length_delimited(n, struct_with(b"p", v))),
                st.sampled_from(INVALID_UTF8).map(
                    lambda k: length_delimited(n, struct_with(k, length_delimited(3, b"v")))),
            )
        if depth > 2:
            return st.just(length_delimited(n, b""))
        return message_bytes(f.message_type, depth + 1).map(lambda b: length_delimited(n, b))
    if f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        text = st.one_of(st.text(max_size=40).map(lambda s: s.encode()),
                         st.sampled_from(INVALID_UTF8),
                         st.sampled_from([b"", b"x" * 300, b"00000000-0000-0000-0000-000000000000",
                                          b"not-a-uuid", b"\x00"]))
        return text.map(lambda b: length_delimited(n, b))
    if f.type in (FieldDescriptor.TYPE_DOUBLE,):
        return st.floats(allow_nan=True).map(lambda x: tag(n, 1) + struct.pack("<d", x))
    if f.type in (FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64):
        return st.binary(min_size=8, max_size=8).map(lambda b: tag(n, 1) + b)
    # varint kinds: ints, enums (out of range included), bools
    return st.one_of(st.sampled_from(EXTREME_INTS), st.integers(-(2**63), 2**64 - 1)).map(
        lambda v: tag(n, 0) + varint(v))


def message_bytes(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[bytes]:
    """A message of type ``desc`` as bytes: a random selection of its fields, hostile values."""
    fields = list(desc.fields)
    if not fields:
        return st.just(b"")
    return st.lists(st.sampled_from(fields).flatmap(lambda f: field_value(f, depth)),
                    max_size=6).map(b"".join)


def wrong_types(desc: Descriptor) -> st.SearchStrategy[bytes]:
    """Known field numbers with another wire type (including the invalid 6 and 7), plus
    unknown field numbers."""
    numbers = [f.number for f in desc.fields] + [99, 536_870_911]
    one = st.tuples(st.sampled_from(numbers), st.integers(0, 7), st.binary(max_size=12)).map(
        lambda t: tag(t[0], t[1]) + (varint(len(t[2])) + t[2] if t[1] == 2 else t[2]))
    return st.lists(one, min_size=1, max_size=4).map(b"".join)


def truncated(desc: Descriptor) -> st.SearchStrategy[bytes]:
    """A message cut short somewhere."""
    return message_bytes(desc).filter(lambda b: len(b) > 1).flatmap(
        lambda b: st.integers(1, len(b) - 1).map(lambda cut: b[:cut]))


def hostile(desc: Descriptor) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), message_bytes(desc), wrong_types(desc),
                     truncated(desc))


# -- the broker --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_broker(pg_admin_dsn: str, template_dsn: str) -> Iterator[BrokerProcess]:
    dsn = new_database(pg_admin_dsn)
    broker = start_broker(dsn)
    yield broker
    log = broker.log_text()
    broker.stop()
    drop_database(pg_admin_dsn, dsn)
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def channel(fuzz_broker: BrokerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzz_broker.target) as ch:
        yield ch


def call_unary(channel: grpc.Channel, method: Method, data: bytes) -> grpc.StatusCode:
    rpc = channel.unary_unary(method.path, request_serializer=None, response_deserializer=None)
    try:
        rpc(data, timeout=UNARY_DEADLINE)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


def call_stream(channel: grpc.Channel, method: Method, data: bytes,
                deadline: float = STREAM_DEADLINE) -> tuple[grpc.StatusCode, float]:
    rpc = channel.unary_stream(method.path, request_serializer=None, response_deserializer=None)
    started = time.monotonic()
    try:
        for _ in rpc(data, timeout=deadline):
            pass
    except grpc.RpcError as exc:
        return exc.code(), time.monotonic() - started  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, time.monotonic() - started


# FORGE_FUZZ_EXAMPLES=5000 for a longer hunt than the test suite's.
EXAMPLES = int(os.environ.get("FORGE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the tests ---------------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_every_unary_method_answers_malformed_bytes_with_a_clean_status(
        channel: grpc.Channel, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(UNARY), label="method")
    request = data.draw(hostile(method.input), label="request")
    code = call_unary(channel, method, request)
    assert code not in UNCLEAN, (method.name, request, code)
    assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, (method.name, request, "hung")


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@pytest.mark.parametrize("junk", INVALID_UTF8, ids=repr)
def test_invalid_utf8_in_any_string_field_is_invalid_argument(
        channel: grpc.Channel, method: Method, junk: bytes) -> None:
    strings = [f for f in method.input.fields if f.type == FieldDescriptor.TYPE_STRING]
    for f in strings:
        request = length_delimited(f.number, junk)
        if method.streaming:
            code, _ = call_stream(channel, method, request)
        else:
            code = call_unary(channel, method, request)
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (method.name, f.name, code)


@pytest.mark.parametrize("depth", [1, 30, 63, 64, 65, 99, 100, 101, 200, 5000])
@pytest.mark.parametrize("where", ["Enqueue.payload", "Ack.result", "EnqueueBatch.jobs.payload"])
def test_deeply_nested_struct_payloads_are_accepted_or_refused_cleanly(
        channel: grpc.Channel, where: str, depth: int) -> None:
    body = struct_with(b"p", struct_value(depth))
    if where == "Enqueue.payload":
        method, request = "Enqueue", length_delimited(1, b"fuzz") + length_delimited(2, body)
    elif where == "Ack.result":
        method = "Ack"
        request = (length_delimited(1, b"0190b2a4-0000-7000-8000-000000000000")
                   + length_delimited(2, b"0190b2a4-0000-7000-8000-000000000001")
                   + length_delimited(3, body))
    else:
        job = length_delimited(1, b"fuzz") + length_delimited(2, body)
        method, request = "EnqueueBatch", length_delimited(1, job)
    code = call_unary(channel, next(m for m in METHODS if m.name == method), request)
    assert code not in UNCLEAN | {grpc.StatusCode.DEADLINE_EXCEEDED}, (where, depth, code)


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_odd_struct_values_in_a_payload_are_accepted_or_refused_cleanly(
        channel: grpc.Channel, value: bytes) -> None:
    request = length_delimited(1, b"fuzz") + length_delimited(2, struct_with(b"p", value))
    code = call_unary(channel, next(m for m in METHODS if m.name == "Enqueue"), request)
    assert code not in UNCLEAN | {grpc.StatusCode.DEADLINE_EXCEEDED}, (value, code)


@settings(max_examples=max(40, EXAMPLES // 8), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_lease_and_watch_stats_streams_given_junk_end_cleanly(
        channel: grpc.Channel, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(STREAMS), label="method")
    request = data.draw(hostile(method.input), label="request")
    parses = method.parses(request)
    # A request that parses may be a valid one, and a valid stream stays open: a short look.
    code, took = call_stream(channel, method, request, 0.5 if parses else STREAM_DEADLINE)
    assert code not in UNCLEAN, (method.name, request, code)
    if not parses:
        # Junk that is not even a message must be refused at once, not left open.
        assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, (method.name, request, "hung")
        assert code is not grpc.StatusCode.OK, (method.name, request)
        assert took < STREAM_DEADLINE, (method.name, request, took)


# -- what the fuzzing found, pinned down ---------------------------------------------------------

def test_a_request_that_does_not_parse_is_invalid_argument_naming_its_message_type(
        channel: grpc.Channel) -> None:
    rpc = channel.unary_unary("/forge.v1.Broker/Enqueue", request_serializer=None,
                              response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        rpc(length_delimited(1, b"\xff"), timeout=UNARY_DEADLINE)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "forge.v1.EnqueueRequest" in err.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("method", ["Enqueue", "Ack"])
def test_a_nan_or_infinite_number_in_a_payload_or_result_is_invalid_argument(
        channel: grpc.Channel, method: str, number: float) -> None:
    body = struct_with(b"p", tag(2, 1) + struct.pack("<d", number))
    if method == "Enqueue":
        request = length_delimited(1, b"fuzz") + length_delimited(2, body)
    else:
        request = (length_delimited(1, b"0190b2a4-0000-7000-8000-000000000000")
                   + length_delimited(2, b"0190b2a4-0000-7000-8000-000000000001")
                   + length_delimited(3, body))
    rpc = channel.unary_unary(f"/forge.v1.Broker/{method}", request_serializer=None,
                              response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        rpc(request, timeout=UNARY_DEADLINE)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "finite" in err.value.details()  # type: ignore[attr-defined]


def test_list_jobs_filtered_by_a_status_number_the_enum_does_not_name_is_invalid_argument(
        channel: grpc.Channel) -> None:
    rpc = channel.unary_unary("/forge.v1.Broker/ListJobs", request_serializer=None,
                              response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        rpc(tag(1, 0) + varint(128), timeout=UNARY_DEADLINE)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert err.value.details() == "status: not a job status: 128"  # type: ignore[attr-defined]
