"""The drain engine over an in-memory Kube: one pass at a time, and the looping CLI drain."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.unit.fake_cluster import PDB_MESSAGE, FakeCluster
from upgrade.domain.drain import (
    DrainOptions,
    DrainStatus,
    PodDrainState,
)
from upgrade.domain.model import Pdb, Pod
from upgrade.domain.pdb import MULTIPLE_PDBS
from upgrade.domain.selectors import LabelSelector
from upgrade.errors import NotFound, PermanentError, TemporaryError
from upgrade.services.drain import (
    PDB_RETRY_SECONDS,
    TERMINATING_RECHECK_SECONDS,
    DrainState,
    drain_node,
    drain_node_step,
)


def add_pod(kube: FakeCluster, name: str, node: str = "node-1", **fields) -> Pod:
    """A pod in namespace apps, a ReplicaSet's (app=web) unless ``fields`` say otherwise."""
    fields.setdefault("owner_kind", "ReplicaSet")
    fields.setdefault("owner_name", "web-rs")
    fields.setdefault("labels", (("app", "web"),))
    pod = Pod(namespace="apps", name=name, uid=f"uid-{name}-{len(kube.pods)}", node=node, **fields)
    kube.pods[pod.key] = pod
    return pod


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kube() -> FakeCluster:
    """Two nodes; evictions leave pods terminating until ``finish_terminations``, as the API does."""
    kube = FakeCluster()
    kube.graceful_evictions = True
    kube.daemonsets = set()
    kube.add_node("node-1")
    kube.add_node("node-2")
    return kube


def test_one_pass_cordons_and_evicts_every_pod_then_the_next_sees_them_gone(kube):
    # GIVEN a node with three ReplicaSet pods
    for name in ("a", "b", "c"):
        add_pod(kube, name)
    # WHEN one pass runs
    first = drain_node_step(kube, "node-1", DrainOptions())
    # THEN the node is cordoned, every pod's eviction was sent once, and they are terminating
    assert kube.nodes["node-1"].unschedulable and first.cordoned_now
    assert sorted(kube.evicted_keys()) == ["apps/a", "apps/b", "apps/c"]
    assert first.status is DrainStatus.IN_PROGRESS
    assert first.count(PodDrainState.EVICTING) == 3
    # WHEN the pods finish terminating (recreated on node-2) and a second pass runs
    kube.finish_terminations()
    second = drain_node_step(kube, "node-1", DrainOptions(), first.state)
    # THEN the node is drained, the pods are reported gone, and nothing was evicted again
    assert second.status is DrainStatus.DRAINED
    assert [p.state for p in second.pods] == [PodDrainState.GONE] * 3
    assert len(kube.evictions) == 3
    assert {p.node for p in kube.pods.values()} == {"node-2"}


def test_terminating_pods_are_not_evicted_again(kube):
    add_pod(kube, "a")
    state = drain_node_step(kube, "node-1", DrainOptions()).state
    again = drain_node_step(kube, "node-1", DrainOptions(), state)
    assert again.status is DrainStatus.IN_PROGRESS
    assert again.pods[0].reason == "terminating"
    assert kube.evicted_keys() == ["apps/a"]


