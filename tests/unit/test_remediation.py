"""Remediation runs on seed Scenario 2's final state: each kind ends with every node at the
pool version, no quarantine label, the pool back at 2 nodes, pod A running and a resolved notice;
each converges the same when every message is delivered twice or the host dies after a step's
side effect and before its state write; a failure between relax and restore restores the PDB."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import (
    CLUSTER,
    POOL,
    deliver_all,
    scenario2_after_upgrade,
)
from upgrade.domain.model import QUARANTINE_LABEL
from upgrade.domain.policy import parse_policy
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, NotAllowed
from upgrade.services.quarantine_scan import scan_cluster
from upgrade.services.remediation import request_remediation
from upgrade.services.step_runner import record_poisoned_step, run_step_message

NODE1 = "aks-nodepool1-1"


def policy(mode: str = "approval-required", **rolling) -> object:
    return parse_policy(json.dumps({"defaults": {
        "pollSeconds": 1,
        "remediation": {"relax-pdb": mode, "delete-pod": mode, "replace-node": mode},
        **({"rolling": rolling} if rolling else {}),
    }}))


pytestmark = pytest.mark.usefixtures("production_steps")


def platform_for(fake, mode: str = "approval-required") -> FakePlatform:
    platform = FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                            allowed_clusters=frozenset({CLUSTER.arm_id}))
    platform.policy = policy(mode)
    return platform


def assert_remediated(fake, platform, run_id: str) -> None:
    run = platform.runs.get(run_id)
    assert run.status == "succeeded", run.reason
    assert {n.kubernetes_version for n in fake.nodes.values()} == {"1.31.7"}
    assert not any(n.label(QUARANTINE_LABEL) for n in fake.nodes.values())
    assert not any(n.unschedulable for n in fake.nodes.values())
    assert fake.pools[POOL].count == 2 and len(fake.nodes) == 2
    assert [p.phase for p in fake.pods_of("a")] == ["Running"]
    assert fake.pdb_specs["default/a-pdb"] == {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}
    resolved = [a for a in platform.alerts.published if a.kind == "node.resolved"]
    assert [a.node for a in resolved] == [NODE1]


DELIVERIES = [
    pytest.param({}, id="once"),
    pytest.param({"duplicate": True}, id="every-message-twice"),
    pytest.param({"crash_after_effect": True}, id="crash-after-effect-before-state-write"),
]


@pytest.mark.parametrize("kind", ["relax-pdb", "delete-pod", "replace-node"])
@pytest.mark.parametrize("delivery", DELIVERIES)
def test_each_remediation_brings_the_pool_back_to_the_seed_final_state(kind, delivery):
    # GIVEN Scenario 2 after the upgrade, scanned once (the operator got the quarantine alert)
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    scan_cluster(platform, CLUSTER)
    assert [a.kind for a in platform.alerts.published] == ["node.quarantined"]
    # WHEN the operator asks for the remediation and the steps run
    run = request_remediation(platform, CLUSTER, NODE1, kind, actor="alice")
    deliver_all(platform, **delivery)
    # THEN the pool is as if the upgrade had succeeded, and the operator hears it is resolved
    assert_remediated(fake, platform, run.run_id)
    # AND nothing was done twice
    assert fake.calls["patch_pdb_spec"] == (2 if kind == "relax-pdb" else 0)
    assert fake.calls["begin_delete_machines"] == (1 if kind == "replace-node" else 0)
    assert fake.calls["begin_put_pool"] == {"replace-node": 0}.get(kind, 2)  # re-apply the version, then scale


def test_relax_pdb_records_the_original_spec_before_relaxing_it():
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    seen_when_relaxed = []
    patch = fake.patch_pdb_spec

    def recording_patch(namespace, name, spec):
        run = platform.runs.list_runs(cluster=CLUSTER.arm_id)[0]
        seen_when_relaxed.append(run.facts.get("pdb_originals"))
        patch(namespace, name, spec)

    fake.patch_pdb_spec = recording_patch
    request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    deliver_all(platform)
    assert seen_when_relaxed[0] == {"default/a-pdb": {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}}


@pytest.mark.parametrize("failure", [
    pytest.param(RuntimeError("worker bug"), id="unexpected-exception"),
    pytest.param(NotAllowed("eviction forbidden by an admission webhook", status=403), id="permanent-error"),
])
def test_a_failure_between_relax_and_restore_still_restores_the_original_pdb(failure):
    # GIVEN evictions fail once the PDB is relaxed
    fake = scenario2_after_upgrade()
    fake.evict_error = failure
    platform = platform_for(fake)
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    # WHEN the run goes
    deliver_all(platform)
    # THEN it failed, says the PDB was restored, and the PDB is exactly the original again
    run = platform.runs.get(run.run_id)
    assert run.status == "failed"
    assert "original PDB was restored" in run.reason
    assert fake.pdb_specs["default/a-pdb"] == {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}
    assert any(a.kind == "remediation.failed" for a in platform.alerts.published)
    assert fake.nodes[NODE1].quarantined  # nothing else was touched


def test_delete_pod_is_refused_for_an_unmanaged_pod_unless_forced():
    fake = scenario2_after_upgrade()
    del fake.pods["default/a-1"]
    fake.add_pod("default", "a-bare", NODE1, app="a", owner=None)
    platform = platform_for(fake)
    with pytest.raises(NotAllowed, match="no controller"):
        request_remediation(platform, CLUSTER, NODE1, "delete-pod", actor="alice")
    run = request_remediation(platform, CLUSTER, NODE1, "delete-pod", actor="alice", force=True)
    deliver_all(platform)
    assert platform.runs.get(run.run_id).status == "succeeded"
    assert fake.pods_of("a") == []  # gone for good, as the operator was warned


@pytest.mark.parametrize("mode, error", [("off", NotAllowed)])
def test_remediation_is_refused_when_the_policy_turns_it_off(mode, error):
    platform = platform_for(scenario2_after_upgrade(), mode=mode)
    with pytest.raises(error, match="is off for pool"):
        request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")


def test_a_second_request_for_the_same_pool_conflicts_with_the_active_run():
    platform = platform_for(scenario2_after_upgrade())
    first = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    with pytest.raises(Conflict) as raised:
        request_remediation(platform, CLUSTER, NODE1, "delete-pod", actor="bob")
    assert raised.value.code == first.run_id


def test_the_pool_count_goes_back_to_the_rolling_snapshot_when_there_is_one():
    # GIVEN two quarantined nodes, each with its permanent surge node (4 nodes, 2 before the upgrade)
    fake = scenario2_after_upgrade()
    fake.add_node("aks-nodepool1-3", POOL, "1.30.0", quarantined=True)
    fake.add_node("aks-nodepool1-surge2", POOL, "1.31.7")
    fake.pools[POOL] = fake.pools[POOL].__class__(**{**fake.pools[POOL].__dict__, "count": 5})
    platform = platform_for(fake)
    # WHEN node 1 is remediated
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    deliver_all(platform)
    # THEN only node 1's extra node goes: the other quarantined node is left for its own remediation
    assert platform.runs.get(run.run_id).status == "succeeded"
    assert fake.pools[POOL].count == 4
    assert fake.nodes["aks-nodepool1-3"].quarantined


def run_until_state(platform, run_id: str, state: str) -> StepMessage:
    """Deliver queued steps until the run's live message is ``state``; returns that message."""
    for _ in range(50):
        [sent] = platform.queue.take()
        if sent.message.step == state:
            return sent.message
        platform.clock.advance(sent.delay_seconds)
        run_step_message(sent.message.to_json(), platform, message_id=str(uuid.uuid4()))
    raise AssertionError(f"run {run_id} never reached {state}")


def test_a_run_poisoned_after_the_relax_still_restores_the_original_pdb():
    # GIVEN a relax-pdb run that relaxed the PDB and is about to evict
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    assert fake.pdb_specs["default/a-pdb"]["maxUnavailable"] == 1
    # WHEN every delivery of that step dies unexpectedly (here: the run store fails on each write),
    # so the host moves it to the poison queue after maxDequeueCount deliveries
    def storage_unreachable(run) -> None:
        raise OSError("storage account unreachable")

    platform.runs.before_update = storage_unreachable
    for delivery in range(1, 6):
        with pytest.raises(OSError):
            run_step_message(evict.to_json(), platform, message_id="m-evict", dequeue_count=delivery)
    platform.runs.before_update = None
    record_poisoned_step(evict.to_json(), platform)
    # THEN the run is failed and the PDB is exactly the original again
    assert platform.runs.get(run.run_id).status == "failed"
    assert fake.pdb_specs["default/a-pdb"] == {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}
    [failed] = [a for a in platform.alerts.published if a.kind == "run.failed"]
    assert "restored" in failed.details["cleanup"]
