"""`RealKube`, the emulator's AKS half on a real API server, call by call (the scenarios in
``test_seed_scenarios.py`` play it end to end)."""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.kube import DisruptionBlocked, PodNotFound
from sandbox.k8s.aks_backend import RealKube
from tests.realk8s.conftest import RealCluster


def test_real_backend_nodes_patches_and_a_pdb_refusal(real_cluster: RealCluster) -> None:
    backend = RealKube(real_cluster.cp)
    name = f"aks-{real_cluster.pool}-00000001-vmss000000"
    try:
        # GIVEN a node AKS adds, labelled as AKS labels it and Ready in kwok
        backend.add_node(name, pool=real_cluster.pool, kubernetes_version="1.30.0", zone="eastus-2",
                         node_image_version="AKSUbuntu-2204gen2containerd-202611.01.0")
        node = backend.get_node(name)
        assert node is not None and [n["metadata"]["name"] for n in backend.nodes(real_cluster.pool)] == [name]
        assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "eastus-2"
        # WHEN it is cordoned, labelled and reimaged; THEN the real node says so (and kwok keeps the version)
        backend.set_unschedulable(name, True)
        backend.set_node_label(name, "kubernetes.azure.com/upgrade-status", "Quarantined")
        backend.set_node_version(name, "1.31.7")
        backend.set_node_image(name, "AKSUbuntu-2204gen2containerd-202612.05.0")
        node = real_cluster.get(f"/api/v1/nodes/{name}")
        assert node["spec"]["unschedulable"] is True
        assert node["metadata"]["labels"]["kubernetes.azure.com/upgrade-status"] == "Quarantined"
        assert node["metadata"]["labels"]["kubernetes.azure.com/node-image-version"].endswith("202612.05.0")
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.7"
        backend.set_unschedulable(name, False)
        backend.set_node_label(name, "kubernetes.azure.com/upgrade-status", None)
        node = real_cluster.get(f"/api/v1/nodes/{name}")
        assert not node["spec"].get("unschedulable")
        assert "kubernetes.azure.com/upgrade-status" not in node["metadata"]["labels"]

        # GIVEN a single replica on it whose PDB allows no disruption
        real_cluster.deployment("solo")
        real_cluster.pdb("solo-pdb", {"matchLabels": {"app": "solo"}}, min_available=1, expected_allowed=0)
        pod = real_cluster.pods("app=solo")[0]["metadata"]["name"]
        assert pod in [p["metadata"]["name"] for p in backend.pods_on_node(name)]
        # WHEN AKS's drain evicts it; THEN the real 429 is the model's DisruptionBlocked naming the PDB
        with pytest.raises(DisruptionBlocked) as refused:
            backend.evict(real_cluster.namespace, pod)
        assert refused.value.pdb == f"{real_cluster.namespace}/solo-pdb"
        assert "solo-pdb" in refused.value.cause and refused.value.unready_pods == 0
        with pytest.raises(PodNotFound):
            backend.evict(real_cluster.namespace, "no-such-pod")

        # WHEN AKS deletes the VM; THEN the node and its pods are gone
        backend.remove_node(name)
        assert backend.get_node(name) is None
        assert backend.pods_on_node(name) == []
    finally:
        backend.cleanup()
