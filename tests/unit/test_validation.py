"""Workload validation for blue-green runs: blue-origin workloads Ready on green (not merely off blue),
none moved to a third pool, no crash loops."""

from __future__ import annotations

import pytest

from upgrade.domain.model import Pod, Workload
from upgrade.domain.validation import (
    BlueOrigin,
    CheckResult,
    WorkloadKey,
    blue_origin_workloads,
    check_containers,
    check_workloads,
    validate_workloads,
)

BLUE = ("blue-0", "blue-1")
GREEN = ("green-0", "green-1")
WEB = WorkloadKey("Deployment", "shop", "web")
DB = WorkloadKey("StatefulSet", "shop", "db")
# as cordon_blue records them: web ran 2 pods on blue, db 1
ORIGIN = [BlueOrigin(WEB, 2), BlueOrigin(DB, 1)]


def pod(name, node, *, owner=("ReplicaSet", "web-5d8f"), ready=True, ns="shop", **extra) -> Pod:
    return Pod(namespace=ns, name=name, uid=f"uid-{name}-{node}", node=node, ready=ready,
               owner_kind=owner[0] if owner else None, owner_name=owner[1] if owner else None, **extra)


WORKLOADS = [Workload("shop", "Deployment", "web", 2, 2, replica_sets=("web-5d8f",)),
             Workload("shop", "StatefulSet", "db", 1, 1)]


def test_blue_origin_workloads_are_application_controllers_with_pods_on_blue():
    # GIVEN blue runs a Deployment's pods, a StatefulSet pod, a DaemonSet pod, a static pod, a bare pod,
    # and the Deployment also runs a pod on another pool
    pods = [
        pod("web-a", "blue-0"),
        pod("web-b", "blue-1"),
        pod("web-c", "other-0"),
        pod("db-0", "blue-1", owner=("StatefulSet", "db")),
        pod("agent-x", "blue-0", owner=("DaemonSet", "agent")),
        pod("etcd", "blue-0", owner=("Node", "blue-0"), mirror=True),
        pod("bare", "blue-1", owner=None),
        pod("other", "green-0", owner=("ReplicaSet", "api-77aa")),
    ]
    # THEN only the Deployment (via its ReplicaSet) and the StatefulSet count, with their pods on blue
    # and the pod that ran elsewhere already
    origin = blue_origin_workloads(pods, BLUE, WORKLOADS)
    assert origin == [BlueOrigin(WEB, 2, frozenset({"uid-web-c-other-0"})), BlueOrigin(DB, 1)]
    assert [BlueOrigin.from_dict(o.to_dict()) for o in origin] == origin  # as stored in the run's facts


def test_a_replica_set_without_a_listed_deployment_counts_as_itself():
    pods = [pod("solo-a", "blue-0", owner=("ReplicaSet", "solo-1234"))]
    assert blue_origin_workloads(pods, BLUE, WORKLOADS) == [BlueOrigin(WorkloadKey("ReplicaSet", "shop", "solo-1234"), 1)]


def test_a_replica_set_named_like_a_deployment_counts_for_it_only_if_the_deployment_controls_it():
    # GIVEN a standalone ReplicaSet web-0000 beside Deployment web (whose ReplicaSet is web-5d8f)
    pods = [pod("web-a", "blue-0"), pod("impostor", "blue-1", owner=("ReplicaSet", "web-0000"))]
    # THEN ownership decides, as Kubernetes links them, not the name
    assert blue_origin_workloads(pods, BLUE, WORKLOADS) == [
        BlueOrigin(WEB, 1), BlueOrigin(WorkloadKey("ReplicaSet", "shop", "web-0000"), 1)]


def test_an_origin_stored_before_counts_were_kept_expects_every_replica_on_green():
    stored = BlueOrigin.from_dict({"kind": "Deployment", "namespace": "shop", "name": "web"})
    assert (stored.pods_on_blue, stored.pods_elsewhere) == (None, frozenset())
    result = check_workloads([stored], WORKLOADS[:1], [pod("web-a", "green-0"), pod("web-b", "other-0")],
                             blue_nodes=BLUE, green_nodes=GREEN)
    assert not result.passed and "web-b runs on node other-0" in result.reason


