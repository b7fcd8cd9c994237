"""The Forge broker: owns PostgreSQL and serves the forge.v1.Broker gRPC API."""

from forge_common import grpcenv as _grpcenv

_grpcenv.prefer_iomgr()  # before any module of the package imports grpc
_grpcenv.no_fork_handlers()
