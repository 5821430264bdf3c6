"""The scale-out remediation's decisions: which workloads to scale, whether the extra pods fit,
and whether the restore may write.

A pod a PDB keeps on a cordoned node can leave without lowering anyone's availability when its
workload first gets one more replica per blocked pod elsewhere (what AKS's automatic PDB
management does with the eviction-autoscaler). Only controllers with a scale subresource
qualify: a Deployment (through the ReplicaSet that owns the pod) or a ReplicaSet of its own. A
StatefulSet is refused: scaling it up and back down leaves the new ordinal's PersistentVolumeClaims
behind (its default retention policy keeps them when scaled), so the remediation would not leave
the cluster as it found it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from upgrade.domain.model import Autoscaler, Node, Pod, Workload

SCALABLE_KINDS = ("Deployment", "ReplicaSet")
STATEFULSET_REFUSAL = ("scaling a StatefulSet up and back down leaves the new ordinal's PersistentVolumeClaims "
                       "behind: use relax-pdb for it")


@dataclass(frozen=True)
class ScaleTarget:
    """One workload to raise: by ``add`` replicas (its pods blocked on the node), each asking the
    scheduler for ``cpu_request_millis``."""

    kind: str  # Deployment | ReplicaSet
    namespace: str
    name: str
    add: int
    cpu_request_millis: int = 0

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def scale_targets(
    blocking: Sequence[Pod], workloads: Sequence[Workload], autoscalers: Sequence[Autoscaler] = ()
) -> tuple[list[ScaleTarget], list[str]]:
    """The workloads of the blocking pods, each with how many of its pods are blocked, and why any
    pod cannot be scaled out (no controller with a scale subresource, or a HorizontalPodAutoscaler
    owns the workload's replicas: it would set them back, and raising its minReplicas is not done
    here)."""
    by_replica_set = {
        (w.namespace, rs): w for w in workloads if w.kind == "Deployment" for rs in w.replica_sets
    }
    counts: dict[tuple[str, str, str], list[Pod]] = {}
    refusals = []
    for pod in blocking:
        if pod.owner_kind == "ReplicaSet" and pod.owner_name:
            owner = by_replica_set.get((pod.namespace, pod.owner_name))
            kind, name = ("Deployment", owner.name) if owner else ("ReplicaSet", pod.owner_name)
        elif pod.owner_kind == "StatefulSet":
            refusals.append(f"pod {pod.key} is controlled by StatefulSet {pod.owner_name}: {STATEFULSET_REFUSAL}")
            continue
        else:
            refusals.append(f"pod {pod.key} is controlled by {pod.owner_kind or 'nothing'}, "
                            f"not by a {', '.join(SCALABLE_KINDS)} with a scale subresource")
            continue
        counts.setdefault((kind, pod.namespace, name), []).append(pod)
    targets = [
        ScaleTarget(kind, namespace, name, len(pods), max(p.cpu_request_millis for p in pods))
        for (kind, namespace, name), pods in sorted(counts.items())
    ]
    owners = {(a.namespace, a.target_kind, a.target_name): a for a in autoscalers}
    for target in targets:
        hpa = owners.get((target.namespace, target.kind, target.name))
        if hpa is not None:
            refusals.append(
                f"HorizontalPodAutoscaler {hpa.namespace}/{hpa.name} owns the replicas of {target.kind} "
                f"{target.namespace}/{target.name} (minReplicas {hpa.min_replicas}, maxReplicas {hpa.max_replicas}): "
                "it would undo a raise, and this product does not raise its minReplicas; use relax-pdb, or raise "
                "minReplicas by hand"
            )
    return [t for t in targets if (t.namespace, t.kind, t.name) not in owners], refusals


def room_refusal(targets: Sequence[ScaleTarget], nodes: Sequence[Node], pods: Sequence[Pod]) -> str | None:
    """Why the extra pods would not fit, or None when they do: each extra pod's cpu request must fit
    in what a schedulable node's allocatable cpu leaves after the requests of the pods on it
    (placed largest first, each on the node with the most room). Cordoned, quarantined and
    not-Ready nodes take no pods."""
    free = {
        n.name: n.allocatable_cpu_millis
        for n in nodes
        if n.ready and not n.unschedulable and not n.quarantined
    }
    if not free:
        return "no schedulable node would take the extra pods"
    for pod in pods:
        if pod.node in free and pod.phase not in ("Succeeded", "Failed"):
            free[pod.node] -= pod.cpu_request_millis
    extra = sorted(((t.cpu_request_millis, t.key) for t in targets for _ in range(t.add)), reverse=True)
    for request, key in extra:
        node = max(sorted(free), key=lambda n: free[n])
        if free[node] < request:
            return (f"no room for an extra pod of {key} ({request}m cpu requested): the most any schedulable "
                    f"node has left is {max(free[node], 0)}m of its allocatable cpu")
        free[node] -= request
    return None


class ScaleRestore(Enum):
    RESTORE = "restore"  # still at what the run set: put the original back
    UNCHANGED = "unchanged"  # already at the original (never raised, or restored already)
    EDITED = "edited"  # someone else set another count: leave it, alert


def scale_restore(record: Mapping[str, int], current_replicas: int) -> ScaleRestore:
    """What the conditional restore does with a workload whose scale the run recorded as
    ``{"original": n, "raised_to": m}``, now at ``current_replicas``."""
    if current_replicas == record["original"]:
        return ScaleRestore.UNCHANGED
    if current_replicas == record["raised_to"]:
        return ScaleRestore.RESTORE
    return ScaleRestore.EDITED
