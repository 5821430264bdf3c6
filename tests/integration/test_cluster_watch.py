"""sandbox.tables.ClusterWatch over the emulator's Kubernetes API: a rolling upgrade with surge is
seen as the seed's Scenario 1 table lists it, step by step, however fast emulated time runs."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from sandbox.tables import ClusterWatch, read_cluster
from upgrade.adapters.arm_schema import STABLE_API_VERSION

POOL = "nodepool1"


def upgrade_pool(emu, cluster_id: str, version: str) -> None:
    url = f"{emu.arm_url}{cluster_id}/agentPools/{POOL}?api-version={STABLE_API_VERSION}"
    headers = {"Authorization": f"Bearer {emu.token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        body = json.loads(response.read())
    body["properties"]["orchestratorVersion"] = version
    urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                                  method="PUT"), timeout=30).close()


def test_a_rolling_upgrade_with_surge_is_seen_step_by_step_as_the_seed_lists_it(emulator, tmp_path: Path):
    # GIVEN the seed-rolling cluster (2 nodes at 1.30, maxSurge 1) and a watch on it
    emu = emulator("seed-rolling", time_scale=0.05)
    cluster = emu.clusters()[0]
    kubeconfig = tmp_path / "kubeconfig"
    emu.write_kubeconfig(cluster.arm_id, kubeconfig)
    before = read_cluster(str(kubeconfig))
    node1, node2 = (row.name for row in before.nodes)
    steps: list[tuple[str, object]] = []
    with ClusterWatch(str(kubeconfig)) as watch:
        # WHEN AKS upgrades the pool to 1.31
        upgrade_pool(emu, cluster.arm_id, "1.31.8")
        assert emu.wait_idle(timeout=60)
        steps += watch.steps(wait=True)
        errors = watch.errors
    said = [what for what, _ in steps]
    # THEN the steps are the seed's: a surge node, each node cordoned, drained, reimaged and
    # uncordoned in turn, then the surge node drained and deleted
    surge = said[0].split()[0]
    assert said[0] == f"{surge} created (1.31.8)", said
    for name in (node1, node2):
        short = name.rsplit("-", 1)[-1]
        assert said.index(f"{short} cordoned") < said.index(f"{short} reimaged to 1.31.8") \
            < said.index(f"{short} uncordoned"), said
    assert said.index(f"{node1.rsplit('-', 1)[-1]} uncordoned") < said.index(f"{node2.rsplit('-', 1)[-1]} cordoned")
    assert said[-1].endswith(f"{surge} deleted"), said
    # and every step holds A-D exactly once, Ready; the last equals the cluster as listed afterwards
    assert all(sorted(pod.app for pod in view.pods) == ["A", "B", "C", "D"] for _, view in steps)
    after = read_cluster(str(kubeconfig))
    assert steps[-1][1].nodes == after.nodes
    assert [(row.version, row.status) for row in after.nodes] == [("1.31.8", "Ready")] * 2
    assert errors == []
