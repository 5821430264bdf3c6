"""The scale-out remediation on seed Scenario 2's final state: pod A's Deployment gets one more
replica, the PDB then allows pod A's eviction, the node is finished and the Deployment is back at
its original count; the same under duplicate delivery and a crash between a step's side effect
and its state write; a poisoned, aborted or timed-out run restores the count; a count someone else set meanwhile is not overwritten (alert); refused with
the reason when the extra pod has no room or the pod has no scalable controller."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import CLUSTER, deliver_all, scenario2_after_upgrade
from tests.unit.test_remediation import (
    DELIVERIES,
    NODE1,
    ORIGINAL,
    assert_remediated,
    poison,
    run_until_state,
)
from upgrade.domain.model import Autoscaler, StatefulSetState
from upgrade.domain.pdb_lease import lease_partition
from upgrade.domain.policy import parse_policy
from upgrade.errors import NotAllowed
from upgrade.services.decisions import decide
from upgrade.services.quarantine_scan import scan_cluster
from upgrade.services.remediation import request_remediation
from upgrade.services.step_runner import run_step_message

pytestmark = pytest.mark.usefixtures("production_steps")
DEPLOYMENT = ("default", "a")


def scenario(replicas: int = 1):
    """Scenario 2 with pod A's ReplicaSet owned by Deployment a (``replicas``, 1 as in the seed)."""
    fake = scenario2_after_upgrade()
    fake.deployments[DEPLOYMENT] = replicas
    platform = FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                            allowed_clusters=frozenset({CLUSTER.arm_id}))
    platform.policy = parse_policy(json.dumps({"defaults": {
        "pollSeconds": 1, "remediation": {"scale-out": "approval-required"}}}))
    return fake, platform


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_scale_out_finishes_the_node_and_puts_the_replicas_back(delivery):
    # GIVEN Scenario 2 after the upgrade: pod A (Deployment a, 1 replica) blocked on the quarantined node
    fake, platform = scenario()
    raised_when_evicted = []
    evict = fake.evict

    def recording_evict(namespace, name, **kwargs):
        raised_when_evicted.append((fake.deployments[DEPLOYMENT], [p.ready for p in fake.pods_of("a")]))
        return evict(namespace, name, **kwargs)

    fake.evict = recording_evict
    scan_cluster(platform, CLUSTER)  # the operator got the quarantine alert
    # WHEN the operator asks for scale-out and the steps run
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform, **delivery)
    # THEN the node is upgraded, unlabelled, uncordoned, the pool back at 2 nodes, the PDB untouched
    assert_remediated(fake, platform, run.run_id)
    assert fake.pdb_specs["default/a-pdb"] == ORIGINAL and fake.calls["patch_pdb_spec"] == 0
    # AND pod A was evicted only once the Deployment had 2 replicas, both Ready
    assert raised_when_evicted and all(r == (2, [True, True]) for r in raised_when_evicted)
    # AND the Deployment is back at 1 replica, set exactly twice (raise, restore), and the lease is released
    assert fake.deployments[DEPLOYMENT] == 1
    assert fake.calls["replace_scale"] == 2
    assert platform.state.list(lease_partition(CLUSTER)) == []
    assert platform.runs.get(run.run_id).facts["scales"] == {
        "Deployment/default/a": {"kind": "Deployment", "namespace": "default", "name": "a", "add": 1,
                                 "original": 1, "raised_to": 2}}


