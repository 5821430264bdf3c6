"""The custom ARM role in infra/ against what the app really asks ARM to do.

Runs the AKS adapter (``upgrade.adapters.aks.ContainerServiceAks``) through every method of the
``Aks`` port, and the Kubernetes credential lookup (``upgrade.adapters.auth.entra_api_client``)
that reads the user kubeconfig, against the AKS emulator, at whatever api-versions the adapter
speaks. Each request the emulator received becomes the Azure RBAC action ARM authorizes for it,
and that set is compared with ``agentPoolOperatorActions`` in
infra/modules/agentpool-operator-role.bicep both ways: an action used but not granted is a 403 in
Azure; an action granted but never used breaks least privilege.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.infra_checks import INFRA_DIR, parse_bicep, variable_value
from upgrade.adapters.aks import ContainerServiceAks, aks_from_settings
from upgrade.adapters.auth import StaticTokenCredential, entra_api_client
from upgrade.domain.model import AgentPool, ClusterRef
from upgrade.ports import Aks
from upgrade.settings import load_settings

pytestmark = pytest.mark.integration

OPERATOR_ROLE_BICEP = INFRA_DIR / "modules" / "agentpool-operator-role.bicep"
PROVIDER = "Microsoft.ContainerService"
_CLUSTER = r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerService/managedClusters/[^/]+"
# Polls of a long-running operation's status URL (subscription-level, under locations/): ARM
# answers them for the caller that started the operation; no role assignment at cluster scope
# could grant them, so they are not part of the role.
_OPERATION_STATUS = re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.ContainerService/locations/[^/]+/"
                               r"(operations|operationresults)/[^/]+$", re.IGNORECASE)


def request_action(method: str, path: str) -> str | None:
    """The Azure RBAC action ARM checks for a request on a managed cluster (its provider operation:
    the resource type path, then read/write/delete for GET/PUT/DELETE or ``<name>/action`` for a
    POST); None for an operation-status poll. ValueError for anything else."""
    path = path.rstrip("/")
    if _OPERATION_STATUS.match(path):
        return None
    match = re.match(rf"^{_CLUSTER}(?P<rest>(/[^/]+)*)$", path, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{method} {path}: not a managed-cluster request")
    rest = [p for p in match["rest"].split("/") if p]
    types = ["managedClusters"]
    # the rest alternates child type / child name; a POST ends with the action's name
    action_name = rest.pop() if method == "POST" else None
    for index, segment in enumerate(rest):
        if index % 2 == 0:
            types.append(segment)
    resource_type = "/".join([PROVIDER, *types])
    if action_name is not None:
        return f"{resource_type}/{action_name}/action"
    verbs = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
    if method not in verbs:
        raise ValueError(f"{method} {path}: no RBAC verb for {method}")
    return f"{resource_type}/{verbs[method]}"


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c",
     "Microsoft.ContainerService/managedClusters/read"),
    ("POST", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/"
     "listClusterUserCredential", "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"),
    ("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools",
     "Microsoft.ContainerService/managedClusters/agentPools/read"),
    ("PUT", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/p",
     "Microsoft.ContainerService/managedClusters/agentPools/write"),
    ("DELETE", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/"
     "agentPools/p", "Microsoft.ContainerService/managedClusters/agentPools/delete"),
    ("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/"
     "agentPools/p/upgradeProfiles/default", "Microsoft.ContainerService/managedClusters/agentPools/upgradeProfiles/read"),
    ("POST", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/"
     "agentPools/p/deleteMachines", "Microsoft.ContainerService/managedClusters/agentPools/deleteMachines/action"),
    ("POST", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/"
     "agentPools/p/abort", "Microsoft.ContainerService/managedClusters/agentPools/abort/action"),
    ("GET", "/subscriptions/s/providers/Microsoft.ContainerService/locations/westeurope/operations/abc", None),
])
def test_a_request_maps_to_the_action_arm_authorizes(method, path, expected):
    assert request_action(method, path) == expected


@pytest.mark.parametrize("path", ["/subscriptions/s/resourceGroups/rg", "/providers/Microsoft.Compute/skus"])
def test_a_request_outside_a_managed_cluster_is_not_mapped(path):
    with pytest.raises(ValueError):
        request_action("GET", path)


# --- the adapter through every port method ----------------------------------------------------------

POOL = "nodepool1"
GREEN = "green1"


@dataclass(frozen=True)
class PortCall:
    method: str  # a method of upgrade.ports.Aks, or "kubernetes credentials"
    call: Callable[[ContainerServiceAks, ClusterRef, Any], Any]


def _create_green(aks: ContainerServiceAks, cluster: ClusterRef) -> None:
    """Create a pool the way blue-green creates green: blue's ARM properties, cloned."""
    from upgrade.domain.pool_clone import green_properties, pool_arm_properties

    blue = aks.get_pool(cluster, POOL)
    aks.begin_create_pool(cluster, GREEN + "c", green_properties(
        pool_arm_properties(blue), count=1, target_version=blue.orchestrator_version, tags={}))


