"""Runs end to end on the dev host and the AKS emulator: a rolling start the cluster cannot take is
refused at once with nothing applied; a step queue cleared mid-run is recovered by the
``reconcile_runs`` timer within two of its periods; a failed run alerts; a rolling run can be
paused, resumed and aborted."""

from __future__ import annotations

import pytest
from azure.storage.queue import QueueClient

from sandbox.aks_emulator.scenarios import seed_rolling
from tests.e2e.conftest import wait_until
from tests.e2e.rolling_support import POOL, policy_json, start_sandbox
from upgrade.storage_names import STEP_QUEUE

pytestmark = pytest.mark.e2e

EVERY_TWO_SECONDS = "*/2 * * * * *"


@pytest.fixture
def sandbox(emulator, start_devhost, alerts_receiver):
    return start_sandbox(emulator, start_devhost, alerts_receiver, seed_rolling(), policy=policy_json(), subscribe=False)


def pool_arm(sandbox) -> dict:
    """The pool as the emulated ARM holds it: its version and upgradeSettings."""
    with sandbox.emulator.arm.lock:
        pool = sandbox.cluster.pools[POOL]
        return {"version": pool.current_orchestrator_version, "settings": dict(pool.upgrade_settings)}


def start_rolling(sandbox, target: str, pool: str = POOL) -> tuple[int, dict]:
    return sandbox.host.request("POST", "/api/upgrades", body={
        "cluster": sandbox.cluster.arm_id, "pool": pool, "targetVersion": target, "strategy": "rolling"})


def test_a_rolling_start_the_cluster_cannot_take_is_refused_at_once_and_nothing_is_applied(sandbox):
    before = pool_arm(sandbox)
    current = before["version"]
    cases = [("banana", POOL, 400), ("1.31.99", POOL, 400), ("1.29.9", POOL, 400), (current, POOL, 400),
             ("1.31.7", "nopool", 404)]
    for target, pool, expected in cases:
        status, body = start_rolling(sandbox, target, pool)
        assert status == expected, (target, pool, body)
        if expected == 400:
            assert body["field"] == "targetVersion"
            assert "offered for pool nodepool1: 1.30.10, 1.31.7, 1.31.8)" in body["message"], body
        else:
            assert "pool nopool not found" in body["message"]
    assert sandbox.runs() == []
    assert pool_arm(sandbox) == before  # no upgradeSettings were applied


def test_settings_the_pool_cannot_take_are_refused_at_once(sandbox):
    before = pool_arm(sandbox)
    status, body = sandbox.host.request("POST", "/api/upgrades", body={
        "cluster": sandbox.cluster.arm_id, "pool": POOL, "targetVersion": "1.31", "strategy": "rolling",
        "options": {"upgradeSettings": {"maxSurge": "50%", "maxBlockedNodes": "0"}}})
    assert status == 400 and body["field"] == "options.upgradeSettings.maxBlockedNodes", body
    assert sandbox.runs() == [] and pool_arm(sandbox) == before


def test_a_failed_rolling_run_alerts(sandbox):
    # GIVEN a subscription without the vCPU quota for the surge node
    sandbox.emulator.set_vcpu_quota(sandbox.cluster.subscription_id, 0)
    # WHEN a rolling run starts
    status, body = start_rolling(sandbox, "1.31")
    assert status == 202, body
    run = sandbox.wait_run(body["id"])
    # THEN it fails, and the operator is told, naming the run
    assert run["status"] == "failed", run["reason"]
    assert [a["kind"] for a in sandbox.alerts() if a.get("runId") == run["id"]] == ["upgrade.surge-unavailable"]


@pytest.fixture
def reconciled_sandbox(emulator, start_devhost, alerts_receiver):
    box = start_sandbox(emulator, start_devhost, alerts_receiver, seed_rolling(), policy=policy_json(), subscribe=False)
    # the same host, restarted with a reconciler every two seconds and a one-second margin
    box.host.stop()
    box.host.app_settings.update(RUN_RECONCILE_SCHEDULE=EVERY_TWO_SECONDS, RUN_RECONCILE_MARGIN_SECONDS="1")
    box.host.start()
    return box


def test_a_cleared_step_queue_mid_run_is_recovered_by_the_reconciler_within_two_timer_periods(reconciled_sandbox):
    sandbox = reconciled_sandbox
    # GIVEN a rolling run under way
    status, body = start_rolling(sandbox, "1.31")
    assert status == 202, body
    run_id = body["id"]
    wait_until(lambda: sandbox.run(run_id)["state"] != "rolling.apply_settings", timeout=60,
               what="the run to pass its first step")
    # WHEN the host stops and its step queue is cleared (every message of the run lost)
    sandbox.host.stop()
    QueueClient.from_connection_string(sandbox.host.app_settings["AzureWebJobsStorage"], STEP_QUEUE).clear_messages()
    sandbox.host.start()
    # THEN the reconciler re-sends the run's live step, and the run ends as a clean run does
    run = sandbox.wait_run(run_id, timeout=120)
    assert run["status"] == "succeeded", run["reason"]
    resent = [t for t in run["timeline"] if t["outcome"] == "resent"]
    assert resent and resent[0]["actor"] == "reconciler"
    # AND it took at most two timer periods of the restarted host: the re-send came from its first
    # or second reconcile_runs invocation
    ticks = sorted(i["startedAt"] for i in sandbox.host.invocations("reconcile_runs"))
    assert sum(1 for tick in ticks if tick <= resent[0]["at"]) <= 2, (ticks, resent[0]["at"])
    assert all(v.startswith("v1.31") for v in sandbox.node_versions())


def test_a_rolling_run_can_be_paused_resumed_and_aborted(sandbox):
    status, body = start_rolling(sandbox, "1.31")
    assert status == 202, body
    run_id = body["id"]
    status, paused = sandbox.host.request("POST", f"/api/upgrades/{run_id}/pause", body={"reason": "freeze"})
    assert status == 200 and paused["status"] == "paused", paused
    status, refused = sandbox.host.request("POST", f"/api/upgrades/{run_id}/approve", body={})
    assert status == 400 and "decisions: pause, resume, abort" in refused["message"], refused
    status, refused = sandbox.host.request("POST", f"/api/upgrades/{run_id}/pause", body={})
    assert status == 409 and refused["message"].endswith("you may: resume, abort"), refused
    status, resumed = sandbox.host.request("POST", f"/api/upgrades/{run_id}/resume", body={})
    assert status == 200 and resumed["status"] == "running", resumed
    status, aborted = sandbox.host.request("POST", f"/api/upgrades/{run_id}/abort", body={"reason": "changed my mind"})
    assert status == 200 and aborted["status"] == "aborted", aborted
    wait_until(lambda: any(a["kind"] == "run.aborted" and a.get("runId") == run_id for a in sandbox.alerts()),
               timeout=30, what="the run.aborted alert")