def test_pdb_block_names_the_budget_and_is_retried_after_the_backoff(kube):
    # GIVEN a pod a PDB forbids evicting now, and one that can go
    add_pod(kube, "guarded", labels=(("app", "db"),))
    add_pod(kube, "free")
    kube.blocked.add("apps/guarded")
    kube.pdbs.append(Pdb("apps", "db-pdb", LabelSelector.match_labels({"app": "db"}), min_available="1", disruptions_allowed=0,
                         current_healthy=1, desired_healthy=1, expected_pods=1))
    clock = FakeTime()
    # WHEN a pass runs
    progress = drain_node_step(kube, "node-1", DrainOptions(), now=clock)
    # THEN the node is blocked, the report names the PDB and its disruptions allowed
    assert progress.status is DrainStatus.BLOCKED
    (blocked,) = progress.blocked
    assert (blocked.key, blocked.pdb, blocked.disruptions_allowed) == ("apps/guarded", "apps/db-pdb", 0)
    assert PDB_MESSAGE in blocked.reason
    # AND the next look is due when the free pod may be gone, before the PDB back-off ends
    assert progress.retry_after_seconds == pytest.approx(TERMINATING_RECHECK_SECONDS)
    assert "apps/guarded: blocked by PDB apps/db-pdb (disruptionsAllowed=0)" in progress.summary()
    # WHEN another pass runs before the back-off ends THEN the blocked pod is not evicted again
    clock.now += 1
    kube.finish_terminations()
    early = drain_node_step(kube, "node-1", DrainOptions(), progress.state, now=clock)
    assert kube.evicted_keys().count("apps/guarded") == 1
    assert early.status is DrainStatus.BLOCKED
    assert early.retry_after_seconds == pytest.approx(PDB_RETRY_SECONDS - 1)
    # WHEN the PDB allows it and the back-off has passed THEN it is evicted and the node drains
    kube.blocked.clear()
    clock.now += PDB_RETRY_SECONDS
    evicting = drain_node_step(kube, "node-1", DrainOptions(), early.state, now=clock)
    assert evicting.status is DrainStatus.IN_PROGRESS
    assert kube.evicted_keys().count("apps/guarded") == 2
    kube.finish_terminations()
    done = drain_node_step(kube, "node-1", DrainOptions(), evicting.state, now=clock)
    assert done.status is DrainStatus.DRAINED


def test_refused_pods_stop_the_drain_before_any_eviction(kube):
    # GIVEN an unmanaged pod and an emptyDir pod next to a normal one
    add_pod(kube, "bare", owner_kind=None, owner_name=None)
    add_pod(kube, "cache", empty_dir=True)
    add_pod(kube, "web")
    # WHEN a pass runs without force / delete-emptydir-data
    progress = drain_node_step(kube, "node-1", DrainOptions())
    # THEN the drain is refused, naming both pods, the node stays cordoned and nothing was evicted
    assert progress.status is DrainStatus.REFUSED
    refused = {p.key: p.reason for p in progress.pods if p.state is PodDrainState.REFUSED}
    assert set(refused) == {"apps/bare", "apps/cache"}
    assert "force" in refused["apps/bare"] and "delete-emptydir-data" in refused["apps/cache"]
    assert kube.evictions == []
    assert kube.nodes["node-1"].unschedulable


def test_daemonset_and_mirror_pods_are_skipped_and_do_not_hold_the_drain(kube):
    kube.daemonsets.add("apps/agent")
    add_pod(kube, "agent", owner_kind="DaemonSet", owner_name="agent")
    add_pod(kube, "etcd", owner_kind="Node", owner_name="node-1", mirror=True)
    progress = drain_node_step(kube, "node-1", DrainOptions(ignore_daemonsets=True))
    assert progress.status is DrainStatus.DRAINED
    assert [p.state for p in progress.pods] == [PodDrainState.SKIPPED, PodDrainState.SKIPPED]
    assert kube.evictions == []


def test_a_new_uid_under_the_same_name_counts_as_gone(kube):
    # GIVEN a pod evicted in one pass
    old = add_pod(kube, "db-0", owner_kind="StatefulSet", owner_name="db")
    state = drain_node_step(kube, "node-1", DrainOptions()).state
    # WHEN its controller recreates it under the same name (another UID) before the next pass
    kube.pods[old.key] = replace(old, uid="uid-recreated", deleting=False)
    progress = drain_node_step(kube, "node-1", DrainOptions(), state)
    # THEN the old pod is reported gone and the new one is evicted in turn
    gone = [p for p in progress.pods if p.state is PodDrainState.GONE]
    assert [(p.key, p.uid) for p in gone] == [("apps/db-0", old.uid)]
    assert kube.evicted_keys() == ["apps/db-0", "apps/db-0"]


def test_eviction_of_a_pod_already_gone_is_fine(kube):
    add_pod(kube, "a")
    kube.evict_errors["apps/a"] = [NotFound("gone", status=404)]
    progress = drain_node_step(kube, "node-1", DrainOptions())
    assert progress.pods[0].state is PodDrainState.GONE
    assert progress.status is DrainStatus.DRAINED


