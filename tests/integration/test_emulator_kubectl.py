"""The emulator's Kubernetes API as real kubectl sees it, through the kubeconfig the emulator writes
(`Emulator.write_kubeconfig`, or `--kubeconfig` of the standalone emulator), as `az aks get-credentials`
would write it for a real cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.aks_emulator.kube import KubeCluster
from sandbox.aks_emulator.scenarios import ClusterBuilder

pytestmark = pytest.mark.integration

KUBECTL = Path(sys.executable).parent / "kubectl"
REPO_ROOT = Path(__file__).resolve().parents[2]
POOL = "nodepool1"
QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"


def kubectl_runner(kubeconfig: Path, home: Path) -> Callable[..., subprocess.CompletedProcess]:
    # kubectl caches discovery under $HOME/.kube; keep it inside the test's folder.
    environment = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(KUBECTL), *args], env=environment, capture_output=True, text=True,
                              timeout=timeout, check=False)

    return run


def three_node_cluster() -> ClusterBuilder:
    """Node 0 runs A (PDB minAvailable 1) and B, node 1 runs C (emptyDir data) and D, node 2 has room;
    kube-proxy runs everywhere."""
    return (
        ClusterBuilder("aks-kubectl")
        .pool(POOL, count=3)
        .daemonset("kube-system", "kube-proxy")
        .deployment("default", "a", place_on=[(POOL, 0)])
        .deployment("default", "b", place_on=[(POOL, 0)])
        .deployment("default", "c", place_on=[(POOL, 1)], empty_dir=True)
        .deployment("default", "d", place_on=[(POOL, 1)])
        .pdb("default", "a", app="a", min_available=1)
    )


@pytest.fixture
def emulated(emulator):
    """GIVEN the three-node cluster in a running emulator."""
    emu = emulator(three_node_cluster())
    return emu, emu.clusters()[0]


@pytest.fixture
def cluster(emulated) -> KubeCluster:
    return emulated[1].kube


@pytest.fixture
def kubectl(emulated, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    emu, emulated_cluster = emulated
    kubeconfig = tmp_path / "kubeconfig"
    emu.write_kubeconfig(emulated_cluster.arm_id, kubeconfig)
    return kubectl_runner(kubeconfig, tmp_path)


@pytest.fixture
def nodes(cluster: KubeCluster) -> list[str]:
    """The pool's nodes by name: node 0, node 1, node 2."""
    return sorted(n["metadata"]["name"] for n in cluster.nodes(POOL))


def app_nodes(cluster: KubeCluster, app: str) -> list[str]:
    return sorted(p["spec"]["nodeName"] for p in cluster.pods()
                  if p["metadata"]["labels"].get("app") == app and not p["metadata"].get("deletionTimestamp"))


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_get_nodes_shows_status_roles_age_version(kubectl, nodes):
    result = kubectl("get", "nodes")
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [row[0] for row in rows[1:]] == nodes
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


def test_cordon_and_uncordon(kubectl, cluster: KubeCluster, nodes):
    spare = nodes[2]
    cordoned = kubectl("cordon", spare)
    assert cordoned.returncode == 0, cordoned.stderr
    assert cordoned.stdout.strip() == f"node/{spare} cordoned"
    status = {row[0]: row[1] for row in table(kubectl("get", "nodes").stdout)[1:]}
    assert status[spare] == "Ready,SchedulingDisabled"
    assert cluster.get_node(spare)["spec"]["unschedulable"] is True
    uncordoned = kubectl("uncordon", spare)
    assert uncordoned.returncode == 0, uncordoned.stderr
    assert "unschedulable" not in cluster.get_node(spare)["spec"]


def test_label_and_select_nodes(kubectl, nodes):
    assert kubectl("label", "node", nodes[1], f"{QUARANTINE_LABEL}=Quarantined").returncode == 0
    selected = kubectl("get", "nodes", "-l", f"{QUARANTINE_LABEL}=Quarantined", "-o", "name")
    assert selected.stdout.split() == [f"node/{nodes[1]}"]
    assert kubectl("label", "node", nodes[1], f"{QUARANTINE_LABEL}-").returncode == 0
    assert kubectl("get", "nodes", "-l", QUARANTINE_LABEL, "-o", "name").stdout == ""


