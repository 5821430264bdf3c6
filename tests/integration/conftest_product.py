"""Pytest fixture ``product`` (loaded by the project conftest through ``pytest_plugins``): the
product's services in process on a Platform of real AKS and Kubernetes adapters over the emulator
(real step runner; runs, queue, state and alerts in memory). ``product("seed-pdb", policy)``
starts the emulator with that seed and returns (emulator, InProcessProduct).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes import FakePlatform
from upgrade.adapters.aks import aks_from_settings
from upgrade.adapters.kube import kube_from_kubeconfig
from upgrade.domain.model import ClusterRef
from upgrade.domain.policy import parse_policy
from upgrade.services.step_runner import run_step_message
from upgrade.settings import load_settings


class InProcessProduct:
    """The product's services on a Platform of real AKS and Kubernetes adapters over the emulator."""

    def __init__(self, emu, cluster, policy: dict, workdir: Path) -> None:
        self.ref = ClusterRef.parse(cluster.arm_id)
        settings = load_settings({"ALLOWED_CLUSTERS": cluster.arm_id, "ARM_ENDPOINT": emu.arm_url,
                                  "ARM_DEV_TOKEN": emu.token})
        kubeconfig = workdir / f"{cluster.name}.yaml"
        emu.write_kubeconfig(cluster.arm_id, kubeconfig)
        self.kube = kube_from_kubeconfig(str(kubeconfig))
        self.aks = aks_from_settings(settings, self.ref.subscription_id)
        self.platform = FakePlatform(
            kubes={cluster.arm_id: self.kube}, aks_by_subscription={self.ref.subscription_id: self.aks},
            policy=parse_policy(json.dumps(policy), [cluster.arm_id]),
        )

    def close(self) -> None:
        self.kube.close()
        self.aks.close()

    def deliver(self, until: Callable[[], bool], limit: int = 2000) -> None:
        """Deliver queued step messages (a delay advances the fake clock and waits a little for the
        emulator) until ``until()`` holds or nothing is queued."""
        for _ in range(limit):
            if until():
                return
            sent = self.platform.queue.take()
            if not sent:
                return
            for message in sent:
                if message.delay_seconds:
                    self.platform.clock.advance(message.delay_seconds)
                    time.sleep(0.02)
                run_step_message(message.message.to_json(), self.platform, message_id=str(uuid.uuid4()))
        raise AssertionError("the run did not settle")

    def run(self, run_id: str):
        return self.platform.runs.get(run_id)


@pytest.fixture
def product(emulator):
    started = []
    with tempfile.TemporaryDirectory() as workdir:
        def start(seed: str, policy: dict | None = None):
            emu = emulator(seed)
            (cluster,) = emu.clusters()
            started.append(InProcessProduct(emu, cluster, {"defaults": {"pollSeconds": 1, **(policy or {})}},
                                            Path(workdir)))
            return emu, started[-1]

        yield start
        for running in started:
            running.close()
