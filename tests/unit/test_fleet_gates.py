"""Fleet Manager gates approved by the rollouts' health gate: a healthy stage's gate is Completed,
one with a quarantined node (or a cluster not allow-listed) stays Pending with the reason recorded
and alerted; a redelivered event changes nothing; gate events are parsed in both schemas."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import POOL, FakeCluster
from upgrade.domain.fleet import (
    COMPLETED,
    GATE_DELETED,
    PENDING,
    FleetGate,
    GateRef,
    UpdateStage,
    gate_clusters,
    is_gate_event,
    parse_gate_event,
)
from upgrade.domain.model import ClusterRef
from upgrade.errors import Conflict, InvalidInput, NotFound
from upgrade.services.fleet_gates import RECORD_PARTITION, react_to_gate_event, recheck_blocked_gates

SAMPLE = Path(__file__).parents[1] / "events" / "fleet" / "FleetGateCreated.json"
SUB = "00000000-0000-0000-0000-000000000001"
REFS = [ClusterRef(SUB, "rg", f"aks-{i}") for i in range(1, 4)]
IDS = [r.arm_id for r in REFS]
RUN = f"/subscriptions/{SUB}/resourceGroups/rg-fleet/providers/Microsoft.ContainerService/fleets/fleet-1/updateRuns/run-1"


class FakeFleet:
    """Gates by ARM id (lower case) and one update run's stages; a PATCH is conditional on the eTag."""

    def __init__(self, gates: list[FleetGate], stages: list[UpdateStage]) -> None:
        self.gates = {g.gate.arm_id.lower(): g for g in gates}
        self.stages = stages
        self.completed: list[str] = []

    def get_gate(self, gate: GateRef) -> FleetGate:
        if gate.arm_id.lower() not in self.gates:
            raise NotFound(f"404: gate {gate.name} not found", status=404)
        return self.gates[gate.arm_id.lower()]

    def update_run_stages(self, update_run: str) -> list[UpdateStage]:
        assert update_run == RUN
        return self.stages

    def complete_gate(self, found: FleetGate) -> None:
        current = self.gates[found.gate.arm_id.lower()]
        if current.etag != found.etag:
            raise Conflict("412: the gate changed", status=412)
        self.gates[found.gate.arm_id.lower()] = replace(current, state=COMPLETED, etag=current.etag + "+")
        self.completed.append(found.gate.name)


def sample() -> dict:
    return json.loads(SAMPLE.read_text())


def setting(*, quarantined: str | None = None, allowed: list[str] | None = None,
            group: str | None = None) -> tuple[FakePlatform, FakeFleet, GateRef]:
    fakes = {}
    for ref in REFS:
        fake = FakeCluster(ref)
        fake.add_pool(POOL, 2, "1.31.7")
        fake.add_node(f"{ref.name}-node-1", POOL, "1.31.7", quarantined=ref.arm_id == quarantined)
        fakes[ref.arm_id] = fake
    gate = parse_gate_event(sample()).gate
    fleet = FakeFleet([FleetGate(gate=gate, state=PENDING, update_run=RUN, stage="staging", group=group,
                                 timing="After", display_name="staging healthy", etag="e1")],
                      [UpdateStage("dev", {"default": (IDS[0],)}),
                       UpdateStage("staging", {"east": (IDS[1],), "west": (IDS[2],)})])
    platform = FakePlatform(kubes=fakes, fleets={SUB: fleet},
                            allowed_clusters=frozenset(allowed if allowed is not None else IDS))
    return platform, fleet, gate