def test_drain_moves_pods_off_the_node(kubectl, cluster: KubeCluster, nodes):
    # WHEN node 1 is drained the way operators do it
    result = kubectl("drain", nodes[1], "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
    # THEN kubectl reports success, C and D run elsewhere, only the DaemonSet pod stays
    assert result.returncode == 0, result.stderr
    assert f"node/{nodes[1]} drained" in result.stdout
    assert cluster.get_node(nodes[1])["spec"]["unschedulable"] is True
    assert [p["metadata"]["labels"]["app"] for p in cluster.pods_on_node(nodes[1])] == ["kube-proxy"]
    assert nodes[1] not in app_nodes(cluster, "c") + app_nodes(cluster, "d")


def test_drain_without_delete_emptydir_data_is_refused(kubectl, cluster: KubeCluster, nodes):
    result = kubectl("drain", nodes[1], "--ignore-daemonsets", "--timeout=10s")
    assert result.returncode != 0
    assert "emptyDir" in result.stderr or "local storage" in result.stderr
    assert app_nodes(cluster, "c") == [nodes[1]]


def test_drain_is_refused_by_the_pdb_like_a_real_cluster(kubectl, cluster: KubeCluster, nodes):
    # WHEN node 0 (pod A under a PDB with minAvailable 1) is drained with a short timeout
    result = kubectl("drain", nodes[0], "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s")
    # THEN kubectl hears Kubernetes' 429 message, retries, gives up non-zero; A stays, B moved
    assert result.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in result.stderr
    assert "will retry after 5s" in result.stderr
    assert app_nodes(cluster, "a") == [nodes[0]]
    assert app_nodes(cluster, "b") != [nodes[0]]
    assert cluster.get_node(nodes[0])["spec"]["unschedulable"] is True


def test_delete_pod_waits_for_it_and_the_replicaset_replaces_it(kubectl, cluster: KubeCluster):
    victim = next(p["metadata"]["name"] for p in cluster.pods() if p["metadata"]["labels"]["app"] == "d")
    result = kubectl("delete", "pod", victim, "--timeout=30s")
    assert result.returncode == 0, result.stderr
    assert cluster.get_pod("default", victim) is None
    assert len(app_nodes(cluster, "d")) == 1


def test_describe_node_and_get_pdb(kubectl, nodes):
    described = kubectl("describe", "node", nodes[0])
    assert described.returncode == 0, described.stderr
    assert "RegisteredNode" in described.stdout and "Non-terminated Pods:" in described.stdout
    pdbs = table(kubectl("get", "pdb", "-A").stdout)
    assert pdbs[0] == ["NAMESPACE", "NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS",
                       "AGE"]
    assert pdbs[1][:5] == ["default", "a", "1", "N/A", "0"]


def test_after_scenario_2_upgrade_drain_of_the_quarantined_node_is_refused_by_the_pdb(
        emulator, aks_client, tmp_path):
    # GIVEN Scenario 2 after a real upgrade through the SDK: node 1 quarantined with pod A
    from azure.core.exceptions import HttpResponseError

    emu = emulator("seed-pdb")
    emulated_cluster = emu.clusters()[0]
    aks = aks_client(emu)
    sdk_pool = aks.agent_pools.get(emulated_cluster.resource_group, emulated_cluster.name, POOL)
    sdk_pool.properties.orchestrator_version = "1.31"
    with pytest.raises(HttpResponseError):
        aks.agent_pools.begin_create_or_update(emulated_cluster.resource_group, emulated_cluster.name, POOL,
                                               sdk_pool).result()
    kubeconfig = tmp_path / "kubeconfig"
    emu.write_kubeconfig(emulated_cluster.arm_id, kubeconfig)
    kubectl = kubectl_runner(kubeconfig, tmp_path)
    quarantined = kubectl("get", "nodes", "-l", f"{QUARANTINE_LABEL}=Quarantined", "-o", "name").stdout.split()
    assert len(quarantined) == 1
    node_1 = quarantined[0].removeprefix("node/")
    assert app_nodes(emulated_cluster.kube, "app-a") == [node_1]

    # WHEN the operator drains node 1 with kubectl, as AKS's docs suggest before deleting it
    result = kubectl("drain", node_1, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s")

    # THEN the PDB refuses it exactly as on a real cluster, and pod A stays on node 1
    assert result.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in result.stderr
    assert "will retry after 5s" in result.stderr
    assert app_nodes(emulated_cluster.kube, "app-a") == [node_1]


def test_standalone_emulator_writes_a_kubeconfig_kubectl_uses(tmp_path):
    # GIVEN the standalone emulator with Scenario 2, writing its kubeconfig where told
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.aks_emulator", "--scenario", "seed-pdb", "--kubeconfig", str(kubeconfig),
         "--time-scale", "0.05"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["kubeconfig"] == str(kubeconfig)

        # WHEN kubectl reads it
        result = kubectl_runner(kubeconfig, tmp_path)("get", "nodes", "-l", f"agentpool={POOL}", "-o", "name")

        # THEN it reaches the scenario's cluster: the two nodes of nodepool1
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.split()) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process.stdout.close()
        process.stderr.close()


def test_create_and_apply_validate_against_the_served_openapi(kubectl, tmp_path):
    # GIVEN a PDB manifest, and kubectl's default --validate=strict (no --validate=false)
    manifest = tmp_path / "pdb.yaml"
    manifest.write_text("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\n"
                        "spec:\n  maxUnavailable: 1\n  selector:\n    matchLabels: {app: b}\n")
    # WHEN it is created, then applied THEN both succeed, validated with the server's OpenAPI
    created = kubectl("create", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "poddisruptionbudget.policy/web created"
    applied = kubectl("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    # AND a field the schema does not know is refused, as the real API server refuses it
    manifest.write_text(manifest.read_text().replace("  maxUnavailable: 1", "  maxUnavailable: 1\n  maxUnavaliable: 2"))
    typo = kubectl("apply", "-f", str(manifest))
    assert typo.returncode != 0
    assert 'unknown field "spec.maxUnavaliable"' in typo.stderr
