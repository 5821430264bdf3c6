"""The drain engine: cordon a node and evict its pods, one non-blocking pass at a time.

``drain_node_step`` is one pass: cordon, list the node's pods, decide (upgrade.domain.drain),
issue every due eviction concurrently (bounded), and say whether the node is drained, still has
pods terminating, or is blocked by a PodDisruptionBudget, with a per-pod report. It never sleeps:
a Functions step calls it once and returns ``Retry(progress.retry_after_seconds)`` until the
status is final, carrying ``progress.state`` in the step's args. ``drain_node`` loops passes with
short sleeps for the CLI. Pods are tracked by UID: NotFound or a new UID under the name = gone.
One list call per pass tells which pods went, where kubectl drain GETs every pod every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from upgrade.domain.drain import (
    DrainContext,
    DrainOptions,
    DrainStatus,
    PodDecision,
    PodDrainReport,
    PodDrainState,
    chosen_pods,
    daemonsets_to_check,
    drain_status,
    pdb_hold,
    plan_drain,
)
from upgrade.domain.model import Pdb
from upgrade.errors import NotFound, PermanentError, TemporaryError
from upgrade.ports import Kube

# kubectl waits 5 s before retrying an eviction a PDB refused; a PDB changes when pods get Ready.
PDB_RETRY_SECONDS = 5.0
# Kubernetes' terminationGracePeriodSeconds when a pod spec does not say.
DEFAULT_GRACE_SECONDS = 30
# How soon a Functions step looks again at terminating pods (queue delays have 1 s granularity).
TERMINATING_RECHECK_SECONDS = 2.0
# A 5xx on one eviction: the next pass tries that pod again this soon (at the latest the server's Retry-After).
TRANSIENT_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class HeldEviction:
    """A pod whose last eviction was refused: when to try again, and what held it."""

    uid: str
    retry_at: float
    pdb: str | None
    disruptions_allowed: int | None
    reason: str
    attempts: int
    state: str = PodDrainState.BLOCKED.value  # blocked (429) or retrying (a transient error)


@dataclass(frozen=True)
class DrainState:
    """What one pass hands to the next (JSON-safe through to_dict/from_dict for step args)."""

    started_at: float | None = None
    evicted: Mapping[str, str] = field(default_factory=dict)  # pod key -> UID whose eviction was accepted
    held: Mapping[str, HeldEviction] = field(default_factory=dict)
    # "namespace/name" of each DaemonSet of the node's pods -> whether the API has it (asked once per drain)
    daemonsets: Mapping[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "started_at": self.started_at,
            "evicted": dict(self.evicted),
            "daemonsets": dict(self.daemonsets),
            "held": {
                key: {
                    "uid": h.uid,
                    "retry_at": h.retry_at,
                    "pdb": h.pdb,
                    "disruptions_allowed": h.disruptions_allowed,
                    "reason": h.reason,
                    "attempts": h.attempts,
                    "state": h.state,
                }
                for key, h in self.held.items()
            },
        }

    @classmethod
    def from_dict(cls, raw: Mapping | None) -> DrainState:
        if not raw:
            return cls()
        return cls(
            started_at=raw.get("started_at"),
            evicted=dict(raw.get("evicted", {})),
            held={key: HeldEviction(**value) for key, value in raw.get("held", {}).items()},
            daemonsets=dict(raw.get("daemonsets", {})),
        )


@dataclass(frozen=True)
class DrainProgress:
    node: str
    status: DrainStatus
    pods: tuple[PodDrainReport, ...]
    state: DrainState
    retry_after_seconds: float
    elapsed_seconds: float
    evictions_sent: int = 0
    cordoned_now: bool = False

    @property
    def blocked(self) -> tuple[PodDrainReport, ...]:
        return tuple(p for p in self.pods if p.state is PodDrainState.BLOCKED)

    def count(self, state: PodDrainState) -> int:
        return sum(1 for p in self.pods if p.state is state)

    def summary(self) -> str:
        if self.status is DrainStatus.DRAINED:
            return f"node {self.node} drained"
        troubles = [
            p.describe()
            for p in self.pods
            if p.state in (PodDrainState.BLOCKED, PodDrainState.REFUSED, PodDrainState.FAILED)
        ]
        text = f"node {self.node} {self.status.value}"
        if self.status in (DrainStatus.IN_PROGRESS, DrainStatus.TIMED_OUT):
            text += f": {self.count(PodDrainState.EVICTING)} pods terminating"
        return text + ("; " + "; ".join(troubles) if troubles else "")

    def to_facts(self) -> dict:
        """A compact record for a run's facts: status and the pods that hold the drain up."""
        return {
            "node": self.node,
            "status": self.status.value,
            "gone": self.count(PodDrainState.GONE),
            "terminating": self.count(PodDrainState.EVICTING),
            "blockers": [
                p.to_dict()
                for p in self.pods
                if p.state in (PodDrainState.BLOCKED, PodDrainState.REFUSED, PodDrainState.FAILED)
            ],
        }