DB_ON_GREEN = pod("db-0", "green-0", owner=("StatefulSet", "db"))
CASES = [
    # (description, origin, workloads, pods, passed, pending, text)
    ("all moved and ready", ORIGIN, WORKLOADS, [pod("web-a", "green-0"), pod("web-b", "green-1"), DB_ON_GREEN],
     True, False, "2 blue-origin workload(s) Ready on green"),
    ("a rollout's new ReplicaSet counts for the Deployment", ORIGIN,
     [Workload("shop", "Deployment", "web", 2, 2, replica_sets=("web-5d8f", "web-99zz")), WORKLOADS[1]],
     [pod("web-a", "green-0", owner=("ReplicaSet", "web-99zz")), pod("web-b", "green-1"), DB_ON_GREEN],
     True, False, "Ready on green"),
    ("a pod still on blue", ORIGIN, WORKLOADS, [pod("web-a", "blue-0"), pod("web-b", "green-1"), DB_ON_GREEN],
     False, True, "Deployment shop/web still has 1 pod(s) on blue (web-a)"),
    ("desired not ready", ORIGIN, [Workload("shop", "Deployment", "web", 2, 1, replica_sets=("web-5d8f",)),
                                   WORKLOADS[1]],
     [pod("web-a", "green-0"), pod("web-b", "green-1", ready=False), DB_ON_GREEN],
     False, True, "Deployment shop/web 1/2 ready"),
    ("a pending replacement", ORIGIN, WORKLOADS, [pod("web-a", "green-0"), pod("web-b", None, ready=False), DB_ON_GREEN],
     False, True, "Deployment shop/web has 1 of 2 pod(s) Ready on green"),
    ("a terminating pod does not count", ORIGIN, WORKLOADS,
     [pod("web-a", "green-0"), pod("web-b", "green-1", deleting=True), DB_ON_GREEN], False, True, "1 of 2"),
    # Ready off blue is not Ready on green: a pod the scheduler put on a third pool fails, naming pod and node
    ("a pod landed on a third pool", ORIGIN, WORKLOADS, [pod("web-a", "green-0"), pod("web-b", "spare-0"), DB_ON_GREEN],
     False, False, "Deployment shop/web pod shop/web-b runs on node spare-0, which is in neither blue nor green"),
    ("a pod that ran on another pool before the run stays there",
     [BlueOrigin(WEB, 1, frozenset({"uid-web-b-spare-0"})), BlueOrigin(DB, 1)], WORKLOADS,
     [pod("web-a", "green-0"), pod("web-b", "spare-0"), DB_ON_GREEN], True, False, "Ready on green"),
    ("a workload deleted meanwhile", ORIGIN, WORKLOADS[:1], [pod("web-a", "green-0"), pod("web-b", "green-1")],
     False, False, "StatefulSet shop/db no longer exists"),
]


@pytest.mark.parametrize(("origin", "workloads", "pods", "passed", "pending", "text"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_workloads(origin, workloads, pods, passed, pending, text):
    # GIVEN blue-origin workloads and where their pods run now / WHEN checked / THEN the verdict names why
    result = check_workloads(origin, workloads, pods, blue_nodes=BLUE, green_nodes=GREEN)
    assert (result.passed, result.pending) == (passed, pending)
    assert text in result.reason


@pytest.mark.parametrize(("pods", "threshold", "passed", "text"), [
    ([pod("web-a", "green-0", restart_count=5)], 5, True, "no container on green above 5 restarts"),
    ([pod("web-a", "green-0", restart_count=6)], 5, False, "shop/web-a on green-0: 6 restarts"),
    ([pod("web-a", "green-0", crash_looping=True, ready=False)], 5, False, "CrashLoopBackOff"),
    ([pod("agent", "green-1", owner=("DaemonSet", "agent"), crash_looping=True)], 5, False, "shop/agent"),
    ([pod("web-a", "blue-0", crash_looping=True)], 5, True, "no container"),  # blue is not judged
])
def test_check_containers(pods, threshold, passed, text):
    result = check_containers(pods, green_nodes=GREEN, restart_threshold=threshold)
    assert result.passed is passed and not result.pending
    assert text in result.reason


def test_report_is_pending_only_when_every_failure_may_still_pass():
    pods = [pod("web-a", "green-0"), pod("web-b", None, ready=False), pod("db-0", "green-0", owner=("StatefulSet", "db"))]
    waiting = validate_workloads(ORIGIN, WORKLOADS, pods, blue_nodes=BLUE, green_nodes=GREEN, restart_threshold=3)
    assert not waiting.passed and waiting.pending
    crashing = validate_workloads(ORIGIN, WORKLOADS, [*pods, pod("web-c", "green-1", crash_looping=True, ready=False)],
                                  blue_nodes=BLUE, green_nodes=GREEN, restart_threshold=3)
    assert not crashing.passed and not crashing.pending
    assert "no-crash-loops-on-green" in crashing.summary and "workloads-ready-on-green" in crashing.summary
    probe = CheckResult("http http://shop/health", False, "answered 503", pending=True)
    facts = validate_workloads([], [], [], blue_nodes=BLUE, green_nodes=GREEN, restart_threshold=3,
                               extra=[probe]).to_facts()
    assert facts["passed"] is False and facts["summary"] == "http http://shop/health: answered 503"
    assert [c["name"] for c in facts["checks"]] == [
        "workloads-ready-on-green", "no-crash-loops-on-green", "http http://shop/health"]
