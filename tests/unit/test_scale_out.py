"""The scale-out remediation's pure decisions (upgrade.domain.scale_out), table-driven: which
workloads the blocking pods belong to, whether the extra pods fit, and what the restore does."""

from __future__ import annotations

import pytest

from upgrade.domain.model import QUARANTINE_LABEL, QUARANTINE_VALUE, Autoscaler, Node, Pod, Workload
from upgrade.domain.scale_out import ScaleRestore, ScaleTarget, room_refusal, scale_restore, scale_targets


def pod(name: str, node: str | None = "n1", *, owner: tuple[str, str] | None = ("ReplicaSet", "web-7d9f"),
        cpu: int = 0, phase: str = "Running", namespace: str = "apps") -> Pod:
    return Pod(namespace=namespace, name=name, uid=f"uid-{name}", node=node, phase=phase,
               owner_kind=owner[0] if owner else None, owner_name=owner[1] if owner else None,
               cpu_request_millis=cpu)


WEB = Workload("apps", "Deployment", "web", 2, 2, replica_sets=("web-7d9f", "web-5c4b"))


HPA_WEB = Autoscaler("apps", "web-hpa", "Deployment", "web", 2, 10)


@pytest.mark.parametrize(("autoscalers", "targets", "refused"), [
    pytest.param([HPA_WEB], [], ["HorizontalPodAutoscaler apps/web-hpa owns the replicas of Deployment apps/web "
                                 "(minReplicas 2"], id="an-hpa-owns-the-deployment"),
    pytest.param([Autoscaler("other", "web-hpa", "Deployment", "web", 2, 10)], [ScaleTarget("Deployment", "apps", "web", 1)],
                 [], id="an-hpa-in-another-namespace"),
    pytest.param([Autoscaler("apps", "api-hpa", "Deployment", "api", 2, 10)], [ScaleTarget("Deployment", "apps", "web", 1)],
                 [], id="an-hpa-of-another-deployment"),
])
def test_a_workload_an_hpa_scales_is_refused_naming_the_hpa(autoscalers, targets, refused):
    # GIVEN pod web-1 blocked, and HorizontalPodAutoscalers WHEN its workload is resolved
    found, refusals = scale_targets([pod("web-1")], [WEB], autoscalers)
    # THEN a workload whose replicas an HPA owns is not raised (the HPA would undo it), and the reason names it
    assert found == targets
    assert [r.split(")")[0].rsplit(",", 1)[0] for r in refusals] == refused
    assert all("raise minReplicas by hand" in r for r in refusals)


@pytest.mark.parametrize(("blocking", "workloads", "targets", "refused"), [
    pytest.param([pod("web-1")], [WEB], [ScaleTarget("Deployment", "apps", "web", 1)], [], id="deployment-pod"),
    pytest.param([pod("web-1"), pod("web-2")], [WEB], [ScaleTarget("Deployment", "apps", "web", 2)], [],
                 id="two-pods-of-one-deployment"),
    pytest.param([pod("web-1", cpu=250)], [WEB], [ScaleTarget("Deployment", "apps", "web", 1, 250)], [],
                 id="keeps-the-cpu-request"),
    pytest.param([pod("solo-1", owner=("ReplicaSet", "solo"))], [WEB], [ScaleTarget("ReplicaSet", "apps", "solo", 1)],
                 [], id="replicaset-without-deployment"),
    pytest.param([pod("db-0", owner=("StatefulSet", "db"))], [], [],
                 ["pod apps/db-0 is controlled by StatefulSet db: scaling a StatefulSet up and back down leaves the new "
                  "ordinal's PersistentVolumeClaims behind: use relax-pdb for it"], id="statefulset-refused"),
    pytest.param([pod("web-1", namespace="other")], [WEB], [ScaleTarget("ReplicaSet", "other", "web-7d9f", 1)], [],
                 id="same-replicaset-name-other-namespace"),
    pytest.param([pod("bare", owner=None)], [WEB], [], ["pod apps/bare is controlled by nothing"], id="no-controller"),
    pytest.param([pod("job-1", owner=("Job", "nightly"))], [], [], ["pod apps/job-1 is controlled by Job"],
                 id="a-job"),
])
def test_scale_targets_group_the_blocking_pods_by_workload(blocking, workloads, targets, refused):
    # GIVEN pods a PDB blocks on a node WHEN their workloads are resolved
    found, refusals = scale_targets(blocking, workloads)
    # THEN each scalable workload is raised by its blocked pods; the others are refused, named
    assert found == targets
    assert [r.split(",")[0] for r in refusals] == refused


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
