"""Scenario 1 end to end: a new Kubernetes version arrives, the policy starts a rolling upgrade
(upgradeSettings first, then the version), AKS (the emulator) rolls the pool with a surge node and
sends Started/Succeeded through Event Grid; the run ends with the seed's final state and no alert
but the notice that the product started the upgrade. Also: AKS events delivered twice, and
Succeeded/Failed delivered before Started, give one reaction and no crash."""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.scenarios import seed_pdb, seed_rolling
from tests.e2e.conftest import wait_until
from tests.e2e.rolling_support import (
    APPS,
    assert_every_event_handled,
    last_deliveries_succeeded,
    policy_json,
    start_sandbox,
    upgrade_outside_the_product,
)

pytestmark = pytest.mark.e2e



NEW_VERSION = "Microsoft.ContainerService.NewKubernetesVersionAvailable"


def test_scenario1_new_version_starts_a_rolling_upgrade_that_ends_as_the_seed(emulator, start_devhost, alerts_receiver):
    # GIVEN Scenario 1 (2 nodes at 1.30 with A, B / C, D) and a policy that starts rolling upgrades with maxSurge 1
    sandbox = start_sandbox(emulator, start_devhost, alerts_receiver, seed_rolling(),
                            policy=policy_json(onNewVersion="start", rolling={"maxSurge": "1"}))
    # WHEN AKS announces a new version
    sandbox.emulator.publish(sandbox.cluster.arm_id, NEW_VERSION)
    # (the policy covers the system pool too: its run is another one, listed in no set order)
    run_id = wait_until(lambda: next((r["id"] for r in sandbox.runs()
                                      if r["kind"] == "rolling" and r["pool"] == "nodepool1"), None),
                        timeout=30, what="nodepool1's rolling run")
    run = wait_until(lambda: (r := sandbox.wait_run(run_id)) and "rolling.reconcile" in str(r["timeline"]) and r,
                     timeout=30, what="the run's history to show its reconcile")
    # THEN the run applied the settings, set the version, and reconciled to the seed's final state
    assert run["status"] == "succeeded", run["reason"]
    steps = [t["step"] for t in run["timeline"]]
    assert steps.index("rolling.apply_settings") < steps.index("rolling.set_version") < steps.index("rolling.reconcile")
    final = run["facts"]["final"]
    assert final["count"] == 2 and len(final["nodes"]) == 2
    assert all(n["version"].startswith("1.31") and not n["cordoned"] for n in final["nodes"])
    assert run["facts"]["permanent_surge_nodes"] == 0
    # AND every application pod runs exactly once, Ready, on the upgraded nodes
    pods = sandbox.app_pods()
    assert sorted(pods) == list(APPS) and all(len(p) == 1 and p[0][1] for p in pods.values())
    assert all(v.startswith("v1.31") for v in sandbox.node_versions())
    # AND Started/Succeeded reached the app: one run per pool (the policy covers the system pool too)
    wait_until(lambda: len(sandbox.host.invocations("on_aks_event")) >= 5, timeout=20, what="the AKS events")
    runs = wait_until(lambda: (rs := sandbox.runs()) and all(r["status"] != "running" for r in rs) and rs,
                      timeout=60, what="every run to finish")
    assert sorted((r["pool"], r["kind"], r["status"]) for r in runs) == [
        ("nodepool1", "rolling", "succeeded"), ("system", "rolling", "succeeded")]
    assert_every_event_handled(wait_until(lambda: last_deliveries_succeeded(sandbox.host.invocations("on_aks_event")),
                                          timeout=60, what="every AKS event's last delivery to succeed"))
    # AND no alert fired: the only ones are the info notices that the product started each pool's upgrade
    assert sorted((a["kind"], a["severity"], a["pool"]) for a in sandbox.alerts()) == [
        ("upgrade.started", "info", "nodepool1"), ("upgrade.started", "info", "system")]


