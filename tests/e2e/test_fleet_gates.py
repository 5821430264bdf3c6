"""Fleet Manager gates end to end: function_app on the dev host, the emulator's Fleet delivering
its gate events to on_aks_event like its AKS events. A gate whose stage is healthy is approved
(Completed); a gate whose stage holds a cluster with a quarantined node stays Pending, with the
node named in the app's record of the gate and in a fleet.gate-blocked alert; redelivered events
change nothing."""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.scenarios import fleet as small_clusters
from sandbox.aks_emulator.upgrader import QUARANTINE_LABEL, QUARANTINE_VALUE
from tests.e2e.conftest import wait_until
from tests.e2e.rolling_support import policy_json
from upgrade.adapters.tables import TableStateStore
from upgrade.domain.fleet import GATE_CREATED, GATE_UPDATED, GateRef
from upgrade.services.fleet_gates import RECORD_PARTITION
from upgrade.settings import load_settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def fleet_sandbox(emulator, start_devhost, alerts_receiver):
    emu = emulator(*small_clusters(3, prefix="aks-member"))
    ids = sorted(c.arm_id for c in emu.clusters())
    host = start_devhost(emulator=emu, UPGRADE_POLICY=policy_json(),
                         ALERTS_TOPIC_ENDPOINT=alerts_receiver.topic_endpoint, ALERTS_TOPIC_KEY=alerts_receiver.key)
    # every event twice: Event Grid delivers at least once
    emu.subscribe(f"{host.url}/runtime/webhooks/EventGrid?functionName=on_aks_event&code={host.function_key}",
                  duplicate=True)
    fleet_id = emu.fleet.add_fleet(ids[0].split("/")[2], "rg-fleet", "fleet-1")
    run = emu.fleet.add_update_run(fleet_id, "to-1-31", [
        {"name": "dev", "groups": [{"name": "dev", "members": [ids[0]]}]},
        {"name": "staging", "groups": [{"name": "east", "members": [ids[1]]}, {"name": "west", "members": [ids[2]]}]}])
    state = TableStateStore.from_settings(load_settings(host.app_settings))
    return emu, ids, run, state, host


def record(state: TableStateStore, gate_id: str) -> dict | None:
    found = state.get(RECORD_PARTITION, GateRef.parse(gate_id).record_key)
    return found[0] if found else None


def quarantine_a_node(emu, cluster_id: str) -> str:
    """What AKS leaves after a drain it could not finish: the node cordoned and labelled quarantined."""
    kube = emu.cluster(cluster_id).kube
    node = kube.nodes()[0]["metadata"]["name"]
    kube.set_unschedulable(node, True)
    kube.set_node_label(node, QUARANTINE_LABEL, QUARANTINE_VALUE)
    return node


def test_a_healthy_stage_gets_its_gate_approved(fleet_sandbox, alerts_receiver):
    emu, ids, run, state, _ = fleet_sandbox
    gate_id = emu.fleet.reach_gate(run, "dev", display_name="dev is healthy")
    wait_until(lambda: emu.fleet.gate(gate_id).state == "Completed", timeout=60, what="the dev gate to be Completed")
    seen = wait_until(lambda: (r := record(state, gate_id)) and r["verdict"] == "approved" and r, timeout=30,
                      what="the approval recorded (after the PATCH)")
    assert seen["clusters"] == [ids[0]]
    assert emu.events.wait_delivered(30)
    assert not [a for a in alerts_receiver.alerts() if a["type"].endswith("fleet.gate-blocked")]
    # completed once despite the duplicates: a second PATCH, if any, carried the eTag read before
    # the first and was refused (412), so the gate changed state exactly once
    assert [kind for kind, gate in emu.fleet.events_raised if gate == gate_id] == [GATE_CREATED, GATE_UPDATED]
    patches = [r for r in emu.arm_requests if r.method == "PATCH" and "/gates/" in r.path]
    assert patches and all(r.body == {"properties": {"state": "Completed"}} for r in patches)


def test_a_stage_with_a_quarantined_node_keeps_its_gate_pending_with_the_reason(fleet_sandbox, alerts_receiver):
    emu, ids, run, state, host = fleet_sandbox
    node = quarantine_a_node(emu, ids[2])
    gate_id = emu.fleet.reach_gate(run, "staging", display_name="staging is healthy")
    blocked = wait_until(lambda: [a for a in alerts_receiver.alerts() if a["type"].endswith("fleet.gate-blocked")],
                         timeout=60, what="a fleet.gate-blocked alert")
    assert node in blocked[0]["data"]["summary"] and ids[2] in blocked[0]["data"]["summary"]
    seen = wait_until(lambda: record(state, gate_id), timeout=30, what="the gate's record")  # written after the alert
    assert seen["verdict"] == "blocked" and node in seen["reason"] and seen["clusters"] == [ids[1], ids[2]]
    assert emu.events.wait_delivered(30)
    assert emu.fleet.gate(gate_id).state == "Pending"
    assert not [r for r in emu.arm_requests if r.method == "PATCH" and "/gates/" in r.path]
    # a gate on the healthy group of the same stage is approved
    east = emu.fleet.reach_gate(run, "staging", group="east")
    wait_until(lambda: emu.fleet.gate(east).state == "Completed", timeout=60, what="the east group's gate")
    assert emu.fleet.gate(gate_id).state == "Pending"
    # the duplicated event may have alerted twice, as one alert (one CloudEvents id) for consumers
    alerted = [a for a in alerts_receiver.alerts() if a["type"].endswith("fleet.gate-blocked")]
    assert len({a["id"] for a in alerted}) == 1
    # the reconciler's timer looks again: still quarantined, still Pending, not alerted again
    assert host.request("POST", "/admin/functions/reconcile_runs", body={"input": ""})[0] == 202
    wait_until(lambda: record(state, gate_id)["eventId"].startswith("recheck:"), timeout=30, what="a look again")
    assert emu.fleet.gate(gate_id).state == "Pending"
    assert [a for a in alerts_receiver.alerts() if a["type"].endswith("fleet.gate-blocked")] == alerted
    # once an operator replaced the node, the next look approves the gate
    kube = emu.cluster(ids[2]).kube
    kube.set_node_label(node, QUARANTINE_LABEL, None)
    kube.set_unschedulable(node, False)
    assert host.request("POST", "/admin/functions/reconcile_runs", body={"input": ""})[0] == 202
    wait_until(lambda: emu.fleet.gate(gate_id).state == "Completed", timeout=60, what="the staging gate approved")
    wait_until(lambda: record(state, gate_id)["verdict"] == "approved", timeout=30, what="the approval recorded")
