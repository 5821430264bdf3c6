"""The emulator's Kubernetes API as real kubectl sees it, through a kubeconfig like AKS writes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandbox.aks_emulator.clock import ScaledClock
from sandbox.aks_emulator.kube import KubeCluster
from sandbox.aks_emulator.kube_api import KubeApiServer

KUBECTL = Path(sys.executable).parent / "kubectl"
TOKEN = "kubectl-test-token"
POOL = "nodepool1"


def node_name(index: int) -> str:
    return f"aks-{POOL}-12345678-vmss{index:06d}"


@pytest.fixture
def cluster() -> KubeCluster:
    """GIVEN Scenario 2's start: node 0 runs A (PDB minAvailable 1) and B, node 1 runs C and D
    (C with emptyDir data), a third node has room; kube-proxy runs everywhere."""
    kube = KubeCluster(ScaledClock(0.05), "cluster1")
    for index in range(3):
        kube.add_node(node_name(index), pool=POOL, kubernetes_version="1.30.0")
    kube.add_daemonset("kube-system", "kube-proxy")
    kube.add_deployment("default", "a", replicas=1, place_on=[node_name(0)])
    kube.add_deployment("default", "b", replicas=1, place_on=[node_name(0)])
    kube.add_deployment("default", "c", replicas=1, place_on=[node_name(1)], empty_dir=True)
    kube.add_deployment("default", "d", replicas=1, place_on=[node_name(1)])
    kube.add_pdb("default", "a", selector={"app": "a"}, min_available=1)
    return kube


@pytest.fixture
def kubectl(cluster: KubeCluster, tmp_path: Path) -> Iterator:
    with KubeApiServer(cluster, TOKEN) as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(server.kubeconfig()))
        # kubectl caches discovery under $HOME/.kube; keep it inside the test's folder.
        environment = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}

        def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
            return subprocess.run([str(KUBECTL), *args], env=environment, capture_output=True, text=True,
                                  timeout=timeout, check=False)

        yield run


def app_nodes(cluster: KubeCluster, app: str) -> list[str]:
    return sorted(p["spec"]["nodeName"] for p in cluster.pods()
                  if p["metadata"]["labels"].get("app") == app and not p["metadata"].get("deletionTimestamp"))


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_get_nodes_shows_status_roles_age_version(kubectl):
    result = kubectl("get", "nodes")
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [row[0] for row in rows[1:]] == [node_name(0), node_name(1), node_name(2)]
    assert all(row[1] == "Ready" and row[4] == "v1.30.0" for row in rows[1:])


def test_get_pods_all_namespaces_wide_shows_the_node(kubectl, cluster: KubeCluster):
    result = kubectl("get", "pods", "-A", "-o", "wide")
    assert result.returncode == 0, result.stderr
    header, *rows = table(result.stdout)
    assert header[:2] == ["NAMESPACE", "NAME"] and "NODE" in header
    node_column = header.index("NODE")
    shown = {row[1]: row[node_column] for row in rows}
    assert shown == {p["metadata"]["name"]: p["spec"]["nodeName"] for p in cluster.pods()}
    assert len(rows) == 3 + 4


def test_cordon_and_uncordon(kubectl, cluster: KubeCluster):
    cordoned = kubectl("cordon", node_name(2))
    assert cordoned.returncode == 0, cordoned.stderr
    assert cordoned.stdout.strip() == f"node/{node_name(2)} cordoned"
    status = {row[0]: row[1] for row in table(kubectl("get", "nodes").stdout)[1:]}
    assert status[node_name(2)] == "Ready,SchedulingDisabled"
    assert cluster.get_node(node_name(2))["spec"]["unschedulable"] is True
    uncordoned = kubectl("uncordon", node_name(2))
    assert uncordoned.returncode == 0, uncordoned.stderr
    assert "unschedulable" not in cluster.get_node(node_name(2))["spec"]


def test_label_and_select_nodes(kubectl):
    assert kubectl("label", "node", node_name(1), "kubernetes.azure.com/upgrade-status=Quarantined").returncode == 0
    selected = kubectl("get", "nodes", "-l", "kubernetes.azure.com/upgrade-status=Quarantined", "-o", "name")
    assert selected.stdout.split() == [f"node/{node_name(1)}"]
    assert kubectl("label", "node", node_name(1), "kubernetes.azure.com/upgrade-status-").returncode == 0
    assert kubectl("get", "nodes", "-l", "kubernetes.azure.com/upgrade-status", "-o", "name").stdout == ""


def test_drain_moves_pods_off_the_node(kubectl, cluster: KubeCluster):
    # WHEN node 1 is drained the way operators do it
    result = kubectl("drain", node_name(1), "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
    # THEN kubectl reports success, C and D run elsewhere, only the DaemonSet pod stays
    assert result.returncode == 0, result.stderr
    assert f"node/{node_name(1)} drained" in result.stdout
    assert cluster.get_node(node_name(1))["spec"]["unschedulable"] is True
    assert [p["metadata"]["labels"]["app"] for p in cluster.pods_on_node(node_name(1))] == ["kube-proxy"]
    assert app_nodes(cluster, "c") != [node_name(1)] and app_nodes(cluster, "d") != [node_name(1)]


def test_drain_without_delete_emptydir_data_is_refused(kubectl, cluster: KubeCluster):
    result = kubectl("drain", node_name(1), "--ignore-daemonsets", "--timeout=10s")
    assert result.returncode != 0
    assert "emptyDir" in result.stderr or "local storage" in result.stderr
    assert app_nodes(cluster, "c") == [node_name(1)]


def test_drain_is_refused_by_the_pdb_like_a_real_cluster(kubectl, cluster: KubeCluster):
    # WHEN node 0 (pod A under a PDB with minAvailable 1) is drained with a short timeout
    result = kubectl("drain", node_name(0), "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s")
    # THEN kubectl hears Kubernetes' 429 message, retries, gives up non-zero; A stays, B moved
    assert result.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in result.stderr
    assert "will retry after 5s" in result.stderr
    assert app_nodes(cluster, "a") == [node_name(0)]
    assert app_nodes(cluster, "b") != [node_name(0)]
    assert cluster.get_node(node_name(0))["spec"]["unschedulable"] is True


def test_delete_pod_waits_for_it_and_the_replicaset_replaces_it(kubectl, cluster: KubeCluster):
    victim = next(p["metadata"]["name"] for p in cluster.pods() if p["metadata"]["labels"]["app"] == "d")
    result = kubectl("delete", "pod", victim, "--timeout=30s")
    assert result.returncode == 0, result.stderr
    assert cluster.get_pod("default", victim) is None
    assert len(app_nodes(cluster, "d")) == 1


def test_describe_node_and_get_pdb(kubectl):
    described = kubectl("describe", "node", node_name(0))
    assert described.returncode == 0, described.stderr
    assert "RegisteredNode" in described.stdout and "Non-terminated Pods:" in described.stdout
    pdbs = table(kubectl("get", "pdb", "-A").stdout)
    assert pdbs[0] == ["NAMESPACE", "NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS",
                       "AGE"]
    assert pdbs[1][:5] == ["default", "a", "1", "N/A", "0"]
