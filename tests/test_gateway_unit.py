"""The transcoder offline: templates, routing, request/response mapping, OpenAPI, config.

No broker here; these pin the rules down precisely. tests/gateway_dynamic.py supplies a service
the gateway has never seen, annotated with every HttpRule feature.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from openapi_spec_validator import validate

from forge.v1 import broker_pb2
from forge_gateway import errors, openapi
from forge_gateway.app import default_descriptor_sets
from forge_gateway.comments import load as load_comments
from forge_gateway.config import DEFAULT_MAX_BODY, Config
from forge_gateway.routes import Match, PathTemplate, Router, TemplateError, bindings_for_files
from forge_gateway.transcode import TranscodeError, build_request, response_json
from tests.gateway_dynamic import library_file

# --- path templates ---------------------------------------------------------------------------


def test_template_with_variable_and_verb() -> None:
    t = PathTemplate.parse("/v1/jobs/{id}:cancel")
    assert t.verb == "cancel"
    assert t.match("/v1/jobs/abc:cancel") == {("id",): "abc"}
    assert t.match("/v1/jobs/abc") is None
    assert t.match("/v1/jobs/a/b:cancel") is None
    assert t.match("/v1/jobs/:cancel") is None  # a variable is never empty
    assert t.openapi_path == "/v1/jobs/{id}:cancel"


def test_template_literal_verb_and_percent_decoding() -> None:
    t = PathTemplate.parse("/v1/jobs:batch")
    assert t.match("/v1/jobs:batch") == {}
    assert t.match("/v1/jobs") is None
    t = PathTemplate.parse("/jobs/{id}")
    assert t.match("/jobs/a%20b%2Fc") == {("id",): "a b/c"}


def test_template_segments_deep_wildcards_and_nested_fields() -> None:
    t = PathTemplate.parse("/v1/{name=shelves/*/books/*}")
    assert t.match("/v1/shelves/s1/books/b2") == {("name",): "shelves/s1/books/b2"}
    assert t.match("/v1/shelves/s1/books") is None
    assert t.openapi_path == "/v1/{name}"
    t = PathTemplate.parse("/files/{path=**}")
    # Multi-segment values keep an encoded slash encoded: it is not a segment boundary.
    assert t.match("/files/a/b%2Fc/d") == {("path",): "a/b%2Fc/d"}
    t = PathTemplate.parse("/v1/{book.name}/x")
    assert t.match("/v1/n1/x") == {("book", "name"): "n1"}


@pytest.mark.parametrize(
    "bad",
    ["v1/jobs", "/v1/{id", "/v1/{id}}", "/v1/{a b}", "/v1/{x={y}}", "/v1/jobs:", "/v1//x",
     "/v1/{id}/{id}"],
)
def test_malformed_templates_are_refused(bad: str) -> None:
    with pytest.raises(TemplateError):
        PathTemplate.parse(bad)


# --- routing ----------------------------------------------------------------------------------


def broker_router() -> Router:
    return Router(bindings_for_files([broker_pb2.DESCRIPTOR]))


def rpc_of(found: object) -> str:
    assert isinstance(found, Match), found
    return str(found.binding.method.name)


def test_every_broker_route_resolves() -> None:
    r = broker_router()
    assert rpc_of(r.match("POST", "/v1/jobs")) == "Enqueue"
    assert rpc_of(r.match("POST", "/jobs")) == "Enqueue"
    assert rpc_of(r.match("POST", "/v1/jobs:batch")) == "EnqueueBatch"
    assert rpc_of(r.match("POST", "/v1/jobs:lease")) == "Lease"
    assert rpc_of(r.match("POST", "/v1/jobs/1:ack")) == "Ack"
    assert rpc_of(r.match("POST", "/v1/jobs/1:nack")) == "Nack"
    assert rpc_of(r.match("POST", "/v1/leases:heartbeat")) == "Heartbeat"
    assert rpc_of(r.match("GET", "/v1/jobs/1")) == "GetJob"
    assert rpc_of(r.match("GET", "/jobs/1")) == "GetJob"
    assert rpc_of(r.match("GET", "/v1/jobs")) == "ListJobs"
    assert rpc_of(r.match("POST", "/v1/jobs/1:cancel")) == "CancelJob"
    assert rpc_of(r.match("GET", "/v1/dlq")) == "ListDeadJobs"
    assert rpc_of(r.match("GET", "/dlq")) == "ListDeadJobs"
    assert rpc_of(r.match("POST", "/v1/dlq/1:retry")) == "RetryDeadJob"
    assert rpc_of(r.match("POST", "/dlq/1/retry")) == "RetryDeadJob"
    assert rpc_of(r.match("GET", "/v1/stats")) == "Stats"
    assert rpc_of(r.match("GET", "/stats")) == "Stats"
    assert rpc_of(r.match("GET", "/v1/stats:watch")) == "WatchStats"


def test_wrong_method_lists_the_allowed_ones_and_verbs_shadow_plain_paths() -> None:
    r = broker_router()
    assert r.match("DELETE", "/v1/jobs") == frozenset({"GET", "POST"})
    # /v1/jobs/1:cancel would match GET /v1/jobs/{id} with id "1:cancel"; the custom method wins.
    assert r.match("GET", "/v1/jobs/1:cancel") == frozenset({"POST"})
    assert r.match("GET", "/v1/nothing") is None
    assert r.match("GET", "/") is None


# --- request transcoding ----------------------------------------------------------------------


def lib_router() -> Router:
    return Router(bindings_for_files([library_file()]))


def transcode(
    method: str, path: str, query: list[tuple[str, str]] | None = None, body: bytes = b""
) -> dict[str, object]:
    found = lib_router().match(method, path)
    assert isinstance(found, Match), (method, path, found)
    msg = build_request(found.binding, found.path_params, query or [], body)
    out: dict[str, object] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def test_query_string_fills_every_kind_of_field() -> None:
    got = transcode(
        "GET",
        "/v1/shelves/s1/books",
        [
            ("genres", "NOVEL"), ("genres", "2"),  # repeated enum, by name and by number
            ("archived", "true"),  # bool, Go's ParseBool spellings
            ("page.size", "10"), ("page.token", "t"),  # nested message via dots
            ("since", "2024-01-02T03:04:05Z"),  # Timestamp as RFC 3339
            ("minPages", "100"),  # lowerCamelCase name, int64 from a string
            ("filter_book.tags", "a"), ("filter_book.tags", "b"),
        ],
    )
    assert got == {
        "shelf": "s1",
        "genres": ["NOVEL", "POETRY"],
        "archived": True,
        "page": {"size": 10, "token": "t"},
        "since": "2024-01-02T03:04:05Z",
        "min_pages": "100",
        "filter_book": {"tags": ["a", "b"]},
    }


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ([("nope", "1")], "nope"),
        ([("page.nope", "1")], "page.nope"),
        ([("page", "x")], "cannot be set from the query"),
        ([("archived", "maybe")], "boolean"),
        ([("genres", "JAZZ")], "JAZZ"),
        ([("page.size", "big")], "size"),
        ([("since", "yesterday")], "since"),
        ([("shelf", "other")], "comes from the path"),
        ([("archived", "1"), ("archived", "0")], "more than once"),
        ([("shelf.x", "1")], "shelf.x"),
    ],
)
def test_bad_query_parameters_are_named(query: list[tuple[str, str]], words: str) -> None:
    with pytest.raises(TranscodeError, match=words.replace(".", r"\.")):
        transcode("GET", "/v1/shelves/s1/books", query)


def test_body_star_with_path_variables_path_wins() -> None:
    got = transcode(
        "POST", "/v1/shelves/s1/books/b%201:archive", body=b'{"reason": "old", "shelf": "zzz"}'
    )
    assert got == {"shelf": "s1", "id": "b 1", "reason": "old"}
    # Empty body: just the path.
    assert transcode("POST", "/v1/shelves/s1/books/b1:archive") == {"shelf": "s1", "id": "b1"}
    # body "*" leaves nothing for the query string.
    with pytest.raises(TranscodeError, match="every field of this route is in the body"):
        transcode("POST", "/v1/shelves/s1/books/b1:archive", [("reason", "x")])


def test_body_as_a_named_field_and_nested_path_variable() -> None:
    got = transcode(
        "PATCH",
        "/v1/shelves/s1/books/b1",
        [("validate_only", "1")],
        b'{"title": "Dune", "pages": 412, "genre": "NOVEL", "publishedAt": "1965-08-01T00:00:00Z"}',
    )
    assert got == {
        "book": {
            "name": "shelves/s1/books/b1",
            "title": "Dune",
            "pages": "412",
            "genre": "NOVEL",
            "published_at": "1965-08-01T00:00:00Z",
        },
        "validate_only": True,
    }
    with pytest.raises(TranscodeError, match="comes from the body"):
        transcode("PATCH", "/v1/shelves/s1/books/b1", [("book.title", "x")], b"{}")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"title": ', "malformed JSON"),
        (b'{"colour": "red"}', "colour"),
        (b'{"pages": "many"}', "pages"),
        (b'{"genre": "JAZZ"}', "JAZZ"),
        (b'{"tags": "not-a-list"}', "tags"),
        (b'{"publishedAt": "last tuesday"}', "publishedAt|published_at"),
        (b"\xff", "UTF-8"),
        (b"[" * 100000 + b"]" * 100000, "JSON"),
    ],
)
def test_bad_bodies_are_named(body: bytes, words: str) -> None:
    with pytest.raises(TranscodeError, match=words):
        transcode("PATCH", "/v1/shelves/s1/books/b1", body=body)


def test_route_without_body_refuses_one() -> None:
    assert transcode("GET", "/v1/shelves/s1/books", body=b" {} ") == {"shelf": "s1"}
    with pytest.raises(TranscodeError, match="takes no request body"):
        transcode("GET", "/v1/shelves/s1/books", body=b'{"shelf": "x"}')


def test_response_body_and_json_mapping() -> None:
    from google.protobuf.message_factory import GetMessageClass

    f = library_file()
    resp_cls = GetMessageClass(f.message_types_by_name["ListBooksResponse"])
    msg = resp_cls()
    json_format.ParseDict({"books": [{"name": "b", "pages": "3", "genre": "POETRY"}]}, msg)
    bindings = {(b.http_method, b.template.source): b for b in bindings_for_files([f])}
    whole = response_json(bindings[("GET", "/v1/shelves/{shelf}/books")], msg)
    bare = response_json(bindings[("GET", "/shelves/{shelf}/books")], msg)
    book = {
        "name": "b", "title": "", "pages": "3", "genre": "POETRY", "tags": [], "archived": False
    }
    assert whole == {"books": [book], "nextPageToken": ""}
    assert bare == [book]


def test_unannotated_methods_are_not_served() -> None:
    names = {b.method.name for b in bindings_for_files([library_file()])}
    assert "Unannotated" not in names
    assert names == {"GetBook", "UpdateBook", "ListBooks", "ArchiveBook", "Follow"}


# --- errors -----------------------------------------------------------------------------------


def test_status_table_is_grpc_gateways() -> None:
    assert errors.http_status(grpc.StatusCode.INVALID_ARGUMENT) == 400
    assert errors.http_status(grpc.StatusCode.FAILED_PRECONDITION) == 400
    assert errors.http_status(grpc.StatusCode.OUT_OF_RANGE) == 400
    assert errors.http_status(grpc.StatusCode.UNAUTHENTICATED) == 401
    assert errors.http_status(grpc.StatusCode.PERMISSION_DENIED) == 403
    assert errors.http_status(grpc.StatusCode.NOT_FOUND) == 404
    assert errors.http_status(grpc.StatusCode.ALREADY_EXISTS) == 409
    assert errors.http_status(grpc.StatusCode.ABORTED) == 409
    assert errors.http_status(grpc.StatusCode.RESOURCE_EXHAUSTED) == 429
    assert errors.http_status(grpc.StatusCode.CANCELLED) == 499
    assert errors.http_status(grpc.StatusCode.UNIMPLEMENTED) == 501
    assert errors.http_status(grpc.StatusCode.UNAVAILABLE) == 503
    assert errors.http_status(grpc.StatusCode.DEADLINE_EXCEEDED) == 504
    for code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS):
        assert errors.http_status(code) == 500
    assert errors.status_json(grpc.StatusCode.NOT_FOUND, "gone") == {
        "code": 5, "message": "gone", "details": []
    }


# --- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_for_an_unseen_service_is_valid() -> None:
    doc = openapi.build(bindings_for_files([library_file()]))
    validate(doc)
    paths = doc["paths"]
    assert set(paths) == {
        "/v1/{name}", "/books/{name}", "/v1/{book.name}", "/v1/shelves/{shelf}/books",
        "/shelves/{shelf}/books", "/v1/shelves/{shelf}/books/{id}:archive",
        "/v1/shelves/{shelf}:follow",
    }
    lst = paths["/v1/shelves/{shelf}/books"]["get"]
    names = [p["name"] for p in lst["parameters"]]
    assert names[0] == "shelf"
    assert {"genres", "archived", "page.size", "page.token", "since", "min_pages"} <= set(names)
    assert "filter_book.tags" in names
    archive = paths["/v1/shelves/{shelf}/books/{id}:archive"]["post"]
    body = archive["requestBody"]["content"]["application/json"]["schema"]
    # Fields bound by the path are not in the body schema.
    assert set(body["properties"]) == {"reason"}
    patch = paths["/v1/{book.name}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/gwtest.v1.Book"
    }
    follow = paths["/v1/shelves/{shelf}:follow"]["get"]["responses"]["200"]["content"]
    assert set(follow) == {"application/x-ndjson", "text/event-stream"}
    book = doc["components"]["schemas"]["gwtest.v1.Book"]["properties"]
    assert book["pages"] == {"type": "string", "format": "int64"}
    assert book["publishedAt"] == {"type": "string", "format": "date-time"}
    assert book["genre"] == {"$ref": "#/components/schemas/gwtest.v1.Genre"}


def test_broker_comments_come_from_the_descriptor_set() -> None:
    sets = default_descriptor_sets()
    assert sets[0].is_file(), "make proto writes broker.binpb next to broker_pb2.py"
    c = load_comments(sets)
    assert c["forge.v1.Broker.Enqueue"].startswith("Enqueue one job.")
    assert c["forge.v1.Job.Status.DEAD"].startswith("Out of retries")
    assert c["forge.v1.Job.priority"] == "Higher runs first, in [-1000, 1000]."
    assert load_comments([Path("/nonexistent.binpb")]) == {}


# --- config -----------------------------------------------------------------------------------


def test_config_flags_beat_environment_beats_defaults(tmp_path: Path) -> None:
    c = Config.from_args([], env={})
    assert (c.broker, c.host, c.port, c.max_body, c.timeout) == (
        "localhost:50051", "127.0.0.1", 8080, DEFAULT_MAX_BODY, 10.0
    )
    env = {"FORGE_BROKER": "b:1", "PORT": "9000", "FORGE_GATEWAY_MAX_BODY": "10",
           "FORGE_DASHBOARD_DIR": str(tmp_path)}
    c = Config.from_args([], env=env)
    assert (c.broker, c.port, c.max_body, c.static_dir) == ("b:1", 9000, 10, tmp_path)
    c = Config.from_args(["--broker", "x:2", "--port", "1", "--static-dir", ""], env=env)
    assert (c.broker, c.port, c.static_dir) == ("x:2", 1, None)


def test_config_reads_the_connection_limits_and_the_token_digests() -> None:
    c = Config.from_args([], env={})
    assert (c.max_connections, c.header_timeout, c.body_timeout, c.keep_alive_timeout,
            c.token_digests) == (1000, 10.0, 30.0, 5, ())
    env = {"FORGE_GATEWAY_MAX_CONNECTIONS": "7", "FORGE_GATEWAY_HEADER_TIMEOUT": "1.5",
           "FORGE_GATEWAY_BODY_TIMEOUT": "2", "FORGE_GATEWAY_KEEP_ALIVE_TIMEOUT": "3",
           "FORGE_TOKENS": "ops:admin:0123456789abcdef0123"}
    c = Config.from_args(["--max-connections", "8"], env=env)
    assert (c.max_connections, c.header_timeout, c.body_timeout, c.keep_alive_timeout) == (
        8, 1.5, 2.0, 3)
    assert c.token_digests == (hashlib.sha256(b"0123456789abcdef0123").digest(),)
    assert "0123456789abcdef0123" not in repr(c) and "token_digests" not in repr(c)


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [(["--port", "http"], {}, "--port"), (["--port", "70000"], {}, "--port"),
     (["--max-body", "0"], {}, "--max-body"), (["--timeout", "-1"], {}, "--timeout"),
     (["--timeout", "inf"], {}, "--timeout"), (["--static-dir", "/nonexistent/dir"], {}, "--static-dir"),
     (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], {}, "--tls-cert"),
     ([], {"PORT": "http"}, "--port"), ([], {"FORGE_GATEWAY_MAX_BODY": "-5"}, "--max-body"),
     (["--max-connections", "0"], {}, "--max-connections"),
     ([], {"FORGE_GATEWAY_HEADER_TIMEOUT": "0"}, "--header-timeout"),
     (["--body-timeout", "nan"], {}, "--body-timeout"),
     (["--keep-alive-timeout", "0.5"], {}, "--keep-alive-timeout"),
     (["--broker", "127.0.0.1:1,127.0.0.1"], {}, "--broker: broker list entry '127.0.0.1'")],
)
def test_config_refuses_bad_values_naming_the_option(
    argv: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        Config.from_args(argv, env=env)
    assert e.value.code == 2
    assert named in capsys.readouterr().err
