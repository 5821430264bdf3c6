"""Rollouts: one Kubernetes version rolled through many clusters in ordered stages, with gates.

A plan is ordered **stages**; a stage is a list of **groups**; a group is a set of clusters (ARM
ids, each allow-listed, none twice in the plan). Every cluster of a stage upgrades at once (its
groups name who is upgraded together, as in Fleet Manager); the next stage starts only when the
stage has ended and passed, in this order:

1. every cluster's upgrade ended (done, failed within the stage's failure threshold, or skipped);
2. the soak (``soakSeconds``) has passed since the last one ended;
3. the health gate holds for every cluster that ended (done, or failed within the threshold): no
   open quarantine finding, workload validation passed, no open alert at or above the gate's
   severity;
4. an operator approved, when the stage asks for ``approval``.

A stage whose failed clusters reach its ``failureThreshold`` (a count, or a percent of its
clusters rounded up; default 1: any failure) halts the rollout: clusters already done stay done,
and the operator may skip a cluster, resume (the threshold is checked again) or abort.

A node-image rollout (``targetVersion: "nodeImage"``) pins one image per image family at the start
(``upgrade.domain.node_images``); a cluster whose pools can no longer reach it (AKS published a
newer image meanwhile) is **held**: it is not upgraded, and the rollout halts until an operator
skips it (or resumes, which checks it again) or aborts.

This module is pure: ``advance`` says what to do next from the rollout's progress and the
evidence the service collected; the service carries it out as queue steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from upgrade.domain.alerts import SEVERITIES
from upgrade.domain.int_or_percent import ceil_percent, split_int_or_percent
from upgrade.domain.model import cluster_key, is_allowed_cluster
from upgrade.domain.versions import NODE_IMAGE, is_node_image, is_version, normalize_version, version_key
from upgrade.errors import Conflict, InvalidInput

WHAT = "rollout plan"
PLAN_FIELDS = frozenset({"name", "stages", "targetVersion", "actor"})
STAGE_FIELDS = frozenset({"name", "groups", "soakSeconds", "gate", "approval", "failureThreshold"})
GROUP_FIELDS = frozenset({"name", "clusters", "tags"})
GATE_FIELDS = frozenset({"alertSeverity", "requireValidation"})
MAX_SOAK_SECONDS = 7 * 24 * 3600

# A cluster's part in a rollout.
CLUSTER_STATUSES = ("pending", "running", "done", "failed", "skipped", "held")
# The rollout's status. Polled (the executor's step keeps coming back): running, soaking,
# gate-blocked. Parked until an operator decides: awaiting-approval, halted, paused. Final: done, aborted.
POLLED_STATUSES = frozenset({"running", "soaking", "gate-blocked"})
PARKED_STATUSES = frozenset({"awaiting-approval", "halted", "paused"})
FINAL_STATUSES = frozenset({"done", "aborted"})
DECISIONS = ("approve", "pause", "resume", "abort", "skip")


@dataclass(frozen=True)
class HealthGate:
    alert_severity: str = "error"  # an open alert at or above this severity blocks the stage
    require_validation: bool = True

    def to_public(self) -> dict[str, Any]:
        return {"alertSeverity": self.alert_severity, "requireValidation": self.require_validation}


@dataclass(frozen=True)
class Group:
    name: str
    clusters: tuple[str, ...]


@dataclass(frozen=True)
class Stage:
    name: str
    groups: tuple[Group, ...]
    soak_seconds: int = 0
    gate: HealthGate = field(default_factory=HealthGate)
    approval: bool = False
    failure_threshold: tuple[int, bool] = (1, False)  # (number, is_percent)

    @property
    def clusters(self) -> tuple[str, ...]:
        return tuple(c for g in self.groups for c in g.clusters)

    def failures_allowed_below(self) -> int:
        """The number of failed clusters at which the stage halts the rollout (at least 1)."""
        number, percent = self.failure_threshold
        return max(1, ceil_percent(number, len(self.clusters)) if percent else number)

    def to_public(self) -> dict[str, Any]:
        number, percent = self.failure_threshold
        return {"name": self.name, "groups": [{"name": g.name, "clusters": list(g.clusters)} for g in self.groups],
                "soakSeconds": self.soak_seconds, "gate": self.gate.to_public(), "approval": self.approval,
                "failureThreshold": f"{number}%" if percent else number}


@dataclass(frozen=True)
class RolloutPlan:
    name: str
    stages: tuple[Stage, ...]
    target_version: str | None = None  # pinned by the operator, or NODE_IMAGE; else resolved once at the start

    @property
    def clusters(self) -> tuple[str, ...]:
        return tuple(c for s in self.stages for c in s.clusters)

    def stage_of(self, cluster: str) -> int:
        key = cluster_key(cluster)
        for index, stage in enumerate(self.stages):
            if key in {cluster_key(c) for c in stage.clusters}:
                return index
        raise KeyError(cluster)

    def to_public(self) -> dict[str, Any]:
        return {"name": self.name, "targetVersion": self.target_version,
                "stages": [s.to_public() for s in self.stages]}


def _name(value: object, where: str, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise InvalidInput(WHAT, where, "must be a non-empty string of at most 100 characters")
    return value.strip()


def _object(value: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(WHAT, where, "must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidInput(WHAT, unknown[0] if where == "(body)" else f"{where}.{unknown[0]}",
                           f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return value


def _gate(value: object, where: str) -> HealthGate:
    if value is None:
        return HealthGate()
    body = _object(value, where, GATE_FIELDS)
    severity = body.get("alertSeverity", "error")
    if severity not in SEVERITIES:
        raise InvalidInput(WHAT, f"{where}.alertSeverity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    validation = body.get("requireValidation", True)
    if not isinstance(validation, bool):
        raise InvalidInput(WHAT, f"{where}.requireValidation", "must be true or false")
    return HealthGate(alert_severity=severity, require_validation=validation)


def _stage(value: object, where: str, index: int, allowed: frozenset[str], seen: dict[str, str]) -> Stage:
    body = _object(value, where, STAGE_FIELDS)
    groups_value = body.get("groups")
    if not isinstance(groups_value, list) or not groups_value:
        raise InvalidInput(WHAT, f"{where}.groups", "an empty stage: list at least one group of clusters")
    groups = []
    for g, group_value in enumerate(groups_value):
        group_where = f"{where}.groups[{g}]"
        group = _object(group_value, group_where, GROUP_FIELDS)
        if "tags" in group:
            raise InvalidInput(WHAT, f"{group_where}.tags", "tag selection is resolved by the service before parsing")
        clusters_value = group.get("clusters")
        if not isinstance(clusters_value, list) or not clusters_value:
            raise InvalidInput(WHAT, f"{group_where}.clusters", "an empty group: list at least one cluster ARM id")
        clusters = []
        for c, cluster in enumerate(clusters_value):
            cluster_where = f"{group_where}.clusters[{c}]"
            if not isinstance(cluster, str) or not cluster.strip().lower().startswith("/subscriptions/"):
                raise InvalidInput(WHAT, cluster_where, f"{cluster!r} is not a cluster ARM id")
            cluster = cluster.strip().rstrip("/")
            if not is_allowed_cluster(cluster, allowed):
                raise InvalidInput(WHAT, cluster_where, f"cluster {cluster} is not in ALLOWED_CLUSTERS")
            if cluster_key(cluster) in seen:
                raise InvalidInput(WHAT, cluster_where,
                                   f"duplicate cluster {cluster} (already at {seen[cluster_key(cluster)]})")
            seen[cluster_key(cluster)] = cluster_where
            clusters.append(cluster)
        groups.append(Group(_name(group.get("name"), f"{group_where}.name", f"group-{g + 1}"), tuple(clusters)))
    soak = body.get("soakSeconds", 0)
    if isinstance(soak, bool) or not isinstance(soak, int) or not 0 <= soak <= MAX_SOAK_SECONDS:
        raise InvalidInput(WHAT, f"{where}.soakSeconds", f"must be a whole number of seconds, 0 to {MAX_SOAK_SECONDS}")
    approval = body.get("approval", False)
    if not isinstance(approval, bool):
        raise InvalidInput(WHAT, f"{where}.approval", "must be true or false")
    threshold = split_int_or_percent(body.get("failureThreshold", 1))
    if threshold is None or threshold[0] == 0 or (threshold[1] and threshold[0] > 100):
        raise InvalidInput(WHAT, f"{where}.failureThreshold",
                           "must be a count of at least 1 or a percent 1% to 100% of the stage's clusters "
                           "(the rollout halts when that many have failed)")
    return Stage(name=_name(body.get("name"), f"{where}.name", f"stage-{index + 1}"), groups=tuple(groups),
                 soak_seconds=soak, gate=_gate(body.get("gate"), f"{where}.gate"), approval=approval,
                 failure_threshold=threshold)


def tag_selections(body: object) -> dict[tuple[int, int], dict[str, str]]:
    """The groups of a plan body that choose their clusters by tag (``"tags": {name: value}``,
    every tag must match), keyed by (stage index, group index); InvalidInput naming the field."""
    selections: dict[tuple[int, int], dict[str, str]] = {}
    stages = body.get("stages") if isinstance(body, Mapping) else None
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        groups = stage.get("groups") if isinstance(stage, Mapping) else None
        for g, group in enumerate(groups if isinstance(groups, list) else []):
            if not isinstance(group, Mapping) or "tags" not in group:
                continue
            where = f"stages[{i}].groups[{g}].tags"
            tags = group["tags"]
            if (not isinstance(tags, Mapping) or not tags
                    or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in tags.items())):
                raise InvalidInput(WHAT, where, 'must be an object of tag names to values, e.g. {"env": "prod"}')
            if "clusters" in group:
                raise InvalidInput(WHAT, where, "a group names its clusters or selects them by tags, not both")
            selections[(i, g)] = dict(tags)
    return selections


def with_selected_clusters(body: Mapping[str, Any], selected: Mapping[tuple[int, int], Sequence[str]],
                           allowed_clusters: Iterable[str]) -> dict[str, Any]:
    """The plan body with each tag-selected group's ``tags`` replaced by the allowed clusters they
    selected (sorted); InvalidInput when a selection holds no allowed cluster."""
    allowed = frozenset(allowed_clusters)
    stages = [dict(stage) for stage in body["stages"]]
    for (i, g), found in selected.items():
        clusters = sorted({c for c in found if is_allowed_cluster(c, allowed)}, key=cluster_key)
        if not clusters:
            tags = body["stages"][i]["groups"][g]["tags"]
            raise InvalidInput(WHAT, f"stages[{i}].groups[{g}].tags",
                               f"{tags} selects no cluster in ALLOWED_CLUSTERS ({len(found)} found in all)")
        groups = [dict(group) for group in stages[i]["groups"]]
        groups[g] = {k: v for k, v in groups[g].items() if k != "tags"} | {"clusters": clusters}
        stages[i] = {**stages[i], "groups": groups}
    return {**body, "stages": stages}


def parse_plan(body: object, allowed_clusters: Iterable[str]) -> RolloutPlan:
    """A rollout plan from ``POST /api/rollouts``'s body; InvalidInput naming the field otherwise."""
    allowed = frozenset(allowed_clusters)
    plan = _object(body, "(body)", PLAN_FIELDS)
    stages_value = plan.get("stages")
    if not isinstance(stages_value, list) or not stages_value:
        raise InvalidInput(WHAT, "stages", "list at least one stage")
    seen: dict[str, str] = {}
    stages = tuple(_stage(value, f"stages[{i}]", i, allowed, seen) for i, value in enumerate(stages_value))
    names = [s.name for s in stages]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InvalidInput(WHAT, f"stages[{i}].name", f"duplicate stage name {name!r}")
    target = plan.get("targetVersion")
    if isinstance(target, str) and is_node_image(target):
        target = NODE_IMAGE
    elif target is not None and (not isinstance(target, str) or not is_version(normalize_version(target))):
        raise InvalidInput(WHAT, "targetVersion", f'{target!r} is not a Kubernetes version like "1.31" or "1.31.2", '
                                                  f'nor "{NODE_IMAGE}" (the node image, one release for all)')
    else:
        target = normalize_version(target) if target else None
    return RolloutPlan(name=_name(plan.get("name"), "name", "rollout"), stages=stages, target_version=target)


