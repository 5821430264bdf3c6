"""How the console colours a node of a run's pools: one state per node, and the pods still to move.

Pure: the service reads nodes and pods through the Kube port and asks these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from upgrade.domain.model import Node, Pod

NODE_STATES = ("quarantined", "draining", "cordoned", "green", "upgraded", "blue")
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def pods_to_move(pods: Sequence[Pod]) -> list[Pod]:
    """The pods a drain of this node still has to move: running workload pods, not DaemonSet pods
    (they stay with the node), not mirror pods (the kubelet's), not finished, not already leaving."""
    return [p for p in pods if p.owner_kind != "DaemonSet" and not p.mirror and not p.deleting
            and p.phase not in FINISHED_PHASES]


def node_state(node: Node, *, green_pool: str | None, target_version: str | None, moving: int) -> str:
    """One of NODE_STATES, the first that holds: quarantined by AKS; cordoned with pods still to
    move (draining); cordoned; in the run's green pool; at the run's target version (upgraded);
    else blue (still to do)."""
    if node.quarantined:
        return "quarantined"
    if node.unschedulable:
        return "draining" if moving else "cordoned"
    if green_pool and node.pool == green_pool:
        return "green"
    if target_version and at_version(node.kubernetes_version, target_version):
        return "upgraded"
    return "blue"


def at_version(node_version: str, target: str) -> bool:
    """Whether ``node_version`` (1.31.7) is ``target`` (1.31 or 1.31.7): by whole dotted parts."""
    have, want = node_version.lstrip("v").split("."), target.lstrip("v").split(".")
    return have[: len(want)] == want
