"""The seed scenarios in real-Kubernetes mode, end to end: function_app on the dev host, the AKS
emulator's ARM half, and the session's real control plane holding the cluster's nodes and workloads.

The emulator's upgrader (surge, cordon, drain, Cordon quarantine, pools created and deleted) drives
the real API server through ``sandbox.k8s.aks_backend.RealKube``: kwok nodes created and deleted,
evictions refused by a real PDB through the real eviction API and the real disruption controller.
The product reads and acts on the same API server as the app identity (the infra ClusterRole only).
Each test plays one of the demo's scenarios (``sandbox.demo``), whose own checks fail it when the
cluster, the run, or the alerts miss the seed's promised state; the scenario's nodes and workloads
are deleted afterwards, so the next one starts clean.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sandbox import demo
from sandbox.k8s.aks_backend import RealKube
from sandbox.k8s.controlplane import ControlPlane
from sandbox.up import Sandbox

SCENARIOS = [s for s in demo.SCENARIOS if s.name.startswith("Scenario")]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name.split(":")[0].replace(" ", "")
                         + ("-rollback" if "rollback" in s.name else "-commit" if "commit" in s.name else ""))
def test_seed_scenario_on_real_kubernetes(control_plane: ControlPlane, scenario: demo.Scenario) -> None:
    backends: list[RealKube] = []

    def real_backend(cluster_name: str) -> RealKube:
        backends.append(RealKube(control_plane))
        return backends[-1]

    console = Console(width=140, record=True, file=io.StringIO())  # recorded (a quiet console records nothing)
    with Sandbox(seeds=[scenario.cluster.builder()], time_scale=demo.DEMO_REAL_TIME_SCALE,
                 queue_overrides=demo.DEMO_QUEUE_OVERRIDES, forward_host_logs=False,
                 policy=demo.upgrade_policy([scenario.cluster]), real_kubernetes=real_backend) as sandbox:
        cluster = sandbox.clusters[scenario.cluster.name]
        # GIVEN the cluster's nodes are the real API server's, and its kubeconfig points there
        assert cluster.real_kubernetes and cluster.kube_url == control_plane.server
        seeded = {n["metadata"]["name"] for n in backends[0].nodes()}
        assert all(name in seeded for pool in cluster.pools for name in
                   (n["metadata"]["name"] for n in backends[0].nodes(pool)))
        # WHEN the scenario plays; THEN it reaches the seed's promised state (DemoFailed otherwise)
        try:
            scenario.play(demo.DemoContext(sandbox, console, scenario.cluster.name))
        except demo.DemoFailed as failed:
            shown = "\n".join(console.export_text().splitlines()[-120:])
            pytest.fail(f"{failed}\n--- what the scenario showed, last lines ---\n{shown}")
        # AND the emulator's model of the cluster was never used: every node lives on the real server
        assert cluster.kube.nodes() == []