def test_transient_and_permanent_eviction_errors(kube):
    add_pod(kube, "a")
    add_pod(kube, "b")
    kube.evict_errors["apps/a"] = [TemporaryError("evict: 503 busy", status=503, delay_seconds=1)]
    clock = FakeTime()
    first = drain_node_step(kube, "node-1", DrainOptions(), now=clock)
    assert first.status is DrainStatus.IN_PROGRESS
    assert {p.key: p.state for p in first.pods}["apps/a"] is PodDrainState.RETRYING
    clock.now += 1
    second = drain_node_step(kube, "node-1", DrainOptions(), first.state, now=clock)
    assert {p.key: p.state for p in second.pods}["apps/a"] is PodDrainState.EVICTING
    # A permanent refusal (403 here) fails the drain, naming the pod
    add_pod(kube, "c")
    kube.evict_errors["apps/c"] = [PermanentError("evict: 403 forbidden", status=403)]
    third = drain_node_step(kube, "node-1", DrainOptions(), second.state, now=clock)
    assert third.status is DrainStatus.FAILED
    assert "apps/c: failed: evict: 403 forbidden" in third.summary()


def test_a_pod_under_several_pdbs_fails_the_drain_at_once(kube):
    # GIVEN a pod the API refuses to evict because two PDBs cover it (its 500, reported as permanent)
    add_pod(kube, "shared")
    kube.evict_errors["apps/shared"] = [PermanentError(
        "evict pod apps/shared: 500 This pod has more than one PodDisruptionBudget, which the eviction "
        "subresource does not support.", status=500, code=MULTIPLE_PDBS)]
    # WHEN one pass runs (with a long timeout)
    progress = drain_node_step(kube, "node-1", DrainOptions(timeout_seconds=3600))
    # THEN the drain has failed already, as kubectl's does, instead of retrying until the timeout
    assert progress.status is DrainStatus.FAILED
    assert "more than one PodDisruptionBudget" in progress.summary()


def test_orphaned_daemonset_pods_are_deleted_only_with_force_and_looked_up_once(kube):
    # GIVEN a pod of a live DaemonSet and one whose DaemonSet is gone, beside a ReplicaSet pod
    kube.daemonsets.add("apps/agent")
    add_pod(kube, "agent-1", owner_kind="DaemonSet", owner_name="agent")
    add_pod(kube, "orphan-1", owner_kind="DaemonSet", owner_name="gone")
    add_pod(kube, "web")
    # WHEN drained with ignore-daemonsets only THEN the orphan refuses the drain (kubectl: NotFound)
    refused = drain_node_step(kube, "node-1", DrainOptions(ignore_daemonsets=True))
    assert refused.status is DrainStatus.REFUSED
    assert {p.key: p.state for p in refused.pods}["apps/orphan-1"] is PodDrainState.REFUSED
    assert kube.evicted_keys() == []
    # WHEN drained with force too THEN the orphan is evicted, the live DaemonSet's pod skipped
    options = DrainOptions(ignore_daemonsets=True, force=True)
    first = drain_node_step(kube, "node-1", options)
    assert sorted(kube.evicted_keys()) == ["apps/orphan-1", "apps/web"]
    assert {p.key: p.state for p in first.pods}["apps/agent-1"] is PodDrainState.SKIPPED
    # AND the next pass asks the API about no DaemonSet again
    lookups = len(kube.daemonset_lookups)
    kube.finish_terminations()
    done = drain_node_step(kube, "node-1", options, DrainState.from_dict(first.state.to_dict()))
    assert done.status is DrainStatus.DRAINED
    assert len(kube.daemonset_lookups) == lookups


