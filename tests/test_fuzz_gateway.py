"""The REST gateway fuzzed from its own OpenAPI document with schemathesis: no 5xx, ever.

A real gateway in front of a real broker on loopback. schemathesis reads ``GET /openapi.json``
and generates requests for every route: valid ones (positive mode) and ones that break the
schema on purpose (negative mode: wrong types, missing fields, out-of-range values, odd path
parameters). Whatever comes in, the gateway answers with a 2xx or a 4xx, never a server error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.schemas import BaseSchema

from tests.support import GatewayProcess

pytestmark = pytest.mark.slow

pytest_plugins = ["tests.gateway_fixtures"]

# FORGE_FUZZ_EXAMPLES=5000 for a longer hunt than the test suite's.
EXAMPLES = int(os.environ.get("FORGE_FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def schema(gateway: GatewayProcess) -> Iterator[BaseSchema]:
    loaded = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    yield loaded


def test_the_gateways_openapi_document_is_one_schemathesis_accepts(schema: BaseSchema) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    routes = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/jobs", "GET /v1/jobs/{id}", "GET /v1/stats", "POST /jobs"} <= routes, routes


def test_fuzzed_requests_to_every_route_never_get_a_server_error(
        schema: BaseSchema, gateway: GatewayProcess) -> None:
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE),
                      schema.as_strategy(GenerationMode.NEGATIVE))
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def request(case: schemathesis.Case) -> None:
        # Sent with requests itself, streamed: the streaming routes (stats:watch, jobs:lease)
        # never end by themselves, and the status line is all this test needs.
        kwargs = case.as_transport_kwargs(base_url=gateway.url)
        with session.request(**kwargs, timeout=15, stream=True) as response:
            route = f"{case.method.upper()} {case.path}"
            seen[route] = seen.get(route, 0) + 1
            assert response.status_code < 500, (
                f"{route} -> {response.status_code}\n{case.as_curl_command(base_url=gateway.url)}\n"
                f"{response.raw.read(2000, decode_content=True)!r}\n{gateway.log_text()[-3000:]}")

    with requests.Session() as session:
        request()
    # Every route was tried, not just the first few.
    assert len(seen) >= len(list(schema.get_all_operations())) // 2, seen
