"""Scenario 3 end to end: blue-green runs started and steered over HTTP, through function_app on the
dev host, with Azurite and the AKS emulator (seed-bluegreen: pool `blue`, 2 nodes at 1.30, A-D).

Soaks and polls are seconds here; the emulator's time scale only shortens AKS-side durations.
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import quote

import pytest

from sandbox.aks_emulator.arm import available_upgrades
from sandbox.aks_emulator.kube import pod_ready
from sandbox.aks_emulator.scenarios import APP_NAMESPACE, seed_bluegreen
from sandbox.alerts_receiver import AlertsReceiver
from sandbox.easy_auth import ADMIN, APPROVER, OPERATOR, READER
from tests.e2e.conftest import wait_until
from tests.integration.conftest_emulator import FAST_TIME_SCALE
from upgrade.domain.pool_names import green_name_candidates
from upgrade.domain.runs import FINAL_STATUSES
from upgrade.domain.versions import version_key

pytestmark = pytest.mark.e2e

APPS = ["app-a", "app-b", "app-c", "app-d"]
FAST = {"drainBatchSize": "1", "batchSoakMinutes": 0, "finalSoakMinutes": 0.02, "pollIntervalSeconds": 1,
        "drainTimeoutMinutes": 2, "validation": {"readyTimeoutMinutes": 0.5}}
FINAL = tuple(sorted(FINAL_STATUSES))


CLUSTERS = 9  # one fresh seed-bluegreen cluster per test below


@pytest.fixture(scope="module")
def bluegreen_sandbox(start_devhost):
    """One emulator with a seed-bluegreen cluster per test, one alerts receiver (module-wide, like
    the host that publishes to it; conftest's ``alerts_receiver`` lives for one test) and one dev
    host for them all."""
    from sandbox.aks_emulator.server import Emulator

    with Emulator(time_scale=FAST_TIME_SCALE) as emu, AlertsReceiver() as receiver:
        for index in range(CLUSTERS):
            builder = seed_bluegreen()
            builder.name = f"aks-bluegreen-{index}"
            builder.build(emu)
        host = start_devhost(emulator=emu, ALERTS_TOPIC_ENDPOINT=receiver.topic_endpoint,
                             ALERTS_TOPIC_KEY=receiver.key)
        try:
            yield host, emu, iter(emu.clusters()), receiver
        finally:
            host.stop()  # before the emulator and the receiver go away under it


@pytest.fixture
def scenario3(bluegreen_sandbox):
    """(host, a fresh emulated Scenario 3 cluster, the emulator)."""
    host, emu, fresh, _ = bluegreen_sandbox
    yield host, next(fresh), emu
    emu.faults.clear()


@pytest.fixture
def alerts(bluegreen_sandbox) -> AlertsReceiver:
    return bluegreen_sandbox[3]


def start(host, cluster, **options):
    status, body = host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
        "options": {**FAST, **options}})
    assert status == 202, body
    return body["id"]


def wait_status(host, run_id, statuses=FINAL, timeout=120.0):
    """The run once its status is in ``statuses``; fails with the run's last state and reason."""
    last: dict = {}

    def reached():
        status, body = host.request("GET", f"/api/upgrades/{run_id}")
        assert status == 200, body
        last.update(body)
        return body if body["status"] in statuses else None

    try:
        return wait_until(reached, timeout=timeout, interval=0.3, what=f"run {run_id} to reach {statuses}")
    except pytest.fail.Exception:
        pytest.fail(f"run {run_id} stuck in {last.get('state')} ({last.get('status')}): {last.get('reason')}")


def app_pods(cluster) -> dict[str, tuple[str, bool]]:
    """Application pods by Deployment: (pool of its node, Ready)."""
    nodes = {n["metadata"]["name"]: n["metadata"]["labels"]["kubernetes.azure.com/agentpool"]
             for n in cluster.kube.nodes()}
    placed = {}
    for pod in cluster.kube.pods():
        app = pod["metadata"].get("labels", {}).get("app")
        if pod["metadata"]["namespace"] == APP_NAMESPACE and app in APPS and not pod["metadata"].get("deletionTimestamp"):
            placed.setdefault(app, []).append((nodes.get(pod["spec"].get("nodeName"), "(pending)"), pod_ready(pod)))
    return {app: tuple(sorted(where)) for app, where in sorted(placed.items())}


def app_pod_inventory(cluster) -> Counter:
    """Every application pod that exists, counted by (namespace, owning workload): what "no pod is
    lost" compares. kube-system and DaemonSet pods are the platform's, not the applications'."""
    inventory: Counter = Counter()
    for pod in cluster.kube.pods():
        meta = pod["metadata"]
        owner = (meta.get("ownerReferences") or [{"kind": "Pod", "name": meta["name"]}])[0]
        if meta["namespace"] == "kube-system" or owner["kind"] == "DaemonSet" or meta.get("deletionTimestamp"):
            continue
        # a ReplicaSet "<deployment>-<hash>" counts for its Deployment
        workload = owner["name"].rsplit("-", 1)[0] if owner["kind"] == "ReplicaSet" else owner["name"]
        inventory[meta["namespace"], workload] += 1
    return inventory


def all_app_pods_ready(cluster) -> bool:
    return all(pod_ready(p) for p in cluster.kube.pods()
               if p["metadata"]["namespace"] != "kube-system" and not p["metadata"].get("deletionTimestamp"))


def pools(cluster) -> set[str]:
    return set(cluster.pools)


def test_commit_path_reaches_seed_5a(scenario3):
    # GIVEN Scenario 3 / WHEN a blue-green run to 1.31 goes through without approval
    host, cluster, _ = scenario3
    run_id = start(host, cluster)
    run = wait_status(host, run_id)
    # THEN (5A) green is the pool, every application pod runs Ready on it, and blue is gone
    assert run["status"] == "succeeded", run["reason"]
    green = run["facts"]["greenPool"]
    assert pools(cluster) == {"system", green}
    assert app_pods(cluster) == {app: ((green, True),) for app in APPS}
    assert all(n["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.31") for n in cluster.kube.nodes(green))
    # the history row of the final step lands just after the run's final write
    timeline = wait_until(lambda: (r := host.request("GET", f"/api/upgrades/{run_id}")[1]["timeline"])
                          and r[-1]["step"] == "bluegreen.done" and r, timeout=10, what="the done row")
    steps = [t["step"].removeprefix("bluegreen.") for t in timeline]
    assert steps[0] == "preflight" and "commit" in steps and steps[-1] == "done"


def test_operator_rollback_after_validation_reaches_seed_5b(scenario3):
    host, cluster, _ = scenario3
    run_id = start(host, cluster, approval={"required": True, "timeoutMinutes": 30})
    waiting = wait_status(host, run_id, ("awaiting-decision", *FINAL))
    assert waiting["status"] == "awaiting-decision", waiting["reason"]
    green = waiting["facts"]["greenPool"]
    assert app_pods(cluster) == {app: ((green, True),) for app in APPS}
    # WHEN the operator rolls back
    status, body = host.request("POST", f"/api/upgrades/{run_id}/rollback", body={"actor": "bob", "reason": "p99"})  # the body's actor is ignored
    assert status == 200, body
    run = wait_status(host, run_id)
    # THEN (5B) the pods are back on blue, blue is schedulable, green is gone, and the decision is recorded
    assert run["status"] == "rolled-back", run["reason"]
    assert pools(cluster) == {"system", "blue"}
    assert app_pods(cluster) == {app: (("blue", True),) for app in APPS}
    assert not any(n["spec"].get("unschedulable") for n in cluster.kube.nodes("blue"))
    decisions = [t for t in run["timeline"] if t["outcome"] == "decision"]
    assert [(d["actor"], d["reason"]) for d in decisions] == [
        (ADMIN.actor, f"rollback by {ADMIN.actor}: p99")]


def test_each_role_may_do_its_own_actions_only(scenario3):
    host, cluster, _ = scenario3
    body = {"cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
            "options": {**FAST, "approval": {"required": True, "timeoutMinutes": 30}}, "actor": "mallory"}
    # GIVEN a Reader WHEN it asks to start a run THEN 403 names the missing role, and nothing starts
    status, refused = host.request("POST", "/api/upgrades", body=body, identity=READER)
    assert (status, refused["missingRole"]) == (403, "Upgrade.Operate"), refused
    assert "Upgrade.Operate" in refused["message"]
    assert host.request("GET", f"/api/upgrades?cluster={quote(cluster.arm_id)}", identity=READER)[1]["runs"] == []
    # GIVEN an Operator (whose body claims to be mallory) WHEN it starts the run THEN it starts, as the operator
    status, run = host.request("POST", "/api/upgrades", body=body, identity=OPERATOR)
    assert status == 202, run
    waiting = wait_status(host, run["id"], ("awaiting-decision", *FINAL))
    assert waiting["status"] == "awaiting-decision", waiting["reason"]
    # WHEN the Operator asks to commit (approve) THEN 403 names Upgrade.Approve and the run still waits
    status, refused = host.request("POST", f"/api/upgrades/{run['id']}/approve", body={"actor": "mallory"},
                                   identity=OPERATOR)
    assert (status, refused["missingRole"]) == (403, "Upgrade.Approve"), refused
    # WHEN the Approver approves (its body also claims to be mallory) THEN the run commits
    status, decided = host.request("POST", f"/api/upgrades/{run['id']}/approve",
                                   body={"actor": "mallory", "reason": "ok"}, identity=APPROVER)
    assert status == 200, decided
    done = wait_status(host, run["id"])
    assert done["status"] == "succeeded", done["reason"]
    # AND the history names the operator who started and the approver who committed, never mallory
    actors = [(t["outcome"], t["actor"]) for t in done["timeline"] if t["outcome"] in ("started", "decision")]
    assert actors == [("started", OPERATOR.actor), ("decision", APPROVER.actor)]
    assert "mallory" not in json.dumps(done)


def test_crash_looping_workload_on_green_rolls_back_fails_and_alerts(scenario3, alerts):
    host, cluster, _ = scenario3
    # GIVEN app-c crash-loops on the green pool (named from blue and the newest 1.31 patch offered)
    newest = max((v for v in available_upgrades("1.30.0") if v.startswith("1.31.")), key=version_key)
    cluster.kube.set_crashloop(APP_NAMESPACE, "app-c", {green_name_candidates(cluster.arm_id, "blue", newest)[0]})
    run_id = start(host, cluster)
    run = wait_status(host, run_id)
    assert run["status"] == "failed"
    assert "CrashLoopBackOff" in run["reason"] and "rolled back" in run["reason"]
    assert pools(cluster) == {"system", "blue"}
    assert app_pods(cluster) == {app: (("blue", True),) for app in APPS}
    # AND the alerts topic received this run's run.failed alert, naming the cause
    failed = wait_until(lambda: [a for a in alerts.alerts()
                                 if a["type"] == "com.aksupgrade.run.failed" and a["data"]["runId"] == run_id],
                        timeout=15, what=f"a run.failed alert for {run_id}")
    assert len(failed) == 1 and "CrashLoopBackOff" in failed[0]["data"]["summary"]


def test_pdb_blocked_pod_waits_then_moves_once_the_pdb_allows(scenario3):
    host, cluster, _ = scenario3
    cluster.kube.add_pdb(APP_NAMESPACE, "app-a-pdb", selector={"app": "app-a"}, min_available=1)
    run_id = start(host, cluster, drainTimeoutMinutes=5)
    blocked = wait_until(lambda: (r := host.request("GET", f"/api/upgrades/{run_id}")[1])
                         and "app-a-pdb" in r["reason"] and r, timeout=60, what="the drain to report the PDB")
    assert blocked["state"] == "bluegreen.drain_batch" and blocked["status"] == "running"
    cluster.kube.delete_pdb(APP_NAMESPACE, "app-a-pdb")  # the operator relaxes the budget
    run = wait_status(host, run_id)
    assert run["status"] == "succeeded", run["reason"]
    assert app_pods(cluster) == {app: ((run["facts"]["greenPool"], True),) for app in APPS}


@pytest.mark.parametrize(("rollback", "remaining_pools"), [(False, 3), (True, 2)])
def test_pdb_drain_timeout_fails_or_rolls_back_per_policy(scenario3, rollback, remaining_pools):
    host, cluster, _ = scenario3
    cluster.kube.add_pdb(APP_NAMESPACE, "app-a-pdb", selector={"app": "app-a"}, min_available=1)
    run_id = start(host, cluster, drainTimeoutMinutes=0.05, rollbackOnDrainTimeout=rollback)
    run = wait_status(host, run_id)
    assert run["status"] == "failed"
    assert "default/app-a-pdb" in run["reason"] and "drain timeout" in run["reason"]
    assert len(pools(cluster)) == remaining_pools
    assert all(ready for where in app_pods(cluster).values() for _, ready in where)


def test_commit_completes_under_injected_faults_and_no_pod_is_lost(scenario3):
    host, cluster, emu = scenario3
    before = app_pod_inventory(cluster)
    assert before and all_app_pods_ready(cluster)
    # GIVEN 10% of ARM and Kubernetes requests answer 429, 500 or 503
    for api in ("arm", "kube"):
        emu.faults.add(api, "*", rate_429=0.04, rate_500=0.03, rate_503=0.03)
    run_id = start(host, cluster)
    run = wait_status(host, run_id, timeout=150)
    assert run["status"] == "succeeded", run["reason"]
    # THEN the same application pods exist (per namespace and workload), all Ready, A-D on green
    assert app_pod_inventory(cluster) == before
    assert all_app_pods_ready(cluster)
    assert app_pods(cluster) == {app: ((run["facts"]["greenPool"], True),) for app in APPS}
    assert pools(cluster) == {"system", run["facts"]["greenPool"]}


BAD_BODIES = [
    ("not json", b"{nope", 400, "(body)"),
    ("array", [1], 400, "(body)"),
    ("missing pool", {"cluster": "{cluster}", "targetVersion": "1.31", "strategy": "blue-green"}, 400, "pool"),
    ("bad strategy", {"cluster": "{cluster}", "pool": "blue", "targetVersion": "1.31", "strategy": "canary"},
     400, "strategy"),
    ("unknown field", {"cluster": "{cluster}", "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
                       "colour": "green"}, 400, "colour"),
    ("bad cluster id", {"cluster": "aks1", "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green"},
     400, "cluster"),
    ("cluster not allowed", {"cluster": "/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerService/"
                             "managedClusters/z", "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green"},
     403, None),
    ("unknown pool", {"cluster": "{cluster}", "pool": "nosuch", "targetVersion": "1.31", "strategy": "blue-green"},
     404, None),
    ("downgrade", {"cluster": "{cluster}", "pool": "blue", "targetVersion": "1.29", "strategy": "blue-green"},
     400, "targetVersion"),
    ("version not offered", {"cluster": "{cluster}", "pool": "blue", "targetVersion": "1.33", "strategy": "blue-green"},
     400, "targetVersion"),
    ("bad option", {"cluster": "{cluster}", "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
                    "options": {"drainBatchSize": "0%"}}, 400, "options.drainBatchSize"),
    ("options not an object", {"cluster": "{cluster}", "pool": "blue", "targetVersion": "1.31",
                               "strategy": "blue-green", "options": "fast"}, 400, "options"),
]


def test_bad_input_gets_a_clear_4xx(scenario3):
    host, cluster, _ = scenario3
    for name, body, status, field in BAD_BODIES:
        if isinstance(body, dict):
            body = {k: v.replace("{cluster}", cluster.arm_id) if isinstance(v, str) else v for k, v in body.items()}
        got, answer = host.request("POST", "/api/upgrades", body=body)
        assert got == status, (name, answer)
        assert answer["message"], name
        if field:
            assert answer["field"] == field, (name, answer)
    # a second start for a pool with an active run: 409 with the active run's id
    run_id = start(host, cluster, approval={"required": True})
    got, answer = host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green"})
    assert (got, answer["activeRunId"]) == (409, run_id)
    # decisions: unknown decision, an illegal move, an unknown run, a bad body
    for path, body, status in [
        (f"/api/upgrades/{run_id}/shrug", None, 400),
        (f"/api/upgrades/{run_id}/resume", None, 409),
        ("/api/upgrades/nosuch/approve", None, 404),
        (f"/api/upgrades/{run_id}/pause", {"who": "x"}, 400),
    ]:
        got, answer = host.request("POST", path, body=body)
        assert got == status, (path, answer)
    # the run list shows the run; without a signed-in caller (the function key alone) the API refuses
    got, listed = host.request("GET", "/api/upgrades")
    assert got == 200 and run_id in [r["id"] for r in listed["runs"]]
    assert host.request("GET", "/api/upgrades", identity=None)[0] == 401
    assert host.request("POST", f"/api/upgrades/{run_id}/abort", body={})[0] == 200
