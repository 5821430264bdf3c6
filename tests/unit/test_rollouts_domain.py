"""Rollout domain: plan validation naming the field, one target version, the stage machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from upgrade.domain.rollouts import (
    ClusterEvidence,
    HealthGate,
    RolloutProgress,
    advance,
    cluster_ended,
    decide,
    gate_failures,
    parse_plan,
    resolve_target,
    tag_selections,
    with_selected_clusters,
)
from upgrade.errors import Conflict, InvalidInput

SUB = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService"
A, B, C, D = (f"{SUB}/managedClusters/{n}" for n in ("a", "b", "c", "d"))
ALLOWED = [A, B, C, D]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def stage(*clusters: str, **extra: object) -> dict:
    return {"groups": [{"clusters": list(clusters)}], **extra}


def plan_of(*stages: dict, **extra: object):
    return parse_plan({"stages": list(stages), **extra}, ALLOWED)


@pytest.mark.parametrize(("body", "field", "words"), [
    ({}, "stages", "at least one stage"),
    ({"stages": []}, "stages", "at least one stage"),
    ({"stages": [{"groups": []}]}, "stages[0].groups", "empty stage"),
    ({"stages": [stage(A), {}]}, "stages[1].groups", "empty stage"),
    ({"stages": [{"groups": [{"clusters": []}]}]}, "stages[0].groups[0].clusters", "empty group"),
    ({"stages": [stage(A, f"{SUB}/managedClusters/z")]}, "stages[0].groups[0].clusters[1]", "ALLOWED_CLUSTERS"),
    ({"stages": [stage(A), stage(B, A.upper())]}, "stages[1].groups[0].clusters[1]", "duplicate cluster"),
    ({"stages": [stage("aks-a")]}, "stages[0].groups[0].clusters[0]", "ARM id"),
    ({"stages": [stage(A, failureThreshold=0)]}, "stages[0].failureThreshold", "at least 1"),
    ({"stages": [stage(A, failureThreshold="150%")]}, "stages[0].failureThreshold", "percent"),
    ({"stages": [stage(A, soakSeconds=-1)]}, "stages[0].soakSeconds", "whole number"),
    ({"stages": [stage(A, approval="yes")]}, "stages[0].approval", "true or false"),
    ({"stages": [stage(A, gate={"alertSeverity": "loud"})]}, "stages[0].gate.alertSeverity", "loud"),
    ({"stages": [stage(A, gate={"when": 1})]}, "stages[0].gate.when", "unknown field"),
    ({"stages": [stage(A, name="x"), stage(B, name="x")]}, "stages[1].name", "duplicate stage name"),
    ({"stages": [stage(A)], "targetVersion": "latest"}, "targetVersion", "Kubernetes version"),
    ({"stages": [stage(A)], "strategy": "rolling"}, "strategy", "unknown field"),
    ([], "(body)", "JSON object"),
])
def test_bad_plans_are_refused_naming_the_field(body, field, words):
    with pytest.raises(InvalidInput) as caught:
        parse_plan(body, ALLOWED)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_good_plan_keeps_order_names_and_defaults():
    plan = plan_of(stage(A, name="dev"), {"name": "prod", "groups": [{"name": "east", "clusters": [B, C]},
                                                                      {"clusters": [D]}],
                                          "soakSeconds": 60, "approval": True, "failureThreshold": "50%",
                                          "gate": {"alertSeverity": "warning", "requireValidation": False}},
                   targetVersion="v1.31")
    assert plan.clusters == (A, B, C, D)
    assert [s.name for s in plan.stages] == ["dev", "prod"]
    assert [g.name for g in plan.stages[1].groups] == ["east", "group-2"]
    assert plan.target_version == "1.31"
    assert plan.stages[0].failures_allowed_below() == 1
    assert plan.stages[1].failures_allowed_below() == 2  # 50% of 3, rounded up
    assert plan.stages[1].gate.alert_severity == "warning"
    assert plan.stage_of(D.upper()) == 1


@pytest.mark.parametrize(("pinned", "offered", "expected"), [
    (None, {A: ["1.30.5", "1.31.2"], B: ["1.31.2", "1.31.3"]}, "1.31.2"),
    (None, {A: ["1.30.5", "1.31.2", "1.32.0"], B: ["1.30.5", "1.31.2", "1.32.0"]}, "1.32.0"),
    ("1.30", {A: ["1.30.5", "1.30.7", "1.31.2"], B: ["1.30.5", "1.30.7"]}, "1.30.7"),
    ("1.31.2", {A: ["1.31.2", "1.31.3"], B: ["1.31.2"]}, "1.31.2"),
])
def test_one_target_version_for_all(pinned, offered, expected):
    plan = plan_of(stage(A), stage(B), **({"targetVersion": pinned} if pinned else {}))
    assert resolve_target(plan, offered) == expected


@pytest.mark.parametrize(("pinned", "offered", "words"), [
    (None, {A: ["1.31.2"], B: ["1.30.5"]}, "no version is offered by every cluster"),
    (None, {A: ["1.31.2"]}, "no version is offered by every cluster"),
    ("1.32", {A: ["1.32.0"], B: ["1.31.2"]}, f"not by {B}"),
    ("1.31", {A: ["1.31.2"], B: ["1.31.3"]}, "no single 1.31 patch"),
])
def test_a_version_not_offered_everywhere_is_refused(pinned, offered, words):
    plan = plan_of(stage(A), stage(B), **({"targetVersion": pinned} if pinned else {}))
    with pytest.raises(InvalidInput) as caught:
        resolve_target(plan, offered)
    assert caught.value.field == "targetVersion"
    assert words in str(caught.value)


@pytest.mark.parametrize(("severity", "evidence", "blocked"), [
    ("error", ClusterEvidence(A), []),
    ("error", ClusterEvidence(A, open_findings=("node n1 quarantined",)), ["node n1 quarantined"]),
    ("error", ClusterEvidence(A, validation_failed=("web: 0/3 ready",)), ["web: 0/3 ready"]),
    ("error", ClusterEvidence(A, open_alerts=(("warning", "slow drain"),)), []),
    ("warning", ClusterEvidence(A, open_alerts=(("warning", "slow drain"),)), ["slow drain"]),
    ("error", ClusterEvidence(A, open_alerts=(("critical", "run failed"),)), ["run failed"]),
])
def test_health_gate(severity, evidence, blocked):
    plan = plan_of(stage(A, gate={"alertSeverity": severity}))
    reasons = gate_failures(plan.stages[0].gate, [evidence])
    assert len(reasons) == len(blocked)
    for words, reason in zip(blocked, reasons, strict=True):
        assert words in reason and A in reason


def test_validation_may_be_left_out_of_the_gate():
    plan = plan_of(stage(A, gate={"requireValidation": False}))
    assert gate_failures(plan.stages[0].gate, [ClusterEvidence(A, validation_failed=("web",))]) == []


def healthy(*clusters: str):
    def look(asked):
        assert sorted(asked) == sorted(clusters)  # the gate looks at exactly the stage's ended clusters
        return {c: ClusterEvidence(c) for c in asked}
    return look


def finish(progress: RolloutProgress, *results: tuple[str, bool]) -> RolloutProgress:
    for cluster, ok in results:
        progress = cluster_ended(progress, cluster, "done" if ok else "failed")
    return progress


def test_three_stages_run_in_order_with_soak_and_approval():
    plan = plan_of(stage(A), stage(B, C, soakSeconds=30, approval=True), stage(D))
    step = advance(plan, RolloutProgress.start(plan), now=NOW)
    assert step.start == (A,) and step.progress.clusters[B] == "pending"
    step = advance(plan, finish(step.progress, (A, True)), now=NOW, evidence=healthy(A))
    assert step.start == (B, C) and step.progress.stage == 1 and step.progress.gate_passed_at == NOW
    step = advance(plan, finish(step.progress, (B, True)), now=NOW)
    assert step.progress.status == "running" and not step.start
    step = advance(plan, finish(step.progress, (C, True)), now=NOW)
    assert step.progress.status == "soaking" and step.look_again_at == NOW + timedelta(seconds=30)
    assert advance(plan, step.progress, now=NOW + timedelta(seconds=29)).progress.status == "soaking"
    step = advance(plan, step.progress, now=NOW + timedelta(seconds=30), evidence=healthy(B, C))
    assert step.progress.status == "awaiting-approval" and not step.start
    assert advance(plan, step.progress, now=NOW).progress == step.progress  # parked: nothing moves
    step = decide(plan, step.progress, "approve", now=NOW + timedelta(seconds=40))
    assert step.start == (D,) and step.progress.stage == 2
    step = advance(plan, finish(step.progress, (D, True)), now=NOW, evidence=healthy(D))
    assert step.progress.status == "done"
    assert set(step.progress.clusters.values()) == {"done"}


def test_gate_blocks_with_the_finding_named_and_passes_once_it_clears():
    plan = plan_of(stage(A, B), stage(C))
    progress = finish(advance(plan, RolloutProgress.start(plan), now=NOW).progress, (A, True), (B, True))
    def evidence(asked):
        return {**healthy(A, B)(asked), B: ClusterEvidence(B, open_findings=("node aks-n2 quarantined: pdb web-pdb",))}

    step = advance(plan, progress, now=NOW, evidence=evidence)
    assert step.progress.status == "gate-blocked" and not step.start
    assert "aks-n2" in step.progress.reason and B in step.progress.reason
    step = advance(plan, step.progress, now=NOW, evidence=healthy(A, B))
    assert step.start == (C,)


@pytest.mark.parametrize(("threshold", "clusters", "fail", "halts"), [
    (1, (A, B, C), (A,), True),
    (2, (A, B, C), (A,), False),
    (2, (A, B, C), (A, B), True),
    ("50%", (A, B, C, D), (A,), False),
    ("50%", (A, B, C, D), (A, B), True),
    ("1%", (A, B, C, D), (A,), True),
])
def test_failure_threshold(threshold, clusters, fail, halts):
    plan = plan_of(stage(*clusters, failureThreshold=threshold))
    progress = advance(plan, RolloutProgress.start(plan), now=NOW).progress
    progress = finish(progress, *((c, False) for c in fail))
    step = advance(plan, progress, now=NOW)
    assert (step.progress.status == "halted") is halts
    if halts:
        assert all(c in step.progress.reason for c in fail)


def test_halt_then_skip_and_resume_finishes_while_done_clusters_stay_done():
    plan = plan_of(stage(A, B), stage(C))
    progress = finish(advance(plan, RolloutProgress.start(plan), now=NOW).progress, (A, True), (B, False))
    halted = advance(plan, progress, now=NOW).progress
    assert halted.status == "halted" and halted.clusters[A] == "done"
    again = decide(plan, halted, "resume", now=NOW)
    assert advance(plan, again.progress, now=NOW).progress.status == "halted"  # still over the threshold
    skipped = decide(plan, halted, "skip", now=NOW, cluster=B.upper()).progress
    assert skipped.status == "halted" and skipped.clusters[B] == "skipped"
    resumed = decide(plan, skipped, "resume", now=NOW)
    step = advance(plan, resumed.progress, now=NOW, evidence=healthy(A))
    assert step.start == (C,)
    step = advance(plan, finish(step.progress, (C, True)), now=NOW, evidence=healthy(C))
    assert step.progress.status == "done" and step.progress.clusters == {A: "done", B: "skipped", C: "done"}


@pytest.mark.parametrize(("status", "decision", "cluster", "expected"), [
    ("running", "pause", None, "paused"),
    ("gate-blocked", "pause", None, "paused"),
    ("halted", "abort", None, "aborted"),
    ("awaiting-approval", "abort", None, "aborted"),
    ("halted", "resume", None, "running"),
    ("gate-blocked", "resume", None, "running"),
    ("running", "approve", None, Conflict),
    ("done", "abort", None, Conflict),
    ("aborted", "resume", None, Conflict),
    ("running", "resume", None, Conflict),
    ("halted", "pause", None, Conflict),
    ("running", "skip", A, Conflict),  # A's run is in flight
    ("running", "skip", None, InvalidInput),
    ("running", "skip", f"{SUB}/managedClusters/z", InvalidInput),
    ("running", "retry", None, InvalidInput),
])
def test_decisions(status, decision, cluster, expected):
    plan = plan_of(stage(A, B))
    progress = RolloutProgress(status=status, stage=0, clusters={A: "running", B: "pending"})
    if isinstance(expected, type):
        with pytest.raises(expected):
            decide(plan, progress, decision, now=NOW, cluster=cluster)
    else:
        assert decide(plan, progress, decision, now=NOW, cluster=cluster).progress.status == expected


def test_pause_and_resume_come_back_to_where_they_were():
    plan = plan_of(stage(A, soakSeconds=60), stage(B))
    progress = finish(advance(plan, RolloutProgress.start(plan), now=NOW).progress, (A, True))
    soaking = advance(plan, progress, now=NOW).progress
    paused = decide(plan, soaking, "pause", now=NOW).progress
    assert advance(plan, paused, now=NOW + timedelta(hours=1)).progress == paused
    resumed = decide(plan, paused, "resume", now=NOW).progress
    assert resumed.status == "soaking" and resumed.soak_until == soaking.soak_until


def test_progress_round_trips_through_its_public_form():
    plan = plan_of(stage(A, soakSeconds=5), stage(B))
    progress = finish(advance(plan, RolloutProgress.start(plan), now=NOW).progress, (A, True))
    progress = advance(plan, progress, now=NOW).progress
    assert RolloutProgress.from_public(progress.to_public()) == progress


@pytest.mark.parametrize(("group", "field", "words"), [
    ({"tags": {}}, "stages[0].groups[0].tags", "tag names to values"),
    ({"tags": {"env": 1}}, "stages[0].groups[0].tags", "tag names to values"),
    ({"tags": ["env"]}, "stages[0].groups[0].tags", "tag names to values"),
    ({"tags": {"env": "prod"}, "clusters": [A]}, "stages[0].groups[0].tags", "not both"),
])
def test_bad_tag_selections_are_refused_naming_the_field(group, field, words):
    with pytest.raises(InvalidInput) as caught:
        tag_selections({"stages": [{"groups": [group]}]})
    assert caught.value.field == field and words in str(caught.value)


def test_tag_selected_groups_become_their_allowed_clusters():
    body = {"stages": [stage(A), {"groups": [{"name": "prod", "tags": {"env": "prod"}}]}]}
    assert tag_selections(body) == {(1, 0): {"env": "prod"}}
    other = f"{SUB}/managedClusters/not-allowed"
    resolved = with_selected_clusters(body, {(1, 0): [D, other, C]}, ALLOWED)
    plan = parse_plan(resolved, ALLOWED)
    assert plan.stages[1].groups[0].clusters == (C, D) and plan.stages[1].groups[0].name == "prod"
    assert body["stages"][1]["groups"][0] == {"name": "prod", "tags": {"env": "prod"}}  # the body is not changed
    with pytest.raises(InvalidInput) as caught:
        with_selected_clusters(body, {(1, 0): [other]}, ALLOWED)
    assert caught.value.field == "stages[1].groups[0].tags" and "selects no cluster" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:  # a tag-selected cluster named elsewhere too is a duplicate
        parse_plan(with_selected_clusters(body, {(1, 0): [A]}, ALLOWED), ALLOWED)
    assert caught.value.field == "stages[1].groups[0].clusters[0]" and "duplicate" in str(caught.value)


# ---- node-image rollouts: the target, held clusters ---------------------------------------------


def test_a_node_image_rollout_is_planned_with_the_runs_own_target_name():
    assert plan_of(stage(A), targetVersion="nodeImage").target_version == "nodeImage"
    with pytest.raises(InvalidInput) as caught:
        plan_of(stage(A), targetVersion="latest-image")
    assert caught.value.field == "targetVersion" and '"nodeImage"' in str(caught.value)


def test_a_held_cluster_halts_the_rollout_with_why_and_resume_checks_it_again():
    plan = plan_of(stage(A, B), stage(C), targetVersion="nodeImage")
    step = advance(plan, RolloutProgress.start(plan), now=NOW)
    progress = cluster_ended(finish(step.progress, (A, True)), B, "held", "pool p can no longer reach the pinned node image X")
    assert progress.clusters[B] == "held"
    step = advance(plan, progress, now=NOW)
    assert step.progress.status == "halted" and not step.start
    assert f"1 cluster(s) held, not upgraded: {B}: pool p can no longer reach the pinned node image X" in step.progress.reason
    resumed = decide(plan, step.progress, "resume", now=NOW).progress
    assert resumed.clusters[B] == "pending" and resumed.held == {}
    assert advance(plan, resumed, now=NOW).start == (B,)  # started, so checked, again


def test_a_held_cluster_may_be_skipped_and_the_rollout_goes_on():
    plan = plan_of(stage(A, B), stage(C), targetVersion="nodeImage")
    progress = cluster_ended(advance(plan, RolloutProgress.start(plan), now=NOW).progress, B, "held", "moved on")
    halted = advance(plan, finish(progress, (A, True)), now=NOW).progress
    skipped = decide(plan, halted, "skip", now=NOW, cluster=B).progress
    assert skipped.clusters[B] == "skipped" and skipped.held == {}
    step = advance(plan, decide(plan, skipped, "resume", now=NOW).progress, now=NOW, evidence=healthy(A))
    assert step.start == (C,)
    assert RolloutProgress.from_public(halted.to_public()) == halted  # the reasons are kept


def test_the_gate_names_nodes_off_the_pinned_image():
    evidence = ClusterEvidence(A, off_image=("n2 (AKSUbuntu-2204gen2containerd-202611.01.0)",))
    assert gate_failures(HealthGate(), [evidence]) == [
        f"{A}: node(s) not on the rollout's node image: n2 (AKSUbuntu-2204gen2containerd-202611.01.0)"]


@pytest.mark.parametrize(("b_result", "b_evidence", "gate"), [
    # a failure the threshold tolerates is not upgraded: its nodes off the image are what failed means
    pytest.param(False, ClusterEvidence(B, off_image=("n1 (old)",)), "passes", id="failed-off-image-tolerated"),
    # ... but what it leaves behind still blocks the gate
    pytest.param(False, ClusterEvidence(B, off_image=("n1 (old)",), open_findings=("node n1 cordoned",)), "blocked",
                 id="failed-with-findings-blocks"),
    # ... and a failed cluster that overshot the pin (AKS published during its upgrade) blocks it too
    pytest.param(False, ClusterEvidence(B, off_image=("n1 (new)",), past_image=("n1 (new)",)), "blocked",
                 id="failed-past-the-pin-blocks"),
    # a cluster that ended done with a node off the pin blocks it (AKS moved past the pin mid-run)
    pytest.param(True, ClusterEvidence(B, off_image=("n1 (new)",)), "blocked", id="done-off-image-blocks"),
])
def test_the_image_gate_looks_at_the_clusters_that_ended_done(b_result, b_evidence, gate):
    plan = plan_of(stage(A, B, failureThreshold=2), stage(C), targetVersion="nodeImage")
    progress = finish(advance(plan, RolloutProgress.start(plan), now=NOW).progress, (A, True), (B, b_result))
    step = advance(plan, progress, now=NOW, evidence=lambda asked: {A: ClusterEvidence(A), B: b_evidence})
    assert (step.progress.status == "gate-blocked") == (gate == "blocked"), step.progress.reason
    assert step.start == (() if gate == "blocked" else (C,))
