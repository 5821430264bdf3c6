"""Upgrade preflight (upgrade.domain.preflight): the seed scenarios and the rules behind them."""

from __future__ import annotations

import pytest

from upgrade.domain.model import AgentPool, ClusterRef, ClusterSnapshot, Node, Pdb, Pod, UpgradeSettings
from upgrade.domain.preflight import BLUE_GREEN, PlannedUpgrade, preflight, vcpus_per_vm
from upgrade.domain.selectors import LabelSelector
from upgrade.errors import InvalidInput

CLUSTER = ClusterRef("00000000-0000-0000-0000-000000000001", "rg-seed", "aks-seed-pdb")
POOL = "nodepool1"


def node(index: int, *, version="1.30.0", pool=POOL, quarantined=False, unschedulable=False) -> Node:
    labels = (("kubernetes.azure.com/upgrade-status", "Quarantined"),) if quarantined else ()
    return Node(f"aks-{pool}-vmss{index:06d}", pool, version, unschedulable=unschedulable or quarantined,
                labels=labels)


def app_pods(app: str, nodes: list[int], *, owner: str | None = "ReplicaSet", ready=True, first=0) -> list[Pod]:
    return [
        Pod("default", f"{app}-{i}", f"uid-{app}-{i}", f"aks-{POOL}-vmss{n:06d}", ready=ready,
            labels=(("app", app),), owner_kind=owner, owner_name=f"{app}-rs" if owner else None)
        for i, n in enumerate(nodes, start=first)
    ]


def budget(app: str, *, min_available=None, max_unavailable=None, name=None) -> Pdb:
    return Pdb("default", name or f"{app}-pdb", LabelSelector.match_labels({"app": app}), min_available=min_available,
               max_unavailable=max_unavailable)


def snapshot(nodes: int, pods: list[Pod], pdbs: list[Pdb], *, extra_nodes=(), settings: UpgradeSettings | None = None,
             vm_size="Standard_D4s_v5") -> ClusterSnapshot:
    pool_nodes = [node(i) for i in range(nodes)] + list(extra_nodes)
    system = Node("aks-system-vmss000000", "system", "1.30.0", taints=("CriticalAddonsOnly=true:NoSchedule",))
    daemons = [Pod("kube-system", f"kube-proxy-{n.name}", f"uid-kp-{n.name}", n.name, owner_kind="DaemonSet",
                   owner_name="kube-proxy") for n in [*pool_nodes, system]]
    return ClusterSnapshot(
        cluster=CLUSTER,
        kubernetes_version="1.30.0",
        pools=(AgentPool("system", "System", 1, "1.30.0"),
               AgentPool(POOL, "User", len(pool_nodes), "1.30.0", vm_size=vm_size,
                         upgrade_settings=settings or UpgradeSettings())),
        nodes=(system, *pool_nodes),
        pods=(*daemons, *pods),
        pdbs=tuple(pdbs),
    )


def seed_pods() -> list[Pod]:
    """Scenario tables: A, B on node 1 (index 0); C, D on node 2 (index 1)."""
    return [*app_pods("app-a", [0]), *app_pods("app-b", [0]), *app_pods("app-c", [1]), *app_pods("app-d", [1])]


N0, N1, N2, N3 = (f"aks-{POOL}-vmss{i:06d}" for i in range(4))


def test_scenario_2_predicted_exactly():
    # GIVEN Scenario 2: pod A's PDB (minAvailable 1, one replica), maxSurge 2, Cordon
    cluster = snapshot(2, seed_pods(), [budget("app-a", min_available="1")],
                       settings=UpgradeSettings(max_surge="2", undrainable_node_behavior="Cordon"))
    # WHEN the upgrade to 1.31 is previewed
    report = preflight(cluster, PlannedUpgrade(POOL, target_version="1.31.0"))
    # THEN node 1 is quarantined because of pod A, node 2 upgrades, one surge node stays
    assert report.surge_node_count == 2
    assert report.extra_vcpus == 8  # two Standard_D4s_v5
    assert [b.pod for b in report.blocked_now] == ["default/app-a-0"]
    (stuck,) = report.undrainable_nodes
    assert stuck.node == N0
    assert [(b.pod, b.pdb, b.disruptions_allowed, b.expected_pods) for b in stuck.blockers] == [
        ("default/app-a-0", "default/app-a-pdb", 0, 1)]
    assert report.quarantined_nodes == (N0,)
    assert report.upgraded_nodes == (N1,)
    assert report.permanent_surge_nodes == 1
    assert report.resulting_node_count == 3
    assert report.final_state == "Failed"
    assert "Drain node aks-nodepool1-vmss000000 failed when evicting pod app-a-0" in report.final_message
    assert report.unsatisfiable_pdbs == ("PDB default/app-a-pdb has minAvailable(1) >= expectedPods(1)",)
    public = report.to_public()
    assert public["quarantinedNodes"] == [N0] and public["finalState"] == "Failed"
    assert public["undrainableNodes"][0]["blockers"][0]["pdb"] == "default/app-a-pdb"


