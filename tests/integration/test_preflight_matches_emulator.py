"""The preflight's prediction equals what the emulated AKS then does.

The snapshot is read through the real adapters (kubernetes client, azure-mgmt-containerservice),
the prediction made, then the upgrade run through the real SDK, and the pool's final nodes,
count and provisioning state compared with the prediction: on Scenario 2, on every PDB selector form
(matchExpressions, {}, none), and on generated
clusters (hypothesis). Settings ARM refuses must be refused by the preflight too, naming the same
field; the settings rules alone are also compared with the emulator's ARM over a grid.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from upgrade.adapters.aks import ContainerServiceAks
from upgrade.adapters.arm_schema import PREVIEW_API_VERSION
from upgrade.adapters.kube import kube_from_kubeconfig
from upgrade.domain.model import ClusterRef, UpgradeSettings
from upgrade.domain.preflight import PlannedUpgrade, PreflightReport, preflight
from upgrade.domain.surge import validate_upgrade_settings
from upgrade.errors import InvalidInput
from upgrade.services.snapshot import read_snapshot

pytestmark = pytest.mark.integration

FAST_TIME_SCALE = 0.02  # real seconds per emulated minute: a 30-minute drain timeout is 0.6 s
TARGET = "1.31"
SYSTEM_TAINT = "CriticalAddonsOnly=true:NoSchedule"


@dataclass(frozen=True)
class Outcome:
    """The pool after the operation, in the preflight's terms."""

    final_state: str
    resulting_node_count: int
    upgraded: frozenset[str]
    quarantined: frozenset[str]
    left_on_old_version: frozenset[str]
    new_nodes: int
    cordoned_old_nodes: frozenset[str]


@dataclass(frozen=True)
class Refusal:
    """Settings refused before anything runs: by ARM (the PUT's 400) or by the preflight."""

    code: str
    field: str


def predict_and_run(emu, aks_client, cluster_ref: ClusterRef,
                    pool: str) -> tuple[PreflightReport | Refusal, Outcome | Refusal]:
    """Snapshot through the adapters, predict, upgrade through the SDK, read the outcome back."""
    client = aks_client(emu, cluster_ref.subscription_id)
    aks = ContainerServiceAks(client, aks_client(emu, cluster_ref.subscription_id, api_version=PREVIEW_API_VERSION))
    with tempfile.TemporaryDirectory() as workdir:
        kubeconfig = Path(workdir) / "kubeconfig.yaml"
        emu.write_kubeconfig(cluster_ref.arm_id, kubeconfig)
        kube = kube_from_kubeconfig(str(kubeconfig))
        try:
            before = read_snapshot(kube, aks, cluster_ref)
            try:
                report = preflight(before, PlannedUpgrade(pool, target_version=TARGET))
            except InvalidInput as invalid:
                report = Refusal("InvalidParameter", invalid.field)
            sdk_pool = client.agent_pools.get(cluster_ref.resource_group, cluster_ref.name, pool)
            sdk_pool.properties.orchestrator_version = TARGET
            try:
                poller = client.agent_pools.begin_create_or_update(
                    cluster_ref.resource_group, cluster_ref.name, pool, sdk_pool)
            except HttpResponseError as refused:
                # ARM's target is agentPoolProfile.upgradeSettings.<field>
                return report, Refusal(refused.error.code, (refused.error.target or "").rsplit(".", 1)[-1])
            try:
                poller.result()
            except HttpResponseError:
                pass  # Failed and Canceled operations raise; the pool's state says which
            after = read_snapshot(kube, aks, cluster_ref)
        finally:
            kube.close()
    old = {n.name for n in before.nodes if n.pool == pool}
    nodes = {n.name: n for n in after.nodes if n.pool == pool}
    outcome = Outcome(
        final_state=after.pool(pool).provisioning_state,
        resulting_node_count=len(nodes),
        upgraded=frozenset(n for n in old if n in nodes and nodes[n].kubernetes_version.startswith(TARGET)),
        quarantined=frozenset(n for n, node in nodes.items() if node.quarantined),
        left_on_old_version=frozenset(n for n in old if n in nodes and not nodes[n].kubernetes_version.startswith(TARGET)),
        new_nodes=len(set(nodes) - old),
        cordoned_old_nodes=frozenset(n for n in old if n in nodes and nodes[n].unschedulable),
    )
    return report, outcome


