"""How a Forge process dials the broker: a bearer token, TLS (optionally mutual), and one
broker or a list of them (see "targets" below).

Used by the Python client, the ``forge`` CLI, workerd and the gateway, so every one of them
reads the same variables the same way:

- ``FORGE_TOKEN``: an API token, sent as ``authorization: Bearer <token>`` metadata on every
  call (unary and streaming). Unset: no metadata, as before.
- ``FORGE_CA_FILE``: PEM file of the CA that signed the broker's certificate. Set: the channel
  is TLS (``ssl_channel_credentials``); unset: a plain-text channel, as before.
- ``FORGE_TLS_CLIENT_CERT`` / ``FORGE_TLS_CLIENT_KEY``: a client certificate and its key, for a
  broker that requires mutual TLS (``FORGE_TLS_CLIENT_CA`` on the broker). Need the CA file.

Nothing set means exactly the old behaviour: an insecure channel with no interceptor at all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

ENV_TOKEN = "FORGE_TOKEN"
ENV_CA_FILE = "FORGE_CA_FILE"
ENV_CLIENT_CERT = "FORGE_TLS_CLIENT_CERT"
ENV_CLIENT_KEY = "FORGE_TLS_CLIENT_KEY"

Options = Sequence[tuple[str, Any]]
# What a channel accepts in one answer: the broker's default send limit
# (FORGE_MAX_SEND_MESSAGE_BYTES). gRPC's own 4 MB default refuses the answer to a batch it has
# already written, or a page of jobs with big payloads.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024


class SecurityConfigError(ValueError):
    """A token or TLS setting is unusable; the message names the variable, never the token."""


def _valid_token(token: str) -> bool:
    return 0 < len(token) <= 4096 and all(0x21 <= ord(c) <= 0x7E for c in token)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SecurityConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ChannelSecurity:
    """Token and TLS settings for dialling the broker; the default is neither."""

    token: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None and not _valid_token(self.token):
            raise SecurityConfigError(
                f"{ENV_TOKEN}: a token is 1 to 4096 printable ASCII characters without spaces")
        if (self.client_cert is None) != (self.client_key is None):
            raise SecurityConfigError(
                f"{ENV_CLIENT_CERT} and {ENV_CLIENT_KEY} go together: set both or neither")
        if self.client_cert is not None and self.ca_file is None:
            raise SecurityConfigError(
                f"{ENV_CLIENT_CERT}: a client certificate needs TLS; set {ENV_CA_FILE} too")

    def __repr__(self) -> str:  # never show the token, even in a traceback
        token = "set" if self.token else None
        return (f"ChannelSecurity(token={token}, ca_file={self.ca_file!r}, "
                f"client_cert={self.client_cert!r}, client_key={self.client_key!r})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, token: str | None = None,
                 ca_file: str | None = None, client_cert: str | None = None,
                 client_key: str | None = None, use_token: bool = True) -> ChannelSecurity:
        """Explicit arguments (flags) win over the environment; empty strings count as unset.
        ``use_token=False`` ignores ``FORGE_TOKEN`` (the gateway forwards its callers' tokens)."""
        e = os.environ if env is None else env

        def pick(explicit: str | None, name: str) -> str | None:
            value = explicit if explicit else e.get(name)
            return value.strip() if value and value.strip() else None

        return cls(token=pick(token, ENV_TOKEN) if use_token else None,
                   ca_file=pick(ca_file, ENV_CA_FILE),
                   client_cert=pick(client_cert, ENV_CLIENT_CERT),
                   client_key=pick(client_key, ENV_CLIENT_KEY))

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call carries: the bearer token, or nothing."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials from the files (read now), or None for a plain-text channel."""
        if self.ca_file is None:
            return None
        root = _read(self.ca_file, ENV_CA_FILE)
        key = chain = None
        if self.client_cert is not None and self.client_key is not None:
            chain = _read(self.client_cert, ENV_CLIENT_CERT)
            key = _read(self.client_key, ENV_CLIENT_KEY)
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                            certificate_chain=chain)

    def channel(self, target: str, options: Options | None = None) -> grpc.Channel:
        """A blocking channel to ``target``."""
        creds = self.credentials()
        target, opts = _dial(target, options)
        ch = (grpc.secure_channel(target, creds, options=opts) if creds is not None
              else grpc.insecure_channel(target, options=opts))
        if not self.token:
            return ch
        return grpc.intercept_channel(ch, _SyncBearer(self.metadata()))

    def aio_channel(self, target: str, options: Options | None = None) -> grpc.aio.Channel:
        """An asyncio channel to ``target``."""
        creds = self.credentials()
        target, opts = _dial(target, options)
        interceptors: Any = [_AioUnaryBearer(self.metadata()), _AioStreamBearer(self.metadata())] \
            if self.token else None
        if creds is not None:
            return grpc.aio.secure_channel(target, creds, options=opts, interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)


