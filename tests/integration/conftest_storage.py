"""Pytest plugin: one in-memory Azurite for the whole session, and clean storage per test.

Loaded for every test level by tests/conftest.py (``pytest_plugins``). Azurite starts only
when a test asks for it, so unit test runs never pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.azurite import Azurite
from upgrade.settings import Settings, load_settings

TEST_CLUSTER = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-aks"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as storage:
        yield storage


def storage_settings(connection: str, **environ: str) -> Settings:
    """App settings pointing the adapters at ``connection`` (Azurite)."""
    return load_settings({"AzureWebJobsStorage": connection, "ALLOWED_CLUSTERS": TEST_CLUSTER, **environ})


def wipe_storage(connection: str) -> None:
    """Delete every queue and table, so a test starts from what a new storage account holds."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    with QueueServiceClient.from_connection_string(connection) as queues:
        for queue in queues.list_queues():
            queues.delete_queue(queue.name)
    with TableServiceClient.from_connection_string(connection) as tables:
        for table in tables.list_tables():
            tables.delete_table(table.name)


@pytest.fixture
def clean_storage(azurite: Azurite) -> Settings:
    """Settings for an emptied Azurite (no queues, no tables)."""
    wipe_storage(azurite.connection_string)
    return storage_settings(azurite.connection_string)