def resolve_target(plan: RolloutPlan, offered: Mapping[str, Sequence[str]]) -> str:
    """The one version every cluster of the rollout upgrades to: the pinned one (the newest offered
    patch of a pinned minor), else the highest version offered by every cluster. ``offered`` maps
    each cluster to the versions all its pools may upgrade to. InvalidInput on ``targetVersion``
    naming the clusters that do not offer it."""
    by_key = {cluster_key(c): [normalize_version(v) for v in versions] for c, versions in offered.items()}
    sets = {c: set(by_key.get(cluster_key(c), ())) for c in plan.clusters}
    common = set.intersection(*sets.values()) if sets else set()
    pinned = plan.target_version
    if pinned:
        matching = {v for v in common if v == pinned or v.startswith(pinned + ".")}
        if not matching:
            missing = [c for c, versions in sets.items()
                       if not any(v == pinned or v.startswith(pinned + ".") for v in versions)]
            if missing:
                raise InvalidInput(WHAT, "targetVersion",
                                   f"{pinned} is not offered by every cluster: not by {', '.join(missing)}")
            raise InvalidInput(WHAT, "targetVersion",
                               f"no single {pinned} patch is offered by every cluster: pin a full version "
                               f"(offered by all: {', '.join(sorted(common, key=version_key)) or 'none'})")
        return max(matching, key=version_key)
    if not common:
        detail = "; ".join(f"{c}: {', '.join(sorted(v, key=version_key)) or 'none'}" for c, v in sets.items())
        raise InvalidInput(WHAT, "targetVersion", f"no version is offered by every cluster ({detail})")
    return max(common, key=version_key)