BLOCK_A = [budget("app-a", min_available="1")]
# app-a alone on node 0 and app-b alone on node 1, neither allowed a disruption: both nodes block.
TWO_BLOCKED_PODS = [*app_pods("app-a", [0]), *app_pods("app-b", [1])]
TWO_BLOCKED_PDBS = [budget("app-a", min_available="1"), budget("app-b", max_unavailable="0")]


@pytest.mark.parametrize(
    ("case", "nodes", "pods", "pdbs", "settings", "expected"),
    [
        ("scenario 1: surge 1, nothing blocks", 2, seed_pods(), [], UpgradeSettings(max_surge="1"),
         dict(surge=1, upgraded=(N0, N1), quarantined=(), failed=(), untouched=(), permanent=0, count=2,
              state="Succeeded")),
        ("default 10% surge rounds up to one node", 2, seed_pods(), [], UpgradeSettings(),
         dict(surge=1, upgraded=(N0, N1), permanent=0, count=2, state="Succeeded")),
        ("scenario 2 with Schedule: the batch's blocked node fails the upgrade", 2, seed_pods(), BLOCK_A,
         UpgradeSettings(max_surge="2", undrainable_node_behavior="Schedule"),
         dict(surge=2, upgraded=(N1,), quarantined=(), failed=(N0,), untouched=(), permanent=0, count=2,
              state="Failed")),
        ("Schedule stops before later batches", 3, seed_pods(), BLOCK_A, UpgradeSettings(max_surge="1"),
         dict(surge=1, upgraded=(), failed=(N0,), untouched=(N1, N2), count=3, state="Failed")),
        ("Cordon with one surge node: exhausted while nodes remain", 2, seed_pods(), BLOCK_A,
         UpgradeSettings(max_surge="1", undrainable_node_behavior="Cordon"),
         dict(surge=1, upgraded=(), quarantined=(N0,), untouched=(N1,), permanent=1, count=3, state="Canceled",
              exhausted=True)),
        ("Cordon: maxBlockedNodes above maxSurge surges again once the blocked node holds the surge node", 2,
         seed_pods(), BLOCK_A,
         UpgradeSettings(max_surge="1", undrainable_node_behavior="Cordon", max_blocked_nodes="2"),
         dict(surge=2, upgraded=(N1,), quarantined=(N0,), untouched=(), permanent=1, count=3, state="Failed",
              exhausted=False)),
        ("Cordon: maxBlockedNodes 100% lets the rest of a 3-node pool upgrade", 3, seed_pods(), BLOCK_A,
         UpgradeSettings(max_surge="1", undrainable_node_behavior="Cordon", max_blocked_nodes="100%"),
         dict(surge=2, upgraded=(N1, N2), quarantined=(N0,), untouched=(), permanent=1, count=4, state="Failed")),
        ("Cordon without surge: maxBlockedNodes gives the blocked node a replacement", 2, seed_pods(), BLOCK_A,
         UpgradeSettings(max_surge="0", max_unavailable="1", undrainable_node_behavior="Cordon",
                         max_blocked_nodes="100%"),
         dict(surge=1, upgraded=(N1,), quarantined=(N0,), untouched=(), permanent=1, count=3, state="Failed")),
        ("Cordon without surge or maxBlockedNodes: the first blocked node cancels, no replacement", 2, seed_pods(),
         BLOCK_A, UpgradeSettings(max_surge="0", max_unavailable="1", undrainable_node_behavior="Cordon"),
         dict(surge=0, upgraded=(), quarantined=(N0,), untouched=(N1,), permanent=0, count=2, state="Canceled",
              exhausted=True)),
        ("Cordon: more blocked nodes in the last batch than maxBlockedNodes cancels, one replacement kept", 2,
         TWO_BLOCKED_PODS, TWO_BLOCKED_PDBS,
         UpgradeSettings(max_surge="1", max_unavailable="1", undrainable_node_behavior="Cordon"),
         dict(surge=1, upgraded=(), quarantined=(N0, N1), untouched=(), permanent=1, count=3, state="Canceled",
              exhausted=True)),
        ("Cordon: blocked nodes reaching maxBlockedNodes with a node left cancel, each keeps a replacement", 3,
         TWO_BLOCKED_PODS, TWO_BLOCKED_PDBS,
         UpgradeSettings(max_surge="1", undrainable_node_behavior="Cordon", max_blocked_nodes="2"),
         dict(surge=2, upgraded=(), quarantined=(N0, N1), untouched=(N2,), permanent=2, count=5, state="Canceled",
              exhausted=True)),
        ("Cordon: blocked nodes below maxBlockedNodes each keep a replacement and the pool finishes", 3,
         TWO_BLOCKED_PODS, TWO_BLOCKED_PDBS,
         UpgradeSettings(max_surge="1", undrainable_node_behavior="Cordon", max_blocked_nodes="3"),
         dict(surge=3, upgraded=(N2,), quarantined=(N0, N1), untouched=(), permanent=2, count=5, state="Failed")),
        ("Cordon with spare surge: later batches still upgrade", 4, seed_pods(), BLOCK_A,
         UpgradeSettings(max_surge="2", undrainable_node_behavior="Cordon"),
         dict(surge=2, upgraded=(N1, N2, N3), quarantined=(N0,), untouched=(), permanent=1, count=5,
              state="Failed")),
        ("Cordon, two blocked nodes, two surge nodes, nothing left: Failed, both kept", 2,
         TWO_BLOCKED_PODS, TWO_BLOCKED_PDBS,
         UpgradeSettings(max_surge="2", undrainable_node_behavior="Cordon"),
         dict(surge=2, upgraded=(), quarantined=(N0, N1), permanent=2, count=4, state="Failed")),
        ("PDB allowing one disruption drains replica by replica", 2, app_pods("web", [0, 0, 1]),
         [budget("web", min_available="2")], UpgradeSettings(max_surge="1"),
         dict(surge=1, upgraded=(N0, N1), state="Succeeded")),
        ("maxUnavailable percent rounds up: 50% of 1 allows one", 2, app_pods("web", [0]),
         [budget("web", max_unavailable="50%")], UpgradeSettings(max_surge="1"),
         dict(upgraded=(N0, N1), state="Succeeded")),
        ("minAvailable percent rounds up: 50% of 3 needs 2, allows 1", 2, app_pods("web", [0, 1, 1]),
         [budget("web", min_available="50%")], UpgradeSettings(max_surge="1"),
         dict(upgraded=(N0, N1), state="Succeeded")),
        ("minAvailable 100% never allows a disruption", 2, app_pods("web", [0, 1]),
         [budget("web", min_available="100%")], UpgradeSettings(max_surge="1"),
         dict(failed=(N0,), untouched=(N1,), state="Failed")),
        ("maxUnavailable without surge: pods move to the pool's other node", 2, app_pods("web", [0, 1]),
         [budget("web", min_available="1")], UpgradeSettings(max_surge="0", max_unavailable="1"),
         dict(surge=0, upgraded=(N0, N1), count=2, state="Succeeded")),
        ("whole pool unavailable without surge: evicted pods cannot come back", 2, app_pods("web", [0, 1]),
         [budget("web", min_available="1")], UpgradeSettings(max_surge="0", max_unavailable="100%"),
         dict(surge=0, upgraded=(N0,), failed=(N1,), state="Failed")),
        ("unmanaged pods never come back", 2, app_pods("solo", [0, 1], owner=None),
         [budget("solo", min_available="1")], UpgradeSettings(max_surge="1"),
         dict(upgraded=(N0,), failed=(N1,), state="Failed")),
        ("a pod under two PDBs cannot be evicted at all", 2, app_pods("web", [0, 0, 0]),
         [budget("web", min_available="1"), budget("web", max_unavailable="2", name="web-second")],
         UpgradeSettings(max_surge="1"), dict(failed=(N0,), state="Failed")),
        ("an unready pod may go while its budget is met", 2,
         [*app_pods("web", [0], ready=False), *app_pods("web", [1, 1], first=1)],
         [budget("web", min_available="2")], UpgradeSettings(max_surge="1"),
         dict(upgraded=(N0,), failed=(N1,), state="Failed")),
    ],
)
def test_rolling_predictions(case, nodes, pods, pdbs, settings, expected):
    # GIVEN a pool and its pods WHEN the rolling upgrade is previewed THEN AKS's outcome
    report = preflight(snapshot(nodes, pods, pdbs, settings=settings), PlannedUpgrade(POOL, target_version="1.31"))
    observed = {
        "surge": report.surge_node_count, "upgraded": report.upgraded_nodes, "quarantined": report.quarantined_nodes,
        "failed": report.failed_nodes, "untouched": report.untouched_nodes,
        "permanent": report.permanent_surge_nodes, "count": report.resulting_node_count,
        "state": report.final_state, "exhausted": report.blocked_nodes_exhausted,
    }
    assert {key: observed[key] for key in expected} == expected, case