@pytest.mark.parametrize("step", ["remediation.wait_scaled_out", "remediation.evict", "remediation.restore_scale"])
def test_a_replica_count_changed_by_someone_else_is_not_overwritten_and_alerted(step):
    # GIVEN a scale-out run that raised Deployment a from 1 to 2
    fake, platform = scenario()
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    message = run_until_state(platform, run.run_id, step)
    assert fake.deployments[DEPLOYMENT] == 2
    # WHEN its owner scales it to 4 before the run's restore
    fake.set_replicas(*DEPLOYMENT, 4)
    platform.queue.send(message)
    deliver_all(platform)
    # THEN the run still finishes the node, leaves 4 replicas, and an alert says why it did not restore
    final = platform.runs.get(run.run_id)
    assert final.status == "succeeded", final.reason
    assert fake.deployments[DEPLOYMENT] == 4
    [alert] = [a for a in platform.alerts.published if a.kind == "remediation.scale-not-restored"]
    assert alert.details == {"workload": "Deployment/default/a", "original": 1, "raised_to": 2, "current": 4}
    assert not fake.nodes[NODE1].quarantined


def test_a_count_changed_before_the_raise_is_not_raised_and_the_run_fails_with_an_alert():
    # GIVEN a scale-out run that recorded 1 replica, and the owner scales to 3 before the raise
    fake, platform = scenario()
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    message = run_until_state(platform, run.run_id, "remediation.raise_replicas")
    fake.set_replicas(*DEPLOYMENT, 3)
    platform.queue.send(message)
    deliver_all(platform)
    # THEN the run did not write the count, failed saying why, and the node is left quarantined
    final = platform.runs.get(run.run_id)
    assert final.status == "failed" and "not raised" in final.reason
    assert fake.deployments[DEPLOYMENT] == 3 and fake.calls["replace_scale"] == 0
    assert any(a.kind == "remediation.scale-not-restored" for a in platform.alerts.published)
    assert fake.nodes[NODE1].quarantined


def test_a_run_poisoned_after_the_raise_restores_the_replicas():
    # GIVEN a scale-out run that raised the replicas and is about to evict
    fake, platform = scenario()
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    assert fake.deployments[DEPLOYMENT] == 2
    # WHEN every delivery of that step dies and the host moves it to the poison queue
    poison(platform, evict)
    # THEN the run is failed, the replicas are back at 1 and the PDB lease is released
    assert platform.runs.get(run.run_id).status == "failed"
    assert fake.deployments[DEPLOYMENT] == 1
    assert platform.state.list(lease_partition(CLUSTER)) == []
    [failed] = [a for a in platform.alerts.published if a.kind == "run.failed"]
    assert "replicas restored" in failed.details["cleanup"]


def test_scale_out_is_refused_when_the_extra_pod_has_no_room():
    # GIVEN pod A requests 500m and the schedulable nodes have 400m left at most
    fake, platform = scenario()
    fake.pods["default/a-1"] = replace(fake.pods["default/a-1"], cpu_request_millis=500)
    for name in ("aks-nodepool1-2", "aks-nodepool1-surge1"):
        fake.nodes[name] = replace(fake.nodes[name], allocatable_cpu_millis=400)
    # WHEN scale-out is asked for THEN it is refused, saying why, and nothing is scaled
    with pytest.raises(NotAllowed, match="no room for an extra pod of Deployment/default/a"):
        request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    assert fake.calls["replace_scale"] == 0


def test_scale_out_is_refused_for_a_pod_without_a_scalable_controller():
    fake, platform = scenario()
    del fake.pods["default/a-1"]
    fake.add_pod("default", "a-bare", NODE1, app="a", owner=None)
    with pytest.raises(NotAllowed, match="controlled by nothing"):
        request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")


