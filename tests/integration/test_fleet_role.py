"""The Fleet gate role in infra/ against what the app really asks ARM to do on a Fleet.

Runs the Fleet adapter (``upgrade.adapters.fleet.FleetGates``) through every method of the
``Fleet`` port against the emulator's Fleet, maps each request the emulator received to the Azure
RBAC action ARM authorizes for it, and compares that set with ``fleetGateActions`` in
infra/modules/fleet-gate-role.bicep both ways. It also checks that the subscriptions stage filters
exactly the documented Fleet gate event types.
"""

from __future__ import annotations

import re

import pytest

from sandbox.aks_emulator.scenarios import ClusterBuilder
from tests.infra_checks import INFRA_DIR, parse_bicep, variable_value
from upgrade.adapters.fleet import fleet_from_settings
from upgrade.domain.fleet import GATE_EVENT_TYPES, GateRef
from upgrade.ports import Fleet
from upgrade.settings import load_settings

pytestmark = pytest.mark.integration

FLEET_ROLE_BICEP = INFRA_DIR / "modules" / "fleet-gate-role.bicep"
SUBSCRIPTIONS_BICEP = INFRA_DIR / "subscriptions.bicep"
_FLEET = r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerService/fleets/[^/]+"
_VERBS = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def fleet_request_action(method: str, path: str) -> str:
    """The RBAC action for a request on a Fleet or its children (child types, then the verb)."""
    match = re.match(rf"^{_FLEET}(?P<rest>(/[^/]+)*)$", path.rstrip("/"), re.IGNORECASE)
    if match is None or method not in _VERBS:
        raise ValueError(f"{method} {path}: not a Fleet request")
    rest = [p for p in match["rest"].split("/") if p]
    return "/".join(["Microsoft.ContainerService/fleets", *rest[0::2], _VERBS[method]])


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/fleets/f/gates/g",
     "Microsoft.ContainerService/fleets/gates/read"),
    ("PATCH", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/fleets/f/gates/g",
     "Microsoft.ContainerService/fleets/gates/write"),
    ("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/fleets/f/updateRuns/r",
     "Microsoft.ContainerService/fleets/updateRuns/read"),
])
def test_a_fleet_request_maps_to_its_action(method, path, expected):
    assert fleet_request_action(method, path) == expected


def _port_methods() -> set[str]:
    return {name for name, member in vars(Fleet).items() if callable(member) and not name.startswith("_")}


@pytest.fixture
def used_actions(emulator) -> dict[str, set[str]]:
    emu = emulator(ClusterBuilder("aks-a").pool("system", count=1, mode="System"))
    (cluster,) = emu.clusters()
    subscription = cluster.arm_id.split("/")[2]
    fleet = emu.fleet.add_fleet(subscription, "rg-fleet", "fleet-1")
    run = emu.fleet.add_update_run(fleet, "run-1", [{"name": "dev", "groups": [{"name": "g", "members": [cluster.arm_id]}]}])
    gate_ref = GateRef.parse(emu.fleet.reach_gate(run, "dev"))
    adapter = fleet_from_settings(load_settings({"ALLOWED_CLUSTERS": cluster.arm_id, "ARM_ENDPOINT": emu.arm_url,
                                                 "ARM_DEV_TOKEN": emu.token}), subscription)
    gate = None
    calls = {"get_gate": lambda: adapter.get_gate(gate_ref), "update_run_stages": lambda: adapter.update_run_stages(run),
             "complete_gate": lambda: adapter.complete_gate(gate)}
    assert set(calls) == _port_methods()  # a new port method must be exercised before the role is trusted
    by_call = {}
    for name, call in calls.items():
        emu.arm_requests.clear()
        found = call()
        gate = found if name == "get_gate" else gate
        assert emu.arm_requests, f"{name} sent no ARM request"
        by_call[name] = {fleet_request_action(r.method, r.path) for r in emu.arm_requests}
    return by_call


def _granted() -> set[str]:
    template = parse_bicep([FLEET_ROLE_BICEP]).templates[FLEET_ROLE_BICEP]
    return set(variable_value(template, "fleetGateActions"))


def test_the_fleet_role_grants_exactly_the_actions_the_adapter_calls(used_actions):
    used = set().union(*used_actions.values())
    assert used - _granted() == set(), f"called but not granted (403 in Azure): {used_actions}"
    assert _granted() - used == set(), "granted but never called (least privilege)"


def test_the_subscriptions_stage_filters_exactly_the_fleet_gate_events():
    template = parse_bicep([SUBSCRIPTIONS_BICEP]).templates[SUBSCRIPTIONS_BICEP]
    assert sorted(variable_value(template, "fleetGateEventTypes")) == sorted(GATE_EVENT_TYPES)
