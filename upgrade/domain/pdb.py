"""PodDisruptionBudget analysis: which PDB covers a pod, whether it forbids an eviction now, and
the disruption controller's arithmetic, so the domain can predict what a relaxed PDB would allow.

Kubernetes' rules (disruption controller and the policy/v1 Eviction subresource):
- minAvailable as an integer: expectedPods = the pods the PDB selects, desiredHealthy = the integer;
- minAvailable as a percent: expectedPods = the controllers' replicas, desiredHealthy = the percent
  of it rounded up;
- maxUnavailable (integer or percent, rounded up): desiredHealthy = expectedPods - maxUnavailable;
- disruptionsAllowed = currentHealthy - desiredHealthy, never below 0 (0 when no pod is expected);
- a pod covered by more than one PDB cannot be evicted at all;
- a terminating, Pending, Succeeded or Failed pod is evicted without consulting the budget, and an
  unready pod may go while the budget is met (the default unhealthyPodEvictionPolicy).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from upgrade.domain.int_or_percent import ceil_percent, split_int_or_percent
from upgrade.domain.model import Pdb, Pod
from upgrade.domain.selectors import Operator
from upgrade.errors import InvalidInput

# The error code of an eviction the API refuses because more than one PDB covers the pod (a 500
# from the API server): never evictable, so a drain fails at once instead of retrying.
MULTIPLE_PDBS = "MultiplePodDisruptionBudgets"
# Phases the eviction subresource deletes without looking at a budget.
BUDGET_FREE_PHASES = frozenset({"Pending", "Succeeded", "Failed"})


def scaled_value(value: str | int, total: int, *, field: str = "minAvailable") -> int:
    """Kubernetes' GetScaledValueFromIntOrPercent with roundUp: "50%" of 3 is 2; "2" is 2."""
    parsed = split_int_or_percent(value)
    if parsed is None:
        raise InvalidInput("PodDisruptionBudget", field, f"{value!r} is not an integer or a percent")
    number, percent = parsed
    return ceil_percent(number, total) if percent else number


def is_percent(value: str | int | None) -> bool:
    return isinstance(value, str) and value.strip().endswith("%")


def desired_healthy(min_available: str | None, max_unavailable: str | None, expected_pods: int) -> int:
    """The healthy pods a budget demands for ``expected_pods`` (no budget value: nothing demanded)."""
    if max_unavailable is not None:
        return max(0, expected_pods - scaled_value(max_unavailable, expected_pods, field="maxUnavailable"))
    if min_available is not None:
        return scaled_value(min_available, expected_pods)
    return 0


def disruptions_allowed(
    min_available: str | None, max_unavailable: str | None, *, expected_pods: int, current_healthy: int
) -> int:
    """status.disruptionsAllowed as the disruption controller computes it."""
    if expected_pods <= 0:
        return 0
    return max(0, current_healthy - desired_healthy(min_available, max_unavailable, expected_pods))


def expected_pods(pdb: Pdb, selected: Sequence[Pod], replicas: dict[tuple[str, str, str], int] | None = None) -> int:
    """expectedPods for the pods a PDB selects: the pod count for an integer minAvailable, else the
    controllers' scale (``replicas`` by (namespace, owner kind, owner name); without it, the pods
    each controller has now). Unmanaged pods count once each."""
    if pdb.max_unavailable is None and not is_percent(pdb.min_available):
        return len(selected)
    owners = Counter(
        (pod.namespace, pod.owner_kind, pod.owner_name) for pod in selected if pod.owner_kind is not None
    )
    unmanaged = sum(1 for pod in selected if pod.owner_kind is None)
    replicas = replicas or {}
    return unmanaged + sum(replicas.get(owner, present) for owner, present in owners.items())


def is_healthy(pod: Pod) -> bool:
    """Counted in currentHealthy: Running, Ready and not terminating."""
    return pod.phase == "Running" and pod.ready and not pod.deleting


