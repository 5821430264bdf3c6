"""Drain decisions, with kubectl drain's semantics: which pods of a node are evicted, skipped or refused.

A drain looks at every pod of the node through an ordered list of small pure filters (kubectl
``pkg/drain``): DaemonSet (orphaned ones too), mirror (static), emptyDir, unmanaged. Each filter
keeps the pod, skips it, keeps it with a warning, or refuses the whole drain, always with a reason.
Also here: the drain options, the plan for one node, the per-pod report (naming the PDB that
blocks an eviction and the disruptions it allows). Pod selectors are upgrade.domain.selectors'.
No I/O: the drain engine in upgrade.services.drain executes plans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from upgrade.domain.model import Pdb, Pod
from upgrade.domain.pdb import budget_text, pdbs_for_pod
from upgrade.domain.selectors import LabelSelector
from upgrade.errors import InvalidInput


class Verdict(StrEnum):
    KEEP = "keep"  # evict it
    WARN = "warn"  # evict it, but say what is lost (local data, a pod nothing recreates)
    SKIP = "skip"  # leave it on the node; it does not block the drain
    REFUSE = "refuse"  # it blocks the drain until an option allows it


@dataclass(frozen=True)
class DrainOptions:
    """kubectl drain's options. ``grace_seconds`` -1 = each pod's own; ``timeout_seconds`` 0 = none."""

    ignore_daemonsets: bool = False
    delete_emptydir_data: bool = False
    force: bool = False
    grace_seconds: int = -1
    pod_selector: str | None = None
    timeout_seconds: float = 0.0
    max_concurrent_evictions: int = 32  # bounded: every pod of a node in flight, without a thread per pod
    # The pods the drain looks at (kubectl --pod-selector), parsed from pod_selector; none: every pod.
    selector: LabelSelector = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.grace_seconds < -1:
            raise InvalidInput("drain options", "grace_seconds", "must be -1 (the pod's own) or >= 0")
        if self.timeout_seconds < 0:
            raise InvalidInput("drain options", "timeout_seconds", "must be >= 0 (0 = no timeout)")
        if self.max_concurrent_evictions < 1:
            raise InvalidInput("drain options", "max_concurrent_evictions", "must be >= 1")
        # A selector Kubernetes would refuse is refused here, naming the field.
        object.__setattr__(
            self, "selector", LabelSelector.parse(self.pod_selector or "", what="drain options", field="pod_selector")
        )

    @property
    def eviction_grace_seconds(self) -> int | None:
        """The grace period to request: None lets each pod use its own."""
        return None if self.grace_seconds < 0 else self.grace_seconds

    def to_dict(self) -> dict:
        return {
            "ignore_daemonsets": self.ignore_daemonsets,
            "delete_emptydir_data": self.delete_emptydir_data,
            "force": self.force,
            "grace_seconds": self.grace_seconds,
            "pod_selector": self.pod_selector,
            "timeout_seconds": self.timeout_seconds,
            "max_concurrent_evictions": self.max_concurrent_evictions,
        }

    @classmethod
    def from_dict(cls, raw: Mapping) -> DrainOptions:
        known = {k: raw[k] for k in cls().to_dict() if k in raw}
        return cls(**known)


@dataclass(frozen=True)
class PodDecision:
    pod: Pod
    verdict: Verdict
    reason: str = ""

    @property
    def evict(self) -> bool:
        """Whether the engine must issue an eviction (a terminating pod is only waited for)."""
        return self.verdict in (Verdict.KEEP, Verdict.WARN) and not self.pod.deleting

    @property
    def wait_for(self) -> bool:
        """Whether the node is drained only once this pod is gone."""
        return self.verdict in (Verdict.KEEP, Verdict.WARN)


@dataclass(frozen=True)
class DrainContext:
    """What the filters need beyond the pod itself: the DaemonSets (namespace, name) that the API
    no longer has, for the DaemonSet pods on the node (kubectl GETs each pod's DaemonSet)."""

    missing_daemonsets: frozenset[tuple[str, str]] = frozenset()


# A filter returns None when it has no opinion, so the next filter decides. The filters and their
# order are kubectl's (pkg/drain filters.go): skip-deleted, daemonSet, mirrorPod, localStorage,
# unreplicated. kubectl's skip-deleted filter skips a terminating pod only past
# --skip-wait-for-delete-timeout (default 0: never), so a terminating pod goes through the other
# filters like any pod: a terminating unmanaged pod is refused without force, not waited for.
PodFilter = Callable[[Pod, DrainOptions, DrainContext], PodDecision | None]

_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def daemonset_pods(pod: Pod, options: DrainOptions, context: DrainContext) -> PodDecision | None:
    # kubectl: a finished pod of a DaemonSet is deleted like any finished pod; a pod whose DaemonSet
    # is gone (orphaned) is deleted only with --force; a live DaemonSet's pod is never evicted (the
    # controller ignores unschedulable and would recreate it at once): ignored with
    # --ignore-daemonsets, else the drain is refused.
    if pod.owner_kind != "DaemonSet" or pod.phase in _FINISHED_PHASES:
        return None
    if (pod.namespace, pod.owner_name) in context.missing_daemonsets:
        if options.force:
            return PodDecision(pod, Verdict.WARN, f"DaemonSet {pod.owner_name} not found: orphaned pod deleted")
        return PodDecision(
            pod, Verdict.REFUSE, f"DaemonSet {pod.owner_name} not found (an orphaned pod); use force"
        )
    if options.ignore_daemonsets:
        return PodDecision(pod, Verdict.SKIP, f"ignoring DaemonSet-managed pod ({pod.owner_name})")
    return PodDecision(
        pod, Verdict.REFUSE, f"DaemonSet-managed pod ({pod.owner_name}); use ignore-daemonsets"
    )


def mirror_pods(pod: Pod, options: DrainOptions, context: DrainContext) -> PodDecision | None:
    # The kubelet owns static pods; the API cannot evict them and they stop with the node.
    if pod.mirror:
        return PodDecision(pod, Verdict.SKIP, "mirror (static) pod")
    return None


def local_storage(pod: Pod, options: DrainOptions, context: DrainContext) -> PodDecision | None:
    if not pod.empty_dir or pod.phase in _FINISHED_PHASES:
        return None
    if options.delete_emptydir_data:
        return PodDecision(pod, Verdict.WARN, "emptyDir data is deleted")
    return PodDecision(
        pod, Verdict.REFUSE, "uses emptyDir local storage (its data is lost); use delete-emptydir-data"
    )


def unmanaged_pods(pod: Pod, options: DrainOptions, context: DrainContext) -> PodDecision | None:
    # kubectl: only a controller (the ownerReference with controller: true) makes a pod managed; a pod
    # whose owners are all non-controllers is unmanaged (the adapter leaves owner_kind None).
    if pod.owner_kind or pod.phase in _FINISHED_PHASES:
        return None
    if options.force:
        return PodDecision(pod, Verdict.WARN, "no controller: nothing recreates it")
    return PodDecision(pod, Verdict.REFUSE, "not managed by a controller (not recreated); use force")


POD_FILTERS: tuple[PodFilter, ...] = (
    daemonset_pods,
    mirror_pods,
    local_storage,
    unmanaged_pods,
)


def decide_pod(pod: Pod, options: DrainOptions, context: DrainContext | None = None) -> PodDecision:
    """Run the filters in order: a skip or refusal stops, a keep-with-warning lets later filters speak.
    A terminating pod kept is waited for, not evicted again (PodDecision.evict)."""
    context = context or DrainContext()
    warnings: list[str] = []
    for pod_filter in POD_FILTERS:
        decision = pod_filter(pod, options, context)
        if decision is None:
            continue
        if decision.verdict is Verdict.WARN:
            warnings.append(decision.reason)
            continue
        return decision
    if warnings:
        return PodDecision(pod, Verdict.WARN, "; ".join(warnings))
    return PodDecision(pod, Verdict.KEEP, "already terminating" if pod.deleting else "")


@dataclass(frozen=True)
class DrainPlan:
    """What draining ``node`` means for each of its pods (those matching the pod selector)."""

    node: str
    decisions: tuple[PodDecision, ...]

    @property
    def to_evict(self) -> tuple[PodDecision, ...]:
        return tuple(d for d in self.decisions if d.evict)

    @property
    def to_wait_for(self) -> tuple[PodDecision, ...]:
        return tuple(d for d in self.decisions if d.wait_for)

    @property
    def refused(self) -> tuple[PodDecision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.REFUSE)

    @property
    def skipped(self) -> tuple[PodDecision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.SKIP)

    @property
    def warnings(self) -> tuple[PodDecision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.WARN)


def chosen_pods(node: str, pods: Iterable[Pod], options: DrainOptions) -> list[Pod]:
    """The pods a drain of ``node`` looks at (those matching the pod selector), by name."""
    selector = options.selector
    chosen = [p for p in pods if p.node == node and selector.matches(p.label_map())]
    return sorted(chosen, key=lambda p: (p.namespace, p.name))


def daemonsets_to_check(pods: Iterable[Pod]) -> set[tuple[str, str]]:
    """The DaemonSets (namespace, name) whose existence the DaemonSet filter needs: those of the
    pods that are not finished (kubectl GETs only these)."""
    return {(p.namespace, p.owner_name) for p in pods
            if p.owner_kind == "DaemonSet" and p.owner_name and p.phase not in _FINISHED_PHASES}


def plan_drain(node: str, pods: Iterable[Pod], options: DrainOptions,
               context: DrainContext | None = None) -> DrainPlan:
    return DrainPlan(node, tuple(decide_pod(p, options, context) for p in chosen_pods(node, pods, options)))


# ---- the per-pod report ----------------------------------------------------------------------


class PodDrainState(StrEnum):
    EVICTING = "evicting"  # eviction accepted or pod already terminating: waiting for it to go
    BLOCKED = "blocked"  # 429: a PodDisruptionBudget forbids the eviction now
    RETRYING = "retrying"  # a transient API error; the next pass tries again
    FAILED = "failed"  # the API refused the eviction for good
    GONE = "gone"  # NotFound, or a new pod (another UID) took the name
    SKIPPED = "skipped"
    REFUSED = "refused"


@dataclass(frozen=True)
class PdbHold:
    """The PDB(s) holding a pod whose eviction was refused, as the drain report names them."""

    pdb: str  # namespace/name; several joined by ", " (Kubernetes never evicts such a pod)
    disruptions_allowed: int
    reason: str


def pdb_hold(pod: Pod, pdbs: Sequence[Pdb]) -> PdbHold | None:
    """Which PDB blocks ``pod``'s eviction, from the PDBs' live status; None if none selects it."""
    covering = sorted(pdbs_for_pod(pod, pdbs), key=lambda p: p.key)
    if not covering:
        return None
    if len(covering) > 1:
        keys = ", ".join(p.key for p in covering)
        allowed = min(p.disruptions_allowed for p in covering)
        return PdbHold(keys, allowed, f"covered by more than one PDB ({keys}): never evictable")
    pdb = covering[0]
    return PdbHold(
        pdb.key,
        pdb.disruptions_allowed,
        f"{budget_text(pdb.min_available, pdb.max_unavailable)}: {pdb.current_healthy} of {pdb.expected_pods} healthy, "
        f"{pdb.desired_healthy} required",
    )


@dataclass(frozen=True)
class PodDrainReport:
    namespace: str
    name: str
    uid: str
    state: PodDrainState
    reason: str = ""
    pdb: str | None = None  # the PDB blocking the eviction (namespace/name)
    disruptions_allowed: int | None = None
    attempts: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict:
        return {
            "pod": self.key,
            "uid": self.uid,
            "state": self.state.value,
            "reason": self.reason,
            "pdb": self.pdb,
            "disruptions_allowed": self.disruptions_allowed,
            "attempts": self.attempts,
        }

    def describe(self) -> str:
        text = f"{self.key}: {self.state.value}"
        if self.pdb:
            text += f" by PDB {self.pdb} (disruptionsAllowed={self.disruptions_allowed})"
        if self.reason:
            text += f": {self.reason}"
        return text


class DrainStatus(StrEnum):
    DRAINED = "drained"  # every pod the drain waits for is gone
    IN_PROGRESS = "in-progress"  # evictions accepted, pods still terminating (or transient errors)
    BLOCKED = "blocked"  # some eviction is forbidden by a PDB now
    REFUSED = "refused"  # pods the options do not allow to evict (nothing was evicted)
    FAILED = "failed"  # the API refused an eviction for good
    TIMED_OUT = "timed-out"  # the global timeout passed before the node was drained

    @property
    def final(self) -> bool:
        return self in (DrainStatus.DRAINED, DrainStatus.REFUSED, DrainStatus.FAILED, DrainStatus.TIMED_OUT)


def drain_status(reports: Iterable[PodDrainReport]) -> DrainStatus:
    """The node's status from its pods' states: refusals first, then failures, blocks, waits."""
    states = {r.state for r in reports}
    if PodDrainState.REFUSED in states:
        return DrainStatus.REFUSED
    if PodDrainState.FAILED in states:
        return DrainStatus.FAILED
    if PodDrainState.BLOCKED in states:
        return DrainStatus.BLOCKED
    if states & {PodDrainState.EVICTING, PodDrainState.RETRYING}:
        return DrainStatus.IN_PROGRESS
    return DrainStatus.DRAINED
