"""Fixtures for the gateway tests, loaded with ``pytest_plugins = ["tests.gateway_fixtures"]``.

The broker and gateway are module-scoped: starting processes per test would dominate the run
time. Tests keep out of each other's way by using job types of their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import (
    BrokerProcess,
    GatewayProcess,
    drop_database,
    new_database,
    start_broker,
    start_gateway,
)


@pytest.fixture(scope="module")
def gw_broker_env() -> dict[str, str]:
    """Extra environment for the module's broker; a module overrides it (to set tokens, say)."""
    return {}


@pytest.fixture(scope="module")
def gw_broker(pg_admin_dsn: str, template_dsn: str,
              gw_broker_env: dict[str, str]) -> Iterator[BrokerProcess]:
    """A broker on its own fresh database, shared by one test module."""
    dsn = new_database(pg_admin_dsn)
    broker = start_broker(dsn, FORGE_STATS_INTERVAL="0.2", **gw_broker_env)
    yield broker
    broker.stop()
    drop_database(pg_admin_dsn, dsn)


@pytest.fixture(scope="module")
def gateway(gw_broker: BrokerProcess) -> Iterator[GatewayProcess]:
    """A gateway process in front of ``gw_broker``."""
    gw = start_gateway(gw_broker.target)
    yield gw
    gw.stop()


@pytest.fixture
def http(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """An HTTP client for ``gateway``."""
    with httpx.Client(base_url=gateway.url, timeout=20.0) as client:
        yield client