def selected_pods(pdbs: Iterable[Pdb], pods: Iterable[Pod]) -> dict[str, list[Pod]]:
    """Per PDB key, the pods it selects (upgrade.domain.selectors' rules: ``{}`` selects the whole
    namespace, an absent selector nothing). Pods are indexed by namespace and label so that
    100,000 pods x 5,000 PDBs stays fast: a selector with an In (or matchLabels) requirement only
    looks at the pods carrying one of its values."""
    pods = list(pods)
    by_namespace: dict[str, list[Pod]] = defaultdict(list)  # filled when a selector has no In to narrow by
    by_label: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
    for pod in pods:
        for key, value in pod.labels:
            by_label[(pod.namespace, key, value)].append(pod)
    positions: dict[int, int] = {}
    selected: dict[str, list[Pod]] = {}
    for pdb in pdbs:
        requirements = pdb.selector.requirements
        if pdb.selector.null:
            selected[pdb.key] = []
            continue
        narrowest = min((r for r in requirements if r.operator is Operator.IN), key=lambda r: len(r.values),
                        default=None)
        if narrowest is None:
            if not by_namespace:
                for pod in pods:
                    by_namespace[pod.namespace].append(pod)
            candidates = by_namespace.get(pdb.namespace, [])
        elif len(narrowest.values) == 1:
            (value,) = narrowest.values
            candidates = by_label.get((pdb.namespace, narrowest.key, value), [])
        else:
            # A pod has one value per key: the values' lists never overlap. Keep the order given.
            positions = positions or {id(pod): index for index, pod in enumerate(pods)}
            candidates = sorted((pod for value in narrowest.values
                                 for pod in by_label.get((pdb.namespace, narrowest.key, value), ())),
                                key=lambda pod: positions[id(pod)])
        # With the narrowing requirement as the only one, every candidate already matches.
        only_narrowing = narrowest is not None and len(requirements) == 1
        selected[pdb.key] = list(candidates) if only_narrowing else [p for p in candidates if pdb.selects(p)]
    return selected


def pdbs_for_pod(pod: Pod, pdbs: Iterable[Pdb]) -> list[Pdb]:
    """The budgets whose selector matches the pod (same namespace, every requirement met)."""
    return [pdb for pdb in pdbs if pdb.selects(pod)]


@dataclass(frozen=True)
class EvictionBlocker:
    """A pod whose eviction a PDB forbids, with the numbers an operator needs to decide."""

    pod: str  # namespace/name
    node: str | None
    pdb: str  # namespace/name; several joined by ", " when more than one PDB covers the pod
    min_available: str | None
    max_unavailable: str | None
    disruptions_allowed: int
    current_healthy: int
    desired_healthy: int
    expected_pods: int
    owner: str | None  # "ReplicaSet/web-5d8f" or None for an unmanaged pod
    replicas: int  # the workload's pods: the PDB's expectedPods, at least those seen (1 for an unmanaged pod)
    reason: str

    def to_public(self) -> dict:
        return {
            "pod": self.pod,
            "node": self.node,
            "pdb": self.pdb,
            "minAvailable": self.min_available,
            "maxUnavailable": self.max_unavailable,
            "disruptionsAllowed": self.disruptions_allowed,
            "currentHealthy": self.current_healthy,
            "desiredHealthy": self.desired_healthy,
            "expectedPods": self.expected_pods,
            "owner": self.owner,
            "replicas": self.replicas,
            "reason": self.reason,
        }


def budget_text(min_available: str | None, max_unavailable: str | None) -> str:
    """A budget as an operator reads it: "minAvailable 1" or "maxUnavailable 25%"."""
    if max_unavailable is not None:
        return f"maxUnavailable {max_unavailable}"
    return f"minAvailable {min_available}"


def _owner_counts(pods: Iterable[Pod]) -> Counter:
    return Counter((p.namespace, p.owner_kind, p.owner_name) for p in pods if p.owner_kind is not None)


def workload_replicas(pod: Pod, covering: Sequence[Pdb], seen: Counter) -> int:
    """How many pods the pod's workload has. The caller may hold only one node's pods (the
    quarantine scan lists pods per cordoned node), so the covering PDB's status.expectedPods (the
    pods it selects, or the controller's scale) is the count; never fewer than the pods seen."""
    if pod.owner_kind is None:
        return 1
    present = seen[(pod.namespace, pod.owner_kind, pod.owner_name)]
    return max([present, *(pdb.expected_pods for pdb in covering)])