@pytest.mark.parametrize(("room", "started"), [
    pytest.param(True, "scale-out", id="room-scale-out-first"),
    pytest.param(False, "relax-pdb", id="no-room-the-next-kind"),
])
def test_the_scan_starts_scale_out_first_and_falls_back_when_it_is_refused(room, started):
    # GIVEN both scale-out and relax-pdb automatic, and room for pod A's extra replica or not
    fake, platform = scenario()
    platform.policy = parse_policy(json.dumps({"defaults": {
        "pollSeconds": 1, "remediation": {"scale-out": "automatic", "relax-pdb": "automatic"}}}))
    if not room:
        fake.pods["default/a-1"] = replace(fake.pods["default/a-1"], cpu_request_millis=500)
        for name in ("aks-nodepool1-2", "aks-nodepool1-surge1"):
            fake.nodes[name] = replace(fake.nodes[name], allocatable_cpu_millis=400)
    # WHEN the scan runs
    notes = scan_cluster(platform, CLUSTER)
    # THEN it started the first kind the policy allows that is not refused, saying why it skipped one
    [run] = [r for r in platform.runs.list_runs() if r.kind == "remediation"]
    assert run.options["kind"] == started
    assert any("automatic scale-out not started: scale-out refused" in n for n in notes) is (not room)


def test_extra_pods_that_never_become_ready_end_in_the_restore_at_the_drain_timeout():
    # GIVEN pod A's new replicas crash-loop wherever they land, and a 1-minute drain timeout
    fake, platform = scenario()
    fake.crashloop.add(("default", "a", "nodepool1"))
    platform.policy = parse_policy(json.dumps({"defaults": {
        "pollSeconds": 5, "rolling": {"drainTimeoutInMinutes": 1}, "remediation": {"scale-out": "approval-required"}}}))
    # WHEN scale-out runs
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform)
    # THEN it waited (delayed messages), never evicted pod A, failed at the timeout and put the count back
    final = platform.runs.get(run.run_id)
    assert final.status == "failed" and "not scaled out at the drain timeout" in final.reason
    assert "replicas restored (Deployment/default/a)" in final.reason
    assert fake.calls["evict"] == 0 and fake.deployments[DEPLOYMENT] == 1
    assert fake.nodes[NODE1].quarantined and "default/a-1" in fake.pods
    assert any(h.reason.startswith("Deployment/default/a: 1/2 Ready") for h in platform.runs.history(run.run_id))


def test_an_aborted_scale_out_restores_the_replicas():
    # GIVEN a scale-out run that raised Deployment a and waits for the new pod
    fake, platform = scenario()
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    run_until_state(platform, run.run_id, "remediation.wait_scaled_out")
    assert fake.deployments[DEPLOYMENT] == 2
    # WHEN an operator aborts it
    decide(platform, run.run_id, "abort", actor="bob", reason="not now")
    # THEN the count is back at 1 and the PDB lease is released
    assert platform.runs.get(run.run_id).status != "running"
    assert fake.deployments[DEPLOYMENT] == 1
    assert platform.state.list(lease_partition(CLUSTER)) == []


# ---- a HorizontalPodAutoscaler owns the replicas: its bounds are raised instead -------------------


def hpa_scenario(bounds: tuple[int, int]):
    """Scenario 2 with Deployment a scaled by HPA a-hpa at ``bounds`` (min, max)."""
    fake, platform = scenario()
    fake.autoscalers = [Autoscaler("default", "a-hpa", "Deployment", "a", *bounds)]
    return fake, platform


def hpa_bounds(fake) -> tuple[int, int]:
    [hpa] = fake.autoscalers
    return hpa.min_replicas, hpa.max_replicas


