"""API tokens with roles, and the gRPC server interceptor that enforces them.

Operators configure tokens (``FORGE_TOKENS`` and/or ``FORGE_TOKENS_FILE``), each with a name
(for logs) and a role. Every call then needs ``authorization: Bearer <token>`` metadata whose
token's role may call the method; the table below is the one place that says which may.

- ``grpc.health.v1.Health`` stays open (load balancers probe it without credentials).
- Server reflection needs any valid token.
- A ``forge.v1.Broker`` method missing from the table (a new RPC) is admin-only until someone
  gives it roles here, and any other service is admin-only too.

The broker keeps only each token's SHA-256 digest, compares a presented token's digest against
every configured one with ``hmac.compare_digest`` (no early exit, equal lengths), and never logs
a token. With no tokens configured the interceptor is not installed: auth is off.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from forge_broker.errors import InvalidArgument
from forge_common.tokens import (
    ROLES,
    TokenConfigError,
    bearer_credential,
    digest,
    matching_digest,
    parse_tokens,
)

log = logging.getLogger("forge.auth")

PRODUCER, WORKER, ADMIN = ROLES

BROKER_SERVICE = "forge.v1.Broker"

# Which roles may call each forge.v1.Broker method. Admin may call everything, always; a method
# not listed here is admin-only. Keep docs/operations.md ("Security") in step with this table.
METHOD_ROLES: Mapping[str, frozenset[str]] = {
    # producers: put work in, look at it
    "Enqueue": frozenset({PRODUCER, ADMIN}),
    "EnqueueBatch": frozenset({PRODUCER, ADMIN}),
    "EnqueueStream": frozenset({PRODUCER, ADMIN}),
    "GetJob": frozenset({PRODUCER, ADMIN}),
    "ListJobs": frozenset({PRODUCER, ADMIN}),
    "Stats": frozenset({PRODUCER, ADMIN}),
    "GetThroughput": frozenset({PRODUCER, ADMIN}),
    "WatchStats": frozenset({PRODUCER, ADMIN}),
    # queue settings and counts are read like Stats; changing them is the operators'
    "GetQueue": frozenset({PRODUCER, ADMIN}),
    "ListQueues": frozenset({PRODUCER, ADMIN}),
    "GetSchedule": frozenset({PRODUCER, ADMIN}),
    "ListSchedules": frozenset({PRODUCER, ADMIN}),
    # workers: take work out, report on it
    "Lease": frozenset({WORKER, ADMIN}),
    "Ack": frozenset({WORKER, ADMIN}),
    "Nack": frozenset({WORKER, ADMIN}),
    "Settle": frozenset({WORKER, ADMIN}),
    "Heartbeat": frozenset({WORKER, ADMIN}),
    # operators only
    "CancelJob": frozenset({ADMIN}),
    "ListDeadJobs": frozenset({ADMIN}),
    "RetryDeadJob": frozenset({ADMIN}),
    "RetryDeadJobs": frozenset({ADMIN}),
    "PurgeDeadJobs": frozenset({ADMIN}),
    "CancelJobs": frozenset({ADMIN}),
    "UpdateQueue": frozenset({ADMIN}),
    "PauseQueue": frozenset({ADMIN}),
    "ResumeQueue": frozenset({ADMIN}),
    # a schedule enqueues jobs forever after: who may set one up is an operator's decision
    "PutSchedule": frozenset({ADMIN}),
    "DeleteSchedule": frozenset({ADMIN}),
}
ADMIN_ONLY = frozenset({ADMIN})
OPEN_SERVICES = ("grpc.health.v1.Health",)
ANY_TOKEN_SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")


def required_roles(method: str) -> frozenset[str] | None:
    """The roles that may call ``/package.Service/Method``; None when it needs no token at all,
    and every role for a method any valid token may call."""
    service, _, name = method.lstrip("/").partition("/")
    if service in OPEN_SERVICES:
        return None
    if service in ANY_TOKEN_SERVICES:
        return frozenset(ROLES)
    if service == BROKER_SERVICE:
        return METHOD_ROLES.get(name, ADMIN_ONLY)
    return ADMIN_ONLY


@dataclass(frozen=True)
class ApiToken:
    """One configured token. The secret itself is not kept, only its digest."""

    name: str
    role: str
    digest: bytes

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, role={self.role!r})"

    @classmethod
    def create(cls, name: str, role: str, token: str) -> ApiToken:
        return cls(name=name, role=role, digest=digest(token))


# -- configuration -------------------------------------------------------------------------------

def load_tokens(env: Mapping[str, str]) -> tuple[ApiToken, ...]:
    """The tokens of ``FORGE_TOKENS`` and ``FORGE_TOKENS_FILE`` (parsed by forge_common.tokens,
    which the gateway shares); InvalidArgument names a bad entry, never its token."""
    try:
        entries = parse_tokens(env)
    except TokenConfigError as exc:
        raise InvalidArgument(exc.var, exc.problem) from None
    return tuple(ApiToken.create(e.name, e.role, e.token) for e in entries)


# -- enforcement ---------------------------------------------------------------------------------

def _bearer(metadata: Iterable[Any] | None) -> str | None:
    """The credential of the first ``authorization: Bearer ...`` metadata entry."""
    for key, value in metadata or ():
        if key == "authorization":
            return bearer_credential(value)
    return None


def _deny(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same shape as ``handler`` that only refuses."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **kw)
    return grpc.unary_unary_rpc_method_handler(refuse, **kw)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks every call's bearer token and its role against :data:`METHOD_ROLES`:
    UNAUTHENTICATED for a missing or unknown token, PERMISSION_DENIED for the wrong role."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        if not tokens:
            raise ValueError("AuthInterceptor needs at least one token")
        self.tokens = tuple(tokens)
        self.digests = tuple(t.digest for t in self.tokens)

    def identify(self, metadata: Iterable[Any] | None) -> ApiToken | None:
        """The configured token the call presents, or None (compared in constant time)."""
        found = matching_digest(self.digests, _bearer(metadata))
        return None if found is None else self.tokens[found]

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method
        needed = required_roles(method)
        if needed is None:
            return await continuation(handler_call_details)
        token = self.identify(handler_call_details.invocation_metadata)
        if token is not None and token.role in needed:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # no such method: UNIMPLEMENTED, as without auth
        short = method.rsplit("/", 1)[-1]
        if token is None:
            log.info("unauthenticated call to %s refused (no valid bearer token)", method)
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED,
                         "missing or unknown API token: send metadata "
                         "'authorization: Bearer <token>' (FORGE_TOKEN)")
        allowed = " or ".join(r for r in ROLES if r in needed)
        log.warning("token %s (role %s) refused for %s: needs %s", token.name, token.role,
                    method, allowed)
        return _deny(handler, grpc.StatusCode.PERMISSION_DENIED,
                     f"the {token.role} role may not call {short}; it needs {allowed}")
