"""The drain engine and the drain CLI against the emulator, through KubernetesKube."""

from __future__ import annotations

import time

import pytest

from upgrade.adapters.kube import kube_from_kubeconfig
from upgrade.cli import main
from upgrade.domain.drain import DrainOptions, DrainStatus, PodDrainState
from upgrade.services.drain import drain_node, drain_node_step

pytestmark = pytest.mark.integration

IGNORE_DS = DrainOptions(ignore_daemonsets=True)


def _builder(*, with_local_pods: bool = False):
    from sandbox.aks_emulator.scenarios import ClusterBuilder

    builder = (
        ClusterBuilder("aks-drain")
        .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
        .pool("work", count=2)
        .daemonset("kube-system", "kube-proxy")
        .deployment("apps", "web", replicas=2, pool="work", place_on=[("work", 0), ("work", 0)], grace_seconds=5)
        .deployment("apps", "db", replicas=1, pool="work", place_on=[("work", 0)])
        .pdb("apps", "db-pdb", app="db", min_available=1)
    )
    if with_local_pods:
        builder.pod("apps", "bare", on=("work", 0)).pod(
            "apps", "cache", on=("work", 0), empty_dir=True, owner_kind="ReplicaSet"
        )
    return builder


def _allow_one_disruption(kube) -> None:
    """Relax the db PDB and wait for the disruption controller to count the allowance."""
    spec = kube.get_pdb_manifest("apps", "db-pdb")
    kube.patch_pdb_spec("apps", "db-pdb", {"selector": spec.spec["selector"], "maxUnavailable": 1})
    deadline = time.monotonic() + 5
    while kube.list_pdbs(namespace="apps")[0].disruptions_allowed < 1:
        assert time.monotonic() < deadline, "PDB status never allowed a disruption"
        time.sleep(0.02)


@pytest.fixture
def drain_cluster(emulator, tmp_path):
    def build(**kwargs):
        emu = emulator(_builder(**kwargs))
        (cluster,) = emu.clusters()
        path = tmp_path / "kubeconfig"
        emu.write_kubeconfig(cluster.arm_id, path)
        kube = kube_from_kubeconfig(str(path))
        node = sorted(n.name for n in kube.list_nodes(label_selector="agentpool=work"))[0]
        built.append(kube)
        return emu, kube, node, path

    built = []
    yield build
    for kube in built:
        kube.close()


def test_pdb_blocks_with_429_then_the_drain_succeeds_once_the_pdb_allows(drain_cluster):
    _, kube, node, _ = drain_cluster()
    db = kube.list_pods(namespace="apps", label_selector="app=db")[0]
    # WHEN one pass runs on the node holding the PDB's only pod
    progress = drain_node_step(kube, node, IGNORE_DS)
    # THEN the other pods are evicted and the db pod is blocked, naming its PDB
    assert progress.status is DrainStatus.BLOCKED
    (blocked,) = progress.blocked
    assert (blocked.name, blocked.pdb, blocked.disruptions_allowed) == (db.name, "apps/db-pdb", 0)
    assert "disruption budget" in blocked.reason
    assert kube.get_node(node).unschedulable
    # WHEN the budget allows one disruption and the drain runs to completion
    _allow_one_disruption(kube)
    result = drain_node(kube, node, IGNORE_DS)
    # THEN the node is drained and the db pod was recreated on the other node, with a new UID
    assert result.status is DrainStatus.DRAINED
    assert {p.owner_kind for p in kube.list_pods(node=node)} == {"DaemonSet"}
    (new_db,) = kube.list_pods(namespace="apps", label_selector="app=db")
    assert new_db.uid != db.uid and new_db.node not in (node, None)
    web = kube.list_pods(namespace="apps", label_selector="app=web")
    assert len(web) == 2 and all(p.node != node for p in web)


def test_timeout_is_reported_with_the_blocking_pdb_named(drain_cluster):
    _, kube, node, _ = drain_cluster()
    result = drain_node(kube, node, DrainOptions(ignore_daemonsets=True, timeout_seconds=1.5))
    assert result.status is DrainStatus.TIMED_OUT
    assert [p.pdb for p in result.blocked] == ["apps/db-pdb"]
    assert "blocked by PDB apps/db-pdb (disruptionsAllowed=0)" in result.summary()


def test_a_pod_under_two_pdbs_fails_the_drain_at_once(drain_cluster):
    # GIVEN the db pod covered by a second PDB too: the eviction API answers 500 for it
    emu, kube, node, _ = drain_cluster()
    (cluster,) = emu.clusters()
    cluster.kube.add_pdb("apps", "db-pdb-2", selector={"app": "db"}, max_unavailable=1)
    # WHEN the node is drained with an hour's timeout
    result = drain_node(kube, node, DrainOptions(ignore_daemonsets=True, timeout_seconds=3600))
    # THEN the drain fails at once, as kubectl drain does, instead of retrying until the timeout
    assert result.status is DrainStatus.FAILED
    (failed,) = [p for p in result.pods if p.state is PodDrainState.FAILED]
    assert failed.name.startswith("db") and "more than one PodDisruptionBudget" in failed.reason


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        (IGNORE_DS, {"bare", "cache"}),
        (DrainOptions(ignore_daemonsets=True, force=True), {"cache"}),
        (DrainOptions(ignore_daemonsets=True, delete_emptydir_data=True), {"bare"}),
        (DrainOptions(), {"kube-proxy", "bare", "cache"}),
    ],
)
def test_empty_dir_unmanaged_and_daemonset_pods_are_refused_without_the_options(drain_cluster, options, refused):
    emu, kube, node, _ = drain_cluster(with_local_pods=True)
    emu.faults.reset_counts()
    progress = drain_node_step(kube, node, options)
    assert progress.status is DrainStatus.REFUSED
    names = {"kube-proxy" if p.name.startswith("kube-proxy") else p.name
             for p in progress.pods if p.state is PodDrainState.REFUSED}
    assert names == refused
    assert not [k for k in emu.faults.counts("kube") if k.endswith("/eviction")]


def test_with_every_option_the_local_pods_go_too(drain_cluster):
    _, kube, node, _ = drain_cluster(with_local_pods=True)
    _allow_one_disruption(kube)
    options = DrainOptions(ignore_daemonsets=True, delete_emptydir_data=True, force=True)
    result = drain_node(kube, node, options)
    assert result.status is DrainStatus.DRAINED
    names = {p.name for p in kube.list_pods(namespace="apps")}
    assert "bare" not in names  # unmanaged: gone for good


def test_injected_eviction_faults_are_retried_until_drained(drain_cluster):
    emu, kube, node, _ = drain_cluster()
    _allow_one_disruption(kube)
    emu.faults.add("kube", "POST */pods/{name}/eviction", rate_500=0.3, rate_503=0.2)
    result = drain_node(kube, node, IGNORE_DS)
    assert result.status is DrainStatus.DRAINED


def test_cli_drains_and_exits_zero(drain_cluster, capsys):
    _, kube, node, path = drain_cluster()
    _allow_one_disruption(kube)
    code = main(["drain", "--kubeconfig", str(path), node, "--ignore-daemonsets", "--timeout", "1m"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"node {node} drained" in out


def test_cli_exits_one_naming_the_blocking_pdb(drain_cluster, capsys):
    _, _, node, path = drain_cluster()
    code = main(["drain", "--kubeconfig", str(path), node, "--ignore-daemonsets", "--timeout", "1s"])
    out = capsys.readouterr().out
    assert code == 1
    assert "timed-out" in out and "blocked by PDB apps/db-pdb" in out
