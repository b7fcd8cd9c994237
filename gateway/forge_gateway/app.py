"""The gateway's Starlette application: API routes first, then the dashboard's files.

Request flow for an API route: match the raw path against the bindings (404 / 405 when none
fits), check the bearer token when tokens are configured (401), read the body up to the limit
(413) within the body timeout (408), transcode it with the path and query into the
request message (400), call the broker over one shared ``grpc.aio`` channel with a deadline,
and answer the response as JSON, or stream it (see :mod:`gateway.streaming`). Every error is a
``google.rpc.Status`` JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from forge_common import tracing
from forge_common.tokens import bearer_credential, matching_digest
from forge_gateway import comments, errors, openapi, streaming, transcode
from forge_gateway.config import Config
from forge_gateway.routes import Binding, Match, Router, bindings_for_files, describe
from forge_gateway.transcode import TranscodeError, message_class

log = logging.getLogger("gateway")

# Headers passed to the broker as gRPC metadata (lower-case, as HTTP/2 and gRPC want them).
# The W3C trace context goes as it came while the gateway does not trace; while it does, its
# own span's context goes instead (see _metadata).
FORWARDED_HEADERS = ("authorization", "x-request-id", *tracing.CARRIER_KEYS)
# grpc-gateway's convention: "Grpc-Metadata-Foo: bar" arrives as metadata "foo: bar".
METADATA_PREFIX = "grpc-metadata-"
# How long a stream waits for its first message before answering 200 anyway: long enough to
# turn an immediate refusal (bad argument, broker down) into a real HTTP status, short enough
# that a quiet stream (a lease with no jobs yet) still gets its headers promptly.
FIRST_MESSAGE_WAIT = 1.0
# /readyz asks the broker's gRPC health this long before answering 503: a probe has its own
# timeout (1 s by default in Kubernetes), and a hung broker must not hold the probe past it.
READY_CHECK_SECONDS = 0.8
# Responses can be large (a page of 500 jobs with 1 MiB payloads); grpc's 4 MiB default would
# turn a big page into RESOURCE_EXHAUSTED.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


def default_descriptor_files() -> list[FileDescriptor]:
    """The proto files the gateway serves by default: forge.v1's broker."""
    from forge.v1 import broker_pb2

    return [broker_pb2.DESCRIPTOR]


def default_descriptor_sets() -> list[Path]:
    """Descriptor sets with source info, generated next to the Python code by ``make proto``."""
    from forge.v1 import broker_pb2

    return [Path(broker_pb2.__file__).with_name("broker.binpb")]


