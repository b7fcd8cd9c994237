"""The test harness: fresh databases, and real broker, workerd and gateway processes.

Everything is imported from here (``from tests.support import ...``); the chaos run
(``tests/chaos``) and the benchmark (``bench``) share its ``free_port`` and process class."""

from tests.support.databases import TEMPLATE, drop_database, job_count, new_database
from tests.support.leases import lease_one
from tests.support.processes import (
    HANDLERS,
    REPO,
    TEST_BROKER_ENV,
    BrokerProcess,
    GatewayProcess,
    ServiceProcess,
    WorkerdProcess,
    free_port,
    run_module,
    start_broker,
    start_gateway,
    wait_until,
    workers,
)

__all__ = [
    "HANDLERS",
    "REPO",
    "TEMPLATE",
    "TEST_BROKER_ENV",
    "BrokerProcess",
    "GatewayProcess",
    "ServiceProcess",
    "WorkerdProcess",
    "drop_database",
    "free_port",
    "job_count",
    "lease_one",
    "new_database",
    "run_module",
    "start_broker",
    "start_gateway",
    "wait_until",
    "workers",
]