def test_the_documented_event_parses_in_both_schemas():
    cloud = sample()
    grid = {"id": cloud["id"], "topic": cloud["source"], "subject": cloud["subject"], "eventType": cloud["type"],
            "eventTime": cloud["time"], "dataVersion": "1", "data": cloud["data"]}
    for payload in (cloud, grid, json.dumps(cloud)):
        event = parse_gate_event(payload)
        assert event.gate == GateRef(SUB, "rg-fleet", "fleet-1", "3f1c2b4a-5d6e-4f70-8192-a3b4c5d6e7f8")
        assert event.id == cloud["id"] and event.event_type.endswith("FleetGateCreated")
    assert is_gate_event(cloud) and is_gate_event(grid)
    assert not is_gate_event({"type": "Microsoft.ContainerService.NodePoolRollingStarted"})


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e["data"]["resourceInfo"].update(id=IDS[0]), "data.resourceInfo.id"),
    (lambda e: e["data"].pop("resourceInfo"), "data.resourceInfo"),
    (lambda e: e.update(type="Microsoft.ResourceNotifications.AKSResources.FleetGateExploded"), "type"),
    (lambda e: e.pop("id"), "id"),
])
def test_a_malformed_gate_event_is_refused_naming_the_field(mutate, field):
    event = sample()
    mutate(event)
    with pytest.raises(InvalidInput) as refused:
        parse_gate_event(event)
    assert refused.value.field == field


@pytest.mark.parametrize(("stage", "group", "expected"), [
    ("staging", None, [IDS[1], IDS[2]]),
    ("staging", "west", [IDS[2]]),
    ("dev", None, [IDS[0]]),
    ("prod", None, []),
    ("staging", "north", []),
])
def test_a_gate_speaks_for_its_group_or_else_its_whole_stage(stage, group, expected):
    stages = [UpdateStage("dev", {"default": (IDS[0],)}), UpdateStage("staging", {"east": (IDS[1],), "west": (IDS[2],)})]
    assert gate_clusters(stages, stage, group) == expected


def test_a_healthy_stage_completes_its_gate_once_and_records_it():
    platform, fleet, gate = setting()
    event = parse_gate_event(sample())
    assert "approved" in react_to_gate_event(event, platform)
    assert fleet.gates[gate.arm_id.lower()].state == COMPLETED and fleet.completed == [gate.name]
    record, _ = platform.state.get(RECORD_PARTITION, gate.record_key)
    assert record["verdict"] == "approved" and record["clusters"] == [IDS[1], IDS[2]]
    # a redelivered event, or the FleetGateUpdated that follows, finds it Completed: nothing more
    assert "nothing to do" in react_to_gate_event(event, platform)
    assert fleet.completed == [gate.name] and not platform.alerts.published


def test_a_quarantined_node_leaves_the_gate_pending_with_the_reason_recorded_and_alerted():
    platform, fleet, gate = setting(quarantined=IDS[2])
    event = parse_gate_event(sample())
    outcome = react_to_gate_event(event, platform)
    assert "left Pending" in outcome and "aks-3-node-1" in outcome
    assert fleet.gates[gate.arm_id.lower()].state == PENDING and fleet.completed == []
    record, _ = platform.state.get(RECORD_PARTITION, gate.record_key)
    assert record["verdict"] == "blocked" and IDS[2] in record["reason"] and "aks-3-node-1" in record["reason"]
    [alert] = platform.alerts.published
    assert alert.kind == "fleet.gate-blocked" and "aks-3-node-1" in alert.summary
    assert alert.details["gate"] == gate.arm_id
    # redelivery: still Pending, the same reason under the same dedup key
    react_to_gate_event(event, platform)
    assert fleet.completed == [] and platform.alerts.published == [alert]


def test_a_gate_on_a_healthy_group_passes_though_another_group_has_a_quarantined_node():
    platform, fleet, gate = setting(quarantined=IDS[1], group="west")
    assert "approved" in react_to_gate_event(parse_gate_event(sample()), platform)
    assert fleet.completed == [gate.name]


def test_a_member_not_allow_listed_leaves_the_gate_pending_and_is_named():
    platform, fleet, _ = setting(allowed=[IDS[0], IDS[1]])
    outcome = react_to_gate_event(parse_gate_event(sample()), platform)
    assert f"{IDS[2]}: not in ALLOWED_CLUSTERS" in outcome and fleet.completed == []
    assert platform.alerts.published[0].kind == "fleet.gate-blocked"