# --- progress and the decisions that move it ----------------------------------------------------


@dataclass(frozen=True)
class ClusterEvidence:
    """What the service found for one cluster of the current stage when its upgrade ended."""

    cluster: str
    open_findings: tuple[str, ...] = ()  # quarantine findings / cordoned nodes still open
    validation_failed: tuple[str, ...] = ()  # what workload validation found wrong (empty: passed)
    open_alerts: tuple[tuple[str, str], ...] = ()  # (severity, title) of alerts still open
    off_image: tuple[str, ...] = ()  # a node-image rollout's nodes not on its pinned image
    past_image: tuple[str, ...] = ()  # ... of them, those on a newer release than the pin (overshot)


@dataclass(frozen=True)
class RolloutProgress:
    status: str  # see POLLED/PARKED/FINAL_STATUSES
    stage: int  # index of the current stage
    clusters: Mapping[str, str]  # cluster ARM id -> one of CLUSTER_STATUSES
    reason: str = ""
    soak_until: datetime | None = None
    gate_passed_at: datetime | None = None  # when the last gate passed (the bench's gate-to-start time)
    paused_from: str | None = None  # the status a pause interrupted
    held: Mapping[str, str] = field(default_factory=dict)  # held cluster -> why it cannot go on

    @classmethod
    def start(cls, plan: RolloutPlan) -> RolloutProgress:
        return cls(status="running", stage=0, clusters={c: "pending" for c in plan.clusters})

    def of(self, status: str, plan: RolloutPlan) -> list[str]:
        """The current stage's clusters in ``status``."""
        return [c for c in plan.stages[self.stage].clusters if self.clusters[c] == status]

    def to_public(self) -> dict[str, Any]:
        return {"status": self.status, "stage": self.stage, "clusters": dict(self.clusters), "reason": self.reason,
                "soakUntil": self.soak_until.isoformat() if self.soak_until else None,
                "gatePassedAt": self.gate_passed_at.isoformat() if self.gate_passed_at else None,
                "pausedFrom": self.paused_from, "held": dict(self.held)}

    @classmethod
    def from_public(cls, data: Mapping[str, Any]) -> RolloutProgress:
        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(data[key]) if data.get(key) else None

        return cls(status=data["status"], stage=int(data["stage"]), clusters=dict(data["clusters"]),
                   reason=data.get("reason", ""), soak_until=when("soakUntil"), gate_passed_at=when("gatePassedAt"),
                   paused_from=data.get("pausedFrom"), held=dict(data.get("held") or {}))


