"""Workload validation for blue-green runs: are the workloads that ran on blue healthy on green?

Pure decisions over a snapshot (workloads, pods, which nodes are blue and which green):

- every application workload that had pods on blue (counted by its controller: Deployment,
  ReplicaSet, StatefulSet) has desired == ready, none of its pods left on blue, and as many
  Ready pods on the run's green pool as it ran on blue;
- none of those pods landed on a third pool (a node neither blue nor green): deleting blue would
  not be the move the operator validated, so the check names the pod and its node. Pods the
  workload already ran off blue when blue was cordoned stay where they are and do not count;
- no pod on green is crash-looping or above the restart threshold.

A check result is *pending* when waiting may fix it (pods still starting after a drain) and
failed outright when it cannot (a crash loop, a pod on a third pool, a workload that
disappeared). HTTP probes and custom checks run in the services and report the same
``CheckResult``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from upgrade.domain.model import Pod, Workload

APPLICATION_OWNERS = ("ReplicaSet", "StatefulSet")


@dataclass(frozen=True, order=True)
class WorkloadKey:
    kind: str  # ReplicaSet | StatefulSet | Deployment
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}

    @classmethod
    def from_dict(cls, raw: dict[str, str]) -> WorkloadKey:
        return cls(raw["kind"], raw["namespace"], raw["name"])


UID_DIGEST_CHARS = 12


def uid_digest(uid: str) -> str:
    """A pod uid in the compact form a run records (48 bits of its SHA-256): tens of thousands of
    pods stay small in the run record, and a collision among one workload's pods is negligible."""
    if len(uid) == UID_DIGEST_CHARS and all(c in "0123456789abcdef" for c in uid):
        return uid  # already a digest (read back from a run record)
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:UID_DIGEST_CHARS]


@dataclass(frozen=True)
class BlueOrigin:
    """A workload with pods on blue when blue was cordoned: how many ran there, and the uids (as
    ``uid_digest``) of its pods that ran on other pools then (they are not part of the move)."""

    key: WorkloadKey
    pods_on_blue: int | None = None  # None: a run recorded before the count was kept; desired is expected
    pods_elsewhere: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "pods_elsewhere", frozenset(uid_digest(u) for u in self.pods_elsewhere))

    def to_dict(self) -> dict[str, Any]:
        return {**self.key.to_dict(), "podsOnBlue": self.pods_on_blue, "podsElsewhere": sorted(self.pods_elsewhere)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BlueOrigin:
        return cls(WorkloadKey.from_dict(raw), raw.get("podsOnBlue"), frozenset(raw.get("podsElsewhere") or ()))


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    reason: str = ""
    pending: bool = False  # failed for now, but waiting may make it pass

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "pending": self.pending, "reason": self.reason}


