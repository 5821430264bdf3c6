"""Blue-green runs and the pools around them, end to end through function_app on the dev host with
Azurite and the AKS emulator: sibling pools upgraded at once, a foreign pool holding a green name,
and the alternating (stable) naming mode.
"""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.arm import available_upgrades
from sandbox.aks_emulator.scenarios import APP_NAMESPACE, ClusterBuilder, seed_bluegreen
from tests.e2e.test_bluegreen import APPS, FAST, app_pods, wait_status
from tests.integration.conftest_emulator import FAST_TIME_SCALE
from upgrade.domain.pool_names import LOGICAL_TAG, RUN_TAG, green_name_candidates, twin_name
from upgrade.domain.versions import version_key

pytestmark = pytest.mark.e2e

SIBLINGS = ("userpool1", "userpool2")


def siblings_cluster(name: str) -> ClusterBuilder:
    """Two user pools sharing a prefix, each running one Deployment that selects its team's label."""
    builder = ClusterBuilder(name).pool("system", count=1, mode="System",
                                        node_taints=["CriticalAddonsOnly=true:NoSchedule"])
    for team, pool in zip("ab", SIBLINGS, strict=True):
        builder.pool(pool, count=2, max_surge="1", node_labels={"team": team})
    return builder


@pytest.fixture(scope="module")
def pools_sandbox(start_devhost):
    from sandbox.aks_emulator.server import Emulator

    with Emulator(time_scale=FAST_TIME_SCALE) as emu:
        siblings = siblings_cluster("aks-siblings").build(emu)
        for team, pool in zip("ab", SIBLINGS, strict=True):
            siblings.kube.add_deployment(APP_NAMESPACE, f"team-{team}", replicas=2, node_selector={"team": team},
                                         place_on=[n["metadata"]["name"] for n in siblings.kube.nodes(pool)])
        clusters = {"siblings": siblings}
        for name in ("foreign", "alternate", "twin-taken", "paused"):
            builder = seed_bluegreen()
            builder.name = f"aks-{name}"
            clusters[name] = builder.build(emu)
        host = start_devhost(emulator=emu)
        try:
            yield host, clusters, emu
        finally:
            host.stop()


def start(host, cluster, pool="blue", target="1.31", **options):
    status, body = host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": pool, "targetVersion": target, "strategy": "blue-green",
        "options": {**FAST, **options}})
    assert status == 202, body
    return body["id"]


def team_pods(cluster) -> dict[str, set[str]]:
    pools = {n["metadata"]["name"]: n["metadata"]["labels"]["kubernetes.azure.com/agentpool"]
             for n in cluster.kube.nodes()}
    placed: dict[str, set[str]] = {}
    for pod in cluster.kube.pods():
        app = pod["metadata"].get("labels", {}).get("app", "")
        if app.startswith("team-") and not pod["metadata"].get("deletionTimestamp"):
            placed.setdefault(app, set()).add(pools.get(pod["spec"].get("nodeName"), "(pending)"))
    return placed


def test_sibling_pools_upgraded_at_once_both_end_done_with_distinct_green_pools(pools_sandbox):
    host, clusters, _ = pools_sandbox
    cluster = clusters["siblings"]
    # WHEN userpool1 and userpool2 are upgraded blue-green to the same version at the same time
    runs = [start(host, cluster, pool=pool) for pool in SIBLINGS]
    finals = [wait_status(host, run_id, timeout=180) for run_id in runs]
    # THEN both succeed, each with its own green pool, each team's pods on its own green pool
    assert [f["status"] for f in finals] == ["succeeded", "succeeded"], [f["reason"] for f in finals]
    greens = [f["facts"]["greenPool"] for f in finals]
    assert len(set(greens)) == 2 and set(cluster.pools) == {"system", *greens}
    assert team_pods(cluster) == {"team-a": {greens[0]}, "team-b": {greens[1]}}
    for run_id, green in zip(runs, greens, strict=True):
        assert cluster.pools[green].tags[RUN_TAG] == run_id


def newest_131() -> str:
    return max((v for v in available_upgrades("1.30.0") if v.startswith("1.31.")), key=version_key)


def cordoned(cluster, pool: str) -> dict[str, bool]:
    return {n["metadata"]["name"]: bool(n["spec"].get("unschedulable")) for n in cluster.kube.nodes(pool)}