def json_response(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        transcode.encode(value), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(err: errors.GatewayError, headers: dict[str, str] | None = None) -> Response:
    return json_response(err.http, err.body(), headers)


class Gateway:
    """Routes HTTP requests to the broker. Holds the channel (open between start and stop)."""

    def __init__(self, config: Config, bindings: Sequence[Binding]) -> None:
        self.config = config
        self.router = Router(bindings)
        self.channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        """Open the channel to the broker. It connects lazily: a broker that is not up yet is a
        503 per request, not a gateway that fails to start."""
        # TLS when configured; no token of its own: each call carries its request's Authorization.
        self.channel = self.config.broker_security.aio_channel(
            self.config.broker,
            options=[
                ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
                ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
                # Reconnect quickly after a broker restart instead of backing off for minutes.
                ("grpc.max_reconnect_backoff_ms", 2000),
                ("grpc.initial_reconnect_backoff_ms", 200),
            ],
        )

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close(grace=1.0)
            self.channel = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A plain ASGI app, installed as the Starlette router's default: it sees every method
        # and every path, however Starlette's own route patterns would treat them.
        if scope["type"] != "http":
            return  # lifespan is Starlette's; websockets are not part of the API
        response = await self.dispatch(Request(scope, receive))
        await response(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        """Answer one request: an API route, else a dashboard file, else a 404 Status."""
        # Match on the path as sent (percent-encoding intact): an encoded "/" inside an id must
        # not split a segment. Servers may leave raw_path out, so fall back to the decoded one.
        raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        found = self.router.match(request.method, raw_path)
        echo = _echo_headers(request)
        if isinstance(found, Match):
            try:
                if tracing.TRACER is not None:
                    return await self.traced_call(found, request, echo)
                return await self.call(found, request, echo)
            except errors.GatewayError as e:
                return error_response(e, {**echo, **e.headers})
            except Exception:
                log.exception("gateway failure on %s %s", request.method, raw_path)
                return error_response(
                    errors.GatewayError(grpc.StatusCode.INTERNAL, "internal gateway error"), echo
                )
        if found is not None and request.method not in ("GET", "HEAD"):
            return _method_not_allowed(found, echo)
        if request.method in ("GET", "HEAD"):
            static = self.static(request)
            if static is not None:
                return static
        if found is not None:
            return _method_not_allowed(found, echo)
        return error_response(
            errors.GatewayError(
                grpc.StatusCode.NOT_FOUND, f"no route for {request.method} {request.url.path}"
            ),
            echo,
        )

    async def traced_call(self, match: Match, request: Request,
                          echo: dict[str, str]) -> Response:
        """``call`` in a server span, child of the request's ``traceparent`` if any; the broker
        gets this span's context (``_metadata``). A streaming call's span ends once its
        response starts."""
        binding = match.binding
        route = binding.template.openapi_path
        with tracing.span(f"{request.method} {route}", tracing.carrier(request.headers.items()),
                          {"http.request.method": request.method, "http.route": route,
                           "rpc.system": "grpc", "rpc.method": binding.grpc_path},
                          tracing.SpanKind.SERVER) as span:
            response = await self.call(match, request, echo)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                tracing.fail(span, f"HTTP {response.status_code}")
            return response

    async def call(self, match: Match, request: Request, echo: dict[str, str]) -> Response:
        """Transcode the request, call the broker and answer; GatewayError for refusals."""
        binding = match.binding
        self.check_token(request)
        body = await self.read_body(request)
        try:
            message = transcode.build_request(
                binding, match.path_params, request.query_params.multi_items(), body
            )
        except TranscodeError as e:
            raise errors.GatewayError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        metadata = _metadata(request)
        if self.channel is None:
            raise errors.GatewayError(grpc.StatusCode.UNAVAILABLE, "gateway is not started")
        if binding.server_streaming:
            return await self.call_stream(binding, message, metadata, request, echo)
        rpc = self.channel.unary_unary(
            binding.grpc_path,
            request_serializer=_serialize,
            response_deserializer=message_class(binding.method.output_type).FromString,
        )
        try:
            reply = await rpc(message, timeout=self.config.timeout, metadata=metadata)
        except grpc.aio.AioRpcError as e:
            return self.rpc_error(binding, e, echo)
        return json_response(200, transcode.response_json(binding, reply), echo)

    def rpc_error(
        self, binding: Binding, err: grpc.aio.AioRpcError, echo: dict[str, str]
    ) -> Response:
        """The HTTP answer for a failed call; server-side failures are logged, since the HTTP
        client may not be the one who can act on them."""
        status, body = errors.from_rpc_error(err)
        if status >= 500:
            log.warning("%s failed: %s %s", binding.grpc_path, err.code().name, err.details())
        return json_response(status, body, echo)

    async def call_stream(
        self,
        binding: Binding,
        message: Message,
        metadata: grpc.aio.Metadata,
        request: Request,
        echo: dict[str, str],
    ) -> Response:
        assert self.channel is not None
        response_class = message_class(binding.method.output_type)
        rpc = self.channel.unary_stream(
            binding.grpc_path,
            request_serializer=_serialize,
            response_deserializer=response_class.FromString,
        )
        # No deadline: a watch or lease stream lives as long as its client. It is cancelled
        # when the client disconnects (StreamResponse) and fails fast if the broker is down.
        call = rpc(message, metadata=metadata)
        first: asyncio.Future[Any] = asyncio.ensure_future(call.read())
        await asyncio.wait({first}, timeout=FIRST_MESSAGE_WAIT)
        if first.done() and first.exception() is not None:
            err = first.exception()
            call.cancel()
            if isinstance(err, grpc.aio.AioRpcError):
                return self.rpc_error(binding, err, echo)
            raise err  # type: ignore[misc]
        sse = streaming.wants_sse(request.headers.get("accept", ""))
        return streaming.StreamResponse(
            call,
            first,
            lambda m: transcode.response_json(binding, m),
            sse=sse,
            headers=echo,
        )

    async def ready(self) -> Response:
        """200 when the broker's gRPC health says SERVING, else 503 with what it said."""
        status = "UNREACHABLE"
        if self.channel is not None:
            stub = health_pb2_grpc.HealthStub(self.channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""),
                                         timeout=READY_CHECK_SECONDS)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError:
                pass
        return json_response(200 if status == "SERVING" else 503, {"status": status})

    def check_token(self, request: Request) -> None:
        """401 unless the request carries a configured token (when any is): a stranger's body
        is never read, let alone parsed. Which role may call what is the broker's to say."""
        digests = self.config.token_digests
        credential = bearer_credential(request.headers.get("authorization"))
        if digests and matching_digest(digests, credential) is None:
            raise errors.GatewayError(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown API token: send the header 'Authorization: Bearer <token>'",
                headers={"www-authenticate": "Bearer"},
            )

    async def read_body(self, request: Request) -> bytes:
        """The request body, or 413 as soon as it is known to exceed the limit (from
        Content-Length before reading anything, else while reading), or 408 when it takes
        longer than the body timeout to arrive."""
        limit = self.config.max_body
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.config.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
        except ClientDisconnect:
            raise errors.GatewayError(
                grpc.StatusCode.CANCELLED, "client disconnected while sending the body"
            ) from None
        except TimeoutError:
            # A client this slow is not worth keeping: the 408 ends the connection (RFC 9110).
            raise errors.GatewayError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"request body not received within {self.config.body_timeout:g} s",
                http=408, headers={"connection": "close"},
            ) from None
        return b"".join(chunks)

    def static(self, request: Request) -> Response | None:
        """A dashboard file for GET/HEAD, the SPA's index.html for an HTML navigation to an
        unknown path, else None."""
        root = self.config.static_dir
        if root is None:
            return None
        rel = request.url.path.lstrip("/")
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            return None  # "..": nothing outside the build is served
        if target.is_dir():
            target = target / "index.html"
        if target.is_file():
            return FileResponse(target, headers=_cache_headers(root, target))
        index = root / "index.html"
        accept = request.headers.get("accept", "")
        # Client-side routes (/jobs/123 in the SPA) load index.html; a missing asset or an API
        # client (no text/html) gets the JSON 404 instead of a page it cannot use.
        if "text/html" in accept and index.is_file():
            return FileResponse(index, headers={"cache-control": "no-cache"})
        return None