def _report(decision: PodDecision, state: PodDrainState, reason: str = "", **extra) -> PodDrainReport:
    pod = decision.pod
    return PodDrainReport(pod.namespace, pod.name, pod.uid, state, reason or decision.reason, **extra)


def _evict(kube: Kube, decision: PodDecision, grace_seconds: int | None) -> Exception | None:
    try:
        kube.evict(decision.pod.namespace, decision.pod.name, grace_seconds=grace_seconds)
    except (TemporaryError, PermanentError) as exc:
        return exc
    return None


def drain_node_step(
    kube: Kube,
    node: str,
    options: DrainOptions,
    state: DrainState | None = None,
    *,
    now: Callable[[], float] = time.time,
    recheck_cordon: bool = True,
) -> DrainProgress:
    """One pass over ``node``. Raises TemporaryError/PermanentError only for the node-level calls
    (cordon, listing); per-pod eviction errors land in the report."""
    state = state or DrainState()
    started = now() if state.started_at is None else state.started_at
    cordoned_now = False
    if recheck_cordon or state.started_at is None:
        cordoned_now = kube.set_unschedulable(node, True)
    pods = kube.list_pods(node=node, label_selector=options.pod_selector)
    daemonsets = _daemonsets_known(kube, chosen_pods(node, pods, options), state.daemonsets)
    missing = frozenset(tuple(key.split("/", 1)) for key, exists in daemonsets.items() if not exists)
    plan = plan_drain(node, pods, options, DrainContext(missing_daemonsets=missing))
    at = now()

    present = {p.key: p.uid for p in pods}
    # Keyed by (name, UID): a pod gone and its successor under the same name are two rows.
    reports: dict[tuple[str, str], PodDrainReport] = {}
    evicted = {k: uid for k, uid in state.evicted.items() if present.get(k) == uid}
    for key, uid in state.evicted.items():
        if key not in evicted:
            ns, name = key.split("/", 1)
            reports[(key, uid)] = PodDrainReport(ns, name, uid, PodDrainState.GONE, "evicted")
    held = {k: h for k, h in state.held.items() if present.get(k) == h.uid}

    for decision in plan.skipped:
        reports[(decision.pod.key, decision.pod.uid)] = _report(decision, PodDrainState.SKIPPED)
    sent = 0
    if plan.refused:
        # kubectl refuses the whole drain before evicting anything: the node stays cordoned.
        for decision in plan.refused:
            reports[(decision.pod.key, decision.pod.uid)] = _report(decision, PodDrainState.REFUSED)
        for decision in plan.to_wait_for:
            reports[(decision.pod.key, decision.pod.uid)] = _report(decision, PodDrainState.EVICTING, "not evicted: drain refused")
    else:
        due: list[PodDecision] = []
        for decision in plan.to_wait_for:
            key = decision.pod.key
            hold = held.get(key)
            if not decision.evict:
                evicted[key] = decision.pod.uid
                reports[(key, decision.pod.uid)] = _report(decision, PodDrainState.EVICTING, "terminating")
            elif key in evicted and decision.pod.deleting:
                reports[(key, decision.pod.uid)] = _report(decision, PodDrainState.EVICTING, "terminating")
            elif hold and hold.retry_at > at:
                reports[(key, decision.pod.uid)] = _report(
                    decision,
                    PodDrainState(hold.state),
                    hold.reason,
                    pdb=hold.pdb,
                    disruptions_allowed=hold.disruptions_allowed,
                    attempts=hold.attempts,
                )
            else:
                due.append(decision)
        sent = len(due)
        results = _evict_all(kube, due, options)
        pdbs_by_namespace: dict[str, list[Pdb]] = {}
        for decision, error in results:
            key = decision.pod.key
            attempts = (held[key].attempts if key in held else 0) + 1
            if error is None:
                evicted[key] = decision.pod.uid
                held.pop(key, None)
                reports[(key, decision.pod.uid)] = _report(decision, PodDrainState.EVICTING, "eviction accepted", attempts=attempts)
            elif isinstance(error, NotFound):
                held.pop(key, None)
                reports[(key, decision.pod.uid)] = _report(decision, PodDrainState.GONE, "already gone", attempts=attempts)
            elif isinstance(error, TemporaryError) and error.status == 429:
                namespace = decision.pod.namespace
                if namespace not in pdbs_by_namespace:
                    pdbs_by_namespace[namespace] = _pdbs_or_empty(kube, namespace)
                hold_info = pdb_hold(decision.pod, pdbs_by_namespace[namespace])
                reason = f"{error}" + (f" ({hold_info.reason})" if hold_info else "")
                retry = max(PDB_RETRY_SECONDS, error.delay_seconds)
                held[key] = HeldEviction(
                    decision.pod.uid,
                    at + retry,
                    hold_info.pdb if hold_info else None,
                    hold_info.disruptions_allowed if hold_info else None,
                    reason,
                    attempts,
                )
                reports[(key, decision.pod.uid)] = _report(
                    decision,
                    PodDrainState.BLOCKED,
                    reason,
                    pdb=held[key].pdb,
                    disruptions_allowed=held[key].disruptions_allowed,
                    attempts=attempts,
                )
            elif isinstance(error, TemporaryError):
                held[key] = HeldEviction(
                    decision.pod.uid,
                    at + min(error.delay_seconds, TRANSIENT_RETRY_SECONDS),
                    None,
                    None,
                    str(error),
                    attempts,
                    PodDrainState.RETRYING.value,
                )
                reports[(key, decision.pod.uid)] = _report(decision, PodDrainState.RETRYING, str(error), attempts=attempts)
            else:
                # kubectl fails the drain at once on any refusal but a PDB's 429: so does a pod that
                # more than one PDB covers (the API's 500, which the adapter reports as permanent).
                reports[(key, decision.pod.uid)] = _report(decision, PodDrainState.FAILED, str(error), attempts=attempts)

    ordered = tuple(reports[k] for k in sorted(reports))
    status = drain_status(ordered)
    elapsed = at - started
    if not status.final and options.timeout_seconds and elapsed >= options.timeout_seconds:
        status = DrainStatus.TIMED_OUT
    next_state = DrainState(started_at=started, evicted=evicted, held=held, daemonsets=daemonsets)
    return DrainProgress(
        node=node,
        status=status,
        pods=ordered,
        state=next_state,
        retry_after_seconds=_retry_after(status, held, ordered, at),
        elapsed_seconds=elapsed,
        evictions_sent=sent,
        cordoned_now=cordoned_now,
    )