@pytest.mark.parametrize("delivery", DELIVERIES)
@pytest.mark.parametrize(("bounds", "raised", "final_replicas"), [
    # no metrics in the fake: within its bounds the HPA keeps the raised count, as a real one without metrics
    pytest.param((1, 5), (2, 5), 2, id="room-under-max-the-hpa-keeps-its-count"),
    # maxReplicas restored to 1 brings the target back to 1: the HPA enforces its maximum without metrics
    pytest.param((1, 1), (2, 2), 1, id="pinned-max-raised-too-and-enforced-back"),
])
def test_an_hpa_owned_deployment_is_scaled_out_through_the_hpa_bounds(delivery, bounds, raised, final_replicas):
    # GIVEN Scenario 2 with pod A's Deployment (1 replica) owned by an HPA
    fake, platform = hpa_scenario(bounds)
    seen_when_evicted = []
    evict = fake.evict

    def recording_evict(namespace, name, **kwargs):
        seen_when_evicted.append((hpa_bounds(fake), fake.deployments[DEPLOYMENT]))
        return evict(namespace, name, **kwargs)

    fake.evict = recording_evict
    # WHEN the operator asks for scale-out and the steps run
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform, **delivery)
    # THEN the node is finished; pod A left only once the HPA had raised the Deployment to 2
    final = platform.runs.get(run.run_id)
    assert final.status == "succeeded", final.reason
    assert not fake.nodes[NODE1].quarantined and seen_when_evicted and seen_when_evicted[0] == (raised, 2)
    # AND the HPA's bounds are back exactly, written twice only; the scale itself was never written
    assert hpa_bounds(fake) == bounds
    assert fake.calls["patch_autoscaler_bounds"] == 2 and fake.calls["replace_scale"] == 0
    assert fake.deployments[DEPLOYMENT] == final_replicas
    assert final.facts["scales"]["Deployment/default/a"]["bounds"] == {"original": list(bounds), "raised": list(raised)}
    assert "are the HPA's again" in next(h.reason for h in platform.runs.history(run.run_id)
                                        if h.step == "remediation.restore_scale")
    assert platform.state.list(lease_partition(CLUSTER)) == []


@pytest.mark.parametrize("step", ["remediation.wait_scaled_out", "remediation.evict", "remediation.restore_scale"])
def test_hpa_bounds_changed_by_someone_else_are_not_overwritten_and_alerted(step):
    # GIVEN a scale-out run that raised HPA a-hpa from (1, 5) to (2, 5)
    fake, platform = hpa_scenario((1, 5))
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    message = run_until_state(platform, run.run_id, step)
    assert hpa_bounds(fake) == (2, 5)
    # WHEN its owner sets maxReplicas to 8 before the run's restore
    fake.edit_autoscaler("default", "a-hpa", 2, 8)
    platform.queue.send(message)
    deliver_all(platform)
    # THEN the node is finished, the owner's maxReplicas stays, the run's own minReplicas raise is put
    # back, and an alert says what someone else changed
    final = platform.runs.get(run.run_id)
    assert final.status == "succeeded", final.reason
    assert hpa_bounds(fake) == (1, 8)
    assert "the other put back: now [1, 8]" in final.reason or any(
        "the other put back: now [1, 8]" in h.reason for h in platform.runs.history(run.run_id))
    [alert] = [a for a in platform.alerts.published if a.kind == "remediation.scale-not-restored"]
    assert alert.details == {"workload": "Deployment/default/a", "autoscaler": "a-hpa", "original": [1, 5],
                             "raised_to": [2, 5], "current": [2, 8]}


def test_hpa_bounds_changed_before_the_raise_are_not_raised_and_the_run_fails():
    fake, platform = hpa_scenario((1, 5))
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    message = run_until_state(platform, run.run_id, "remediation.raise_replicas")
    fake.edit_autoscaler("default", "a-hpa", 1, 3)
    platform.queue.send(message)
    deliver_all(platform)
    final = platform.runs.get(run.run_id)
    assert final.status == "failed" and "not raised" in final.reason
    assert hpa_bounds(fake) == (1, 3) and fake.calls["patch_autoscaler_bounds"] == 0
    assert fake.nodes[NODE1].quarantined


def test_a_run_poisoned_after_the_hpa_raise_restores_its_bounds():
    fake, platform = hpa_scenario((1, 5))
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    assert hpa_bounds(fake) == (2, 5) and fake.deployments[DEPLOYMENT] == 2
    poison(platform, evict)
    assert platform.runs.get(run.run_id).status == "failed"
    assert hpa_bounds(fake) == (1, 5)
    assert platform.state.list(lease_partition(CLUSTER)) == []