def blocker_for(pod: Pod, pdb: Pdb, *, replicas: int, reason: str | None = None, pdb_key: str | None = None,
                allowed: int | None = None, healthy: int | None = None, desired: int | None = None,
                expected: int | None = None) -> EvictionBlocker:
    """An EvictionBlocker for ``pod`` held by ``pdb``; the numbers default to the PDB's live status."""
    allowed = pdb.disruptions_allowed if allowed is None else allowed
    healthy = pdb.current_healthy if healthy is None else healthy
    desired = pdb.desired_healthy if desired is None else desired
    expected = pdb.expected_pods if expected is None else expected
    if reason is None:
        reason = (
            f"PDB {pdb.key} ({budget_text(pdb.min_available, pdb.max_unavailable)}) allows {allowed} disruption(s): "
            f"{healthy} of {expected} expected pod(s) healthy, {desired} required"
        )
    return EvictionBlocker(
        pod=pod.key,
        node=pod.node,
        pdb=pdb_key or pdb.key,
        min_available=pdb.min_available,
        max_unavailable=pdb.max_unavailable,
        disruptions_allowed=allowed,
        current_healthy=healthy,
        desired_healthy=desired,
        expected_pods=expected,
        owner=f"{pod.owner_kind}/{pod.owner_name}" if pod.owner_kind else None,
        replicas=replicas,
        reason=reason,
    )


def eviction_blockers(pods: Iterable[Pod], pdbs: Sequence[Pdb]) -> list[EvictionBlocker]:
    """The pods (of those given) whose policy/v1 eviction would be refused right now, judged on the
    PDBs' live status; in the order given."""
    pods = list(pods)
    owners = _owner_counts(pods)
    blockers: list[EvictionBlocker] = []
    for pod in pods:
        if pod.deleting or pod.phase in BUDGET_FREE_PHASES:
            continue
        covering = pdbs_for_pod(pod, pdbs)
        if not covering:
            continue
        replicas = workload_replicas(pod, covering, owners)
        if len(covering) > 1:
            keys = ", ".join(sorted(p.key for p in covering))
            blockers.append(
                blocker_for(
                    pod, covering[0], replicas=replicas, pdb_key=keys,
                    reason=f"pod is covered by more than one PDB ({keys}); Kubernetes refuses to evict it",
                )
            )
            continue
        pdb = covering[0]
        unready_may_go = not is_healthy(pod) and pdb.current_healthy >= pdb.desired_healthy
        if pdb.disruptions_allowed <= 0 and not unready_may_go:
            blockers.append(blocker_for(pod, pdb, replicas=replicas))
    return blockers


def unsatisfiable_pdbs(
    pods: Iterable[Pod], pdbs: Iterable[Pdb], *, selected: dict[str, list[Pod]] | None = None
) -> list[str]:
    """AKS's UnsatisfiablePDB pre-check: budgets that can never allow a disruption, whatever the
    pods' health. Expected pods are the live pods each PDB selects (terminal ones excluded);
    ``selected`` may pass that selection when the caller has it already."""
    pdbs = sorted(pdbs, key=lambda p: p.key)
    if selected is None:
        selected = selected_pods(pdbs, pods)
    selected = {key: [p for p in found if p.phase not in ("Succeeded", "Failed")] for key, found in selected.items()}
    problems: list[str] = []
    for pdb in pdbs:
        expected = len(selected[pdb.key])
        if pdb.max_unavailable is not None:
            if scaled_value(pdb.max_unavailable, expected, field="maxUnavailable") == 0 and expected:
                problems.append(f"PDB {pdb.key} has maxUnavailable({pdb.max_unavailable}) == 0")
        elif pdb.min_available is not None and expected:
            required = scaled_value(pdb.min_available, expected)
            if required >= expected:
                problems.append(f"PDB {pdb.key} has minAvailable({required}) >= expectedPods({expected})")
    return problems
