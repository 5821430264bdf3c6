"""The scale-out remediation's pure decisions (upgrade.domain.scale_out), table-driven: which
workloads the blocking pods belong to, whether the extra pods fit, and what the restore does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from upgrade.domain.model import (
    QUARANTINE_LABEL,
    QUARANTINE_VALUE,
    Autoscaler,
    Node,
    Pod,
    StatefulSetState,
    Workload,
)
from upgrade.domain.scale_out import (
    ScaleRestore,
    ScaleTarget,
    added_claims,
    raised_bounds,
    restore_action,
    restore_bounds,
    reused_claims_refusal,
    room_refusal,
    scale_restore,
    scale_targets,
)


def pod(name: str, node: str | None = "n1", *, owner: tuple[str, str] | None = ("ReplicaSet", "web-7d9f"),
        cpu: int = 0, phase: str = "Running", namespace: str = "apps") -> Pod:
    return Pod(namespace=namespace, name=name, uid=f"uid-{name}", node=node, phase=phase,
               owner_kind=owner[0] if owner else None, owner_name=owner[1] if owner else None,
               cpu_request_millis=cpu)


WEB = Workload("apps", "Deployment", "web", 2, 2, replica_sets=("web-7d9f", "web-5c4b"))


HPA_WEB = Autoscaler("apps", "web-hpa", "Deployment", "web", 2, 10)
DB = Workload("apps", "StatefulSet", "db", 3, 3, statefulset=StatefulSetState(
    current_revision="db-1", update_revision="db-1", generation=2, observed_generation=2, claim_templates=("data",)))


@pytest.mark.parametrize(("autoscalers", "targets", "refused"), [
    pytest.param([HPA_WEB], [ScaleTarget("Deployment", "apps", "web", 1, autoscaler="web-hpa")], [],
                 id="an-hpa-owns-the-deployment"),
    pytest.param([Autoscaler("other", "web-hpa", "Deployment", "web", 2, 10)], [ScaleTarget("Deployment", "apps", "web", 1)],
                 [], id="an-hpa-in-another-namespace"),
    pytest.param([Autoscaler("apps", "api-hpa", "Deployment", "api", 2, 10)], [ScaleTarget("Deployment", "apps", "web", 1)],
                 [], id="an-hpa-of-another-deployment"),
    pytest.param([Autoscaler("apps", "web-hpa", "ReplicaSet", "web", 2, 10)], [ScaleTarget("Deployment", "apps", "web", 1)],
                 [], id="an-hpa-of-another-kind-same-name"),
    pytest.param([HPA_WEB, Autoscaler("apps", "web-hpa2", "Deployment", "web", 1, 3)], [],
                 ["HorizontalPodAutoscalers web-hpa, web-hpa2 all scale Deployment apps/web"], id="two-hpas-fight"),
])
def test_a_workload_an_hpa_scales_is_raised_through_the_hpa(autoscalers, targets, refused):
    # GIVEN pod web-1 blocked, and HorizontalPodAutoscalers WHEN its workload is resolved
    found, refusals = scale_targets([pod("web-1")], [WEB], autoscalers)
    # THEN a workload whose replicas one HPA owns is raised through that HPA; two HPAs on it are refused
    assert found == targets
    assert [r.split(":")[0] for r in refusals] == refused


@pytest.mark.parametrize(("bounds", "replicas", "add", "raised"), [
    pytest.param((2, 10), 2, 1, (3, 10), id="at-its-minimum"),
    pytest.param((2, 10), 4, 1, (5, 10), id="above-its-minimum-raises-from-the-current-count"),
    pytest.param((2, 3), 3, 1, (4, 4), id="at-its-maximum-raises-the-maximum-too"),
    pytest.param((1, 1), 1, 2, (3, 3), id="pinned-two-blocked"),
    pytest.param((3, 10), 1, 1, (4, 10), id="below-its-minimum-counts-from-the-minimum"),
])
def test_raised_bounds_give_the_target_as_many_more_replicas_as_are_blocked(bounds, replicas, add, raised):
    # GIVEN an HPA's (min, max), its target's replicas and the blocked pods WHEN the raise is planned
    # THEN minReplicas is the count plus the blocked pods, maxReplicas raised only to keep min <= max
    assert raised_bounds(*bounds, replicas, add) == raised


def sts(**changes) -> Workload:
    return replace(DB, statefulset=replace(DB.statefulset, **changes))


@pytest.mark.parametrize(("workloads", "targets", "refused"), [
    pytest.param([DB], [ScaleTarget("StatefulSet", "apps", "db", 1)], [], id="settled-statefulset"),
    pytest.param([sts(partition=2)], [ScaleTarget("StatefulSet", "apps", "db", 1)], [],
                 id="a-partition-with-nothing-pending"),
    pytest.param([sts(pod_management_policy="Parallel", when_scaled="Delete")], [ScaleTarget("StatefulSet", "apps", "db", 1)],
                 [], id="parallel-delete-claims"),
    pytest.param([sts(update_revision="db-2")], [], ["pod apps/db-0: StatefulSet apps/db is mid-update"],
                 id="rollout-pending"),
    pytest.param([sts(update_revision="db-2", partition=2)], [], ["pod apps/db-0: StatefulSet apps/db is mid-update"],
                 id="staged-by-partition"),
    pytest.param([sts(generation=3)], [], ["pod apps/db-0: StatefulSet apps/db's controller has not observed"],
                 id="spec-not-observed-yet"),
    # Kubernetes leaves an OnDelete set's currentRevision behind for good: its pods' revisions decide
    pytest.param([sts(update_strategy="OnDelete", update_revision="db-2", replicas=3, updated_replicas=3)],
                 [ScaleTarget("StatefulSet", "apps", "db", 1)], [], id="on-delete-update-applied-to-every-pod"),
    pytest.param([sts(update_strategy="OnDelete", update_revision="db-2", replicas=3, updated_replicas=2)], [],
                 ["pod apps/db-0: StatefulSet apps/db is mid-update (OnDelete: 2 of 3"], id="on-delete-pods-left-to-delete"),
    pytest.param([], [], ["pod apps/db-0: StatefulSet apps/db was not found"], id="statefulset-gone"),
])
def test_a_statefulset_is_scaled_out_unless_a_rollout_is_pending(workloads, targets, refused):
    # GIVEN pod db-0 of StatefulSet db blocked WHEN its workload is resolved
    found, refusals = scale_targets([pod("db-0", owner=("StatefulSet", "db"))], workloads)
    # THEN a settled StatefulSet is raised; one mid-update (its added ordinals would run the new template) is refused
    assert found == targets
    assert len(refusals) == len(refused) and all(r.startswith(p) for r, p in zip(refusals, refused, strict=True))


@pytest.mark.parametrize(("state", "original", "raised_to", "claims"), [
    pytest.param(StatefulSetState(claim_templates=("data",)), 3, 4, ["data-db-3"], id="one-ordinal"),
    pytest.param(StatefulSetState(claim_templates=("data", "logs")), 2, 4,
                 ["data-db-2", "logs-db-2", "data-db-3", "logs-db-3"], id="two-templates-two-ordinals"),
    pytest.param(StatefulSetState(claim_templates=("data",), ordinals_start=5), 2, 3, ["data-db-7"],
                 id="ordinals-start"),
    pytest.param(StatefulSetState(), 2, 3, [], id="no-claim-templates"),
])
def test_added_claims_are_those_of_the_highest_ordinals(state, original, raised_to, claims):
    # GIVEN a StatefulSet raised from ``original`` to ``raised_to`` THEN its new ordinals' claims are named
    assert added_claims("db", state, original, raised_to) == claims


@pytest.mark.parametrize(("when_scaled", "reused", "refused"), [
    pytest.param("Delete", ["data-db-3"], True, id="delete-would-take-a-claim-from-before"),
    pytest.param("Delete", [], False, id="delete-only-its-own-claims"),
    pytest.param("Retain", ["data-db-3"], False, id="retain-keeps-it"),
])
def test_a_scale_down_that_deletes_claims_may_not_take_claims_from_before(when_scaled, reused, refused):
    # GIVEN a StatefulSet's whenScaled policy and the existing claims its added ordinals would mount
    refusal = reused_claims_refusal("db", StatefulSetState(when_scaled=when_scaled), reused)
    # THEN it is refused only when the scale-down back would delete a claim the run did not create
    assert (refusal is not None) == refused
    if refused:
        assert "data-db-3" in refusal


@pytest.mark.parametrize(("current", "written"), [
    pytest.param([3, 10], [2, 10], id="still-as-raised"),
    pytest.param([2, 10], [2, 10], id="already-back"),
    pytest.param([3, 12], [2, 12], id="max-changed-by-someone-min-still-the-runs"),
    pytest.param([4, 10], [4, 10], id="min-changed-by-someone"),
    pytest.param([4, 12], [4, 12], id="both-changed"),
])
def test_the_restore_of_hpa_bounds_puts_back_only_its_own_bound(current, written):
    # GIVEN an HPA raised from (2, 10) to (3, 10) WHEN found at ``current`` THEN the restore writes ``written``
    assert restore_bounds([2, 10], [3, 10], current) == written


@pytest.mark.parametrize(("raised", "current", "written"), [
    pytest.param([4, 4], [4, 4], [1, 3], id="both-raised-both-back"),
    pytest.param([4, 4], [2, 4], [2, 3], id="min-changed-max-back"),
    pytest.param([4, 4], [4, 6], [1, 6], id="max-changed-min-back"),
    # minReplicas set to 5 with maxReplicas still the run's 6: putting 3 back would put max below min
    pytest.param([6, 6], [5, 6], [5, 6], id="max-back-would-fall-below-their-min-both-stay"),
])
def test_hpa_bounds_raised_together_come_back_each_on_its_own(raised, current, written):
    # GIVEN an HPA raised from (1, 3) to ``raised`` (the maximum with the minimum) WHEN found at ``current``
    # THEN each bound still at the raise goes back; minReplicas never ends above maxReplicas
    found = restore_bounds([1, 3], raised, current)
    assert found == written and found[0] <= found[1]


def node(name: str, cpu: int, *, cordoned: bool = False, quarantined: bool = False, ready: bool = True) -> Node:
    labels = ((QUARANTINE_LABEL, QUARANTINE_VALUE),) if quarantined else ()
    return Node(name=name, pool="p", kubernetes_version="1.31.7", unschedulable=cordoned or quarantined,
                ready=ready, labels=labels, allocatable_cpu_millis=cpu)


def target(add: int = 1, cpu: int = 500) -> ScaleTarget:
    return ScaleTarget("Deployment", "apps", "web", add, cpu)


@pytest.mark.parametrize(("targets", "nodes", "pods", "refusal"), [
    pytest.param([target()], [node("n2", 1000)], [], None, id="fits-an-empty-node"),
    pytest.param([target()], [node("n2", 1000)], [pod("x", "n2", cpu=500)], None, id="fits-exactly"),
    pytest.param([target()], [node("n2", 1000)], [pod("x", "n2", cpu=600)], "no room", id="too-full"),
    pytest.param([target()], [node("n2", 1000)], [pod("x", "n2", cpu=600, phase="Succeeded")], None,
                 id="finished-pods-free-their-requests"),
    pytest.param([target(2)], [node("n2", 700), node("n3", 700)], [], None, id="two-extra-pods-on-two-nodes"),
    pytest.param([target(2)], [node("n2", 1200)], [pod("x", "n2", cpu=300)], "no room",
                 id="second-extra-pod-does-not-fit"),
    pytest.param([target(1, 800), target(1, 300)], [node("n2", 800), node("n3", 300)], [], None,
                 id="largest-first"),
    pytest.param([target()], [node("n1", 4000, quarantined=True)], [], "no schedulable node",
                 id="only-the-quarantined-node"),
    pytest.param([target()], [node("n1", 4000, cordoned=True), node("n2", 4000, ready=False)], [],
                 "no schedulable node", id="cordoned-and-not-ready-take-nothing"),
    pytest.param([target(1, 0)], [node("n2", 0)], [], None, id="no-requests-always-fit"),
])
def test_room_refusal_checks_requests_against_allocatable_on_schedulable_nodes(targets, nodes, pods, refusal):
    # GIVEN the extra pods, the nodes and the pods already placed WHEN the room is checked
    found = room_refusal(targets, nodes, pods)
    # THEN it fits (None), or the reason says why not
    assert (found is None) if refusal is None else (found is not None and refusal in found)


@pytest.mark.parametrize(("current", "action"), [
    (3, ScaleRestore.RESTORE),
    (2, ScaleRestore.UNCHANGED),
    (5, ScaleRestore.EDITED),
    (0, ScaleRestore.EDITED),
])
def test_the_restore_writes_only_over_its_own_raise(current, action):
    # GIVEN a workload raised from 2 to 3 WHEN it is found at ``current`` THEN the restore does ``action``
    assert scale_restore({"original": 2, "raised_to": 3}, current) is action


@pytest.mark.parametrize(("current", "action"), [
    ([3, 10], ScaleRestore.RESTORE),
    ([2, 10], ScaleRestore.UNCHANGED),
    ([3, 12], ScaleRestore.EDITED),
    ([5, 10], ScaleRestore.EDITED),
    ([2, 12], ScaleRestore.EDITED),
])
def test_the_restore_of_hpa_bounds_writes_only_over_its_own_raise(current, action):
    # GIVEN an HPA raised from minReplicas 2 (max 10) to 3 WHEN its bounds are found at ``current``
    # THEN both bounds must still be the run's for the restore to write; anything else is someone's edit
    assert restore_action([2, 10], [3, 10], current) is action
