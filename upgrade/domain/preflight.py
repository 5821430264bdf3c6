"""Upgrade preflight (what-if): what AKS will do to a pool, predicted from a cluster snapshot.

Given a ``ClusterSnapshot`` and a ``PlannedUpgrade`` of pool P (rolling with upgradeSettings, or
blue-green) the prediction follows AKS's documented behaviour (see the README's AKS facts):
- surge nodes = maxSurge of the pool size, rounded up, capped at the nodes still to upgrade; nodes
  are cordoned and drained in batches of surge + maxUnavailable, in name order;
- a node is undrainable when one of its pods can never be evicted: more than one PDB covers it,
  or its PDB allows no disruption even once evicted pods have come back elsewhere (they come
  back only if a schedulable node exists outside the batch; an unmanaged pod never does);
- Schedule (default): the first batch with an undrainable node stops the upgrade, Failed, and
  every surge node is deleted;
- Cordon: an undrainable node is quarantined and a surge node becomes its permanent replacement.
  The upgrade is Canceled once the quarantined nodes exceed maxBlockedNodes (default: the surge
  count), or reach it while nodes remain. Below it the upgrade goes on: a blocked node without a
  replacement gets one, and when blocked nodes hold every surge node (maxBlockedNodes above
  maxSurge) AKS surges again for the nodes left. It ends Failed if anything was quarantined.
Blue-green creates a full green pool, cordons every blue node and drains it onto green.
A target ARM would refuse outright (not a version, not newer than the pool, not offered by its
upgrade profile) ends ``Refused`` with why, before anything is simulated.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from upgrade.domain.model import AgentPool, ClusterSnapshot, Node, Pdb, Pod, UpgradeSettings
from upgrade.domain.pdb import (
    BUDGET_FREE_PHASES,
    EvictionBlocker,
    blocker_for,
    desired_healthy,
    eviction_blockers,
    is_healthy,
    selected_pods,
    unsatisfiable_pdbs,
)
from upgrade.domain.surge import (
    max_blocked_nodes_count,
    surge_node_count,
    upgrade_batch_size,
    validate_upgrade_settings,
)
from upgrade.domain.versions import check_target_version, normalize_version
from upgrade.errors import InvalidInput

ROLLING = "rolling"
BLUE_GREEN = "blue-green"
REFUSED = "Refused"
CORDONED_NODES_EXHAUSTED_SURGE = (
    "Cordoned nodes have used all surge nodes but there are more nodes to be upgraded. "
    "Please fix your PDBs blocking node drain and kindly retry upgrade operation."
)

# vCPUs of VM sizes whose name does not say it (memory-optimised Dv2 family numbering).
_VCPUS_BY_SIZE = {
    "standard_d11_v2": 2, "standard_d12_v2": 4, "standard_d13_v2": 8, "standard_d14_v2": 16,
    "standard_d15_v2": 20, "standard_ds11_v2": 2, "standard_ds12_v2": 4, "standard_ds13_v2": 8,
    "standard_ds14_v2": 16, "standard_ds15_v2": 20, "standard_a1": 1, "standard_a2": 2, "standard_a3": 4,
    "standard_a4": 8,
}
# Standard_<family><vCPUs>[-<constrained vCPUs>]<features>[_vN]: D4s_v5 = 4, E16-4ds_v5 = 4 active.
_SIZE_NAME = re.compile(r"^standard_[a-z]+(?P<vcpus>\d+)(?:-(?P<constrained>\d+))?[a-z]*(?:_.*)?$")


def vcpus_per_vm(vm_size: str) -> int | None:
    """vCPUs of an Azure VM size, from a table of irregular names or the size name; None if unknown."""
    name = vm_size.strip().lower()
    if name in _VCPUS_BY_SIZE:
        return _VCPUS_BY_SIZE[name]
    match = _SIZE_NAME.match(name)
    if not match:
        return None
    return int(match["constrained"] or match["vcpus"])


@dataclass(frozen=True)
class PlannedUpgrade:
    """What the operator intends: upgrade ``pool`` to ``target_version`` (None: a node image
    upgrade of every node), rolling with these settings (unset fields keep the pool's own), or
    blue-green."""

    pool: str
    strategy: str = ROLLING
    target_version: str | None = None
    settings: UpgradeSettings = field(default_factory=UpgradeSettings)
    # The versions the pool's upgrade profile offers; None when unknown (a bare kubeconfig): then
    # only the version's form and direction are checked.
    offered_versions: tuple[str, ...] | None = None


@dataclass(frozen=True)
class UndrainableNode:
    node: str
    blockers: tuple[EvictionBlocker, ...]

    def to_public(self) -> dict[str, Any]:
        return {"node": self.node, "blockers": [b.to_public() for b in self.blockers]}


@dataclass(frozen=True)
class PreflightReport:
    """The prediction. Node lists are in the order AKS handles the nodes."""

    cluster: str
    pool: str
    strategy: str
    target_version: str | None
    settings: UpgradeSettings
    pool_node_count: int
    nodes_to_upgrade: tuple[str, ...]
    batch_size: int
    surge_node_count: int  # surge nodes created (rolling: all alive at once until the end) or green nodes
    vm_size: str
    vcpus_per_node: int | None
    extra_vcpus: int | None  # extra regional vCPU quota the surge needs; None for an unknown size
    blocked_now: tuple[EvictionBlocker, ...]  # evictions PDBs refuse right now, on nodes to upgrade
    undrainable_nodes: tuple[UndrainableNode, ...]  # nodes that will not drain, with the pods holding them
    quarantined_nodes: tuple[str, ...]  # Cordon: left cordoned on the old version, labelled
    failed_nodes: tuple[str, ...]  # Schedule / blue-green: the node the operation fails on
    upgraded_nodes: tuple[str, ...]
    untouched_nodes: tuple[str, ...]  # to upgrade, but the operation stops first
    permanent_surge_nodes: int
    resulting_node_count: int
    max_blocked_nodes: int
    blocked_nodes_exhausted: bool
    unsatisfiable_pdbs: tuple[str, ...]
    final_state: str  # Succeeded | Failed | Canceled, or Refused: AKS would not start it at all
    final_message: str | None
    warnings: tuple[str, ...] = ()

    def to_public(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "pool": self.pool,
            "strategy": self.strategy,
            "targetVersion": self.target_version,
            "upgradeSettings": self.settings.to_arm(),
            "poolNodeCount": self.pool_node_count,
            "nodesToUpgrade": list(self.nodes_to_upgrade),
            "batchSize": self.batch_size,
            "surgeNodeCount": self.surge_node_count,
            "vmSize": self.vm_size,
            "vcpusPerNode": self.vcpus_per_node,
            "extraVcpuQuota": self.extra_vcpus,
            "blockedNow": [b.to_public() for b in self.blocked_now],
            "undrainableNodes": [n.to_public() for n in self.undrainable_nodes],
            "quarantinedNodes": list(self.quarantined_nodes),
            "failedNodes": list(self.failed_nodes),
            "upgradedNodes": list(self.upgraded_nodes),
            "untouchedNodes": list(self.untouched_nodes),
            "permanentSurgeNodes": self.permanent_surge_nodes,
            "resultingNodeCount": self.resulting_node_count,
            "maxBlockedNodes": self.max_blocked_nodes,
            "blockedNodesExhausted": self.blocked_nodes_exhausted,
            "unsatisfiablePdbs": list(self.unsatisfiable_pdbs),
            "finalState": self.final_state,
            "finalMessage": self.final_message,
            "warnings": list(self.warnings),
        }


class _DisruptionBudgets:
    """The disruption controller's books during a simulated upgrade: per PDB, the pods it
    expects and how many are healthy once evicted pods have come back (or not)."""

    def __init__(self, pods: list[Pod], pdbs: Iterable[Pdb]) -> None:
        self.pdbs = {pdb.key: pdb for pdb in pdbs}
        live = [p for p in pods if not p.deleting]
        self.owner_pods = Counter((p.namespace, p.owner_kind, p.owner_name) for p in live if p.owner_kind)
        self.covering: dict[str, list[Pdb]] = defaultdict(list)  # pod key -> PDBs
        self.expected: dict[str, int] = {}
        self.healthy: dict[str, int] = {}
        self.selected = selected_pods(self.pdbs.values(), live)
        self._desired: dict[tuple[str, int], int] = {}
        for key, selected in self.selected.items():
            pdb = self.pdbs[key]
            for pod in selected:
                self.covering[pod.key].append(pdb)
            # Steady state: controllers' pod counts stand for their scale (one pod each when unmanaged).
            self.expected[pdb.key] = len(selected)
            self.healthy[pdb.key] = sum(1 for p in selected if is_healthy(p))

    def status(self, pdb: Pdb) -> tuple[int, int, int, int]:
        """(disruptionsAllowed, currentHealthy, desiredHealthy, expectedPods) now in the simulation."""
        expected = self.expected.get(pdb.key, 0)
        healthy = self.healthy.get(pdb.key, 0)
        desired = self._desired.get((pdb.key, expected))
        if desired is None:
            desired = self._desired[(pdb.key, expected)] = desired_healthy(
                pdb.min_available, pdb.max_unavailable, expected)
        allowed = max(0, healthy - desired) if expected > 0 else 0
        return allowed, healthy, desired, expected

    def with_status(self, pdb: Pdb) -> Pdb:
        allowed, healthy, desired, expected = self.status(pdb)
        return replace(pdb, disruptions_allowed=allowed, current_healthy=healthy, desired_healthy=desired,
                       expected_pods=expected)

    def replicas(self, pod: Pod) -> int:
        return self.owner_pods[(pod.namespace, pod.owner_kind, pod.owner_name)] if pod.owner_kind else 1

    def blocked_now(self, pod: Pod) -> EvictionBlocker | None:
        """Whether Kubernetes would refuse the pod's eviction at this moment, and why."""
        covering = self.covering.get(pod.key)
        if not covering or pod.phase in BUDGET_FREE_PHASES:
            return None
        if len(covering) == 1:
            allowed, healthy, desired, _ = self.status(covering[0])
            if allowed > 0 or (not is_healthy(pod) and healthy >= desired):
                return None
        (blocker,) = eviction_blockers([pod], [self.with_status(pdb) for pdb in covering])
        return replace(blocker, replicas=self.replicas(pod))

    def evict(self, pod: Pod, *, comes_back: bool) -> EvictionBlocker | None:
        """Evict ``pod`` if its budget ever lets it go; otherwise the blocker that holds it."""
        covering = self.covering.get(pod.key, [])
        if len(covering) > 1:
            keys = ", ".join(sorted(p.key for p in covering))
            return blocker_for(pod, self.with_status(covering[0]), replicas=self.replicas(pod), pdb_key=keys,
                               reason=f"pod is covered by more than one PDB ({keys}); Kubernetes refuses to evict it")
        if not covering:
            return None
        pdb = covering[0]
        allowed, healthy, desired, _ = self.status(pdb)
        healthy_pod = is_healthy(pod)
        # An unready pod may go while the budget is met; a healthy one needs a disruption allowed.
        if (healthy_pod and allowed <= 0) or (not healthy_pod and healthy < desired):
            return blocker_for(pod, self.with_status(pdb), replicas=self.replicas(pod))
        if healthy_pod and not (comes_back and pod.owner_kind):
            self.healthy[pdb.key] -= 1
        if not pod.owner_kind:
            self.expected[pdb.key] -= 1  # an unmanaged pod is gone for good
        return None


def _drainable(pod: Pod) -> bool:
    """Pods AKS's drain must see gone: not DaemonSet or static pods, not already terminating."""
    return pod.owner_kind != "DaemonSet" and not pod.mirror and not pod.deleting


def _drain_failure_message(node: str, blocker: EvictionBlocker) -> str:
    pod_name = blocker.pod.split("/", 1)[1]
    pdb_name = blocker.pdb.split("/", 1)[-1]
    return (
        f"Drain node {node} failed when evicting pod {pod_name} failed with Too Many Requests error. "
        "This is often caused by a restrictive Pod Disruption Budget (PDB) policy. Original error: Cannot "
        f"evict pod as it would violate the pod's disruption budget.. PDB debug info: {blocker.pod} "
        f"blocked by pdb {pdb_name} with {blocker.expected_pods - blocker.current_healthy} unready pods."
    )


def _nodes_to_upgrade(pool_nodes: list[Node], target_version: str | None) -> list[Node]:
    """AKS skips quarantined nodes (until the label is removed) and nodes already at the target."""
    return [
        n for n in pool_nodes
        if not n.quarantined and (target_version is None or normalize_version(n.kubernetes_version) != normalize_version(target_version))
    ]


def _target_refusal(pool: AgentPool, plan: PlannedUpgrade) -> str | None:
    """Why ARM would refuse the plan's target version outright (None: it would take it)."""
    if plan.target_version is None:
        return None
    offered = list(plan.offered_versions) if plan.offered_versions is not None else None
    try:
        check_target_version(plan.target_version, pool=pool.name, current=pool.orchestrator_version,
                             offered=offered if offered is not None else [plan.target_version])
    except InvalidInput as exc:
        return exc.problem
    return None


def _refused(snapshot: ClusterSnapshot, pool: AgentPool, plan: PlannedUpgrade, settings: UpgradeSettings,
             pool_nodes: list[Node], reason: str) -> PreflightReport:
    """The report of an upgrade that would never start: nothing drained, nothing surged."""
    return PreflightReport(
        cluster=snapshot.cluster.arm_id, pool=pool.name, strategy=plan.strategy, target_version=plan.target_version,
        settings=settings, pool_node_count=len(pool_nodes), nodes_to_upgrade=(), batch_size=0, surge_node_count=0,
        vm_size=pool.vm_size, vcpus_per_node=vcpus_per_vm(pool.vm_size), extra_vcpus=0, blocked_now=(),
        undrainable_nodes=(), quarantined_nodes=(), failed_nodes=(), upgraded_nodes=(), untouched_nodes=(),
        permanent_surge_nodes=0, resulting_node_count=len(pool_nodes), max_blocked_nodes=0,
        blocked_nodes_exhausted=False, unsatisfiable_pdbs=(), final_state=REFUSED, final_message=reason,
    )


def preflight(snapshot: ClusterSnapshot, plan: PlannedUpgrade) -> PreflightReport:
    """Predict the outcome of ``plan`` on the cluster in ``snapshot``."""
    pool = snapshot.pool(plan.pool)
    if pool is None:
        known = ", ".join(sorted(p.name for p in snapshot.pools)) or "none"
        raise InvalidInput("preflight", "pool", f"{plan.pool!r} is not a pool of {snapshot.cluster.name} ({known})")
    if plan.strategy not in (ROLLING, BLUE_GREEN):
        raise InvalidInput("preflight", "strategy", f"{plan.strategy!r} is not {ROLLING} or {BLUE_GREEN}")
    settings = pool.upgrade_settings.with_overrides(plan.settings)
    pool_nodes = sorted((n for n in snapshot.nodes if n.pool == pool.name), key=lambda n: n.name)
    refusal = _target_refusal(pool, plan)
    if refusal:
        return _refused(snapshot, pool, plan, settings, pool_nodes, refusal)
    if plan.strategy == ROLLING:
        # ARM checks the settings of the PUT against the pool's count, as here.
        validate_upgrade_settings(settings, mode=pool.mode, pool_size=pool.count)
    budgets = _DisruptionBudgets(list(snapshot.pods), snapshot.pdbs)
    pods_by_node: dict[str, list[Pod]] = defaultdict(list)
    for pod in snapshot.pods:
        if pod.node is not None and _drainable(pod):
            pods_by_node[pod.node].append(pod)
    to_upgrade = _nodes_to_upgrade(pool_nodes, plan.target_version)
    blocked_now = [b for n in to_upgrade for p in pods_by_node.get(n.name, ()) if (b := budgets.blocked_now(p))]
    simulate = _simulate_rolling if plan.strategy == ROLLING else _simulate_blue_green
    outcome = simulate(pool, pool_nodes, to_upgrade, settings, snapshot, budgets, pods_by_node)
    vcpus = vcpus_per_vm(pool.vm_size)
    warnings = list(outcome.pop("warnings", ()))
    if vcpus is None:
        warnings.append(f"unknown VM size {pool.vm_size!r}: cannot estimate the vCPU quota")
    if len(pool_nodes) != pool.count:
        warnings.append(f"the pool's count is {pool.count} but {len(pool_nodes)} of its nodes are registered")
    return PreflightReport(
        cluster=snapshot.cluster.arm_id,
        pool=pool.name,
        strategy=plan.strategy,
        target_version=plan.target_version,
        settings=settings,
        pool_node_count=len(pool_nodes),
        nodes_to_upgrade=tuple(n.name for n in to_upgrade),
        vm_size=pool.vm_size,
        vcpus_per_node=vcpus,
        extra_vcpus=None if vcpus is None else vcpus * outcome["surge_node_count"],
        blocked_now=tuple(blocked_now),
        unsatisfiable_pdbs=tuple(unsatisfiable_pdbs(snapshot.pods, snapshot.pdbs, selected=budgets.selected)),
        warnings=tuple(warnings),
        **outcome,
    )


def _drain_batch(
    batch: list[Node], budgets: _DisruptionBudgets, pods_by_node: dict[str, list[Pod]], *, comes_back: bool
) -> dict[str, tuple[EvictionBlocker, ...]]:
    """Evict every pod of the batch, node by node in name order, as AKS's concurrent drain retries
    them; returns the nodes left with pods that never go."""
    undrainable = {}
    for node in batch:
        held = tuple(b for pod in pods_by_node.get(node.name, ()) if (b := budgets.evict(pod, comes_back=comes_back)))
        if held:
            undrainable[node.name] = held
    return undrainable


def _schedulable_elsewhere(pool_nodes: list[Node], excluded: set[str]) -> bool:
    """Whether the pool keeps a node that takes evicted pods. Only the pool's own nodes count:
    the snapshot does not carry pods' nodeSelectors and tolerations, and application pods are
    commonly pinned to their pool (and kept off the tainted system pool)."""
    return any(n.ready and not n.unschedulable and not n.quarantined and n.name not in excluded for n in pool_nodes)


def _blocked_nodes_exhausted(blocked: int, max_blocked: int, *, nodes_left: bool) -> bool:
    """Cordon: AKS cancels once more nodes are blocked than maxBlockedNodes allows, or as soon as
    they reach it while nodes are still to be upgraded."""
    return blocked > 0 and (blocked > max_blocked or (nodes_left and blocked >= max_blocked))


def _surge_nodes_to_add(surge: int, surge_nodes: int, blocked: int, nodes_left: int) -> int:
    """Surge nodes AKS adds after a batch within maxBlockedNodes: a replacement for each blocked node
    that has none yet, and, once blocked nodes hold every surge node (possible only when
    maxBlockedNodes is above maxSurge), a new surge of maxSurge for the nodes still to upgrade."""
    missing_replacements = max(0, blocked - surge_nodes)
    fresh_surge = min(surge, nodes_left) if nodes_left and surge_nodes <= blocked else 0
    return missing_replacements + fresh_surge


def _simulate_rolling(pool: AgentPool, pool_nodes: list[Node], to_upgrade: list[Node], settings: UpgradeSettings,
                      snapshot: ClusterSnapshot, budgets: _DisruptionBudgets,
                      pods_by_node: dict[str, list[Pod]]) -> dict[str, Any]:
    pool_size = len(pool_nodes)
    surge = surge_node_count(pool_size, settings.max_surge, len(to_upgrade))
    batch_size = upgrade_batch_size(pool_size, settings, len(to_upgrade))
    cordon_mode = settings.undrainable_node_behavior == "Cordon"
    max_blocked = max_blocked_nodes_count(pool_size, settings.max_blocked_nodes, settings.max_surge, len(to_upgrade))
    undrainable: list[UndrainableNode] = []
    quarantined: list[str] = []
    upgraded: list[str] = []
    surge_nodes = surge  # surge nodes alive now; none is deleted before the operation ends
    queue = list(to_upgrade)

    def ended(state: str, *, kept: int, message: str | None, **fields: Any) -> dict[str, Any]:
        return {
            "batch_size": batch_size,
            "surge_node_count": surge_nodes,
            "max_blocked_nodes": max_blocked,
            "undrainable_nodes": tuple(undrainable),
            "quarantined_nodes": tuple(quarantined),
            "failed_nodes": (),
            "upgraded_nodes": tuple(upgraded),
            "untouched_nodes": tuple(n.name for n in queue),
            "permanent_surge_nodes": kept,
            "resulting_node_count": pool_size + kept,
            "blocked_nodes_exhausted": False,
            "final_state": state,
            "final_message": message,
        } | fields

    while queue:
        batch, queue = queue[:batch_size], queue[batch_size:]
        in_batch = {n.name for n in batch}
        # Evicted pods come back on a surge node, or on any other schedulable node.
        comes_back = surge_nodes > 0 or _schedulable_elsewhere(pool_nodes, in_batch | set(quarantined))
        failures = _drain_batch(batch, budgets, pods_by_node, comes_back=comes_back)
        undrainable += [UndrainableNode(name, held) for name, held in failures.items()]
        upgraded += [n.name for n in batch if n.name not in failures]
        if failures and not cordon_mode:
            # Schedule: the blocked nodes are made schedulable again and every surge node deleted.
            node, blockers = next(iter(failures.items()))
            return ended("Failed", kept=0, message=_drain_failure_message(node, blockers[0]),
                         failed_nodes=tuple(failures))
        quarantined += list(failures)
        if _blocked_nodes_exhausted(len(quarantined), max_blocked, nodes_left=bool(queue)):
            return ended("Canceled", kept=min(len(quarantined), surge_nodes),
                         message=CORDONED_NODES_EXHAUSTED_SURGE, blocked_nodes_exhausted=True)
        surge_nodes += _surge_nodes_to_add(surge, surge_nodes, len(quarantined), len(queue))
    if not undrainable:
        return ended("Succeeded", kept=0, message=None)
    first = undrainable[0]
    # Every blocked node got its replacement within maxBlockedNodes: AKS keeps one each.
    return ended("Failed", kept=len(quarantined), message=_drain_failure_message(first.node, first.blockers[0]))


def _simulate_blue_green(pool: AgentPool, pool_nodes: list[Node], to_upgrade: list[Node], settings: UpgradeSettings,
                         snapshot: ClusterSnapshot, budgets: _DisruptionBudgets,
                         pods_by_node: dict[str, list[Pod]]) -> dict[str, Any]:
    """A green pool as large as blue takes every pod; blue is cordoned and drained, then deleted."""
    green = len(pool_nodes)
    failures = _drain_batch(pool_nodes, budgets, pods_by_node, comes_back=green > 0)
    undrainable = tuple(UndrainableNode(name, held) for name, held in failures.items())
    first = undrainable[0] if undrainable else None
    return {
        "batch_size": len(pool_nodes),
        "surge_node_count": green,
        "max_blocked_nodes": 0,
        "blocked_nodes_exhausted": False,
        "undrainable_nodes": undrainable,
        "quarantined_nodes": (),
        "failed_nodes": tuple(failures),
        "upgraded_nodes": tuple(n.name for n in pool_nodes if n.name not in failures),
        "untouched_nodes": (),
        "permanent_surge_nodes": 0,
        "resulting_node_count": green,
        "final_state": "Failed" if failures else "Succeeded",
        "final_message": _drain_failure_message(first.node, first.blockers[0]) if first else None,
        "warnings": [f"blue-green needs quota for {green} more node(s) of {pool.vm_size} at once"],
    }