def _cache_headers(root: Path, target: Path) -> dict[str, str]:
    # Vite puts content-hashed files under assets/: cache them forever; everything else (index
    # names the current hashes) must be revalidated.
    if target.parent == root / "assets":
        return {"cache-control": "public, max-age=31536000, immutable"}
    return {"cache-control": "no-cache"}


def _method_not_allowed(allowed: frozenset[str], echo: dict[str, str]) -> Response:
    methods = ", ".join(sorted(allowed))
    err = errors.GatewayError(
        grpc.StatusCode.UNIMPLEMENTED, f"method not allowed; this path takes {methods}", http=405
    )
    return error_response(err, {**echo, "allow": methods})


def _too_large(limit: int) -> errors.GatewayError:
    return errors.GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"request body larger than the limit of {limit} bytes",
        http=413,
    )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _echo_headers(request: Request) -> dict[str, str]:
    rid = request.headers.get("x-request-id")
    return {"x-request-id": rid} if rid and _printable(rid) else {}


def _printable(value: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in value)


def _metadata(request: Request) -> grpc.aio.Metadata:
    """gRPC metadata from the forwarded headers; 400 for a value gRPC cannot carry."""
    md = grpc.aio.Metadata()
    traced = tracing.TRACER is not None
    for key, value in request.headers.items():
        name = key.lower()
        if traced and name in tracing.CARRIER_KEYS:
            continue
        if name in FORWARDED_HEADERS:
            target = name
        elif name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX):
            target = name[len(METADATA_PREFIX) :]
        else:
            continue
        if target.endswith("-bin") or target.startswith("grpc-") or not _printable(value):
            raise errors.GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"header {key} cannot be forwarded to gRPC"
            )
        md.add(target, value)
    client = request.client
    if client is not None:
        md.add("x-forwarded-for", client.host)
    if traced:
        for key, value in tracing.current_carrier().items():
            md.add(key, value)
    return md


def create_app(
    config: Config,
    files: Sequence[FileDescriptor] | None = None,
    descriptor_sets: Sequence[Path] | None = None,
) -> Starlette:
    """The ASGI app serving every annotated RPC of ``files`` (default: forge.v1's broker),
    ``GET /openapi.json``, the probes ``GET /healthz`` (the gateway is up, no broker call) and
    ``GET /readyz`` (the broker's gRPC health), and the dashboard build when
    ``config.static_dir`` is set.

    Raises routes.TemplateError at once if an annotation is malformed.
    """
    bindings = bindings_for_files(files if files is not None else default_descriptor_files())
    gateway = Gateway(config, bindings)
    doc = openapi.build(
        bindings,
        comments.load(descriptor_sets if descriptor_sets is not None else default_descriptor_sets()),
    )
    doc_bytes = transcode.encode(doc)

    async def openapi_json(request: Request) -> Response:
        return Response(doc_bytes, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "SERVING"})

    async def readyz(request: Request) -> Response:
        return await gateway.ready()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        log.info(
            "gateway serving %d routes for broker %s%s",
            len(bindings),
            config.broker,
            f", dashboard from {config.static_dir}" if config.static_dir else "",
        )
        for route in describe(bindings):
            log.debug("route %(method)s %(path)s -> %(rpc)s", route)
        try:
            yield
        finally:
            await gateway.stop()

    routes = [Route("/openapi.json", openapi_json, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]),
              Route("/readyz", readyz, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    # Everything else goes to the gateway: API bindings, then static files, then a JSON 404. As
    # the router's default rather than a "/{path:path}" route, because Starlette's path regex
    # does not match every decodable path (a "%0A" in an id) and would answer plain-text 404s.
    app.router.default = gateway
    app.state.gateway = gateway
    app.state.openapi = doc
    return app
