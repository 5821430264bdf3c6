"""Fleet Manager gates: the Fleet adapter (real azure-mgmt-containerservicefleet client) against the
emulator's minimal Fleet: a gate read and completed at the SDK's api-version, an update run's
members read, a stale eTag refused, a body the api-version does not define refused, and the gate
events (Created, Updated) delivered to a webhook like the AKS events, parsed by the product."""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.scenarios import ClusterBuilder
from upgrade.adapters import arm_schema
from upgrade.adapters.fleet import fleet_from_settings
from upgrade.domain.fleet import COMPLETED, GATE_CREATED, GATE_UPDATED, PENDING, GateRef, parse_gate_event
from upgrade.errors import Conflict
from upgrade.settings import load_settings

pytestmark = pytest.mark.integration

SUB = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
def fleet_setting(emulator):
    emu = emulator(ClusterBuilder("aks-a").pool("system", count=1, mode="System"),
                   ClusterBuilder("aks-b").pool("system", count=1, mode="System"))
    ids = sorted(c.arm_id for c in emu.clusters())
    subscription = ids[0].split("/")[2]
    fleet = emu.fleet.add_fleet(subscription, "rg-fleet", "fleet-1")
    run = emu.fleet.add_update_run(fleet, "run-1", [
        {"name": "dev", "groups": [{"name": "default", "members": [ids[0]]}]},
        {"name": "prod", "groups": [{"name": "east", "members": [ids[1]]}]}])
    settings = load_settings({"ALLOWED_CLUSTERS": ",".join(ids), "ARM_ENDPOINT": emu.arm_url,
                              "ARM_DEV_TOKEN": emu.token})
    return emu, fleet_from_settings(settings, subscription), run, ids


def test_a_gate_is_read_and_completed_through_the_sdk(fleet_setting, event_receiver):
    emu, adapter, run, ids = fleet_setting
    emu.subscribe(event_receiver.url, schema="CloudEventSchemaV1_0")
    gate_id = emu.fleet.reach_gate(run, "dev", display_name="dev healthy")
    gate = adapter.get_gate(GateRef.parse(gate_id))
    assert (gate.state, gate.update_run, gate.stage, gate.group, gate.timing) == (PENDING, run, "dev", None, "After")
    assert gate.display_name == "dev healthy" and gate.etag
    stages = adapter.update_run_stages(run)
    assert [(s.name, dict(s.groups)) for s in stages] == [("dev", {"default": (ids[0],)}), ("prod", {"east": (ids[1],)})]
    adapter.complete_gate(gate)
    assert emu.fleet.gate(gate_id).state == COMPLETED
    fleet_requests = [r for r in emu.arm_requests if "/fleets/" in r.path]
    assert {r.api_version for r in fleet_requests} == {arm_schema.FLEET_API_VERSION}
    assert [r.body for r in fleet_requests if r.method == "PATCH"] == [{"properties": {"state": "Completed"}}]
    assert emu.events.wait_delivered()
    events = [parse_gate_event(e) for e in event_receiver.events()]
    assert [(e.event_type, e.gate.arm_id) for e in events] == [(GATE_CREATED, gate_id), (GATE_UPDATED, gate_id)]


def test_a_gate_changed_since_read_is_refused(fleet_setting):
    emu, adapter, run, _ = fleet_setting
    gate_id = emu.fleet.reach_gate(run, "prod", group="east")
    gate = adapter.get_gate(GateRef.parse(gate_id))
    emu.fleet.patch_gate(gate_id, {"properties": {"state": "Skipped"}}, None)  # an operator skips it meanwhile
    with pytest.raises(Conflict):
        adapter.complete_gate(gate)
    assert emu.fleet.gate(gate_id).state == "Skipped"


def test_the_gate_api_version_defines_no_reason_and_a_body_with_one_is_refused(fleet_setting):
    emu, adapter, run, _ = fleet_setting
    gate_id = emu.fleet.reach_gate(run, "dev")
    client = adapter._client
    with pytest.raises(Exception) as refused:
        client.gates.begin_update("rg-fleet", "fleet-1", gate_id.rsplit("/", 1)[-1],
                                  {"properties": {"state": "Pending", "reason": "unhealthy"}}).result()
    assert "reason" in str(refused.value)
    assert emu.fleet.gate(gate_id).state == PENDING


def test_the_emulated_bodies_hold_only_what_the_api_version_defines(fleet_setting):
    emu, _, run, _ = fleet_setting
    gates = [emu.fleet.reach_gate(run, "dev"), emu.fleet.reach_gate(run, "prod", group="east", timing="Before")]
    for gate_id in gates:
        body = emu.fleet.gate_to_arm(emu.fleet.gate(gate_id))
        assert arm_schema.undefined_properties(body, arm_schema.fleet_paths(arm_schema.GATE), arm_schema.GATE) == []
    body = emu.fleet.update_run_to_arm(emu.fleet.update_run(run))
    assert arm_schema.undefined_properties(body, arm_schema.fleet_paths(arm_schema.UPDATE_RUN),
                                           arm_schema.UPDATE_RUN) == []
