"""A minimal Azure Kubernetes Fleet Manager: fleets, update runs with stages and groups of member
clusters, and approval gates, in the ARM shape of api-version 2026-06-01
(azure-mgmt-containerservicefleet 4.0.0).

An update run here does not upgrade its members (the product never asks it to): a test or demo
says when the run reaches a gate (``reach_gate``), which creates the gate Pending and raises
``FleetGateCreated``; a PATCH of the gate's state to Completed (or Skipped) raises
``FleetGateUpdated``; deleting the update run deletes its gates and raises ``FleetGateDeleted``.
Events go out like the Azure Resource Notifications AKS Resources system topic's: topic the
subscription, subject the gate's id, data ``resourceInfo`` (the gate's id, name, type and
properties), ``operationalInfo.resourceEventTime`` and ``apiVersion``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sandbox.aks_emulator.arm import PROVIDER, ArmError
from sandbox.aks_emulator.clock import ScaledClock
from upgrade.adapters.arm_schema import FLEET_API_VERSION

GATE_STATES = ("Pending", "Skipped", "Completed")
EVENT_PREFIX = "Microsoft.ResourceNotifications.AKSResources.FleetGate"
GATE_TYPE = f"{PROVIDER}/fleets/gates"

# (topic, subject, event type, data): how a gate event leaves the model
GateEventSink = Callable[[str, str, str, dict], None]


def fleet_id(subscription_id: str, resource_group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{PROVIDER}/fleets/{name}"


@dataclass
class UpdateRun:
    arm_id: str
    name: str
    stages: list[dict]  # [{"name", "groups": [{"name", "members": [cluster ARM ids]}]}]


@dataclass
class Gate:
    arm_id: str
    name: str
    update_run: UpdateRun
    stage: str
    group: str | None
    timing: str
    display_name: str | None
    state: str = "Pending"
    etag: str = field(default_factory=lambda: uuid.uuid4().hex)


class FleetModel:
    def __init__(self, clock: ScaledClock, on_gate_event: GateEventSink | None = None) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.fleets: set[str] = set()
        self.update_runs: dict[str, UpdateRun] = {}
        self.gates: dict[str, Gate] = {}
        self.events_raised: list[tuple[str, str]] = []  # (event type, gate id), in order: what tests read
        self._on_gate_event = on_gate_event or (lambda topic, subject, kind, data: None)

    # ---- setting up ------------------------------------------------------------------------------
    def add_fleet(self, subscription_id: str, resource_group: str, name: str) -> str:
        arm_id = fleet_id(subscription_id, resource_group, name)
        with self.lock:
            self.fleets.add(arm_id.lower())
        return arm_id

    def add_update_run(self, fleet: str, name: str, stages: Sequence[dict]) -> str:
        """An update run of ``stages`` (``{"name", "groups": [{"name", "members": [ids]}]}``)."""
        if fleet.lower() not in self.fleets:
            raise KeyError(f"no emulated fleet {fleet}")
        run = UpdateRun(f"{fleet}/updateRuns/{name}", name, [dict(s) for s in stages])
        with self.lock:
            self.update_runs[run.arm_id.lower()] = run
        return run.arm_id

    def reach_gate(self, update_run: str, stage: str, *, group: str | None = None, timing: str = "After",
                   display_name: str | None = None) -> str:
        """The update run reaches an approval gate on ``stage`` (or its ``group``): a Pending gate
        and its FleetGateCreated event. Returns the gate's ARM id."""
        with self.lock:
            run = self.update_runs[update_run.lower()]
            fleet = run.arm_id.rsplit("/updateRuns/", 1)[0]
            name = str(uuid.uuid4())
            gate = Gate(f"{fleet}/gates/{name}", name, run, stage, group, timing, display_name)
            self.gates[gate.arm_id.lower()] = gate
        self._emit(gate, "Created")
        return gate.arm_id

    def delete_update_run(self, update_run: str) -> None:
        with self.lock:
            run = self.update_runs.pop(update_run.lower())
            gone = [g for g in self.gates.values() if g.update_run is run]
            for gate in gone:
                del self.gates[gate.arm_id.lower()]
        for gate in gone:
            self._emit(gate, "Deleted")

    # ---- ARM -------------------------------------------------------------------------------------
    def gate(self, arm_id: str) -> Gate:
        with self.lock:
            gate = self.gates.get(arm_id.lower())
        if gate is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{arm_id}' was not found.")
        return gate

    def update_run(self, arm_id: str) -> UpdateRun:
        with self.lock:
            run = self.update_runs.get(arm_id.lower())
        if run is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{arm_id}' was not found.")
        return run

    def patch_gate(self, arm_id: str, body: dict, if_match: str | None) -> Gate:
        state = (body.get("properties") or {}).get("state")
        if state not in GATE_STATES:
            raise ArmError(400, "InvalidRequestContent", f"properties.state must be one of {', '.join(GATE_STATES)}",
                           "properties.state")
        with self.lock:
            gate = self.gate(arm_id)
            if if_match not in (None, "*") and if_match.strip('"') != gate.etag:
                raise ArmError(412, "PreconditionFailed", f"The gate {gate.name} has changed (eTag mismatch).")
            if gate.state != "Pending" and state != gate.state:
                raise ArmError(409, "Conflict", f"The gate {gate.name} is {gate.state}; it cannot become {state}.")
            changed = state != gate.state
            gate.state = state
            if changed:
                gate.etag = uuid.uuid4().hex
        if changed:
            self._emit(gate, "Updated")
        return gate

    def gate_to_arm(self, gate: Gate) -> dict:
        target: dict = {"name": gate.update_run.name, "stage": gate.stage, "timing": gate.timing}
        if gate.group is not None:
            target["group"] = gate.group
        properties = {"provisioningState": "Succeeded", "gateType": "Approval", "state": gate.state,
                      "target": {"id": gate.update_run.arm_id, "updateRunProperties": target}}
        if gate.display_name:
            properties["displayName"] = gate.display_name
        return {"id": gate.arm_id, "name": gate.name, "type": GATE_TYPE, "eTag": f'"{gate.etag}"',
                "properties": properties}

    def update_run_to_arm(self, run: UpdateRun) -> dict:
        with self.lock:
            gates = [g for g in self.gates.values() if g.update_run is run]

        def gate_status(stage: str, group: str | None, timing: str) -> list[dict]:
            return [{"displayName": g.display_name, "gateId": g.arm_id,
                     "status": {"state": "Completed" if g.state != "Pending" else "Running"}}
                    for g in gates if g.stage == stage and g.group == group and g.timing == timing]

        stages = []
        for stage in run.stages:
            groups = [{"name": group["name"], "status": {"state": "NotStarted"},
                       "members": [{"name": member.rsplit("/", 1)[-1], "clusterResourceId": member,
                                    "status": {"state": "NotStarted"}} for member in group["members"]],
                       "beforeGates": gate_status(stage["name"], group["name"], "Before"),
                       "afterGates": gate_status(stage["name"], group["name"], "After")}
                      for group in stage["groups"]]
            stages.append({"name": stage["name"], "status": {"state": "NotStarted"}, "groups": groups,
                           "beforeGates": gate_status(stage["name"], None, "Before"),
                           "afterGates": gate_status(stage["name"], None, "After")})
        strategy = {"stages": [{"name": s["name"], "groups": [{"name": g["name"]} for g in s["groups"]]}
                               for s in run.stages]}
        return {"id": run.arm_id, "name": run.name, "type": f"{PROVIDER}/fleets/updateRuns",
                "properties": {"provisioningState": "Succeeded", "strategy": strategy,
                               "status": {"status": {"state": "Running"}, "stages": stages}}}

    def _emit(self, gate: Gate, what: str) -> None:
        subscription = gate.arm_id.split("/")[2]
        data = {"resourceInfo": {"id": gate.arm_id, "name": gate.name, "type": GATE_TYPE,
                                 "properties": self.gate_to_arm(gate)["properties"]},
                "operationalInfo": {"resourceEventTime": self.clock.now().isoformat().replace("+00:00", "Z")},
                "apiVersion": FLEET_API_VERSION}
        with self.lock:
            self.events_raised.append((EVENT_PREFIX + what, gate.arm_id))
        self._on_gate_event(f"/subscriptions/{subscription}", gate.arm_id, EVENT_PREFIX + what, data)
