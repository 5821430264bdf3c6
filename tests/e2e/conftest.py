"""E2E fixtures: function_app on the dev host, over its own Azurite, optionally with the AKS emulator.

The e2e Azurite is separate from the integration tests' one: a running host polls the step
queue, and must never take messages an adapter test is looking for. The host polls fast and
retries at once (``E2E_QUEUE_OVERRIDES``), so a five-delivery poison path takes seconds; every
other queue setting is host.json's.

``devhost`` is a ready host without an emulator; ``start_devhost(emulator=...)`` starts one for an
``Emulator`` the test built (its clusters, ARM URL, token and kubeconfigs become app settings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.alerts_receiver import AlertsReceiver
from sandbox.app_settings import sandbox_app_settings
from sandbox.azurite import Azurite
from sandbox.devhost_process import DevHostProcess
from tests.integration.conftest_storage import wipe_storage

# The host's output goes to this logger, so a failing test's report shows what the host did.
host_log = logging.getLogger("devhost")
E2E_QUEUE_OVERRIDES = {"maxPollingInterval": 0.2, "visibilityTimeout": 0}


@pytest.fixture(scope="session")
def e2e_azurite() -> Iterator[Azurite]:
    with Azurite() as storage:
        yield storage


@pytest.fixture(scope="module")
def start_devhost(e2e_azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DevHostProcess]]:
    """Factory: ``start_devhost(emulator=None, **extra_settings)`` -> a started host over emptied storage.

    One host at a time: starting another stops the previous one (two hosts would compete for the
    same queue messages). The last one is stopped after the module.
    """
    started: list[DevHostProcess] = []

    def start(*, emulator: Any = None, queue_overrides: dict | None = None, **extra_settings: str) -> DevHostProcess:
        while started:
            started.pop().stop()
        wipe_storage(e2e_azurite.connection_string)
        settings = sandbox_app_settings(
            storage_connection=e2e_azurite.connection_string, emulator=emulator,
            kubeconfig_dir=Path(tmp_path_factory.mktemp("kubeconfigs")),
        )
        host = DevHostProcess(app_settings={**settings, **extra_settings},
                              queue_overrides=queue_overrides or E2E_QUEUE_OVERRIDES, on_log_line=host_log.info)
        started.append(host.start())
        return host

    yield start
    while started:
        started.pop().stop()


@pytest.fixture
def alerts_receiver() -> Iterator[AlertsReceiver]:
    """The alerts topic's stand-in: what the app published reaches it as CloudEvents."""
    with AlertsReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def devhost(start_devhost: Callable[..., DevHostProcess]) -> DevHostProcess:
    return start_devhost()


def wait_until(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fails the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
