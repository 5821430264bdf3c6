"""Scenario 1 end to end: a new Kubernetes version arrives, the policy starts a rolling upgrade
(upgradeSettings first, then the version), AKS (the emulator) rolls the pool with a surge node and
sends Started/Succeeded through Event Grid; the run ends with the seed's final state and no alert.
Also: AKS events delivered twice and out of order give one reaction, and no crash."""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.scenarios import seed_pdb, seed_rolling
from tests.e2e.conftest import wait_until
from tests.e2e.rolling_support import (
    APPS,
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
    run_id = wait_until(lambda: next((r["id"] for r in sandbox.runs() if r["kind"] == "rolling"), None),
                        timeout=30, what="the rolling run")
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
    assert all(d["succeeded"] for d in sandbox.host.invocations("on_aks_event"))
    # AND no alert fired but the notices that the upgrades started
    assert sorted(a["kind"] for a in sandbox.alerts()) == ["upgrade.started", "upgrade.started"]


def test_duplicate_and_reordered_events_give_one_reaction_and_no_crash(emulator, start_devhost, aks_client, alerts_receiver):
    # GIVEN Scenario 2 with Event Grid delivering every event twice and out of order
    sandbox = start_sandbox(emulator, start_devhost, alerts_receiver, seed_pdb(), policy=policy_json(), duplicate=True, reorder=True)
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
    assert len(sandbox.alerts_of("upgrade.failed")) == 1
    assert len(sandbox.alerts_of("node.quarantined")) == 1
