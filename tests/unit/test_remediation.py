"""Remediation runs on seed Scenario 2's final state: each kind ends with every node at the
pool version, no quarantine label, the pool back at 2 nodes, pod A running and a resolved notice;
each converges the same when every message is delivered twice or the host dies after a step's
side effect and before its state write; a failure between relax and restore restores the PDB."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import (
    CLUSTER,
    POOL,
    deliver_all,
    scenario2_after_upgrade,
    two_pools_one_pdb,
)
from upgrade.domain.model import QUARANTINE_LABEL
from upgrade.domain.pdb_lease import lease_partition
from upgrade.domain.policy import parse_policy
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, NotAllowed
from upgrade.services.quarantine_scan import scan_cluster
from upgrade.services.remediation import request_remediation
from upgrade.services.run_failures import record_poisoned_step
from upgrade.services.step_runner import run_step_message

NODE1 = "aks-nodepool1-1"
ORIGINAL = {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}


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
    # (replace-node deletes node 1's machine; the others' scale-back deletes one by name, since pod A's
    # replacement and its budget hold the newest node a plain scale-down would remove)
    assert fake.calls["begin_delete_machines"] == 1
    assert fake.calls["begin_put_pool"] == {"replace-node": 0}.get(kind, 1)  # re-apply the version


def test_relax_pdb_records_the_original_in_the_pdbs_lease_before_relaxing_it():
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    leases_when_relaxed = []
    patch = fake.patch_pdb_spec

    def recording_patch(namespace, name, spec, *, resource_version=None):
        if "maxUnavailable" in spec:
            leases_when_relaxed.append(platform.state.get(lease_partition(CLUSTER), "default:a-pdb")[0])
        return patch(namespace, name, spec, resource_version=resource_version)

    fake.patch_pdb_spec = recording_patch
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    deliver_all(platform)
    # THEN the lease named the run, the original and what it was about to write, before the write
    (lease,) = leases_when_relaxed
    assert (lease["run_id"], lease["original"]) == (run.run_id, ORIGINAL)
    assert lease["relaxed"] == {"selector": {"matchLabels": {"app": "a"}}, "maxUnavailable": 1}
    assert lease["relaxed_generation"] == lease["original_generation"] + 1
    # AND the restore gave the lease back
    assert platform.state.list(lease_partition(CLUSTER)) == []


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


def test_a_scale_back_that_aks_fails_fails_the_run_instead_of_reporting_success():
    # GIVEN Scenario 2 after the upgrade, and an AKS whose scale-down fails (a budget blocks the drain
    # of the node it picked): the pool keeps the requested count, Failed, and the node stays
    fake = scenario2_after_upgrade()
    put = fake.begin_put_pool

    def scale_down_fails(cluster, pool, *, if_match=None):
        current = fake.pools[pool.name]
        if pool.count >= current.count:
            return put(cluster, pool, if_match=if_match)
        fake.pools[pool.name] = replace(current, count=pool.count, provisioning_state="Failed",
                                        error="Drain node aks-nodepool1-surge1 failed when evicting pod a")
        return None

    def delete_fails(cluster, pool, machines):
        fake.pools[pool] = replace(fake.pools[pool], count=fake.pools[pool].count - len(machines),
                                   provisioning_state="Failed", error=f"Drain node {machines[0]} failed")

    fake.begin_put_pool, fake.begin_delete_machines = scale_down_fails, delete_fails
    platform = platform_for(fake)
    # WHEN node 1 is remediated
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    deliver_all(platform)
    # THEN the run fails naming the scale-back and AKS's error; it does not report the pool at 2
    record = platform.runs.get(run.run_id)
    assert record.status == "failed", record.reason
    assert "scaling the pool back to 2 node(s) failed" in record.reason and "Drain node" in record.reason
    assert len([n for n in fake.nodes.values() if n.pool == POOL]) == 3


def test_the_scale_back_keeps_the_node_whose_pod_a_budget_holds():
    # GIVEN Scenario 2 after the upgrade: pod A's replacement lands on the least loaded node, the
    # permanent surge node (the newest, which a plain scale-down removes), and its PDB is restored
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    # WHEN node 1 is remediated
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    deliver_all(platform)
    # THEN the scale-back deletes a node no budget holds, by name, and pod A is not evicted again
    assert platform.runs.get(run.run_id).status == "succeeded"
    [a] = [p for p in fake.pods.values() if p.label_map().get("app") == "a"]
    assert a.node == "aks-nodepool1-surge1" and a.node in fake.nodes
    assert fake.calls["begin_delete_machines"] == 1 and fake.pools[POOL].count == 2


def test_the_scale_back_reads_the_budgets_once_for_the_whole_pool():
    # GIVEN Scenario 2 after the upgrade with four more healthy nodes in the pool (and its count)
    fake = scenario2_after_upgrade()
    for i in range(4):
        fake.add_node(f"aks-nodepool1-extra{i}", POOL, "1.31.7")
    fake.pools[POOL] = replace(fake.pools[POOL], count=fake.pools[POOL].count + 4)
    platform = platform_for(fake)
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    scale_back = run_until_state(platform, run.run_id, "remediation.scale_back")
    assert not fake.pools[POOL].busy
    # WHEN the scale-back chooses which machines to delete
    pdb_reads, pod_reads = fake.calls["list_pdbs"], fake.calls["list_pods"]
    run_step_message(scale_back.to_json(), platform, message_id="scale-back")
    # THEN it asked for the budgets and the pods once, not once per node, and kept pod A's node
    assert fake.calls["list_pdbs"] - pdb_reads == 1 and fake.calls["list_pods"] - pod_reads == 1
    assert fake.calls["begin_delete_machines"] == 1
    [a] = [p for p in fake.pods.values() if p.label_map().get("app") == "a"]
    assert a.node in fake.nodes


def run_until_state(platform, run_id: str, state: str) -> StepMessage:
    """Deliver queued steps until the run's live message is ``state``; returns that message."""
    for _ in range(50):
        [sent] = platform.queue.take()
        if sent.message.step == state:
            return sent.message
        platform.clock.advance(sent.delay_seconds)
        run_step_message(sent.message.to_json(), platform, message_id=str(uuid.uuid4()))
    raise AssertionError(f"run {run_id} never reached {state}")


