"""Forge's REST gateway: HTTP/JSON in front of the broker's gRPC API, in grpc-gateway's style.

Every route comes from the ``google.api.http`` annotations in ``proto/forge/v1/broker.proto``;
nothing here names an RPC. See ``docs/api.md`` for the HTTP surface.
"""

from forge_common import grpcenv as _grpcenv

_grpcenv.prefer_iomgr()  # before any module of the package imports grpc
