"""The scale-out remediation's decisions: which workloads to scale and through what, whether the
extra pods fit, and whether the restore may write.

A pod a PDB keeps on a cordoned node can leave without lowering anyone's availability when its
workload first gets one more replica per blocked pod elsewhere (what AKS's automatic PDB
management does with the eviction-autoscaler). Only controllers with a scale subresource
qualify: a Deployment (through the ReplicaSet that owns the pod), a ReplicaSet of its own, or a
StatefulSet.

- **A HorizontalPodAutoscaler owns the replicas**: a raise of the scale would be undone at its
  next sync, so the run raises the HPA's ``minReplicas`` instead, to the workload's current
  replicas plus its blocked pods (``minReplicas + blocked`` adds nothing when the HPA already
  runs more than its minimum), and ``maxReplicas`` with it when it would fall below; the HPA
  controller then sets the replicas to at least the new minimum, with or without metrics. The
  restore puts both bounds back; the replica count is the HPA's again.
- **A StatefulSet** scales up by adding its highest ordinals and down by removing the highest
  ordinals, so the restore removes exactly the run's extra pods. Their PersistentVolumeClaims
  follow ``persistentVolumeClaimRetentionPolicy.whenScaled``: ``Delete`` removes them with the
  pods, ``Retain`` (the default) leaves them, and the run names them (it never deletes claims
  the StatefulSet controller made). Refused while a rollout is pending (``updateRevision`` is
  not ``currentRevision``, or the controller has not observed the latest spec): the added
  ordinals would be created from the new template, and with a partition or ``OnDelete`` the
  set is mid-update by design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from upgrade.domain.model import Autoscaler, Node, Pod, StatefulSetState, Workload

SCALABLE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")


@dataclass(frozen=True)
class ScaleTarget:
    """One workload to raise: by ``add`` replicas (its pods blocked on the node), each asking the
    scheduler for ``cpu_request_millis``; through ``autoscaler`` (an HPA's name) when one owns
    its replicas."""

    kind: str  # Deployment | ReplicaSet | StatefulSet
    namespace: str
    name: str
    add: int
    cpu_request_millis: int = 0
    autoscaler: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def statefulset_refusal(name: str, state: StatefulSetState | None) -> str | None:
    """Why a StatefulSet may not be scaled out now, or None."""
    if state is None:
        return f"StatefulSet {name} was not found"
    if state.observed_generation < state.generation:
        return (f"StatefulSet {name}'s controller has not observed its latest spec (generation {state.generation}, "
                f"observed {state.observed_generation}): try again once it has")
    if state.update_strategy == "OnDelete":
        # Kubernetes never moves an OnDelete set's currentRevision on (kubernetes/kubernetes#73492):
        # its update is applied once every pod runs the updateRevision, which is what added ordinals get.
        if state.updated_replicas < state.replicas:
            return (f"StatefulSet {name} is mid-update (OnDelete: {state.updated_replicas} of {state.replicas} pods "
                    f"at updateRevision {state.update_revision or '-'}): its added ordinals would run the new "
                    "template; use relax-pdb, or delete the remaining old pods first")
        return None
    if state.update_revision != state.current_revision:
        return (f"StatefulSet {name} is mid-update (currentRevision {state.current_revision or '-'}, updateRevision "
                f"{state.update_revision or '-'}"
                + (f", partition {state.partition}" if state.partition else "")
                + "): its added ordinals would run the new template; use relax-pdb, or finish the rollout first")
    return None


def autoscalers_by_target(autoscalers: Sequence[Autoscaler]) -> dict[tuple[str, str, str], list[str]]:
    """The names (sorted) of the HPAs scaling each workload, by ``(namespace, kind, name)`` with the
    kind in lower case: one owns its replicas; more than one fight over them, and no one
    minReplicas decides."""
    owners: dict[tuple[str, str, str], list[str]] = {}
    for a in sorted(autoscalers, key=lambda a: a.name):
        owners.setdefault((a.namespace, a.target_kind.lower(), a.target_name), []).append(a.name)
    return owners


def scale_targets(
    blocking: Sequence[Pod], workloads: Sequence[Workload], autoscalers: Sequence[Autoscaler] = ()
) -> tuple[list[ScaleTarget], list[str]]:
    """The workloads of the blocking pods, each with how many of its pods are blocked and the HPA
    that owns its replicas, if any; and why any pod cannot be scaled out (no controller with a
    scale subresource, a StatefulSet mid-rollout, two HPAs on one workload)."""
    by_replica_set = {
        (w.namespace, rs): w for w in workloads if w.kind == "Deployment" for rs in w.replica_sets
    }
    statefulsets = {(w.namespace, w.name): w for w in workloads if w.kind == "StatefulSet"}
    counts: dict[tuple[str, str, str], list[Pod]] = {}
    refusals = []
    for pod in blocking:
        if pod.owner_kind == "ReplicaSet" and pod.owner_name:
            owner = by_replica_set.get((pod.namespace, pod.owner_name))
            kind, name = ("Deployment", owner.name) if owner else ("ReplicaSet", pod.owner_name)
        elif pod.owner_kind == "StatefulSet" and pod.owner_name:
            found = statefulsets.get((pod.namespace, pod.owner_name))
            refusal = statefulset_refusal(f"{pod.namespace}/{pod.owner_name}", found.statefulset if found else None)
            if refusal:
                refusals.append(f"pod {pod.key}: {refusal}")
                continue
            kind, name = "StatefulSet", pod.owner_name
        else:
            refusals.append(f"pod {pod.key} is controlled by {pod.owner_kind or 'nothing'}, "
                            f"not by a {', '.join(SCALABLE_KINDS)} with a scale subresource")
            continue
        counts.setdefault((kind, pod.namespace, name), []).append(pod)
    owners = autoscalers_by_target(autoscalers)
    targets = []
    for (kind, namespace, name), pods in sorted(counts.items()):
        hpas = owners.get((namespace, kind.lower(), name), [])
        if len(hpas) > 1:
            refusals.append(f"HorizontalPodAutoscalers {', '.join(hpas)} all scale {kind} {namespace}/{name}: "
                            "they fight over its replicas, and no one minReplicas decides them")
            continue
        targets.append(ScaleTarget(kind, namespace, name, len(pods), max(p.cpu_request_millis for p in pods),
                                   hpas[0] if hpas else None))
    return targets, refusals


def raised_bounds(min_replicas: int, max_replicas: int, replicas: int, add: int) -> tuple[int, int]:
    """The HPA bounds that give its target ``add`` more replicas than the ``replicas`` it has now:
    the minimum at ``replicas + add`` (the controller sets a target below its minimum to it, without
    metrics), the maximum raised to it only if it would be lower (min <= max is required)."""
    floor = max(replicas, min_replicas) + add
    return floor, max(max_replicas, floor)


def added_claims(name: str, state: StatefulSetState, original: int, raised_to: int) -> list[str]:
    """The PersistentVolumeClaims the StatefulSet controller gives the ordinals a raise from
    ``original`` to ``raised_to`` adds: ``<template>-<set>-<ordinal>`` for each claim template."""
    return [f"{template}-{name}-{ordinal}"
            for ordinal in range(state.ordinals_start + original, state.ordinals_start + raised_to)
            for template in state.claim_templates]


def reused_claims_refusal(name: str, state: StatefulSetState, reused: Sequence[str]) -> str | None:
    """Why a StatefulSet may not be scaled out when its added ordinals would mount claims that
    exist already (left by an earlier scale-down, or by a set deleted and made again): with
    ``whenScaled: Delete`` the scale-down back deletes the claims of the ordinals it removes,
    whoever made them, so the run would delete data it did not create."""
    if state.when_scaled != "Delete" or not reused:
        return None
    return (f"StatefulSet {name}'s added ordinals would mount the existing PersistentVolumeClaims "
            f"{', '.join(reused)}, and its persistentVolumeClaimRetentionPolicy.whenScaled Delete would delete them "
            "when the run scales it back down: use relax-pdb, or remove or move those claims first")


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
    EDITED = "edited"  # someone else set another value: leave it, alert


def restore_action(original: object, raised: object, current: object) -> ScaleRestore:
    """What the conditional restore does with a value (a replica count, an HPA's bounds) the run
    raised from ``original`` to ``raised``, now ``current``."""
    if current == original:
        return ScaleRestore.UNCHANGED
    if current == raised:
        return ScaleRestore.RESTORE
    return ScaleRestore.EDITED


def restore_bounds(original: Sequence[int], raised: Sequence[int], current: Sequence[int]) -> list[int]:
    """The HPA bounds ``[minReplicas, maxReplicas]`` the conditional restore writes: each bound
    still at what the run raised it to goes back to its original; one someone else changed, or
    one the run did not change, stays as found. When putting one back alone would leave
    minReplicas above maxReplicas, both stay."""
    bounds = [o if c == r != o else c for o, r, c in zip(original, raised, current, strict=True)]
    return bounds if bounds[0] <= bounds[1] else list(current)


def scale_restore(record: Mapping[str, int], current_replicas: int) -> ScaleRestore:
    """The restore of a workload's scale the run recorded as ``{"original": n, "raised_to": m}``."""
    return restore_action(record["original"], record["raised_to"], current_replicas)