@dataclass(frozen=True)
class Step:
    """What ``advance`` decided: the new progress, the clusters whose upgrade to start now, and when
    to look again (None: not until a run ends or an operator decides)."""

    progress: RolloutProgress
    start: tuple[str, ...] = ()
    look_again_at: datetime | None = None
    gate_passed: int | None = None  # the stage whose health gate passed in this move


def gate_failures(gate: HealthGate, evidence: Iterable[ClusterEvidence]) -> list[str]:
    """Why the health gate does not hold, one line per cluster and problem (empty: it holds)."""
    worst = SEVERITIES.index(gate.alert_severity)
    reasons = []
    for item in evidence:
        if item.open_findings:
            reasons.append(f"{item.cluster}: open quarantine findings: {', '.join(item.open_findings)}")
        if gate.require_validation and item.validation_failed:
            reasons.append(f"{item.cluster}: validation failed: {', '.join(item.validation_failed)}")
        blocking = [title for severity, title in item.open_alerts
                    if severity in SEVERITIES and SEVERITIES.index(severity) >= worst]
        if blocking:
            reasons.append(f"{item.cluster}: open alerts at or above {gate.alert_severity}: {', '.join(blocking)}")
        if item.off_image:
            reasons.append(f"{item.cluster}: node(s) not on the rollout's node image: {', '.join(item.off_image)}")
    return reasons