@pytest.mark.parametrize(("status_writes", "restored"), [
    pytest.param(1, True, id="one-status-write-read-again-and-restored"),
    pytest.param(2, True, id="two-status-writes-read-again-and-restored"),
    pytest.param(3, False, id="moving-every-read-left-to-the-retry"),
])
def test_the_hpa_controllers_status_writes_do_not_stop_the_restore_of_a_poisoned_run(status_writes, restored):
    """The HPA controller writes the HPA's status every sync, which moves its resourceVersion
    between the restore's read and its write: the poison cleanup (which has no retry of its own)
    reads and decides again, a bounded number of times."""
    fake, platform = hpa_scenario((1, 5))
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    assert hpa_bounds(fake) == (2, 5)
    patch, writes = fake.patch_autoscaler_bounds, [status_writes]

    def status_write_first(namespace, name, low, high, *, resource_version):
        if writes[0]:  # the controller's status write lands first: same bounds, new resourceVersion
            writes[0] -= 1
            [hpa] = fake.autoscalers
            fake._store_autoscaler(hpa)
        return patch(namespace, name, low, high, resource_version=resource_version)

    fake.patch_autoscaler_bounds = status_write_first
    poison(platform, evict)
    after = platform.runs.get(run.run_id)
    assert after.status == "failed"
    assert hpa_bounds(fake) == ((1, 5) if restored else (2, 5))
    cleanup_failed = [a.summary for a in platform.alerts.published if a.kind == "run.cleanup-failed"]
    if restored:
        assert cleanup_failed == []
    else:  # the cleanup says so (critical), naming the HPA that kept moving
        assert len(cleanup_failed) == 1 and "HPA of Deployment/default/a changed while being restored (3 reads)" \
            in cleanup_failed[0], cleanup_failed


def test_an_hpa_deleted_while_raised_is_named_in_the_restore_not_skipped_silently():
    fake, platform = hpa_scenario((1, 5))
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    fake.autoscalers = []  # its owners delete the HPA while the run has it raised
    platform.queue.send(evict)
    deliver_all(platform)
    final = platform.runs.get(run.run_id)
    gone = "HorizontalPodAutoscaler default/a-hpa of Deployment/default/a was deleted meanwhile: nothing to restore"
    assert final.status == "succeeded", final.reason
    assert gone in final.facts["scale_notes"]
    assert any(gone in h.reason for h in platform.runs.history(run.run_id)), "the history says so"


def test_two_hpas_on_one_deployment_are_refused():
    fake, platform = hpa_scenario((1, 5))
    fake.autoscalers.append(Autoscaler("default", "a-hpa2", "Deployment", "a", 1, 3))
    with pytest.raises(NotAllowed, match="HorizontalPodAutoscalers a-hpa, a-hpa2 all scale Deployment default/a"):
        request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")


# ---- StatefulSets: the highest ordinals come and go; Retain keeps their claims ----------------------


STS = ("default", "a")