def test_a_foreign_pool_holding_the_green_name_is_never_cordoned(pools_sandbox):
    host, clusters, emu = pools_sandbox
    cluster = clusters["foreign"]
    # GIVEN another team's pool (tainted for its own workloads) already holds the first green name
    taken = green_name_candidates(cluster.arm_id, "blue", newest_131())[0]
    emu.add_pool(cluster, taken, count=1, kubernetes_version=newest_131(), node_taints=["team=other:NoSchedule"])
    before = cordoned(cluster, taken)
    # WHEN blue is upgraded blue-green
    run = wait_status(host, start(host, cluster), timeout=150)
    # THEN the run took another free name and left the foreign pool exactly as it was: never cordoned
    assert run["status"] == "succeeded", run["reason"]
    assert run["facts"]["greenPool"] != taken and taken in cluster.pools
    assert cordoned(cluster, taken) == before and not any(before.values())
    assert RUN_TAG not in cluster.pools[taken].tags
    assert app_pods(cluster) == {app: ((run["facts"]["greenPool"], True),) for app in APPS}


def test_alternating_naming_twice_brings_the_original_pool_name_back(pools_sandbox):
    host, clusters, _ = pools_sandbox
    cluster = clusters["alternate"]
    # WHEN blue is upgraded twice in the alternating naming mode, both times addressed as "blue"
    first = wait_status(host, start(host, cluster, naming="alternate"), timeout=150)
    twin = first["facts"]["greenPool"]
    assert first["status"] == "succeeded", first["reason"]
    assert twin == twin_name(cluster.arm_id, "blue") and set(cluster.pools) == {"system", twin}
    assert cluster.pools[twin].tags[LOGICAL_TAG] == "blue"
    second = wait_status(host, start(host, cluster, target="1.32", naming="alternate"), timeout=150)
    # THEN the second run upgraded the twin and the pool is called blue again, with A-D on it
    assert second["status"] == "succeeded", second["reason"]
    assert (second["pool"], second["facts"]["greenPool"]) == (twin, "blue")
    assert set(cluster.pools) == {"system", "blue"}
    assert app_pods(cluster) == {app: (("blue", True),) for app in APPS}


def test_alternating_naming_refuses_at_start_when_a_foreign_pool_holds_the_twin(pools_sandbox):
    host, clusters, emu = pools_sandbox
    cluster = clusters["twin-taken"]
    twin = twin_name(cluster.arm_id, "blue")
    emu.add_pool(cluster, twin, count=1, node_taints=["team=other:NoSchedule"])
    status, body = host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
        "options": {**FAST, "naming": "alternate"}})
    assert status == 400 and f"pool named {twin} exists" in body["message"], body
    assert not any(cordoned(cluster, twin).values()) and not any(cordoned(cluster, "blue").values())
    assert set(cluster.pools) == {"system", "blue", twin}


def test_a_paused_run_ignores_approve_and_a_busy_pool_answers_409_before_the_version_is_checked(pools_sandbox):
    host, clusters, _ = pools_sandbox
    cluster = clusters["paused"]
    run_id = start(host, cluster, approval={"required": True})
    wait_status(host, run_id, statuses=("awaiting-decision",), timeout=150)
    assert host.request("POST", f"/api/upgrades/{run_id}/pause", body={"reason": "freeze"})[0] == 200
    # WHEN an operator approves the paused run
    status, answer = host.request("POST", f"/api/upgrades/{run_id}/approve", body={})
    # THEN it is refused and nothing moves: blue stays
    assert status == 409 and "resume first" in answer["message"], answer
    run = host.request("GET", f"/api/upgrades/{run_id}")[1]
    assert (run["status"], run["state"]) == ("paused", "bluegreen.await_decision") and "blue" in cluster.pools
    # AND a new request for the busy pool gets 409 with the active run, whatever its version says
    for version in ("banana", "1.29", "1.30.0", "1.33"):
        status, answer = host.request("POST", "/api/upgrades", body={
            "cluster": cluster.arm_id, "pool": "blue", "targetVersion": version, "strategy": "blue-green"})
        assert (status, answer.get("activeRunId")) == (409, run_id), (version, answer)
    # AND approve with whilePaused commits, recorded as such
    status, answer = host.request("POST", f"/api/upgrades/{run_id}/approve", body={"whilePaused": True})
    assert status == 200, answer
    final = wait_status(host, run_id, timeout=150)
    assert final["status"] == "succeeded" and final["facts"]["decisions"][-1]["whilePaused"] is True