Evidence = Callable[[Sequence[str]], Mapping[str, ClusterEvidence]]


def advance(plan: RolloutPlan, progress: RolloutProgress, *, now: datetime, evidence: Evidence | None = None) -> Step:
    """The rollout's next move while it is polled (running, soaking, gate-blocked); any other
    status is returned unchanged. ``evidence`` (the gate's look at the clusters named) is asked
    only once the stage's upgrades have ended and its soak is over."""
    if progress.status not in POLLED_STATUSES:
        return Step(progress)
    stage = plan.stages[progress.stage]
    pending = progress.of("pending", plan)
    if pending:
        clusters = {**progress.clusters, **{c: "running" for c in pending}}
        return Step(replace(progress, status="running", clusters=clusters,
                            reason=f"stage {stage.name}: started {len(pending)} cluster upgrade(s)"),
                    start=tuple(pending))
    failed = progress.of("failed", plan)
    halt_at = stage.failures_allowed_below()
    if len(failed) >= halt_at:
        return Step(replace(progress, status="halted", soak_until=None,
                            reason=f"stage {stage.name}: {len(failed)} cluster(s) failed, the failure threshold "
                                   f"halts at {halt_at}: {', '.join(failed)}; skip or resume, or abort"))
    held = progress.of("held", plan)
    if held:
        why = "; ".join(f"{c}: {progress.held.get(c, 'held')}" for c in held)
        return Step(replace(progress, status="halted", soak_until=None,
                            reason=f"stage {stage.name}: {len(held)} cluster(s) held, not upgraded: {why}; skip "
                                   "(or resume to check again), or abort"))
    if progress.of("running", plan):
        return Step(replace(progress, status="running"))
    if progress.status != "gate-blocked":
        if progress.soak_until is None and stage.soak_seconds:
            until = now + timedelta(seconds=stage.soak_seconds)
            return Step(replace(progress, status="soaking", soak_until=until,
                                reason=f"stage {stage.name}: soaking until {until.isoformat()}"), look_again_at=until)
        if progress.soak_until is not None and now < progress.soak_until:
            return Step(replace(progress, status="soaking"), look_again_at=progress.soak_until)
    # tolerated failures (below the threshold) are gated too: they must not leave findings behind
    ended = [c for c in stage.clusters if progress.clusters[c] in ("done", "failed")]
    found = evidence(ended) if evidence is not None and ended else {}
    missing = [c for c in ended if c not in found]
    if missing:
        raise ValueError(f"no gate evidence for {', '.join(missing)}")
    # ... a failed one not for the image it never reached (the threshold counts it), only for nodes
    # past the pin: a cluster the threshold tolerates may stay behind, never end ahead of the others
    reasons = gate_failures(stage.gate, (found[c] if progress.clusters[c] == "done"
                                         else replace(found[c], off_image=found[c].past_image) for c in ended))
    if reasons:
        return Step(replace(progress, status="gate-blocked",
                            reason=f"stage {stage.name}: health gate blocked: " + "; ".join(reasons)))
    passed = replace(progress, soak_until=None, gate_passed_at=now)
    if stage.approval:
        return Step(replace(passed, status="awaiting-approval",
                            reason=f"stage {stage.name}: health gate passed; waiting for approval"),
                    gate_passed=progress.stage)
    return replace(_next_stage(plan, passed, now), gate_passed=progress.stage)