def poison(platform, message: StepMessage) -> None:
    """Every delivery of ``message`` dies (the run store fails on each write) until the host moves
    it to the poison queue after maxDequeueCount deliveries; then the poison handler runs."""

    def storage_unreachable(run) -> None:
        raise OSError("storage account unreachable")

    platform.runs.before_update = storage_unreachable
    for delivery in range(1, 6):
        with pytest.raises(OSError):
            run_step_message(message.to_json(), platform, message_id=f"m-{message.step}", dequeue_count=delivery)
    platform.runs.before_update = None
    record_poisoned_step(message.to_json(), platform)


def test_a_run_poisoned_after_the_relax_still_restores_the_original_pdb():
    # GIVEN a relax-pdb run that relaxed the PDB and is about to evict
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    assert fake.pdb_specs["default/a-pdb"]["maxUnavailable"] == 1
    # WHEN every delivery of that step dies unexpectedly (here: the run store fails on each write),
    # so the host moves it to the poison queue after maxDequeueCount deliveries
    poison(platform, evict)
    # THEN the run is failed and the PDB is exactly the original again
    assert platform.runs.get(run.run_id).status == "failed"
    assert fake.pdb_specs["default/a-pdb"] == {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}
    [failed] = [a for a in platform.alerts.published if a.kind == "run.failed"]
    assert "restored" in failed.details["cleanup"]


# ---- one PDB, several runs; PDB edits by others (the lease and the conditional restore) -----------


def test_two_runs_on_one_pdb_take_turns_and_the_second_records_the_true_original():
    # GIVEN two pools whose quarantined nodes one PDB blocks, and a relax-pdb run on each at once
    fake = two_pools_one_pdb()
    original = dict(fake.pdb_specs["default/a-pdb"])
    platform = platform_for(fake)
    originals, patch = [], fake.patch_pdb_spec

    def recording_patch(namespace, name, spec, *, resource_version=None):
        # Whenever a run relaxes the PDB, exactly one lease exists and it holds the true original.
        if "maxUnavailable" in spec:
            (lease,) = [value for _, value in platform.state.list(lease_partition(CLUSTER))]
            originals.append((lease["run_id"], lease["original"]))
        return patch(namespace, name, spec, resource_version=resource_version)

    fake.patch_pdb_spec = recording_patch
    first = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    second = request_remediation(platform, CLUSTER, "aks-nodepool2-1", "relax-pdb", actor="bob")
    # WHEN both runs' steps are delivered, interleaved
    deliver_all(platform)
    # THEN the second waited for the first's restore, both relaxed the PDB from the same original,
    # both succeeded and the PDB is the original again
    assert [run_id for run_id, _ in originals] == [first.run_id, second.run_id]
    assert [spec for _, spec in originals] == [original, original]
    assert {platform.runs.get(r.run_id).status for r in (first, second)} == {"succeeded"}
    assert any("waiting for its restore" in h.reason for h in platform.runs.history(second.run_id))
    assert fake.pdb_specs["default/a-pdb"] == original
    assert platform.state.list(lease_partition(CLUSTER)) == []


def relaxed_by_a_run_that_died(fake, platform):
    """A relax-pdb run that relaxed the PDB, then ended without its restore or its cleanup."""
    dead = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    run_until_state(platform, dead.run_id, "remediation.evict")  # its evict message is lost
    stored = platform.runs.get(dead.run_id)
    platform.runs.update(stored.evolve(now=platform.clock.now(), status="failed", reason="worker lost"))
    assert fake.pdb_specs["default/a-pdb"]["maxUnavailable"] == 1
    return dead


