"""gRPC status → HTTP status (grpc-gateway's table) and the JSON error body.

Every error the gateway answers, whether the broker raised it or the gateway itself did, is a
``google.rpc.Status`` in JSON: ``{"code": <gRPC code number>, "message": ..., "details": [...]}``.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

# Imported for its side effect: the standard detail messages (BadRequest, ErrorInfo, ...) must be
# in the descriptor pool for their Any-packed JSON to be rendered.
_ = error_details_pb2

log = logging.getLogger("gateway")

# grpc-gateway's runtime.HTTPStatusFromCode, row for row.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
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


def code_number(code: grpc.StatusCode) -> int:
    """The numeric gRPC code (``grpc.StatusCode`` values are ``(int, name)`` pairs)."""
    number: int = code.value[0]
    return number


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status grpc-gateway answers for a gRPC code; 500 for anything unlisted."""
    return HTTP_STATUS.get(code, 500)


def status_json(
    code: grpc.StatusCode, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A ``google.rpc.Status`` as JSON."""
    return {"code": code_number(code), "message": message, "details": details or []}


class GatewayError(Exception):
    """An error the gateway answers itself, before or instead of calling the broker."""

    def __init__(
        self, code: grpc.StatusCode, message: str, http: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http = http if http is not None else http_status(code)
        """HTTP status; differs from the table only where HTTP has a sharper answer (405, 408,
        413)."""
        self.headers = headers or {}
        """Headers the answer needs besides the echoed ones (``www-authenticate`` on a 401)."""

    def body(self) -> dict[str, Any]:
        return status_json(self.code, self.message)


def from_rpc_error(err: grpc.aio.AioRpcError) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Status JSON) for a failed gRPC call, keeping the broker's rich details
    (``grpc-status-details-bin``) when it sent any."""
    code = err.code()
    message = err.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        # grpc's own text ("failed to connect to all addresses; last error: ...") says what
        # happened but not to whom; name the hop so the caller knows it is the broker.
        message = f"broker unavailable: {message}"
    return http_status(code), status_json(code, message, _details(err))


def _details(err: grpc.aio.AioRpcError) -> list[dict[str, Any]]:
    # grpc-stubs types the trailers loosely; at run time they are (key, value) pairs.
    trailers: Any = err.trailing_metadata() or ()
    for key, value in trailers:
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed trailer must not turn an error into a crash
            log.warning("unparseable grpc-status-details-bin trailer ignored")
            return []
        out: list[dict[str, Any]] = []
        for any_msg in status.details:
            try:
                out.append(json_format.MessageToDict(any_msg))
            except (TypeError, KeyError, json_format.Error):
                # A detail type this gateway has no descriptor for: keep the type URL at least.
                out.append({"@type": any_msg.type_url})
        return out
    return []