def _machines(emu: Any, cluster: ClusterRef) -> list[str]:
    nodes = emu.cluster(cluster.arm_id).kube.nodes(POOL)
    return [nodes[0]["metadata"]["name"]]


PORT_CALLS = [
    PortCall("get_cluster_version", lambda aks, c, emu: aks.get_cluster_version(c)),
    PortCall("list_pools", lambda aks, c, emu: aks.list_pools(c)),
    PortCall("list_maintenance_configurations", lambda aks, c, emu: aks.list_maintenance_configurations(c)),
    PortCall("get_pool", lambda aks, c, emu: aks.get_pool(c, POOL)),
    PortCall("available_upgrades", lambda aks, c, emu: aks.available_upgrades(c, POOL)),
    PortCall("latest_node_image_version", lambda aks, c, emu: aks.latest_node_image_version(c, POOL)),
    PortCall("begin_upgrade_node_image", lambda aks, c, emu: aks.begin_upgrade_node_image(c, POOL)),
    PortCall("begin_put_pool", lambda aks, c, emu: aks.begin_put_pool(
        c, replace(pool := aks.get_pool(c, POOL), count=pool.count + 1), if_match=pool.etag)),
    PortCall("begin_put_pool", lambda aks, c, emu: aks.begin_put_pool(
        c, AgentPool(name=GREEN, mode="User", count=1, orchestrator_version=aks.get_cluster_version(c)))),
    PortCall("begin_create_pool", lambda aks, c, emu: _create_green(aks, c)),
    PortCall("begin_delete_machines", lambda aks, c, emu: aks.begin_delete_machines(c, POOL, _machines(emu, c))),
    PortCall("begin_delete_pool", lambda aks, c, emu: aks.begin_delete_pool(c, GREEN)),
]


def _aks_port_methods() -> set[str]:
    return {name for name, member in vars(Aks).items() if callable(member) and not name.startswith("_")}


def test_the_port_calls_cover_every_aks_port_method():
    # a new port method must be exercised before the role is trusted for it
    assert {c.method for c in PORT_CALLS} == _aks_port_methods()


@pytest.fixture
def used_actions(emulator) -> dict[str, set[str]]:
    """Every port call (and the kubeconfig lookup) against the emulator -> the actions its requests need."""
    import time

    emu = emulator("seed-pdb")
    (emulated,) = emu.clusters()
    cluster = ClusterRef.parse(emulated.arm_id)
    settings = load_settings({"ALLOWED_CLUSTERS": cluster.arm_id, "ARM_ENDPOINT": emu.arm_url,
                              "ARM_DEV_TOKEN": emu.token})
    aks = aks_from_settings(settings, cluster.subscription_id)
    by_call: dict[str, set[str]] = {}
    try:
        for port_call in PORT_CALLS:
            # a pool operation in progress is answered 409 by AKS: wait for the pools to settle first
            deadline = time.monotonic() + 30
            while any(p.provisioning_state not in ("Succeeded", "Failed") for p in aks.list_pools(cluster)):
                assert time.monotonic() < deadline, "pools did not settle"
                time.sleep(0.05)
            emu.arm_requests.clear()
            port_call.call(aks, cluster, emu)
            assert emu.arm_requests, f"{port_call.method} sent no ARM request"
            actions = {request_action(r.method, r.path) for r in emu.arm_requests} - {None}
            by_call.setdefault(port_call.method, set()).update(actions)
        emu.arm_requests.clear()
        entra_api_client(settings, cluster, kube_credential=StaticTokenCredential(emu.token)).close()
        by_call["kubernetes credentials"] = {request_action(r.method, r.path) for r in emu.arm_requests} - {None}
    finally:
        aks.close()
    return by_call


def _granted() -> set[str]:
    template = parse_bicep([OPERATOR_ROLE_BICEP]).templates[OPERATOR_ROLE_BICEP]
    return set(variable_value(template, "agentPoolOperatorActions"))


def _callers(by_call: dict[str, set[str]], action: str) -> str:
    return ", ".join(sorted(call for call, actions in by_call.items() if action in actions))


def test_the_role_grants_every_action_the_app_calls(used_actions):
    used = set().union(*used_actions.values())
    missing = used - _granted()
    assert missing == set(), "called but not granted (403 in Azure):\n" + "\n".join(
        f"  {action}: {_callers(used_actions, action)}" for action in sorted(missing))


def test_the_role_grants_nothing_the_app_does_not_call(used_actions):
    used = set().union(*used_actions.values())
    unused = _granted() - used
    assert unused == set(), "granted but never called (least privilege):\n" + "\n".join(
        f"  {action}" for action in sorted(unused))


def test_the_readme_documents_exactly_the_granted_actions():
    text = (INFRA_DIR / "README.md").read_text()
    section = text.split("### ARM rights on each cluster", 1)[1].split("\n**", 1)[0]
    documented = set(re.findall(r"^\| `(Microsoft\.ContainerService/[^`]+)` \|", section, re.MULTILINE))
    assert documented == _granted()