def test_event_grid_delivering_every_event_twice_gives_one_reaction_and_no_crash(
        emulator, start_devhost, aks_client, alerts_receiver):
    # GIVEN Scenario 2 with Event Grid delivering every event twice
    sandbox = start_sandbox(emulator, start_devhost, alerts_receiver, seed_pdb(), policy=policy_json(), duplicate=True,
                            reorder=True)
    aks = aks_client(sandbox.emulator)
    # WHEN AKS upgrades the pool (started outside the product)
    assert upgrade_outside_the_product(sandbox, aks) == "UpgradeFailed"
    wait_until(lambda: len(sandbox.host.invocations("on_aks_event")) >= 4, timeout=30, what="4 event deliveries")
    run = sandbox.wait_run(wait_until(lambda: next((r["id"] for r in sandbox.runs()), None), what="a run"))
    # THEN every delivery succeeded, one run was recorded, and its reconcile found the quarantine once
    deliveries = sandbox.host.invocations("on_aks_event")
    assert all(d["succeeded"] for d in deliveries), deliveries
    assert len(sandbox.runs()) == 1
    assert run["status"] == "failed" and run["facts"]["quarantined_nodes"] == sandbox.quarantined()
    assert len(sandbox.alerts_of("node.quarantined")) == 1
    # AND the failure alert carries AKS's drain error, read from the pool's status.provisioningError
    (failed,) = sandbox.alerts_of("upgrade.failed")
    arm_error = failed["details"]["armError"]
    assert arm_error.startswith(f"UpgradeFailed: Drain node {sandbox.quarantined()[0]} failed when evicting pod ")
    assert "blocked by pdb app-a-pdb" in arm_error
    assert f"the pool's last operation ended Failed: {arm_error}" in failed["summary"]


# the seed, what AKS's upgrade ends with -> the run's status, and the alerts the operator gets
FINISHED_FIRST = [
    # Scenario 1 started by an operator: nothing is wrong and the product started nothing: no alert at all.
    pytest.param(seed_rolling, "Succeeded", "succeeded", [], id="scenario1-succeeded-before-started"),
    # Scenario 2: the failed upgrade and the quarantined node, once each.
    pytest.param(seed_pdb, "Failed", "failed", [("node.quarantined", "error"), ("upgrade.failed", "error")],
                 id="scenario2-failed-before-started"),
]


@pytest.mark.parametrize("seed, outcome, status, alerts", FINISHED_FIRST)
def test_finished_delivered_before_started_and_twice_gives_one_reaction_and_no_crash(
        emulator, start_devhost, aks_client, alerts_receiver, event_receiver, seed, outcome, status, alerts):
    # GIVEN the app is not subscribed yet, and the emulator's events are captured as AKS sent them
    sandbox = start_sandbox(emulator, start_devhost, alerts_receiver, seed(), policy=policy_json(), subscribe=False)
    sandbox.emulator.subscribe(event_receiver.url)
    # ... AKS upgrades the pool (started by an operator, outside the product)
    upgrade_outside_the_product(sandbox, aks_client(sandbox.emulator))
    assert sandbox.emulator.events.wait_delivered()
    sent = {e["eventType"].rsplit(".", 1)[-1]: e for e in event_receiver.events()}
    started, finished = sent["NodePoolRollingStarted"], sent[f"NodePoolRolling{outcome}"]
    # WHEN Event Grid delivers them to the app out of order and twice: the end first, then the start
    for event in (finished, finished, started, started):
        sandbox.deliver_event(event)
    run = sandbox.wait_run(wait_until(lambda: next((r["id"] for r in sandbox.runs()), None), what="a run"))
    # THEN the app saw them in that order, and every delivery succeeded
    deliveries = sandbox.host.invocations("on_aks_event")
    assert sandbox.events_received() == [f"NodePoolRolling{outcome}"] * 2 + ["NodePoolRollingStarted"] * 2
    assert all(d["succeeded"] for d in deliveries), deliveries
    # AND one run was recorded, reconciled once, with what it could know without a snapshot
    assert [r["id"] for r in sandbox.runs()] == [run["id"]]
    assert run["status"] == status, run["reason"]
    assert [t["step"] for t in run["timeline"]].count("rolling.reconcile") == 1
    assert run["facts"]["quarantined_nodes"] == sandbox.quarantined()
    assert (run["facts"]["permanent_surge_nodes"], run["facts"]["permanent_surge_basis"]) == (
        len(sandbox.quarantined()), "quarantined-nodes")
    # AND the operator got exactly these alerts
    assert sorted((a["kind"], a["severity"]) for a in sandbox.alerts()) == alerts