def _daemonsets_known(kube: Kube, pods: list, known: Mapping[str, bool]) -> dict[str, bool]:
    """Whether each DaemonSet of the node's pods exists, asking the API only for those not yet known."""
    found = dict(known)
    for namespace, name in sorted(daemonsets_to_check(pods)):
        key = f"{namespace}/{name}"
        if key not in found:
            found[key] = kube.daemonset_exists(namespace, name)
    return found


def _evict_all(
    kube: Kube, due: list[PodDecision], options: DrainOptions
) -> list[tuple[PodDecision, Exception | None]]:
    if not due:
        return []
    grace = options.eviction_grace_seconds
    # The drain ends when the slowest pod is gone: the longest grace periods start first.
    due = sorted(due, key=lambda d: -(d.pod.grace_seconds if d.pod.grace_seconds is not None else DEFAULT_GRACE_SECONDS))
    if len(due) == 1:
        return [(due[0], _evict(kube, due[0], grace))]
    workers = min(options.max_concurrent_evictions, len(due))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evict") as pool:
        errors = list(pool.map(lambda d: _evict(kube, d, grace), due))
    return list(zip(due, errors, strict=True))


def _pdbs_or_empty(kube: Kube, namespace: str) -> list[Pdb]:
    # Naming the PDB is a courtesy to the operator; a failed lookup must not fail the pass.
    try:
        return kube.list_pdbs(namespace=namespace)
    except (TemporaryError, PermanentError):
        return []


def _retry_after(status: DrainStatus, held: Mapping[str, HeldEviction], reports: tuple, at: float) -> float:
    """When the next pass is worth running: the next held eviction falls due, or terminating pods
    are worth another look."""
    if status.final:
        return 0.0
    waits = [h.retry_at - at for h in held.values()]
    if any(r.state is PodDrainState.EVICTING for r in reports):
        waits.append(TERMINATING_RECHECK_SECONDS)
    return max(0.0, min(waits, default=TERMINATING_RECHECK_SECONDS))


ProgressCallback = Callable[[DrainProgress], None]


def drain_node(
    kube: Kube,
    node: str,
    options: DrainOptions,
    progress_callback: ProgressCallback | None = None,
    *,
    poll_seconds: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> DrainProgress:
    """Drain ``node`` to completion (the CLI): passes every ``poll_seconds`` while pods terminate,
    blocked evictions retried on their own back-off, until drained, refused, failed or timed out."""
    state = DrainState()
    progress: DrainProgress | None = None
    started = now()
    while True:
        try:
            progress = drain_node_step(kube, node, options, state, now=now, recheck_cordon=progress is None)
        except TemporaryError as exc:
            # A transient API error on the node or the pod list: wait and look again, within the timeout.
            waited = now() - started
            if options.timeout_seconds and waited >= options.timeout_seconds:
                if progress is None:
                    raise
                return replace(progress, status=DrainStatus.TIMED_OUT, elapsed_seconds=waited)
            sleep(min(max(exc.delay_seconds, poll_seconds), 5.0))
            continue
        state = progress.state
        if progress_callback:
            progress_callback(progress)
        if progress.status.final:
            return progress
        pause = poll_seconds
        if progress.count(PodDrainState.EVICTING) == 0:
            pause = max(poll_seconds, progress.retry_after_seconds)
        if options.timeout_seconds:
            pause = min(pause, max(0.0, started + options.timeout_seconds - now()))
        sleep(pause)