# -- interceptors that add the token to every call ---------------------------------------------

def _with(metadata: Any, extra: tuple[tuple[str, str], ...]) -> list[tuple[str, Any]]:
    """The call's own metadata plus ``extra``, unless the call brought its own authorization
    (a per-call token wins over the channel's)."""
    own = list(metadata or ())
    if any(k.lower() == "authorization" for k, _ in own):
        return own
    return own + list(extra)


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(self, base: Any, metadata: list[tuple[str, Any]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata  # type: ignore[assignment]
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _SyncBearer(grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
                  grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
                  grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
                  grpc.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self.extra = extra

    def _details(self, details: Any) -> Any:
        return _SyncDetails(details, _with(details.metadata, self.extra))

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                              request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                               request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                               request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def _aio_details(details: Any, extra: tuple[tuple[str, str], ...]) -> Any:
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*_with(details.metadata, extra)),
        details.credentials, details.wait_for_ready)


class _AioUnaryBearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self.extra = extra

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                                    request: Any) -> Any:
        return await continuation(_aio_details(client_call_details, self.extra), request)


class _AioStreamBearer(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self.extra = extra

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                                     request: Any) -> Any:
        return await continuation(_aio_details(client_call_details, self.extra), request)


def _dial(target: str, options: Options | None) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target for ``target`` and every option of its channel."""
    uri, extra = channel_target(target)
    return uri, [*_with_defaults(options), *extra]


def _with_defaults(options: Options | None) -> list[tuple[str, Any]]:
    """``options`` with the receive limit added unless the caller set one."""
    opts = list(options or [])
    if not any(name == "grpc.max_receive_message_length" for name, _ in opts):
        opts.append(("grpc.max_receive_message_length", MAX_RECEIVE_BYTES))
    return opts


# -- targets: one broker or several ------------------------------------------------------------
# A target is one ``host:port``, any gRPC target URI, or a list of brokers.
#
# A list, ``h1:p1,h2:p2,…`` (``FORGE_BROKER``, ``--broker``), becomes one gRPC channel over every
# address (``ipv4:a:p1,b:p2``), balanced by gRPC itself: ``pick_first`` over the list shuffled
# per channel. Each process thus sticks to one broker, so its acks reach the broker holding its
# lease stream (which refills the stream at once; an ack through another broker frees the slot
# only at that broker's next reconcile), processes spread across the brokers, and when the one in
# use dies the channel's next call connects to the next address that answers. ``round_robin``
# would spread each process's calls over every broker instead, leaving its stream starved of
# acks.
#
# Names in a list are resolved once, when the channel is made; for brokers whose addresses
# change, give one name that resolves to all of them, ``dns:///brokers.internal:50051``, which
# gRPC resolves again as it reconnects (the shuffled ``pick_first`` applies there too).

# gRPC's target URI schemes: such a target is gRPC's to read, commas and all.
_URI = re.compile(r"^(dns|ipv4|ipv6|unix|unix-abstract|vsock|xds):")
# Every channel over several brokers starts at a random one of them.
SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": True}}]})


class TargetError(SecurityConfigError):
    """A broker target that cannot be dialled: the message names it."""


def channel_target(target: str) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target and the channel options for ``target``. One address or a URI (gRPC's
    own ``ipv4:a:1,b:2`` included) is left as it is; a list becomes an ``ipv4:``/``ipv6:`` URI
    of every address, in one family."""
    parts = [p.strip() for p in target.split(",") if p.strip()]
    if len(parts) < 2 or _URI.match(target):
        return target, []
    resolved = [_addresses(p) for p in parts]
    for family, scheme in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
        if all(family in r for r in resolved):
            # The first name is the authority: with TLS, the certificate must name it.
            return f"{scheme}:" + ",".join(r[family] for r in resolved), [
                ("grpc.service_config", SERVICE_CONFIG),
                ("grpc.default_authority", parts[0])]
    raise TargetError(f"broker list {target!r}: its hosts share no address family (IPv4 or IPv6)")


def _addresses(entry: str) -> dict[int, str]:
    """``entry``'s first address of each family, as ``ip:port`` (``[ip]:port`` for IPv6)."""
    host, sep, port = entry.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in entry:
        raise TargetError(f"broker list entry {entry!r}: each must be host:port")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return {socket.AF_INET6 if ip.version == 6 else socket.AF_INET: _join(ip.compressed, port)}
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetError(f"broker list entry {entry!r}: cannot resolve {host}: {exc}") from None
    found: dict[int, str] = {}
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            found.setdefault(family, _join(str(sockaddr[0]), port))
    return found


def _join(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
