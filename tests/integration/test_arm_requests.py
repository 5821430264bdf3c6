"""Every ARM request the product makes in the seed scenarios speaks an api-version that defines each
property of its body.

The product's services run in process (real step runner, real AKS and Kubernetes adapters; runs,
queue and alerts in memory) against the emulator, which logs every request it receives. Each
request body is then checked against the properties its api-version defines (read from the SDK's
models, `upgrade.adapters.arm_schema`): an undefined property fails the test, naming the property
and the version. Scenario 1: a rolling upgrade. Scenario 2: a rolling upgrade with maxBlockedNodes
(the preview), its quarantine, then a replace-node remediation. Scenario 3: a blue-green upgrade
committed by an operator.
"""

from __future__ import annotations

import json

import pytest

from upgrade.adapters import arm_schema
from upgrade.services.bluegreen.decisions import decide
from upgrade.services.bluegreen.start import start_bluegreen_run
from upgrade.services.remediation import request_remediation
from upgrade.services.rolling import start_rolling_run

pytestmark = pytest.mark.integration

# The request bodies the product sends, by route: the SDK model that describes each.
BODY_MODELS = {
    ("PUT", "agentPools"): arm_schema.AGENT_POOL,
    ("POST", "deleteMachines"): arm_schema.DELETE_MACHINES,
}
BLUEGREEN_FAST = {"drainBatchSize": "1", "batchSoakMinutes": 0, "finalSoakMinutes": 0.02, "pollIntervalSeconds": 1,
                  "drainTimeoutMinutes": 2, "validation": {"readyTimeoutMinutes": 0.5}}


def body_model(method: str, path: str) -> str | None:
    parts = path.rstrip("/").split("/")
    if method == "PUT" and len(parts) >= 2 and parts[-2].lower() == "agentpools":
        return BODY_MODELS[("PUT", "agentPools")]
    return BODY_MODELS.get((method, parts[-1]))


def undefined_in(requests) -> list[str]:
    """Each property a logged request sends that its api-version does not define, as a sentence."""
    problems = []
    for request in requests:
        if request.api_version not in (arm_schema.STABLE_API_VERSION, arm_schema.PREVIEW_API_VERSION):
            problems.append(f"{request.method} {request.path}: api-version {request.api_version} is not one the "
                            "product may speak")
            continue
        model = body_model(request.method, request.path)
        if request.body is None or model is None:
            if request.body is not None:
                problems.append(f"{request.method} {request.path}: a body the check knows no model for")
            continue
        paths = arm_schema.defined_paths(request.api_version, model)
        problems += [f"{request.method} {request.path}: property {u.path} is not defined by api-version "
                     f"{request.api_version}" for u in arm_schema.undefined_properties(request.body, paths, model)]
    return problems


def test_scenario_1_rolling_upgrade_sends_only_defined_properties(product):
    # GIVEN Scenario 1 and the product
    emu, app = product("seed-rolling")
    # WHEN the product upgrades the pool
    run = start_rolling_run(app.platform, cluster=app.ref, pool="nodepool1", target_version="1.31")
    app.deliver(lambda: not app.run(run.run_id).active)
    # THEN it succeeded, and every request it sent is defined by its api-version
    assert app.run(run.run_id).status == "succeeded", app.run(run.run_id).reason
    puts = [r for r in emu.arm_requests if r.method == "PUT"]
    assert puts and {r.api_version for r in puts} == {arm_schema.STABLE_API_VERSION}
    assert undefined_in(emu.arm_requests) == []


def test_scenario_2_with_max_blocked_nodes_and_a_remediation_sends_only_defined_properties(product):
    # GIVEN Scenario 2 and a policy asking for maxBlockedNodes (a preview field) and allowing replace-node
    emu, app = product("seed-pdb", {"rolling": {"maxBlockedNodes": "2"},
                                    "remediation": {"replace-node": "approval-required"}})
    # WHEN the product upgrades the pool (AKS quarantines node 1), then replaces the quarantined node
    run = start_rolling_run(app.platform, cluster=app.ref, pool="nodepool1", target_version="1.31")
    app.deliver(lambda: not app.run(run.run_id).active)
    assert app.run(run.run_id).status == "failed", app.run(run.run_id).reason
    (quarantined,) = app.run(run.run_id).facts["quarantined_nodes"]
    remediation = request_remediation(app.platform, app.ref, quarantined, "replace-node", actor="operator")
    app.deliver(lambda: not app.run(remediation.run_id).active)
    # THEN maxBlockedNodes went out at the preview only, the node was replaced, and every request
    # the product sent is defined by its api-version
    assert app.run(remediation.run_id).status == "succeeded", app.run(remediation.run_id).reason
    with_blocked = [r for r in emu.arm_requests if r.method == "PUT" and "maxBlockedNodes" in json.dumps(r.body)]
    assert with_blocked and {r.api_version for r in with_blocked} == {arm_schema.PREVIEW_API_VERSION}
    assert any(r.path.endswith("/deleteMachines") for r in emu.arm_requests)
    assert undefined_in(emu.arm_requests) == []


def test_scenario_3_blue_green_upgrade_sends_only_defined_properties(product):
    # GIVEN Scenario 3 and the product
    emu, app = product("seed-bluegreen")
    # WHEN the product runs a blue-green upgrade of pool blue, and an operator approves it when asked
    run = start_bluegreen_run(app.platform, cluster=app.ref.arm_id, pool="blue", target_version="1.31",
                              options=BLUEGREEN_FAST, actor="operator")
    for _ in range(5):
        app.deliver(lambda: app.run(run.run_id).status != "running")
        if app.run(run.run_id).status != "awaiting-decision":
            break
        decide(app.platform, run.run_id, "approve", actor="operator")
    # THEN it succeeded (a green pool created, blue deleted), and every request the product sent is
    # defined by its api-version
    assert app.run(run.run_id).status == "succeeded", (app.run(run.run_id).state, app.run(run.run_id).reason)
    assert any(r.method == "PUT" and "/agentPools/" in r.path for r in emu.arm_requests)
    assert any(r.method == "DELETE" for r in emu.arm_requests)
    assert undefined_in(emu.arm_requests) == []


def test_the_check_names_the_property_and_the_version():
    # GIVEN a logged PUT carrying maxBlockedNodes at the stable version WHEN checked THEN it is named
    from sandbox.aks_emulator.arm_api import ArmRequest

    request = ArmRequest("PUT", "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/"
                         "managedClusters/c/agentPools/np", arm_schema.STABLE_API_VERSION,
                         {"properties": {"upgradeSettings": {"maxBlockedNodes": "2"}}})
    assert undefined_in([request]) == [
        f"PUT {request.path}: property properties.upgradeSettings.maxBlockedNodes is not defined by api-version "
        "2026-08-01"]
    assert undefined_in([ArmRequest("GET", "/x", "2019-01-01", None)]) == [
        "GET /x: api-version 2019-01-01 is not one the product may speak"]