def sts_scenario(**state):
    """Scenario 2 with pod A as StatefulSet a's only pod a-0 (claim data-a-0), on the quarantined node."""
    fake, platform = scenario()
    del fake.pods["default/a-1"]
    del fake.deployments[DEPLOYMENT]
    fake.add_statefulset("default", "a", replicas=1, place_on=[NODE1],
                         state=StatefulSetState(current_revision="a-1", update_revision="a-1", generation=1,
                                                observed_generation=1, claim_templates=("data",), **state))
    return fake, platform


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_a_statefulset_is_scaled_out_and_back_and_its_retained_claim_is_named(delivery):
    # GIVEN pod a-0 of StatefulSet a (1 replica, claims retained when scaled) blocked on the quarantined node
    fake, platform = sts_scenario()
    scan_cluster(platform, CLUSTER)  # the operator got the quarantine alert
    # WHEN scale-out runs
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform, **delivery)
    # THEN the node is finished, the StatefulSet is back at 1 (ordinal a-1, the run's, went; a-0 moved)
    assert_remediated(fake, platform, run.run_id)
    assert fake.statefulsets[STS]["replicas"] == 1 and [p.name for p in fake.pods_of("a")] == ["a-0"]
    assert fake.pods["default/a-0"].node != NODE1
    # AND the claim of ordinal 1 stays (Kubernetes keeps it), the run did not delete it, and says so
    assert fake.claims >= {("default", "data-a-0"), ("default", "data-a-1")}
    claims_alerts = [a for a in platform.alerts.published if a.kind == "remediation.claims-retained"]
    assert claims_alerts and {a.dedup_key for a in claims_alerts} == {claims_alerts[0].dedup_key}
    assert claims_alerts[0].severity == "info" and claims_alerts[0].details["claims"] == ["data-a-1"]
    final = platform.runs.get(run.run_id)
    assert final.facts["scales"]["StatefulSet/default/a"]["claims"] == ["data-a-1"]
    assert any("data-a-1" in c for c in final.facts["scale_notes"])


def test_a_statefulset_whose_claims_are_deleted_when_scaled_leaves_nothing_to_name():
    fake, platform = sts_scenario(when_scaled="Delete")
    scan_cluster(platform, CLUSTER)
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform)
    assert_remediated(fake, platform, run.run_id)
    assert ("default", "data-a-1") not in fake.claims
    assert not [a for a in platform.alerts.published if a.kind == "remediation.claims-retained"]


def test_a_claim_that_existed_before_the_raise_is_not_named_as_left_by_the_run():
    # GIVEN data-a-1 left by an earlier scale-down (Retain): the StatefulSet reuses it for ordinal 1
    fake, platform = sts_scenario()
    fake.claims.add(("default", "data-a-1"))
    scan_cluster(platform, CLUSTER)
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform)
    assert_remediated(fake, platform, run.run_id)
    assert platform.runs.get(run.run_id).facts["scales"]["StatefulSet/default/a"]["claims_before"] == ["data-a-1"]
    assert not [a for a in platform.alerts.published if a.kind == "remediation.claims-retained"]


def test_claims_that_existed_before_are_not_handed_to_a_scale_down_that_deletes_them():
    # GIVEN data-a-1 left from before, and StatefulSet a deleting its removed ordinals' claims when scaled
    fake, platform = sts_scenario(when_scaled="Delete")
    fake.claims.add(("default", "data-a-1"))
    # WHEN scale-out runs (ordinal 1 would mount data-a-1, and the scale-down back would delete it)
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform)
    # THEN the run ends before any raise, saying why; the claim is still there and the lease given back
    final = platform.runs.get(run.run_id)
    assert final.status == "failed" and "would mount the existing PersistentVolumeClaims data-a-1" in final.reason
    assert fake.calls["replace_scale"] == 0 and fake.statefulsets[STS]["replicas"] == 1
    assert ("default", "data-a-1") in fake.claims
    assert platform.state.list(lease_partition(CLUSTER)) == []