def test_timeout_reports_the_blocking_pdb(kube):
    add_pod(kube, "guarded")
    kube.blocked.add("apps/guarded")
    kube.pdbs.append(Pdb("apps", "web-pdb", LabelSelector.match_labels({"app": "web"}), max_unavailable="0", disruptions_allowed=0))
    clock = FakeTime()
    options = DrainOptions(timeout_seconds=30)
    first = drain_node_step(kube, "node-1", options, now=clock)
    assert first.status is DrainStatus.BLOCKED
    clock.now += 31
    late = drain_node_step(kube, "node-1", options, first.state, now=clock)
    assert late.status is DrainStatus.TIMED_OUT
    assert late.blocked[0].pdb == "apps/web-pdb"
    assert late.to_facts()["blockers"][0]["pdb"] == "apps/web-pdb"


def test_grace_period_and_pod_selector_reach_the_evictions(kube):
    add_pod(kube, "web")
    add_pod(kube, "api", labels=(("app", "api"),))
    drain_node_step(kube, "node-1", DrainOptions(grace_seconds=7, pod_selector="app=api"))
    assert kube.evictions == [("apps/api", 7)]


def test_the_longest_grace_periods_are_evicted_first(kube):
    # GIVEN pods listed shortest grace first, one without a grace period (Kubernetes' 30 s)
    for name, grace in (("a", 1), ("b", 3), ("c", None), ("d", 2), ("e", 45)):
        add_pod(kube, name, grace_seconds=grace)
    # WHEN they are evicted one at a time
    drain_node_step(kube, "node-1", DrainOptions(max_concurrent_evictions=1))
    # THEN the slowest to terminate went first, so the drain waits least for the last one
    assert kube.evicted_keys() == ["apps/e", "apps/c", "apps/b", "apps/d", "apps/a"]


def test_evictions_run_concurrently_within_the_bound(kube):
    for i in range(24):
        add_pod(kube, f"p{i}")
    kube.eviction_latency = 0.02
    drain_node_step(kube, "node-1", DrainOptions(max_concurrent_evictions=6))
    assert len(kube.evictions) == 24
    assert 1 < kube.max_in_flight <= 6


def test_state_survives_a_json_round_trip_between_step_invocations(kube):
    add_pod(kube, "guarded")
    add_pod(kube, "free")
    kube.blocked.add("apps/guarded")
    progress = drain_node_step(kube, "node-1", DrainOptions())
    carried = DrainState.from_dict(json.loads(json.dumps(progress.state.to_dict())))
    assert carried == progress.state


def test_drain_node_loops_to_completion_reporting_progress(kube):
    # GIVEN pods that terminate a while after eviction, one PDB block that lifts, and a transient list error
    for name in ("a", "b"):
        add_pod(kube, name)
    add_pod(kube, "guarded")
    kube.blocked.add("apps/guarded")
    clock = FakeTime()
    reports = []

    def sleep(seconds: float) -> None:
        clock.now += seconds
        kube.finish_terminations()
        if clock.now > 1003:
            kube.blocked.clear()

    kube.list_errors.append(TemporaryError("list pods: 500", status=500, delay_seconds=1))
    # WHEN the node is drained to completion
    result = drain_node(kube, "node-1", DrainOptions(), reports.append, sleep=sleep, now=clock)
    # THEN it ends drained after reporting blocked progress on the way
    assert result.status is DrainStatus.DRAINED
    assert any(r.status is DrainStatus.BLOCKED for r in reports)
    assert reports[-1] is result
    assert kube.evicted_keys().count("apps/guarded") == 2
    assert not [p for p in kube.pods.values() if p.node == "node-1"]


def test_drain_node_times_out_naming_the_blocker(kube):
    add_pod(kube, "guarded")
    kube.blocked.add("apps/guarded")
    kube.pdbs.append(Pdb("apps", "web-pdb", LabelSelector.match_labels({"app": "web"}), min_available="100%", disruptions_allowed=0))
    clock = FakeTime()

    def sleep(seconds: float) -> None:
        clock.now += max(seconds, 0.5)

    result = drain_node(kube, "node-1", DrainOptions(timeout_seconds=12), sleep=sleep, now=clock)
    assert result.status is DrainStatus.TIMED_OUT
    assert result.blocked[0].pdb == "apps/web-pdb"
    assert clock.now - 1000 < 20