def _next_stage(plan: RolloutPlan, progress: RolloutProgress, now: datetime) -> Step:
    finished = plan.stages[progress.stage].name
    if progress.stage + 1 >= len(plan.stages):
        return Step(replace(progress, status="done", reason=f"stage {finished} passed: every stage done"))
    moved = replace(progress, status="running", stage=progress.stage + 1, soak_until=None,
                    reason=f"stage {finished} passed")
    return advance(plan, moved, now=now)


def decide(plan: RolloutPlan, progress: RolloutProgress, decision: str, *, now: datetime,
           cluster: str | None = None) -> Step:
    """An operator's decision. approve: an awaiting stage goes on. pause: nothing new starts (runs
    in flight finish). resume: a paused, halted or gate-blocked rollout is looked at again (the
    threshold and the gate are checked afresh, a held cluster again as it starts). skip ``cluster``:
    a pending, failed, held or done cluster leaves the rollout (not counted as failed nor gated). abort: the rollout ends; runs in flight
    finish on their own. Conflict when the decision does not apply now."""
    if decision not in DECISIONS:
        raise InvalidInput("rollout decision", "decision", f"{decision!r} is not one of {', '.join(DECISIONS)}")
    if progress.status in FINAL_STATUSES:
        raise Conflict(f"the rollout is {progress.status}: nothing to {decision}")
    if decision == "abort":
        return Step(replace(progress, status="aborted", soak_until=None, reason="aborted by an operator"))
    if decision == "approve":
        if progress.status != "awaiting-approval":
            raise Conflict(f"the rollout is {progress.status}, not awaiting approval")
        return _next_stage(plan, progress, now)
    if decision == "pause":
        if progress.status not in POLLED_STATUSES:
            raise Conflict(f"the rollout is {progress.status}: only a running, soaking or gate-blocked rollout pauses")
        return Step(replace(progress, status="paused", paused_from=progress.status, reason="paused by an operator"))
    if decision == "resume":
        if progress.status not in ("paused", "halted", "gate-blocked"):
            raise Conflict(f"the rollout is {progress.status}: only a paused, halted or gate-blocked rollout resumes")
        again = progress.paused_from if progress.status == "paused" and progress.paused_from else "running"
        # a gate-blocked stage is looked at again from its gate; a soak is not restarted; a held
        # cluster is checked again as it starts
        clusters = {c: "pending" if state == "held" else state for c, state in progress.clusters.items()}
        return Step(replace(progress, status="running" if again == "gate-blocked" else again, paused_from=None,
                            clusters=clusters, held={}, reason="resumed by an operator"), look_again_at=now)
    if not cluster:
        raise InvalidInput("rollout decision", "cluster", "skip names the cluster ARM id to skip")
    matches = [c for c in progress.clusters if cluster_key(c) == cluster_key(cluster)]
    if not matches:
        raise InvalidInput("rollout decision", "cluster", f"{cluster} is not a cluster of this rollout")
    name = matches[0]
    state = progress.clusters[name]
    if state not in ("pending", "failed", "done", "held"):
        raise Conflict(f"cluster {name} is {state}: only a pending, failed, held or done cluster is skipped "
                       "(abort its run first)")
    clusters = {**progress.clusters, name: "skipped"}
    held = {c: why for c, why in progress.held.items() if c != name}
    return Step(replace(progress, clusters=clusters, held=held, reason=f"cluster {name} skipped by an operator"),
                look_again_at=now if progress.status in POLLED_STATUSES else None)


def cluster_ended(progress: RolloutProgress, cluster: str, outcome: str, why: str = "") -> RolloutProgress:
    """A cluster's upgrade ended (only a running cluster moves): ``done``, ``failed``, or ``held``
    (it cannot go on without diverging from the rollout's pin; ``why`` is kept for the halt)."""
    if outcome not in ("done", "failed", "held"):
        raise ValueError(f"{outcome!r} is not how a cluster's upgrade ends")
    if progress.clusters.get(cluster) != "running":
        return progress
    held = {**progress.held, cluster: why} if outcome == "held" else progress.held
    return replace(progress, clusters={**progress.clusters, cluster: outcome}, held=held)