@pytest.mark.parametrize("comes_back", [True, False], ids=["evicted-pod-ready-again", "never-ready-again"])
def test_a_parallel_statefulset_is_scaled_back_only_once_its_evicted_pod_is_ready_again(comes_back):
    # GIVEN StatefulSet a (Parallel: its scale-down does not wait for lower ordinals), raised to 2
    fake, platform = sts_scenario(pod_management_policy="Parallel")
    platform.policy = parse_policy(json.dumps({"defaults": {
        "pollSeconds": 1, "rolling": {"drainTimeoutInMinutes": 2}, "remediation": {"scale-out": "approval-required"}}}))
    scan_cluster(platform, CLUSTER)  # the operator got the quarantine alert
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    assert fake.statefulsets[STS]["replicas"] == 2
    # WHEN pod a-0, evicted, comes back elsewhere not Ready yet
    fake.crashloop |= {("default", "a", n.pool) for n in fake.nodes.values()}
    platform.queue.send(evict)
    restore = run_until_state(platform, run.run_id, "remediation.restore_scale")
    run_step_message(restore.to_json(), platform, message_id="first-restore")
    # THEN the run does not scale back yet: that would remove a-1, the only Ready pod
    assert fake.statefulsets[STS]["replicas"] == 2 and not fake.pods["default/a-0"].ready
    assert "waiting for the evicted pods to be Ready again" in platform.runs.history(run.run_id)[-1].reason
    if comes_back:
        fake.crashloop.clear()
        fake.pods["default/a-0"] = replace(fake.pods["default/a-0"], ready=True, crash_looping=False)
    deliver_all(platform)
    # AND once a-0 is Ready again (or at the drain timeout, saying so) the count goes back to 1
    assert_remediated(fake, platform, run.run_id)
    assert fake.statefulsets[STS]["replicas"] == 1
    final = platform.runs.get(run.run_id)
    assert any(("not all Ready again" in h.reason) is not comes_back
               for h in platform.runs.history(run.run_id) if "replicas restored" in h.reason)
    assert final.facts["scale_restored"] is True


def test_a_statefulset_mid_rollout_is_refused():
    fake, platform = sts_scenario()
    fake.statefulsets[STS]["state"] = replace(fake.statefulsets[STS]["state"], update_revision="a-2")
    with pytest.raises(NotAllowed, match="StatefulSet default/a is mid-update"):
        request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    assert fake.calls["replace_scale"] == 0


def test_a_rollout_begun_after_the_request_ends_the_run_before_any_raise():
    # GIVEN a scale-out run planned on a settled StatefulSet
    fake, platform = sts_scenario()
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    message = run_until_state(platform, run.run_id, "remediation.record_scale")
    # WHEN a rollout starts before the replicas are recorded
    fake.statefulsets[STS]["state"] = replace(fake.statefulsets[STS]["state"], update_revision="a-2")
    platform.queue.send(message)
    deliver_all(platform)
    # THEN the run fails saying why, nothing was scaled, and the PDB lease is given back
    final = platform.runs.get(run.run_id)
    assert final.status == "failed" and "mid-update" in final.reason
    assert fake.calls["replace_scale"] == 0 and fake.statefulsets[STS]["replicas"] == 1
    assert platform.state.list(lease_partition(CLUSTER)) == []


def test_an_hpa_owned_statefulset_is_raised_through_the_hpa_and_its_kept_claim_named():
    # GIVEN StatefulSet a (pod a-0 blocked) scaled by HPA a-hpa pinned at (1, 1)
    fake, platform = sts_scenario()
    fake.autoscalers = [Autoscaler("default", "a-hpa", "StatefulSet", "a", 1, 1)]
    scan_cluster(platform, CLUSTER)
    # WHEN scale-out runs
    run = request_remediation(platform, CLUSTER, NODE1, "scale-out", actor="alice")
    deliver_all(platform, crash_after_effect=True)
    # THEN the HPA was raised to (2, 2) and put back to (1, 1), which brought the StatefulSet back to 1
    assert_remediated(fake, platform, run.run_id)
    assert hpa_bounds(fake) == (1, 1) and fake.calls["replace_scale"] == 0
    assert fake.statefulsets[STS]["replicas"] == 1
    record = platform.runs.get(run.run_id).facts["scales"]["StatefulSet/default/a"]
    assert record["bounds"] == {"original": [1, 1], "raised": [2, 2]} and record["claims"] == ["data-a-1"]
    # AND the claim of the added ordinal is named, as left once the HPA scales the StatefulSet down
    [kept] = {a.summary: a for a in platform.alerts.published if a.kind == "remediation.claims-retained"}.values()
    assert kept.details["claims"] == ["data-a-1"] and "once the HorizontalPodAutoscaler scales it back down" in kept.summary