def assert_prediction_held(report: PreflightReport | Refusal, outcome: Outcome | Refusal) -> None:
    if isinstance(report, Refusal) or isinstance(outcome, Refusal):
        assert report == outcome
        return
    predicted = Outcome(
        final_state=report.final_state,
        resulting_node_count=report.resulting_node_count,
        upgraded=frozenset(report.upgraded_nodes),
        quarantined=frozenset(report.quarantined_nodes),
        left_on_old_version=frozenset(report.quarantined_nodes + report.failed_nodes + report.untouched_nodes),
        new_nodes=report.permanent_surge_nodes,
        # Quarantined nodes stay cordoned; with Schedule the failed node is made schedulable again.
        cordoned_old_nodes=frozenset(report.quarantined_nodes),
    )
    assert outcome == predicted


def test_scenario_2_prediction_matches_the_emulated_upgrade(emulator, aks_client):
    # GIVEN Scenario 2 (pod A's PDB, maxSurge 2, Cordon) in the emulator
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    cluster_ref = ClusterRef(cluster.subscription_id, cluster.resource_group, cluster.name)
    # WHEN the preflight predicts, then the upgrade runs
    report, outcome = predict_and_run(emu, aks_client, cluster_ref, "nodepool1")
    # THEN node 1 quarantined with pod A, 3 nodes, one permanent surge node, Failed: predicted and real
    node_1 = sorted(report.nodes_to_upgrade)[0]
    assert report.quarantined_nodes == (node_1,)
    assert [b.pod.split("/")[1].startswith("app-a") for n in report.undrainable_nodes for b in n.blockers] == [True]
    assert (report.resulting_node_count, report.permanent_surge_nodes, report.final_state) == (3, 1, "Failed")
    assert_prediction_held(report, outcome)


# ---------------------------------------------------------------------------------------- generated clusters

BUDGETS = st.one_of(
    st.none(),
    st.builds(lambda v: {"min_available": v}, st.integers(0, 4)),
    st.builds(lambda v: {"min_available": v}, st.sampled_from(["0%", "34%", "50%", "100%"])),
    st.builds(lambda v: {"max_unavailable": v}, st.integers(0, 2)),
    st.builds(lambda v: {"max_unavailable": v}, st.sampled_from(["0%", "34%", "50%", "100%"])),
)


# Each a selector of exactly the app's pods, spelled in another form.
SELECTOR_FORMS = st.sampled_from([
    lambda app: {"matchLabels": {"app": app}},
    lambda app: {"matchExpressions": [{"key": "app", "operator": "In", "values": [app, "not-an-app"]}]},
    lambda app: {"matchExpressions": [{"key": "app", "operator": "Exists"},
                                      {"key": "app", "operator": "NotIn", "values": [f"{app}-other"]},
                                      {"key": "app", "operator": "In", "values": [app]}]},
])


@st.composite
def clusters(draw) -> dict:
    nodes = draw(st.integers(1, 4))
    apps = []
    for index in range(draw(st.integers(1, 3))):
        replicas = draw(st.integers(1, 3))
        placement = draw(st.lists(st.integers(0, nodes - 1), min_size=replicas, max_size=replicas))
        apps.append({"name": f"app-{index}", "replicas": replicas, "place_on": placement, "pdb": draw(BUDGETS),
                     "selector": draw(SELECTOR_FORMS)})
    max_unavailable = draw(st.sampled_from([None, "1", "50%"]))
    surge_choices = ["1", "2", "50%", "100%"] + (["0"] if max_unavailable else [])
    behaviour = draw(st.sampled_from(["Cordon", "Schedule"]))
    # Some maxBlockedNodes fall below maxSurge on small pools: ARM refuses those, and so must the preflight.
    blocked_choices = [None, "1", "2", "50%", "100%"]
    return {
        "nodes": nodes,
        "apps": apps,
        "max_surge": draw(st.sampled_from(surge_choices)),
        "max_unavailable": max_unavailable,
        "undrainable_node_behavior": behaviour,
        "max_blocked_nodes": draw(st.sampled_from(blocked_choices)) if behaviour == "Cordon" else None,
    }


def one_blocked_app(nodes: int, *, max_surge: str, max_unavailable: str | None = None,
                    max_blocked_nodes: str | None = None) -> dict:
    """A Cordon pool whose only app is one replica on its first node that its PDB never lets go."""
    return {
        "nodes": nodes,
        "apps": [{"name": "app-0", "replicas": 1, "place_on": [0], "pdb": {"min_available": 1}}],
        "max_surge": max_surge,
        "max_unavailable": max_unavailable,
        "undrainable_node_behavior": "Cordon",
        "max_blocked_nodes": max_blocked_nodes,
    }