def test_quarantined_and_current_nodes_are_not_upgraded():
    # GIVEN a node already at 1.31 and one quarantined earlier
    extra = [node(2, version="1.31.0"), node(3, quarantined=True)]
    report = preflight(snapshot(2, seed_pods(), [], extra_nodes=extra, settings=UpgradeSettings(max_surge="50%")),
                       PlannedUpgrade(POOL, target_version="1.31.0"))
    # THEN only the two old nodes are upgraded; the surge is 50% of 4 capped at 2 nodes to upgrade
    assert report.nodes_to_upgrade == (N0, N1)
    assert report.surge_node_count == 2
    assert report.final_state == "Succeeded"


def test_plan_settings_override_the_pools():
    cluster = snapshot(2, seed_pods(), BLOCK_A, settings=UpgradeSettings(max_surge="1"))
    report = preflight(cluster, PlannedUpgrade(POOL, settings=UpgradeSettings(
        max_surge="2", undrainable_node_behavior="Cordon")))
    assert (report.settings.max_surge, report.surge_node_count, report.final_state) == ("2", 2, "Failed")


def test_blue_green_needs_a_full_pool_of_quota_and_fails_on_undrainable_nodes():
    report = preflight(snapshot(2, seed_pods(), BLOCK_A), PlannedUpgrade(POOL, strategy=BLUE_GREEN))
    assert (report.surge_node_count, report.extra_vcpus) == (2, 8)
    assert report.failed_nodes == (N0,)
    assert (report.resulting_node_count, report.permanent_surge_nodes, report.final_state) == (2, 0, "Failed")


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        (PlannedUpgrade("nope"), "pool"),
        (PlannedUpgrade(POOL, strategy="canary"), "strategy"),
        (PlannedUpgrade(POOL, settings=UpgradeSettings(max_surge="0")), "maxSurge"),
        (PlannedUpgrade(POOL, settings=UpgradeSettings(max_surge="lots")), "maxSurge"),
        # ARM refuses the PUT: 100% of the 2-node pool is 2 blocked nodes, below maxSurge 3.
        (PlannedUpgrade(POOL, settings=UpgradeSettings(max_surge="3", undrainable_node_behavior="Cordon",
                                                       max_blocked_nodes="100%")), "maxBlockedNodes"),
        (PlannedUpgrade(POOL, settings=UpgradeSettings(max_blocked_nodes="2")), "maxBlockedNodes"),
    ],
)
def test_bad_plans_name_the_field(plan, field):
    with pytest.raises(InvalidInput) as error:
        preflight(snapshot(2, seed_pods(), []), plan)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("vm_size", "vcpus"),
    [("Standard_D4s_v5", 4), ("Standard_DS2_v2", 2), ("Standard_D11_v2", 2), ("Standard_E16-4ds_v5", 4),
     ("Standard_B2ms", 2), ("Standard_F8s_v2", 8), ("Standard_M128ms", 128), ("Standard_NC24ads_A100_v4", 24),
     ("standard_d8as_v5", 8), ("Basic_A0", None), ("weird", None)],
)
def test_vcpus_per_vm(vm_size, vcpus):
    assert vcpus_per_vm(vm_size) == vcpus