def test_a_gate_changed_since_read_is_not_patched_over():
    platform, fleet, gate = setting()
    original = fleet.get_gate

    def read_then_someone_else_skips(ref: GateRef) -> FleetGate:
        found = original(ref)
        fleet.gates[ref.arm_id.lower()] = replace(found, state="Skipped", etag="e2")
        return found

    fleet.get_gate = read_then_someone_else_skips
    assert "changed since read" in react_to_gate_event(parse_gate_event(sample()), platform)
    assert fleet.gates[gate.arm_id.lower()].state == "Skipped" and fleet.completed == []


def test_a_deleted_gate_needs_nothing():
    platform, fleet, gate = setting()
    event = sample()
    event["type"] = GATE_DELETED
    assert "nothing to do" in react_to_gate_event(parse_gate_event(event), platform)
    assert fleet.completed == [] and platform.state.get(RECORD_PARTITION, gate.record_key) is None


def test_a_refused_gate_is_approved_by_a_later_look_once_its_node_is_gone():
    platform, fleet, gate = setting(quarantined=IDS[2])
    react_to_gate_event(parse_gate_event(sample()), platform)
    assert recheck_blocked_gates(platform) == [f"gate {gate.arm_id} left Pending: "
                                               f"{platform.state.get(RECORD_PARTITION, gate.record_key)[0]['reason']}"]
    assert len(platform.alerts.published) == 1  # the same reason is not alerted again
    platform.kubes[IDS[2]].nodes.pop("aks-3-node-1")  # replaced by an operator
    [outcome] = recheck_blocked_gates(platform)
    assert "approved" in outcome and fleet.completed == [gate.name]
    assert platform.state.get(RECORD_PARTITION, gate.record_key)[0]["verdict"] == "approved"
    assert recheck_blocked_gates(platform) == []  # approved: no longer looked at


def test_a_refused_gate_completed_in_fleet_or_deleted_is_no_longer_looked_at():
    platform, fleet, gate = setting(quarantined=IDS[2])
    react_to_gate_event(parse_gate_event(sample()), platform)
    key = gate.arm_id.lower()
    fleet.gates[key] = replace(fleet.gates[key], state=COMPLETED, etag="by-hand")  # an operator approved it
    [outcome] = recheck_blocked_gates(platform)
    assert "nothing to do" in outcome and fleet.completed == []
    assert platform.state.get(RECORD_PARTITION, gate.record_key)[0]["verdict"] == "completed"
    assert recheck_blocked_gates(platform) == []
    # a refused gate whose update run is deleted: the record goes
    platform, fleet, gate = setting(quarantined=IDS[2])
    react_to_gate_event(parse_gate_event(sample()), platform)
    fleet.gates.clear()
    assert "forgotten" in recheck_blocked_gates(platform)[0]
    assert platform.state.get(RECORD_PARTITION, gate.record_key) is None


def test_the_event_of_the_apps_own_approval_never_records_over_the_approval():
    """The race of a look again (the timer) and the gate-updated event its approval sends: the event
    reads the gate Completed and the record still "blocked"; the look again then records
    "approved"; the event's "found Completed after" record must not replace it."""
    platform, fleet, gate = setting(quarantined=IDS[2])
    react_to_gate_event(parse_gate_event(sample()), platform)  # blocked
    platform.kubes[IDS[2]].nodes.pop("aks-3-node-1")
    key = gate.arm_id.lower()
    fleet.gates[key] = replace(fleet.gates[key], state=COMPLETED, etag="e1+")  # the look again's approval landed
    get, looks = platform.state.get, []

    def record_read(partition, row):
        found = get(partition, row)
        if partition == RECORD_PARTITION and not looks:  # right after the event read "blocked":
            looks.append(1)  # the look again records its approval
            value, etag = found
            platform.state.put(partition, row, {**value, "verdict": "approved", "reason": "healthy"}, etag=etag)
        return found

    platform.state.get = record_read
    with pytest.raises(Conflict):  # the event's write is refused: Event Grid delivers it again
        react_to_gate_event(parse_gate_event(sample()), platform)
    platform.state.get = get
    assert "nothing to do" in react_to_gate_event(parse_gate_event(sample()), platform)  # the redelivery
    assert platform.state.get(RECORD_PARTITION, gate.record_key)[0]["verdict"] == "approved"