def build(spec: dict, name: str):
    from sandbox.aks_emulator.scenarios import ClusterBuilder

    builder = (
        ClusterBuilder(name)
        .pool("system", count=1, mode="System", node_taints=[SYSTEM_TAINT])
        .pool("work", count=spec["nodes"], max_surge=spec["max_surge"], max_unavailable=spec["max_unavailable"],
              undrainable_node_behavior=spec["undrainable_node_behavior"],
              max_blocked_nodes=spec["max_blocked_nodes"])
        .daemonset("kube-system", "kube-proxy")
    )
    for app in spec["apps"]:
        builder.deployment("default", app["name"], replicas=app["replicas"], pool="work",
                           place_on=[("work", i) for i in app["place_on"]])
        if app["pdb"] is not None:
            selector = app.get("selector")
            builder.pdb("default", f"{app['name']}-pdb", app=app["name"], **app["pdb"],
                        selector=selector(app["name"]) if selector else None)
    return builder


def wait_until_settled(kube_cluster, timeout: float = 5.0) -> None:
    """Every deployment pod scheduled and Ready before the snapshot, as in a steady cluster."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = kube_cluster.pods()
        if all(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", ()))
               for p in pods):
            return
        time.sleep(0.01)
    raise AssertionError("the generated cluster never settled")


# Cases where the preflight and the emulator once disagreed, run on every pass.
@example(spec=one_blocked_app(3, max_surge="1", max_blocked_nodes="100%"))  # surges again: nodes 1, 2 upgrade
@example(spec=one_blocked_app(2, max_surge="0", max_unavailable="1", max_blocked_nodes="100%"))  # a replacement
@example(spec=one_blocked_app(2, max_surge="1", max_blocked_nodes="2"))
@example(spec=one_blocked_app(1, max_surge="2", max_blocked_nodes="100%"))  # refused: 1 node is below maxSurge 2
@example(spec=one_blocked_app(2, max_surge="0", max_unavailable="1"))  # default maxBlockedNodes 0: Canceled
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=clusters())
def test_prediction_matches_the_emulator_on_generated_clusters(aks_client, spec):
    from sandbox.aks_emulator.server import Emulator

    # GIVEN a generated cluster in a fresh emulator
    with Emulator(time_scale=FAST_TIME_SCALE) as emu:
        cluster = build(spec, "aks-generated").build(emu)
        emu.start()
        wait_until_settled(cluster.kube)
        cluster_ref = ClusterRef(cluster.subscription_id, cluster.resource_group, cluster.name)
        # WHEN the preflight predicts and then the upgrade runs
        report, outcome = predict_and_run(emu, aks_client, cluster_ref, "work")
    # THEN the emulated AKS did exactly what was predicted
    assert_prediction_held(report, outcome)


# ---------------------------------------------------------------------------------------- PDB selectors

# A PDB in namespace "team" over app-b (one pod on the pool's second node), by each selector form.
TEAM_SELECTORS = {
    "matchExpressions In": ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["app-b"]}]}, True),
    "matchExpressions NotIn": ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}, True),
    "matchExpressions Exists": ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
    "matchLabels with DoesNotExist": ({"matchLabels": {"app": "app-b"},
                                       "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, True),
    "matchExpressions that selects nothing": (
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["app-z"]}]}, False),
    "empty selector: the whole namespace": ({}, True),
    "no selector: no pod": (None, False),
}


@pytest.mark.parametrize("name", list(TEAM_SELECTORS))
def test_prediction_matches_the_emulator_for_every_selector_form(aks_client, name):
    from sandbox.aks_emulator.server import Emulator

    selector, blocks_app_b = TEAM_SELECTORS[name]
    # GIVEN Scenario 2's blocked app-a on the first node, and app-b on the second node covered
    # (or not) by a budget that never lets its one pod go, selected by the form under test
    spec = one_blocked_app(3, max_surge="1", max_blocked_nodes="100%")
    with Emulator(time_scale=FAST_TIME_SCALE) as emu:
        builder = build(spec, "aks-selectors").deployment("team", "app-b", pool="work", place_on=[("work", 1)])
        cluster = builder.build(emu)
        pdb = {"metadata": {"name": "app-b-pdb", "namespace": "team"}, "spec": {"minAvailable": 1}}
        if selector is not None:
            pdb["spec"]["selector"] = selector
        cluster.kube.create_pdb(pdb)
        emu.start()
        wait_until_settled(cluster.kube)
        cluster_ref = ClusterRef(cluster.subscription_id, cluster.resource_group, cluster.name)
        # WHEN the preflight predicts and then the upgrade runs
        report, outcome = predict_and_run(emu, aks_client, cluster_ref, "work")
    # THEN both nodes are quarantined when the selector covers app-b, only the first otherwise:
    # predicted, and done by the emulated AKS
    assert len(report.quarantined_nodes) == (2 if blocks_app_b else 1)
    assert_prediction_held(report, outcome)


SETTINGS_GRID = {
    "mode": ["User", "System"],
    "pool_size": [0, 1, 3, 10, 11],
    "maxSurge": [None, "0", "1", "2", "10%", "50%", "100%"],
    "maxUnavailable": [None, "0", "1", "50%"],
    "undrainableNodeBehavior": [None, "Schedule", "Cordon"],
    "maxBlockedNodes": [None, "1", "2", "5", "10%", "20%", "100%"],
}


def test_settings_validation_refuses_exactly_what_the_emulated_arm_refuses():
    from sandbox.aks_emulator.arm import ArmError, _validated_upgrade_settings

    # GIVEN every combination of the settings the upgrade rules compare, on pools of several sizes
    disagreements = []
    for combination in itertools.product(*SETTINGS_GRID.values()):
        mode, pool_size, *values = combination
        arm_json = {name: value for name, value in zip(list(SETTINGS_GRID)[2:], values, strict=True)
                    if value is not None}
        # WHEN ARM validates the PUT and the project validates the same settings
        try:
            _validated_upgrade_settings(arm_json, mode, pool_size=pool_size)
            arm_refused = None
        except ArmError as refused:
            arm_refused = refused.target.rsplit(".", 1)[-1]
        try:
            validate_upgrade_settings(UpgradeSettings.from_arm(arm_json), mode=mode, pool_size=pool_size)
            we_refused = None
        except InvalidInput as invalid:
            we_refused = invalid.field
        if arm_refused != we_refused:
            disagreements.append((mode, pool_size, arm_json, arm_refused, we_refused))
    # THEN both refuse the same combinations, naming the same field
    assert disagreements == []


def preflight_cli(emulator, tmp_path, *flags: str):
    """``python -m upgrade preflight --kubeconfig`` on Scenario 2, reached with a plain kubeconfig."""
    import os
    import subprocess
    import sys

    emu = emulator("seed-pdb")
    kubeconfig = tmp_path / "kubeconfig.yaml"
    emu.write_kubeconfig(emu.clusters()[0].arm_id, kubeconfig)
    return subprocess.run(
        [sys.executable, "-m", "upgrade", "preflight", "--kubeconfig", str(kubeconfig), "--pool", "nodepool1",
         "--target-version", TARGET, *flags],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_preflight_cli_reads_a_kubeconfig_and_prints_json(emulator, tmp_path):
    import json

    # GIVEN Scenario 2 reached with a plain kubeconfig (no ARM: settings come from the flags)
    # WHEN the operator runs the preflight with -o json
    result = preflight_cli(emulator, tmp_path, "--max-surge", "2", "--undrainable", "cordon", "-o", "json")
    # THEN the report predicts Scenario 2's end state
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["surgeNodeCount"], report["extraVcpuQuota"]) == (2, 8)
    assert len(report["quarantinedNodes"]) == 1
    assert (report["permanentSurgeNodes"], report["resultingNodeCount"], report["finalState"]) == (1, 3, "Failed")
    assert report["undrainableNodes"][0]["blockers"][0]["pdb"] == "default/app-a-pdb"
    # AND it says it read the cluster itself and which AKS defaults it assumed for what it cannot see
    assert report["assumedDefaults"] == {"maxUnavailable": "0", "drainTimeoutInMinutes": 30,
                                         "nodeSoakDurationInMinutes": 0, "maxBlockedNodes": "maxSurge (2)"}
    assert "not through the app" in result.stderr and "maxUnavailable 0" in result.stderr


def test_preflight_from_a_kubeconfig_names_the_aks_defaults_it_assumed(emulator, tmp_path):
    # WHEN no upgrade setting is given on the command line
    result = preflight_cli(emulator, tmp_path)
    # THEN the prediction states that it assumed maxSurge 10% and Schedule, on stderr and in the report
    assert result.returncode == 0, result.stderr
    assert "maxSurge 10%" in result.stderr and "undrainableNodeBehavior Schedule" in result.stderr
    assert "assumed AKS defaults: maxSurge 10%" in result.stdout
