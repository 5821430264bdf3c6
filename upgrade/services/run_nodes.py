"""The nodes of a run's pools as the console shows them: state per node and the pods still to move."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from upgrade.domain.model import ClusterRef, Node, Pod, pool_selector
from upgrade.domain.node_states import node_state, pods_to_move
from upgrade.ports import Kube, Platform


def run_nodes(run_id: str, platform: Platform) -> dict[str, Any]:
    """GET /api/upgrades/{id}/nodes: the run's pool (and its green pool, for blue-green), each node
    with its state, version, how long it has been cordoned, and the pods a drain still has to move.
    Raises NotFound for an unknown run. A pool that is gone (a deleted blue) lists no nodes."""
    run = platform.runs.get(run_id)
    if not run.pool:
        return {"runId": run.run_id, "cluster": run.cluster, "pools": []}
    kube = platform.kube(ClusterRef.parse(run.cluster))
    green = run.facts.get("greenPool") if isinstance(run.facts.get("greenPool"), str) else None
    now = platform.clock.now()
    pods: dict[str, list[Pod]] = {}
    for pod in kube.list_pods():  # one call for every node's pods, not one per node
        pods.setdefault(pod.node or "", []).append(pod)
    pools = [_pool(kube, name, role, green, run.target_version, now, pods)
             for name, role in ((run.pool, "blue" if green else "upgrading"), (green, "green")) if name]
    return {"runId": run.run_id, "cluster": run.cluster, "pools": pools}


def _pool(kube: Kube, name: str, role: str, green: str | None, target: str | None, now: datetime,
          pods: dict[str, list[Pod]]) -> dict[str, Any]:
    nodes = sorted(kube.list_nodes(label_selector=pool_selector(name)), key=lambda n: n.name)
    return {"name": name, "role": role,
            "nodes": [_node(node, green, target, now, pods.get(node.name, [])) for node in nodes]}


def _node(node: Node, green: str | None, target: str | None, now: datetime, pods: list[Pod]) -> dict[str, Any]:
    moving = pods_to_move(pods) if node.pool != green else []
    cordoned_for = (now - node.cordoned_at).total_seconds() if node.unschedulable and node.cordoned_at else None
    if cordoned_for is not None and cordoned_for < 0:  # the cluster's clock runs ahead of ours: unknown
        cordoned_for = None
    return {"name": node.name, "pool": node.pool, "version": node.kubernetes_version,
            "state": node_state(node, green_pool=green, target_version=target, moving=len(moving)),
            "cordonedSeconds": cordoned_for, "podsToMove": [p.key for p in moving]}