def test_a_run_after_one_that_died_relaxed_takes_over_the_lease_with_the_true_original():
    # GIVEN a run that relaxed the PDB and then ended without restoring it (its cleanup never ran)
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    relaxed_by_a_run_that_died(fake, platform)
    # AND another pod of app A is not ready, so even the relaxed budget blocks pod A again
    fake.pods["default/a-0"] = replace(fake.add_pod("default", "a-0", "aks-nodepool1-2", app="a"), ready=False)
    # WHEN a new run remediates the node
    again = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="bob")
    deliver_all(platform)
    # THEN it restored the original the dead run had recorded, not the relaxed spec it found
    assert platform.runs.get(again.run_id).status == "succeeded"
    assert fake.pdb_specs["default/a-pdb"] == ORIGINAL
    assert platform.state.list(lease_partition(CLUSTER)) == []


def relaxed_then(platform, change):
    """A relax-pdb run that relaxed the PDB; ``change`` happens before its evict step runs."""
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    evict = run_until_state(platform, run.run_id, "remediation.evict")
    change()
    platform.queue.send(evict)
    return run


def test_a_pdb_edited_while_relaxed_is_not_overwritten_and_an_alert_says_so():
    # GIVEN a run that relaxed the PDB, and its owner then sets the budget to something else
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    owners_choice = {"selector": {"matchLabels": {"app": "a"}}, "maxUnavailable": "50%"}
    run = relaxed_then(platform, lambda: fake.edit_pdb("default/a-pdb", owners_choice))
    # WHEN the run goes on
    deliver_all(platform)
    # THEN the owner's edit stays, the run says why, and an alert names the PDB
    assert fake.pdb_specs["default/a-pdb"] == owners_choice
    finished = platform.runs.get(run.run_id)
    assert finished.facts["pdb_restored"] is False
    [alert] = [a for a in platform.alerts.published if a.kind == "remediation.pdb-not-restored"]
    assert "default/a-pdb was changed by someone else" in alert.summary
    assert alert.details["original"] == ORIGINAL and alert.details["current"] == owners_choice
    assert platform.state.list(lease_partition(CLUSTER)) == []


def test_status_updates_while_relaxed_do_not_stop_the_restore():
    # GIVEN a relaxed PDB whose status the disruption controller rewrites (new resourceVersion)
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    run = relaxed_then(platform, lambda: fake.update_pdb_status("default/a-pdb"))
    # WHEN the run goes on THEN the PDB is restored exactly: the spec is still what the run wrote
    deliver_all(platform)
    assert platform.runs.get(run.run_id).status == "succeeded"
    assert fake.pdb_specs["default/a-pdb"] == ORIGINAL
    assert not [a for a in platform.alerts.published if a.kind == "remediation.pdb-not-restored"]


def test_an_edit_between_the_restores_read_and_write_is_a_conflict_not_an_overwrite():
    # GIVEN the owner edits the PDB just after the restore read it (the restore's write is conditional)
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    owners_choice = {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 0}
    patch = fake.patch_pdb_spec

    def edit_then_patch(namespace, name, spec, *, resource_version=None):
        if spec == ORIGINAL and fake.pdb_specs["default/a-pdb"] != owners_choice:
            fake.edit_pdb("default/a-pdb", owners_choice)
        return patch(namespace, name, spec, resource_version=resource_version)

    fake.patch_pdb_spec = edit_then_patch
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    # WHEN the run goes
    deliver_all(platform)
    # THEN the API refused the stale write, the run read the PDB again and left the edit alone
    assert fake.pdb_specs["default/a-pdb"] == owners_choice
    assert platform.runs.get(run.run_id).facts["pdb_restored"] is False
    assert [a.kind for a in platform.alerts.published if a.kind.startswith("remediation.")] == [
        "remediation.pdb-not-restored"]


def test_the_scan_restores_a_pdb_whose_run_ended_without_restoring_it():
    # GIVEN a run that relaxed the PDB and then ended without its restore or its cleanup
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    dead = relaxed_by_a_run_that_died(fake, platform)
    # WHEN the quarantine scan runs
    notes = scan_cluster(platform, CLUSTER)
    # THEN the PDB is the original again and its lease is gone
    assert fake.pdb_specs["default/a-pdb"] == ORIGINAL
    assert platform.state.list(lease_partition(CLUSTER)) == []
    assert f"PDB default/a-pdb left relaxed by run {dead.run_id}: restore" in notes
    # AND a lease an active run holds is left alone
    live = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="bob")
    run_until_state(platform, live.run_id, "remediation.evict")
    scan_cluster(platform, CLUSTER)
    assert fake.pdb_specs["default/a-pdb"]["maxUnavailable"] == 1
