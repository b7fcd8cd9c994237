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

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from forge_broker.errors import InvalidArgument

log = logging.getLogger("forge.auth")

PRODUCER, WORKER, ADMIN = "producer", "worker", "admin"
ROLES = (PRODUCER, WORKER, ADMIN)

BROKER_SERVICE = "forge.v1.Broker"

# Which roles may call each forge.v1.Broker method. Admin may call everything, always; a method
# not listed here is admin-only. Keep docs/operations.md ("Security") in step with this table.
METHOD_ROLES: Mapping[str, frozenset[str]] = {
    # producers: put work in, look at it
    "Enqueue": frozenset({PRODUCER, ADMIN}),
    "EnqueueBatch": frozenset({PRODUCER, ADMIN}),
    "GetJob": frozenset({PRODUCER, ADMIN}),
    "ListJobs": frozenset({PRODUCER, ADMIN}),
    "Stats": frozenset({PRODUCER, ADMIN}),
    "WatchStats": frozenset({PRODUCER, ADMIN}),
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
}
ADMIN_ONLY = frozenset({ADMIN})
OPEN_SERVICES = ("grpc.health.v1.Health",)
ANY_TOKEN_SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


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


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


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
        return cls(name=name, role=role, digest=_digest(token))


# -- configuration -------------------------------------------------------------------------------

def _entry(var: str, where: str, name: str, role: str, token: str) -> ApiToken:
    """Validate one entry. Messages name the variable and position, never the token (nor a
    field that might be one, such as a role written in the token's place)."""
    if not _NAME.match(name):
        raise InvalidArgument(var, f"{where}: the name must be 1 to 64 characters of "
                                   "[A-Za-z0-9_.@-]")
    if role not in ROLES:
        raise InvalidArgument(var, f"{where} ({name}): the role must be one of "
                                   f"{', '.join(ROLES)}")
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise InvalidArgument(var, f"{where} ({name}): the token must be {MIN_TOKEN_CHARS} to "
                                   f"{MAX_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)")
    if not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise InvalidArgument(var, f"{where} ({name}): the token must be printable ASCII "
                                   "without spaces")
    return ApiToken.create(name, role, token)


def _from_list(raw: str) -> list[tuple[str, ApiToken]]:
    var = "FORGE_TOKENS"
    out = []
    for i, item in enumerate(raw.split(","), 1):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise InvalidArgument(var, f"entry {i}: must be name:role:token")
        name, role, token = (p.strip() for p in parts)
        out.append((f"{var} entry {i}", _entry(var, f"entry {i}", name, role, token)))
    return out


def _from_file(path: str) -> list[tuple[str, ApiToken]]:
    var = "FORGE_TOKENS_FILE"
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(var, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
                              ) from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise InvalidArgument(var, f"line {n}: must be `name role token`")
        name, role, token = parts
        out.append((f"{var} line {n}", _entry(var, f"line {n}", name, role, token)))
    return out


def load_tokens(env: Mapping[str, str]) -> tuple[ApiToken, ...]:
    """The tokens of ``FORGE_TOKENS`` (``name:role:token,...``) and ``FORGE_TOKENS_FILE`` (one
    ``name role token`` per line, ``#`` comments); InvalidArgument names a bad entry."""
    entries: list[tuple[str, ApiToken]] = []
    if (env.get("FORGE_TOKENS") or "").strip():
        entries += _from_list(env["FORGE_TOKENS"])
    if (env.get("FORGE_TOKENS_FILE") or "").strip():
        entries += _from_file(env["FORGE_TOKENS_FILE"].strip())
    names: dict[str, str] = {}
    digests: dict[bytes, str] = {}
    for where, tok in entries:
        var = where.split()[0]
        if tok.name in names:
            raise InvalidArgument(var, f"{where}: the name {tok.name} is already used by "
                                       f"{names[tok.name]}")
        if tok.digest in digests:
            raise InvalidArgument(var, f"{where} ({tok.name}): the same token as "
                                       f"{digests[tok.digest]}; give each token one role")
        names[tok.name] = where
        digests[tok.digest] = where
    return tuple(tok for _, tok in entries)


# -- enforcement ---------------------------------------------------------------------------------

def _bearer(metadata: Iterable[Any] | None) -> str | None:
    """The credential of the first ``authorization: Bearer ...`` metadata entry."""
    for key, value in metadata or ():
        if key != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        scheme, _, credential = text.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return None
        return credential
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

    def identify(self, metadata: Iterable[Any] | None) -> ApiToken | None:
        """The configured token the call presents, or None. Compares against every token,
        always, in constant time for each: how long it takes does not say which matched."""
        credential = _bearer(metadata)
        if credential is None:
            return None
        presented = _digest(credential)
        found = None
        for tok in self.tokens:
            if hmac.compare_digest(tok.digest, presented):
                found = tok
        return found

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