def test_unknown_vm_size_warns_instead_of_guessing():
    report = preflight(snapshot(2, seed_pods(), [], vm_size="Custom_Big"), PlannedUpgrade(POOL))
    assert report.extra_vcpus is None
    assert any("Custom_Big" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("target", "offered", "why"),
    [
        ("banana", ("1.31.0",), "'banana' is not a Kubernetes version"),
        ("1.20.0", ("1.31.0",), "1.20.0 is not newer than pool"),
        ("1.30.0", ("1.31.0",), "1.30.0 is not newer than pool"),
        ("1.33.0", ("1.31.0",), "1.33.0 is not offered by pool"),
        ("banana", None, "'banana' is not a Kubernetes version"),  # a bare kubeconfig: form and direction
        ("1.20.0", None, "1.20.0 is not newer than pool"),
    ],
)
def test_an_impossible_target_ends_refused_with_why_and_nothing_simulated(target, offered, why):
    cluster = snapshot(2, seed_pods(), [budget("app-a", min_available="1")])
    report = preflight(cluster, PlannedUpgrade(POOL, target_version=target, offered_versions=offered))
    assert report.final_state == "Refused"
    assert why in report.final_message
    assert (report.surge_node_count, report.nodes_to_upgrade, report.quarantined_nodes) == (0, (), ())
    assert report.to_public()["finalState"] == "Refused"


def test_an_offered_target_is_simulated_as_before():
    cluster = snapshot(2, seed_pods(), [])
    report = preflight(cluster, PlannedUpgrade(POOL, target_version="1.31.0", offered_versions=("1.31.0",)))
    assert report.final_state == "Succeeded"