@dataclass(frozen=True)
class ValidationReport:
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def pending(self) -> bool:
        """Failed only on checks that may still pass: worth checking again before giving up."""
        failed = [c for c in self.checks if not c.passed]
        return bool(failed) and all(c.pending for c in failed)

    @property
    def summary(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if not failed:
            return f"all {len(self.checks)} checks passed"
        return "; ".join(f"{c.name}: {c.reason}" for c in failed)

    def to_facts(self) -> dict[str, Any]:
        return {"passed": self.passed, "summary": self.summary, "checks": [c.to_dict() for c in self.checks]}


def application_owner(pod: Pod) -> WorkloadKey | None:
    """The controller that recreates ``pod`` elsewhere, if it is an application workload.
    DaemonSet pods, static pods, Jobs and unmanaged pods are not migrated workloads."""
    if pod.mirror or pod.owner_kind not in APPLICATION_OWNERS or not pod.owner_name:
        return None
    return WorkloadKey(pod.owner_kind, pod.namespace, pod.owner_name)


def deployments_of(workloads: Sequence[Workload]) -> dict[tuple[str, str], str]:
    """(namespace, ReplicaSet name) -> the Deployment controlling it, as the ReplicaSets'
    ownerReferences say: built once per check, so counting tens of thousands of pods stays linear."""
    return {(w.namespace, rs): w.name for w in workloads if w.kind == "Deployment" for rs in w.replica_sets}


def controller_of(owner: WorkloadKey, deployments: Mapping[tuple[str, str], str]) -> WorkloadKey:
    """The controller counted for a pod owner: a ReplicaSet a listed Deployment controls counts as
    that Deployment (``deployments_of``; a rollout's new ReplicaSet the same), any other as itself.
    By ownership, as Kubernetes links them, never by name: a ReplicaSet ``web-1234`` that no
    Deployment controls is not Deployment ``web``'s."""
    if owner.kind == "ReplicaSet":
        deployment = deployments.get((owner.namespace, owner.name))
        if deployment is not None:
            return WorkloadKey("Deployment", owner.namespace, deployment)
    return owner


def blue_origin_workloads(
    pods: Iterable[Pod], blue_nodes: Iterable[str], workloads: Sequence[Workload]
) -> list[BlueOrigin]:
    """The application workloads (by controller) with at least one pod on a blue node, sorted,
    with their pod count on blue and their pods elsewhere."""
    blue = set(blue_nodes)
    deployments = deployments_of(workloads)
    on_blue: dict[WorkloadKey, int] = {}
    elsewhere: dict[WorkloadKey, set[str]] = {}
    for pod in pods:
        owner = application_owner(pod)
        if owner is None or pod.deleting:
            continue
        key = controller_of(owner, deployments)
        if pod.node in blue:
            on_blue[key] = on_blue.get(key, 0) + 1
        elif pod.node is not None:
            elsewhere.setdefault(key, set()).add(pod.uid)
    return [BlueOrigin(key, count, frozenset(elsewhere.get(key, ()))) for key, count in sorted(on_blue.items())]


def check_workloads(
    origin: Sequence[BlueOrigin],
    workloads: Sequence[Workload],
    pods: Sequence[Pod],
    *,
    blue_nodes: Iterable[str],
    green_nodes: Iterable[str],
) -> CheckResult:
    """Every blue-origin workload: desired == ready, nothing left on blue, as many Ready pods on green
    as ran on blue, and no pod moved to a third pool."""
    blue, green = set(blue_nodes), set(green_nodes)
    deployments = deployments_of(workloads)
    by_key = {WorkloadKey(w.kind, w.namespace, w.name): w for w in workloads}
    pods_by_controller: dict[WorkloadKey, list[Pod]] = {}
    for pod in pods:
        owner = application_owner(pod)
        if owner is not None and not pod.deleting:
            pods_by_controller.setdefault(controller_of(owner, deployments), []).append(pod)
    wrong: list[str] = []
    waiting: list[str] = []
    for entry in origin:
        key = entry.key
        workload = by_key.get(key)
        if workload is None:
            wrong.append(f"{key} no longer exists")
            continue
        owned = pods_by_controller.get(key, [])
        on_blue = [p for p in owned if p.node in blue]
        strays = [p for p in owned if p.node is not None and p.node not in blue and p.node not in green
                  and uid_digest(p.uid) not in entry.pods_elsewhere]
        ready_on_green = sum(1 for p in owned if p.ready and p.node in green)
        expected = workload.desired if entry.pods_on_blue is None else entry.pods_on_blue
        wrong += [f"{key} pod {p.key} runs on node {p.node}, which is in neither blue nor green" for p in strays]
        if workload.ready != workload.desired:
            waiting.append(f"{key} {workload.ready}/{workload.desired} ready")
        if on_blue:
            waiting.append(f"{key} still has {len(on_blue)} pod(s) on blue ({', '.join(p.name for p in on_blue)})")
        elif ready_on_green < expected:
            waiting.append(f"{key} has {ready_on_green} of {expected} pod(s) Ready on green")
    name = "workloads-ready-on-green"
    if wrong:
        return CheckResult(name, False, "; ".join(wrong + waiting))
    if waiting:
        return CheckResult(name, False, "; ".join(waiting), pending=True)
    return CheckResult(name, True, f"{len(origin)} blue-origin workload(s) Ready on green")


def check_containers(pods: Sequence[Pod], *, green_nodes: Iterable[str], restart_threshold: int) -> CheckResult:
    """No pod on green crash-looping or restarting more than ``restart_threshold`` times."""
    green = set(green_nodes)
    bad = [
        f"{p.key} on {p.node}: " + ("CrashLoopBackOff" if p.crash_looping else f"{p.restart_count} restarts")
        for p in sorted(pods, key=lambda p: p.key)
        if p.node in green and (p.crash_looping or p.restart_count > restart_threshold)
    ]
    name = "no-crash-loops-on-green"
    if bad:
        return CheckResult(name, False, f"above restart threshold {restart_threshold} or crash-looping: " + "; ".join(bad))
    return CheckResult(name, True, f"no container on green above {restart_threshold} restarts")


def validate_workloads(
    origin: Sequence[BlueOrigin],
    workloads: Sequence[Workload],
    pods: Sequence[Pod],
    *,
    blue_nodes: Iterable[str],
    green_nodes: Iterable[str],
    restart_threshold: int,
    extra: Sequence[CheckResult] = (),
) -> ValidationReport:
    """The built-in checks plus ``extra`` (HTTP probes, custom checks) as one report."""
    blue, green = set(blue_nodes), set(green_nodes)
    return ValidationReport(
        (
            check_workloads(origin, workloads, pods, blue_nodes=blue, green_nodes=green),
            check_containers(pods, green_nodes=green, restart_threshold=restart_threshold),
            *extra,
        )
    )
