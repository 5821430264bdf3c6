"""The blue-green idempotency drill end to end: function_app on the dev host, Azurite, the AKS emulator.

Storage itself misbehaves, through ``sandbox.storage_faults`` proxies in front of Azurite's queue
and table endpoints (the host's AzureWebJobsStorage points at them):
- duplicate delivery: every message put on ``upgrade-steps`` is put twice, so every step of the
  run, from the first to the terminal one, is delivered twice;
- a crash after the side effect: the first try of every step transition write fails with 503,
  so each step has acted on the cluster, its state write did not land, the executor puts the
  delivery back (the step's own retry, not the host's) and the step runs again.
Either way the run must end as a clean run does (seed 5A or 5B), with exactly one green pool
created and one pool deleted (ARM request counts), every application pod Ready.
"""

from __future__ import annotations

import base64
import json

import pytest

from sandbox.aks_emulator.scenarios import seed_bluegreen
from sandbox.storage_faults import StorageFaultProxy, proxied_connection_string
from tests.e2e.test_bluegreen import APPS, FAST, app_pods, pools, wait_status
from tests.integration.conftest_emulator import FAST_TIME_SCALE

pytestmark = pytest.mark.e2e

STEP_QUEUE = "upgrade-steps"
POOL_ROUTE = ("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
              "Microsoft.ContainerService/managedClusters/{resourceName}/agentPools/{agentPoolName}")
COMMIT_STEPS = {"preflight", "create_green", "wait_green_ready", "cordon_blue", "drain_batch", "batch_soak",
                "validate", "final_soak", "commit", "done"}
# Nobody decides within the approval window and the policy says roll back.
ROLLBACK_OPTIONS = {"approval": {"required": True, "timeoutMinutes": 0.05, "onTimeout": "rollback"}}
ROLLBACK_STEPS = {"preflight", "create_green", "wait_green_ready", "cordon_blue", "drain_batch", "batch_soak",
                  "validate", "final_soak", "await_decision", "rollback", "uncordon_blue", "drain_green",
                  "delete_green", "wait_green_deleted", "done"}
PATHS = {
    "commit": ({}, "succeeded", COMMIT_STEPS),
    "rollback": (ROLLBACK_OPTIONS, "rolled-back", ROLLBACK_STEPS),
}
CLUSTERS = 4  # one fresh seed-bluegreen cluster per test


@pytest.fixture(scope="module")
def drill_sandbox(start_devhost, e2e_azurite):
    """One emulator, the two storage proxies (faults off) and one dev host whose storage goes through them."""
    from sandbox.aks_emulator.server import Emulator

    with (Emulator(time_scale=FAST_TIME_SCALE) as emu,
          StorageFaultProxy(e2e_azurite.endpoints["queue"]) as queue_proxy,
          StorageFaultProxy(e2e_azurite.endpoints["table"]) as table_proxy):
        for index in range(CLUSTERS):
            builder = seed_bluegreen()
            builder.name = f"aks-drill-{index}"
            builder.build(emu)
        storage = proxied_connection_string(e2e_azurite.connection_string, table=table_proxy.url,
                                            queue=queue_proxy.url)
        host = start_devhost(emulator=emu, AzureWebJobsStorage=storage)
        try:
            yield host, emu, iter(emu.clusters()), queue_proxy, table_proxy
        finally:
            host.stop()  # before its storage proxies and the emulator go away under it


@pytest.fixture
def drill(drill_sandbox):
    host, emu, fresh, queue_proxy, table_proxy = drill_sandbox
    emu.faults.reset_counts()
    yield host, next(fresh), emu, queue_proxy, table_proxy
    queue_proxy.duplicate_queue = None
    table_proxy.fail_run_transitions = False


def _step(message_text: str) -> tuple[str, str]:
    message = json.loads(base64.b64decode(message_text))
    return message["run_id"], message["step"].removeprefix("bluegreen.")


@pytest.mark.parametrize("fault", ["duplicate-delivery", "crash-before-state-write"])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_step_survives_duplicates_and_crashes_and_the_run_ends_as_a_clean_run(drill, path, fault):
    host, cluster, emu, queue_proxy, table_proxy = drill
    options, final_status, steps = PATHS[path]
    # GIVEN Scenario 3 and storage that delivers every step twice, or fails every transition once
    if fault == "duplicate-delivery":
        queue_proxy.duplicate_queue = STEP_QUEUE
    else:
        table_proxy.fail_run_transitions = True
    # WHEN a blue-green run goes down the commit path, or rolls back at the approval timeout
    status, body = host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
        "options": {**FAST, **options}})
    assert status == 202, body
    run_id = body["id"]
    run = wait_status(host, run_id, timeout=90)
    # THEN the drill really hit every step of the path, the terminal one included
    if fault == "duplicate-delivery":
        hit = {step for rid, step in map(_step, queue_proxy.duplicated) if rid == run_id}
    else:
        hit = {t.from_state.removeprefix("bluegreen.") for t in table_proxy.failed_transitions if t.run_id == run_id}
    assert hit == steps
    # AND the run ends as a clean run does: 5A (green is the pool) or 5B (back on blue)
    assert run["status"] == final_status, run["reason"]
    green = run["facts"]["greenPool"]
    survivor = green if path == "commit" else "blue"
    assert pools(cluster) == {"system", survivor}
    assert app_pods(cluster) == {app: ((survivor, True),) for app in APPS}
    # AND one green pool was created, and one pool deleted once
    arm = emu.faults.counts("arm")
    assert (arm.get(f"PUT {POOL_ROUTE}", 0), arm.get(f"DELETE {POOL_ROUTE}", 0)) == (1, 1), arm
    # AND a throttled transition was the step's own retry: no delivery failed to the host
    failed = [i for i in host.invocations("run_step") if not i["succeeded"]]
    assert failed == [], failed
