"""A service the gateway has never seen, served end to end from its annotations alone.

A real gRPC server implements tests/gateway_dynamic.py's Library service (built at test time);
the gateway app, given only that file descriptor, serves it over real HTTP (uvicorn on a
loopback port in a thread). Nothing in gateway/ changes for it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from forge_gateway.app import create_app
from forge_gateway.config import Config
from tests.gateway_dynamic import library_file
from tests.support import free_port


def _cls(name: str) -> type[Message]:
    return GetMessageClass(library_file().message_types_by_name[name])


class _Library(grpc.GenericRpcHandler):
    """Echoes each request back inside the response, so the test sees what the gateway sent."""

    def service(
        self, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = details.method.rsplit("/", 1)[-1]
        book = _cls("Book")

        def echo_book(request: Message, context: grpc.ServicerContext) -> Message:
            out = book()
            out.title = json.dumps(json_format.MessageToDict(request), sort_keys=True)
            return out

        def list_books(request: Message, context: grpc.ServicerContext) -> Message:
            out = _cls("ListBooksResponse")()
            b = out.books.add()  # type: ignore[attr-defined]
            b.title = json.dumps(json_format.MessageToDict(request), sort_keys=True)
            out.next_page_token = "next"  # type: ignore[attr-defined]
            return out

        def follow(request: Any, context: grpc.ServicerContext) -> Iterator[Message]:
            for i in range(request.count):
                out = book()
                out.name = f"{request.shelf}/{i}"
                out.pages = i
                yield out
            if request.shelf == "broken":
                context.abort(grpc.StatusCode.DATA_LOSS, "shelf collapsed")

        handlers = {
            "GetBook": ("GetBookRequest", echo_book),
            "UpdateBook": ("UpdateBookRequest", echo_book),
            "ArchiveBook": ("ArchiveBookRequest", echo_book),
            "ListBooks": ("ListBooksRequest", list_books),
        }
        if method in handlers:
            req, fn = handlers[method]
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=_cls(req).FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
        if method == "Follow":
            return grpc.unary_stream_rpc_method_handler(
                follow,
                request_deserializer=_cls("FollowRequest").FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
        return None


@pytest.fixture(scope="module")
def library_url() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[_Library()])
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port = free_port()
    config = Config(broker=f"127.0.0.1:{grpc_port}", port=port)
    app = create_app(config, files=[library_file()], descriptor_sets=[])
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(web.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not web.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert web.started
    yield f"http://127.0.0.1:{port}"
    web.should_exit = True
    thread.join(10)
    server.stop(grace=None)


def echoed(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return json.loads(r.json()["title"])


def test_path_segments_variable_and_additional_binding(library_url: str) -> None:
    r = httpx.get(f"{library_url}/v1/shelves/s1/books/b1")
    assert echoed(r) == {"name": "shelves/s1/books/b1"}
    r = httpx.get(f"{library_url}/books/any/depth/here")
    assert echoed(r) == {"name": "any/depth/here"}


def test_query_string_and_response_body(library_url: str) -> None:
    q = "genres=NOVEL&genres=POETRY&archived=true&page.size=5&since=2024-01-01T00:00:00Z"
    r = httpx.get(f"{library_url}/v1/shelves/s1/books?{q}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["nextPageToken"] == "next"
    assert json.loads(body["books"][0]["title"]) == {
        "shelf": "s1", "genres": ["NOVEL", "POETRY"], "archived": True, "page": {"size": 5},
        "since": "2024-01-01T00:00:00Z",
    }
    # The additional binding answers the bare repeated field.
    r = httpx.get(f"{library_url}/shelves/s2/books")
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), list)
    assert json.loads(r.json()[0]["title"]) == {"shelf": "s2"}


def test_patch_with_body_field_and_custom_verb(library_url: str) -> None:
    r = httpx.patch(
        f"{library_url}/v1/shelves/s1/books/b1?validateOnly=true", json={"title": "Dune"}
    )
    assert echoed(r) == {
        "book": {"name": "shelves/s1/books/b1", "title": "Dune"}, "validateOnly": True
    }
    r = httpx.post(f"{library_url}/v1/shelves/s1/books/b9:archive", json={"reason": "worn"})
    assert echoed(r) == {"shelf": "s1", "id": "b9", "reason": "worn"}


def test_stream_ends_with_the_rpc_and_reports_late_errors(library_url: str) -> None:
    r = httpx.get(f"{library_url}/v1/shelves/s1:follow?count=3")
    assert r.status_code == 200
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["result"]["name"] for x in lines] == ["s1/0", "s1/1", "s1/2"]
    assert lines[2]["result"]["pages"] == "2"
    # An error after messages were sent arrives in-band, as grpc-gateway does it.
    r = httpx.get(f"{library_url}/v1/shelves/broken:follow?count=1")
    assert r.status_code == 200
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[0]["result"]["name"] == "broken/0"
    assert lines[1] == {"error": {"code": 15, "message": "shelf collapsed", "details": []}}
    r = httpx.get(
        f"{library_url}/v1/shelves/broken:follow?count=1",
        headers={"accept": "text/event-stream"},
    )
    assert r.text.endswith(
        'event: error\ndata: {"code":15,"message":"shelf collapsed","details":[]}\n\n'
    )
    # An error before any message is a plain HTTP error.
    r = httpx.get(f"{library_url}/v1/shelves/broken:follow?count=0")
    assert r.status_code == 500
    assert r.json()["code"] == 15


def test_openapi_of_the_unseen_service(library_url: str) -> None:
    doc = httpx.get(f"{library_url}/openapi.json").json()
    assert "/v1/shelves/{shelf}/books/{id}:archive" in doc["paths"]
