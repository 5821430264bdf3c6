"""Blue-green steps on the real step executor with in-memory ports and the unit tests' one fake
cluster (tests/unit/fake_cluster.py).

The fake cluster plays AKS and Kubernetes the way the steps rely on: pool operations take one
look to finish, evictions respect PodDisruptionBudgets, evicted ReplicaSet pods are recreated on
a schedulable node, a deleted pool's pods are rescheduled. The drill delivers every step twice and
crashes every step after its side effect but before its state write; the run must end the same,
with one green pool created and nothing deleted twice.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from tests.fakes import FakePlatform, SimulatedCrash
from tests.unit.fake_cluster import FakeCluster
from upgrade.domain.bluegreen import STEP_STATES, batch_count, batch_nodes
from upgrade.domain.model import ClusterRef
from upgrade.domain.policy import PoolPolicy, UpgradePolicy
from upgrade.domain.pool_names import LOGICAL_TAG, RUN_TAG, green_name_candidates
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, InvalidInput, NotAllowed, NotFound
from upgrade.services import bluegreen, registry
from upgrade.services.bluegreen import STEP_PREFIX, decide, start_bluegreen_run
from upgrade.services.run_failures import record_poisoned_step
from upgrade.services.step_runner import run_step_message

CLUSTER = ClusterRef("sub-1", "rg", "aks1")
VERSIONS = {"1.30.0": ["1.30.5", "1.31.0", "1.31.2"], "1.31.2": ["1.32.0"]}
GREEN = green_name_candidates(CLUSTER.arm_id, "blue", "1.31.2")[0]  # the green name of Scenario 3's run


def new_cluster() -> FakeCluster:
    return FakeCluster(CLUSTER, upgrades=VERSIONS)


def scenario3() -> FakeCluster:
    """The seed's Scenario 3: a 2-node pool at 1.30 running A-D, plus a system pool."""
    cluster = new_cluster()
    cluster.add_pool("system", 1, with_nodes=True, mode="System")
    cluster.add_pool("blue", 2, with_nodes=True, node_labels=(("team", "shop"),))
    for app, node in (("a", "aks-blue-0"), ("b", "aks-blue-0"), ("c", "aks-blue-1"), ("d", "aks-blue-1")):
        cluster.add_deployment("shop", app, replicas=1, place_on=[node])
    # the system pool is tainted in real clusters; keep application pods off it here
    cluster.nodes["aks-system-0"] = replace(cluster.nodes["aks-system-0"], unschedulable=True)
    return cluster


@pytest.fixture(autouse=True)
def bluegreen_registered(monkeypatch):
    # The lead registers the module in registry._workflow_modules; tests do it for themselves.
    monkeypatch.setattr(registry, "_workflow_modules", lambda: [bluegreen])
    registry.step_registry.cache_clear()
    yield
    registry.step_registry.cache_clear()


FAST = {"drainBatchSize": "1", "batchSoakMinutes": 1, "finalSoakMinutes": 5, "pollIntervalSeconds": 2,
        "validation": {"readyTimeoutMinutes": 1}}


@dataclass
class Driver:
    """The host's queue loop over the fake queue: delivers due messages in order, moving the clock."""

    platform: FakePlatform
    duplicate: str | None = None  # deliver this step's messages twice
    crash: str | None = None  # crash this step once after its side effect, before the state write
    crashed: bool = False
    # called with each message about to be delivered; returns the message to deliver (a fault drill)
    tamper: Callable[[StepMessage], StepMessage] | None = None

    def __post_init__(self) -> None:
        self.pending: list = []
        self.seq = itertools.count()
        self.delivered: list[str] = []

    def _collect(self) -> None:
        now = self.platform.clock.now().timestamp()
        for sent in self.platform.queue.take():
            heapq.heappush(self.pending, (now + sent.delay_seconds, next(self.seq), sent.message, None))

    def _before_update(self, run: RunRecord) -> None:
        # The transition write of the chosen step (its claim released): "die" before it lands.
        if not self.crash or self.crashed or run.claim is not None:
            return
        stored = self.platform.runs.get(run.run_id)
        if stored.claim and stored.state == STEP_PREFIX + self.crash:
            self.crashed = True
            raise SimulatedCrash(f"host died after {self.crash}'s side effects")

    def run(self, until_status=("succeeded", "failed", "rolled-back", "aborted", "awaiting-decision", "paused"),
            run_id=None, max_deliveries=500) -> RunRecord:
        self.platform.runs.before_update = self._before_update
        for _ in range(max_deliveries):
            self._collect()
            if run_id and self.platform.runs.get(run_id).status in until_status:
                return self.platform.runs.get(run_id)
            if not self.pending:
                break
            due, _, message, message_id = heapq.heappop(self.pending)
            if due > self.platform.clock.now().timestamp():
                self.platform.clock.advance(due - self.platform.clock.now().timestamp())
            message_id = message_id or f"msg-{next(self.seq)}"
            if self.tamper is not None:
                message = self.tamper(message)
            copies = 2 if self.duplicate and message.step == STEP_PREFIX + self.duplicate else 1
            for copy in range(copies):
                self.delivered.append(message.step)
                try:
                    run_step_message(message.to_json(), self.platform, message_id=f"{message_id}-{copy}"
                                     if copy else message_id)
                except SimulatedCrash:
                    # the host retries the same message (same id) after the visibility timeout
                    heapq.heappush(self.pending, (due + 5, next(self.seq), message, message_id))
        return self.platform.runs.get(run_id) if run_id else None


def make_platform(cluster: FakeCluster) -> FakePlatform:
    return FakePlatform(kubes={CLUSTER.arm_id: cluster}, aks_by_subscription={CLUSTER.subscription_id: cluster},
                        allowed_clusters=frozenset({CLUSTER.arm_id}))


def start(platform, options=None, version="1.31.2", pool="blue") -> RunRecord:
    return start_bluegreen_run(platform, cluster=CLUSTER.arm_id, pool=pool, target_version=version,
                               options={**FAST, **(options or {})}, actor="alice")


# ---- the paths ----------------------------------------------------------------------------------


def test_commit_path_moves_every_pod_to_green_and_deletes_blue():
    # GIVEN Scenario 3 / WHEN a blue-green run to 1.31.2 runs without approval
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform)
    driver = Driver(platform)
    final = driver.run(run_id=run.run_id)
    # THEN (5A) blue is gone, green (1.31.2, mirrored labels) runs A-D, and the run succeeded
    assert final.status == "succeeded", final.reason
    assert final.state == STEP_PREFIX + "done"
    assert set(cluster.pools) == {"system", GREEN}
    green = cluster.pools[GREEN]
    assert (green.orchestrator_version, green.count, green.mode) == ("1.31.2", 2, "User")
    assert dict(green.node_labels) == {"team": "shop"}
    assert green.tag_map() == {RUN_TAG: run.run_id, LOGICAL_TAG: "blue"}
    assert cluster.placement() == {GREEN: ("a", "b", "c", "d")}
    assert all(p.ready for p in cluster.pods.values())
    assert cluster.calls["create_pool", GREEN] == 1 and cluster.calls["delete_pool", "blue"] == 1
    assert [a.kind for a in platform.alerts.published] == ["run.succeeded"]
    steps = [h.step.removeprefix(STEP_PREFIX) for h in platform.runs.history(run.run_id)]
    assert steps[:5] == ["preflight", "preflight", "create_green", "wait_green_ready", "cordon_blue"]
    assert steps.count("drain_batch") >= 2 and "final_soak" in steps and "done" in steps
    assert [batch_nodes(final.facts, i) for i in range(batch_count(final.facts))] == [["aks-blue-0"], ["aks-blue-1"]]


def test_operator_rollback_after_validation_puts_workloads_back_on_blue():
    # GIVEN a run that must be approved / WHEN it waits for the decision and the operator rolls back
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True, "timeoutMinutes": 60}})
    driver = Driver(platform)
    waiting = driver.run(run_id=run.run_id)
    assert (waiting.status, waiting.state) == ("awaiting-decision", STEP_PREFIX + "await_decision")
    assert cluster.placement() == {GREEN: ("a", "b", "c", "d")}
    # AND the operator was told the run waits, until when, and what a timeout does
    [awaiting] = platform.alerts.published
    assert (awaiting.kind, awaiting.run_id) == ("run.awaiting-decision", run.run_id)
    assert awaiting.details["decisionDeadline"] == waiting.facts["decisionDeadline"]
    assert "without a decision: rollback" in awaiting.summary
    decide(platform, run.run_id, "rollback", "bob", "metrics look wrong")
    final = driver.run(run_id=run.run_id, until_status=("succeeded", "failed", "rolled-back"))
    # THEN (5B) blue is schedulable again with A-D on it, green is gone, the run rolled back
    assert final.status == "rolled-back", final.reason
    assert set(cluster.pools) == {"system", "blue"}
    assert cluster.placement() == {"blue": ("a", "b", "c", "d")}
    assert not any(n.unschedulable for n in cluster.nodes.values() if n.pool == "blue")
    assert cluster.calls["delete_pool", GREEN] == 1 and cluster.calls["delete_pool", "blue"] == 0
    decisions = [h for h in platform.runs.history(run.run_id) if h.outcome == "decision"]
    assert [(d.actor, d.reason) for d in decisions] == [("bob", "rollback by bob: metrics look wrong")]
    assert final.facts["decisions"][0]["actor"] == "bob" and final.facts["decisions"][0]["at"]
    assert platform.alerts.kinds() == ["run.awaiting-decision", "run.rolled-back"]


def test_rollback_leaves_cordoned_a_blue_node_someone_cordoned_while_green_was_created():
    # GIVEN a run waiting for green to be ready, and an operator who cordons a blue node meanwhile
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True, "timeoutMinutes": 60}})
    driver = Driver(platform)
    while platform.runs.get(run.run_id).state != STEP_PREFIX + "wait_green_ready":
        driver.run(run_id=run.run_id, max_deliveries=1)
    cluster.nodes["aks-blue-1"] = replace(cluster.nodes["aks-blue-1"], unschedulable=True)
    # WHEN the run cordons and drains blue, and the operator then rolls back
    driver.run(run_id=run.run_id)
    decide(platform, run.run_id, "rollback", "bob", "metrics look wrong")
    final = driver.run(run_id=run.run_id, until_status=("succeeded", "failed", "rolled-back"))
    # THEN the run uncordons only the node it cordoned: the operator's stays as they set it
    assert final.status == "rolled-back", final.reason
    assert not cluster.nodes["aks-blue-0"].unschedulable
    assert cluster.nodes["aks-blue-1"].unschedulable
    assert cluster.calls["uncordon", "aks-blue-1"] == 0


def test_approval_then_commit():
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True}})
    driver = Driver(platform)
    driver.run(run_id=run.run_id)
    decide(platform, run.run_id, "approve", "carol")
    final = driver.run(run_id=run.run_id, until_status=("succeeded", "failed", "rolled-back"))
    assert final.status == "succeeded" and set(cluster.pools) == {"system", GREEN}


ALICE = "alice@contoso.com (oid 0a11ce00-0000-4000-8000-000000000001)"


@pytest.mark.parametrize(("four_eyes", "approver", "allowed"), [
    (False, ALICE, True),  # off by default: the starter may approve
    (True, "Alice Renamed (oid 0A11CE00-0000-4000-8000-000000000001)", False),  # same object id, new name
    (True, "bob@contoso.com (oid b0b00000-0000-4000-8000-000000000002)", True),
])
def test_four_eyes_policy_keeps_the_starter_from_approving_the_commit(four_eyes, approver, allowed):
    # GIVEN a run started by alice that waits for approval, on a pool whose policy may ask for four eyes
    cluster = scenario3()
    platform = make_platform(cluster)
    platform.policy = UpgradePolicy(defaults=PoolPolicy(fourEyes=four_eyes))
    run = start_bluegreen_run(platform, cluster=CLUSTER.arm_id, pool="blue", target_version="1.31.2",
                              options={**FAST, "approval": {"required": True}}, actor=ALICE)
    driver = Driver(platform)
    assert driver.run(run_id=run.run_id).status == "awaiting-decision"
    # WHEN the approver approves
    if not allowed:
        with pytest.raises(NotAllowed, match="four-eyes"):
            decide(platform, run.run_id, "approve", approver)
        # THEN the run still waits, nothing decided
        waiting = platform.runs.get(run.run_id)
        assert waiting.status == "awaiting-decision" and not waiting.facts.get("decisions")
        return
    decide(platform, run.run_id, "approve", approver)
    # THEN the commit goes ahead
    final = driver.run(run_id=run.run_id, until_status=("succeeded", "failed", "rolled-back"))
    assert final.status == "succeeded" and final.facts["decisions"][0]["actor"] == approver


def test_failed_validation_rolls_back_automatically_fails_the_run_and_alerts():
    # GIVEN workload c crash-loops on green
    cluster = scenario3()
    cluster.crashloop.add(("shop", "c", GREEN))
    platform = make_platform(cluster)
    run = start(platform)
    final = Driver(platform).run(run_id=run.run_id)
    # THEN the run rolled back (green gone, pods on blue) and ended failed, naming the crash loop
    assert final.status == "failed"
    assert "CrashLoopBackOff" in final.reason and "rolled back" in final.reason
    assert set(cluster.pools) == {"system", "blue"}
    assert cluster.placement() == {"blue": ("a", "b", "c", "d")}
    assert all(p.ready for p in cluster.pods.values())
    assert platform.alerts.kinds() == ["run.failed"]


def test_pdb_blocked_pod_waits_then_moves_once_the_pdb_allows():
    cluster = scenario3()
    cluster.add_pdb("shop", "a-pdb", app="a", min_available=1)
    platform = make_platform(cluster)
    run = start(platform, {"drainTimeoutMinutes": 10})
    driver = Driver(platform)
    for _ in range(40):  # let the first batch hit the PDB a few times
        driver.run(run_id=run.run_id, max_deliveries=1)
    blocked = platform.runs.get(run.run_id)
    assert blocked.state == STEP_PREFIX + "drain_batch" and "shop/a-pdb" in blocked.reason
    assert blocked.facts["drainBlockers"][0]["pdb"] == "shop/a-pdb"
    del cluster.pdb_specs["shop/a-pdb"]  # the operator relaxes the budget
    final = driver.run(run_id=run.run_id)
    assert final.status == "succeeded"


@pytest.mark.parametrize(("rollback_on_timeout", "status", "pools"), [
    (False, "failed", {"system", "blue", GREEN}),
    (True, "failed", {"system", "blue"}),
])
def test_drain_timeout_fails_or_rolls_back_per_policy(rollback_on_timeout, status, pools):
    cluster = scenario3()
    cluster.add_pdb("shop", "a-pdb", app="a", min_available=1)
    platform = make_platform(cluster)
    run = start(platform, {"drainTimeoutMinutes": 1, "rollbackOnDrainTimeout": rollback_on_timeout})
    final = Driver(platform).run(run_id=run.run_id)
    assert final.status == status
    assert "shop/a-pdb" in final.reason and "drain timeout" in final.reason
    assert set(cluster.pools) == pools
    alert = platform.alerts.published[-1]
    assert alert.kind == "run.failed" and alert.blockers[0]["pdb"] == "shop/a-pdb"


def test_a_pod_the_scheduler_puts_on_a_third_pool_fails_validation_naming_the_pod_and_node():
    # GIVEN Scenario 3 plus another schedulable pool, `spare`, that the drained pods may land on
    cluster = scenario3()
    cluster.add_pool("spare", 1, "1.31.2", with_nodes=True)
    platform = make_platform(cluster)
    run = start(platform)
    # WHEN the run drains blue and a replacement pod lands on spare instead of green
    final = Driver(platform).run(run_id=run.run_id)
    # THEN validation fails naming that pod and its node, and the run rolls back instead of deleting blue
    assert final.status == "failed", final.reason
    workloads_check = next(c for c in final.facts["validation"]["checks"] if c["name"] == "workloads-ready-on-green")
    assert not workloads_check["passed"] and not workloads_check["pending"]  # waiting would not move it
    stray = re.search(r"Deployment shop/(\w) pod shop/(\w)-\d+ runs on node aks-spare-0, which is in neither blue "
                      r"nor green", workloads_check["reason"])
    assert stray and stray[1] == stray[2], workloads_check["reason"]
    assert stray[0] in final.reason  # the operator reads it on the run, not only in its facts
    assert "blue" in cluster.pools and cluster.calls["delete_pool", "blue"] == 0
    assert platform.alerts.kinds() == ["run.failed"]


# ---- the idempotency drill ------------------------------------------------------------------------

COMMIT_STEPS = ["preflight", "create_green", "wait_green_ready", "cordon_blue", "drain_batch", "batch_soak",
                "validate", "final_soak", "commit", "done"]
ROLLBACK_STEPS = ["await_decision", "rollback", "uncordon_blue", "drain_green", "delete_green",
                  "wait_green_deleted", "done"]


def _drill(step: str, mode: str, *, rollback: bool) -> tuple[FakeCluster, RunRecord, Driver]:
    cluster = scenario3()
    platform = make_platform(cluster)
    # the rollback path: nobody approves within the window, and the policy says roll back
    options = {"approval": {"required": True, "timeoutMinutes": 30, "onTimeout": "rollback"}} if rollback else {}
    run = start(platform, options)
    driver = Driver(platform, **{mode: step})
    final = driver.run(run_id=run.run_id, until_status=("succeeded", "failed", "rolled-back"))
    assert mode != "crash" or driver.crashed  # the drill really crashed the step
    return cluster, final, driver


@pytest.mark.parametrize("mode", ["duplicate", "crash"])
@pytest.mark.parametrize("step", COMMIT_STEPS)
def test_idempotency_drill_commit_path(step, mode):
    cluster, final, driver = _drill(step, mode, rollback=False)
    assert driver.delivered.count(STEP_PREFIX + step) >= 2  # the drill really hit the step
    assert final.status == "succeeded", final.reason
    assert set(cluster.pools) == {"system", GREEN}
    assert cluster.placement() == {GREEN: ("a", "b", "c", "d")}
    assert cluster.calls["create_pool", GREEN] == 1  # no second pool
    assert cluster.calls["delete_pool", "blue"] == 1  # nothing deleted twice
    cordons = [count for key, count in cluster.calls.items() if isinstance(key, tuple) and key[0] == "cordon"]
    assert cordons == [1, 1]  # each blue node cordoned once


@pytest.mark.parametrize("mode", ["duplicate", "crash"])
@pytest.mark.parametrize("step", ROLLBACK_STEPS)
def test_idempotency_drill_rollback_path(step, mode):
    cluster, final, driver = _drill(step, mode, rollback=True)
    assert driver.delivered.count(STEP_PREFIX + step) >= 2
    assert final.status == "rolled-back", final.reason
    assert set(cluster.pools) == {"system", "blue"}
    assert cluster.placement() == {"blue": ("a", "b", "c", "d")}
    assert cluster.calls["create_pool", GREEN] == 1
    assert cluster.calls["delete_pool", GREEN] == 1 and cluster.calls["delete_pool", "blue"] == 0


# ---- safety rails -------------------------------------------------------------------------------------


def _run_at(platform, run_id, state, **facts):
    run = platform.runs.get(run_id)
    return platform.runs.update(run.evolve(now=platform.clock.now(), state=STEP_PREFIX + state,
                                           attempt=run.attempt + 1, facts=facts))


def test_commit_refuses_to_delete_the_last_system_pool():
    # GIVEN blue is the only System pool (green mirrors it, but is not ready)
    cluster = new_cluster()
    cluster.add_pool("blue", 1, with_nodes=True, mode="System")
    cluster.add_deployment("shop", "a", replicas=1, place_on=["aks-blue-0"])
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True}})
    driver = Driver(platform)
    driver.run(run_id=run.run_id)
    # WHEN green turned out a User pool and the operator approves
    cluster.pools[GREEN] = replace(cluster.pools[GREEN], mode="User")
    decide(platform, run.run_id, "approve", "carol")
    parked = driver.run(run_id=run.run_id, until_status=("awaiting-decision", "succeeded", "failed"))
    # THEN commit refuses and parks the run for a decision; blue is untouched
    assert parked.status == "awaiting-decision"
    assert "last System pool" in parked.facts["commitRefused"]
    assert "blue" in cluster.pools and cluster.calls["delete_pool", "blue"] == 0


def test_commit_refuses_while_a_blue_origin_workload_is_not_ready_on_green():
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True}})
    driver = Driver(platform)
    driver.run(run_id=run.run_id)
    [c] = cluster.pods_of("c")
    cluster.pods[c.key] = replace(c, ready=False)
    decide(platform, run.run_id, "approve", "carol")
    parked = driver.run(run_id=run.run_id)
    assert parked.status == "awaiting-decision"
    assert "Deployment shop/c 0/1 ready" in parked.facts["commitRefused"]
    assert cluster.calls["delete_pool", "blue"] == 0


def test_rollback_never_drains_or_deletes_a_green_named_pool_it_did_not_create():
    # GIVEN the pool named like the run's green pool turns out not to carry the run's tag (someone else's)
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True}})
    driver = Driver(platform)
    driver.run(run_id=run.run_id)
    cluster.pools[GREEN] = replace(cluster.pools[GREEN], tags=(("owner", "team-b"),))
    # WHEN the operator rolls back
    decide(platform, run.run_id, "rollback", "bob")
    final = driver.run(run_id=run.run_id)
    # THEN blue is uncordoned, the foreign pool is neither cordoned, drained nor deleted, and the alerts
    # say why, without naming that pool as the run's to clean up
    assert final.status == "failed" and f"refused to drain pool {GREEN}" in final.reason
    assert cluster.calls["delete_pool", GREEN] == 0
    assert not [p for p in cluster.evicted if p.node and cluster.nodes.get(p.node, p).pool == GREEN]
    assert not any(n.unschedulable for n in cluster.nodes.values() if n.pool == GREEN)
    assert platform.alerts.kinds() == ["run.awaiting-decision", "pool.not-owned", "run.failed"]
    failed = platform.alerts.published[-1]
    assert failed.details["refusedPools"] == [GREEN]
    assert not any(GREEN in item for item in failed.details["leftToCleanUp"])


def test_preflight_picks_a_free_green_name_and_never_touches_the_pool_holding_the_first():
    # GIVEN a pool someone else created holds the first green name candidate
    first, second = green_name_candidates(CLUSTER.arm_id, "blue", "1.31.2")[:2]
    cluster = scenario3()
    cluster.add_pool(first, 1, "1.31.2", with_nodes=True)
    # tainted for another team's workloads in a real cluster: keep the shop's pods off it here
    cluster.nodes[f"aks-{first}-0"] = replace(cluster.nodes[f"aks-{first}-0"], unschedulable=True)
    platform = make_platform(cluster)
    run = start(platform)
    final = Driver(platform).run(run_id=run.run_id)
    # THEN the run used the next free name, and the foreign pool was left exactly as it was
    assert final.status == "succeeded", final.reason
    assert final.facts["greenPool"] == second and set(cluster.pools) == {"system", first, second}
    assert cluster.calls["create_pool", first] == 0 and cluster.calls["delete_pool", first] == 0
    assert not any(key[1].startswith(f"aks-{first}-") for key in cluster.calls if isinstance(key, tuple)
                   and key[0] in ("cordon", "uncordon"))


def test_create_green_refuses_a_pool_created_under_its_name_after_preflight():
    # GIVEN someone creates a pool with the recorded green name between preflight and create_green
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform)
    driver = Driver(platform)
    while platform.runs.get(run.run_id).state != STEP_PREFIX + "create_green":
        driver.run(run_id=run.run_id, max_deliveries=1)
    cluster.add_pool(GREEN, 1, "1.31.2", with_nodes=True)
    final = driver.run(run_id=run.run_id)
    # THEN the run rolls back without cordoning, draining or deleting that pool, and fails with alerts
    assert final.status == "failed" and "not created by" in final.reason
    assert cluster.calls["create_pool", GREEN] == 0 and cluster.calls["delete_pool", GREEN] == 0
    assert not any(n.unschedulable for n in cluster.nodes.values() if n.pool != "system")
    assert platform.alerts.kinds()[-1] == "run.failed" and "pool.not-owned" in platform.alerts.kinds()
    assert not any(GREEN in item for item in final.facts["leftToCleanUp"]), final.facts


# ---- start and decide -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"cluster": "not-an-id"}, InvalidInput, "cluster"),
    ({"cluster": ClusterRef("sub-1", "rg", "other").arm_id}, NotAllowed, "ALLOWED_CLUSTERS"),
    ({"pool": "nosuch"}, NotFound, "pool nosuch not found"),
    ({"target_version": "1.29.0"}, InvalidInput, "not newer"),
    ({"target_version": "1.30.0"}, InvalidInput, "not newer"),
    ({"target_version": "1.33.0"}, InvalidInput, "not offered"),
    ({"target_version": "latest"}, InvalidInput, "Kubernetes version"),
    ({"options": {"drainBatchSize": "0"}}, InvalidInput, "options.drainBatchSize"),
    ({"options": {"validation": {"customChecks": ["nope"]}}}, InvalidInput, "no check registered as nope"),
])
def test_start_refuses_bad_requests_with_clear_reasons(kwargs, error, text):
    platform = make_platform(scenario3())
    request = {"cluster": CLUSTER.arm_id, "pool": "blue", "target_version": "1.31.2", "options": {}, "actor": "a",
               **kwargs}
    with pytest.raises(error) as caught:
        start_bluegreen_run(platform, **request)
    assert text in str(caught.value)
    assert not platform.queue.sent and not platform.runs.list_runs()


def test_minor_version_means_the_newest_offered_patch_and_second_start_conflicts():
    platform = make_platform(scenario3())
    run = start(platform, version="1.31")
    assert run.target_version == "1.31.2" and platform.queue.sent[0].message.step == STEP_PREFIX + "preflight"
    with pytest.raises(Conflict) as caught:
        start(platform)
    assert caught.value.code == run.run_id


def test_pause_drops_the_live_step_and_resume_picks_it_up_again():
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform)
    driver = Driver(platform)
    for _ in range(6):
        driver.run(run_id=run.run_id, max_deliveries=1)
    paused = decide(platform, run.run_id, "pause", "dave", "change freeze")
    assert paused.status == "paused"
    driver.run(run_id=run.run_id, until_status=())  # deliveries while paused do nothing
    assert platform.runs.get(run.run_id).state == paused.state
    with pytest.raises(Conflict, match=r"pause does not apply now; you may: rollback, resume, abort$"):
        decide(platform, run.run_id, "pause", "dave")
    decide(platform, run.run_id, "resume", "dave")
    assert driver.run(run_id=run.run_id).status == "succeeded"


def test_abort_ends_the_run_where_it_is_and_alerts():
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform)
    driver = Driver(platform)
    for _ in range(5):
        driver.run(run_id=run.run_id, max_deliveries=1)
    aborted = decide(platform, run.run_id, "abort", "erin", "wrong cluster")
    assert aborted.status == "aborted" and platform.alerts.kinds() == ["run.aborted"]
    # the alert names what the run created and leaves behind, and nothing else
    left = platform.alerts.published[0].details["leftToCleanUp"]
    assert any(f"green pool {GREEN}, created by this run" in item for item in left), left
    assert all(GREEN in item or "blue nodes cordoned by this run" in item for item in left), left
    driver.run(run_id=run.run_id, until_status=())
    assert platform.runs.get(run.run_id).status == "aborted"
    with pytest.raises(Conflict, match="is aborted"):
        decide(platform, run.run_id, "rollback", "erin")


@pytest.mark.parametrize(("decision", "error"), [("approve", Conflict), ("shrug", InvalidInput)])
def test_decisions_the_table_does_not_allow_are_refused(decision, error):
    platform = make_platform(scenario3())
    run = start(platform)
    with pytest.raises(error):
        decide(platform, run.run_id, decision, "x")


def test_custom_checks_and_http_probes_take_part_in_validation():
    calls = []

    @bluegreen.register_check("orders-flowing")
    def orders_flowing(ctx):
        calls.append(ctx.green_nodes)
        from upgrade.domain.validation import CheckResult
        return CheckResult("orders-flowing", False, "no orders in 5 minutes")

    try:
        cluster = scenario3()
        platform = make_platform(cluster)
        platform.policy = UpgradePolicy(defaults=PoolPolicy(probeHosts=("shop.example",)))
        platform.http_status = lambda url, timeout, allowed: 200
        run = start(platform, {"validation": {"customChecks": ["orders-flowing"],
                                              "httpProbes": [{"url": "https://shop.example/health"}]}})
        final = Driver(platform).run(run_id=run.run_id)
    finally:
        bluegreen.CUSTOM_CHECKS.pop("orders-flowing")
    assert final.status == "failed" and "no orders in 5 minutes" in final.reason
    assert calls and calls[0] == (f"aks-{GREEN}-0", f"aks-{GREEN}-1")
    checks = {c["name"]: c["passed"] for c in final.facts["validation"]["checks"]}
    assert checks["http https://shop.example/health"] is True and checks["custom orders-flowing"] is False


@pytest.mark.parametrize(("url", "hosts", "words"), [
    ("http://shop.example/health", ("shop.example",), "plain http only to an in-cluster service name"),
    ("https://shop.example/health", (), "not on the pool policy's probeHosts allow-list"),
    ("https://169.254.169.254/latest", ("169.254.169.254",), "cloud metadata or platform address"),
    ("https://127.0.0.1/", ("127.0.0.1",), "loopback address"),
    ("http://web.shop.svc.cluster.local/ready", (), "not on the pool policy's probeHosts allow-list"),
])
def test_a_probe_url_the_policy_refuses_is_never_fetched(url, hosts, words):
    # GIVEN a pool policy's probe allow-list and a run whose probe URL it refuses
    cluster = scenario3()
    platform = make_platform(cluster)
    platform.policy = UpgradePolicy(defaults=PoolPolicy(probeHosts=hosts))
    asked = []
    platform.http_status = lambda *args: asked.append(args) or 200
    run = start(platform, {"validation": {"readyTimeoutMinutes": 1, "httpProbes": [{"url": url}]}})
    # WHEN the run reaches validation THEN the probe fails at once saying why, and nothing was fetched
    final = Driver(platform).run(run_id=run.run_id)
    check = next(c for c in final.facts["validation"]["checks"] if c["name"] == f"http {url}")
    assert (check["passed"], check["pending"]) == (False, False) and words in check["reason"], check
    assert asked == [] and final.status == "failed"


# ---- a permanent error in every state -------------------------------------------------------------

ROLLED_BACK = ("rolled back", {"system", "blue"})  # the documented clean-up before commit: a rollback
ASK_THEN_ROLL_BACK = {"approval": {"required": True, "timeoutMinutes": 30, "onTimeout": "rollback"}}
BLUE_CORDONED = "blue nodes cordoned by this run: aks-blue-0, aks-blue-1"


def _blocking_pdb(cluster: FakeCluster) -> None:
    cluster.add_pdb("shop", "a-pdb", app="a", min_available=1)


# (state, run options, cluster setup, (reason text, pools at the end), what the alert says is left)
EVERY_STATE = [
    ("preflight", {}, None, ("preflight: ", {"system", "blue"}), []),
    ("create_green", {}, None, ROLLED_BACK, []),
    ("wait_green_ready", {}, None, ROLLED_BACK, []),
    ("cordon_blue", {}, None, ROLLED_BACK, []),
    ("drain_batch", {}, None, ROLLED_BACK, []),
    ("batch_soak", {}, None, ROLLED_BACK, []),
    ("validate", {}, None, ROLLED_BACK, []),
    ("final_soak", {}, None, ROLLED_BACK, []),
    ("await_decision", ASK_THEN_ROLL_BACK, None, ROLLED_BACK, []),
    ("commit", {}, None, ("commit: ", {"system", "blue", GREEN}), ["blue pool blue: cordoned and drained"]),
    ("rollback", ASK_THEN_ROLL_BACK, None, ("rollback: ", {"system", "blue", GREEN}),
     [BLUE_CORDONED, f"green pool {GREEN}, created by this run"]),
    ("uncordon_blue", ASK_THEN_ROLL_BACK, None, ("uncordon_blue: ", {"system", "blue", GREEN}),
     [BLUE_CORDONED, f"green pool {GREEN}, created by this run"]),
    ("drain_green", ASK_THEN_ROLL_BACK, None, ("drain_green: ", {"system", "blue", GREEN}),
     [f"green pool {GREEN}, created by this run"]),
    ("delete_green", ASK_THEN_ROLL_BACK, None, ("delete_green: ", {"system", "blue", GREEN}),
     [f"green pool {GREEN}, created by this run"]),
    # the deletion was requested before the error and is still going: the alert says to make sure
    ("wait_green_deleted", ASK_THEN_ROLL_BACK, None, ("wait_green_deleted: ", {"system", "blue", GREEN}),
     [f"green pool {GREEN}: its deletion was not confirmed"]),
    ("done", {}, None, ("done: ", {"system", GREEN}), []),
    # failed after a drain timeout (the policy's default: fail, do not roll back)
    ("failed", {"drainTimeoutMinutes": 1}, _blocking_pdb, ("failed: ", {"system", "blue", GREEN}),
     [BLUE_CORDONED, f"green pool {GREEN}, created by this run"]),
]


def test_every_step_state_is_drilled():
    assert [case[0] for case in EVERY_STATE] == list(STEP_STATES)


def _corrupt_once(step: str) -> Callable[[StepMessage], StepMessage]:
    """A live message of ``step`` that its step cannot read (an argument it does not take), once:
    a permanent error in that step."""
    corrupted = []

    def tamper(message: StepMessage) -> StepMessage:
        if message.step != STEP_PREFIX + step or corrupted:
            return message
        corrupted.append(message)
        return message.model_copy(update={"args": {**message.args, "surprise": True}})

    return tamper


@pytest.mark.parametrize(("state", "options", "setup", "ending", "left"), EVERY_STATE,
                         ids=[case[0] for case in EVERY_STATE])
def test_a_permanent_error_in_any_state_ends_with_an_alert_and_the_documented_cleanup(
    state, options, setup, ending, left
):
    # GIVEN a blue-green run whose `state` step hits a permanent error (a message it cannot read)
    cluster = scenario3()
    if setup:
        setup(cluster)
    platform = make_platform(cluster)
    run = start(platform, options)
    driver = Driver(platform, tamper=_corrupt_once(state))
    # WHEN the run goes on
    final = driver.run(run_id=run.run_id, until_status=("succeeded", "failed", "rolled-back", "aborted"))
    # THEN it failed, and said so with the run.failed alert naming what is left to clean up
    reason_text, pools = ending
    assert final.status == "failed", (final.status, final.state, final.reason)
    assert reason_text in final.reason and "args.surprise: not an argument" in final.reason
    failures = [a for a in platform.alerts.published if a.kind == "run.failed" and a.run_id == run.run_id]
    assert len(failures) == 1, platform.alerts.kinds()
    alert_left = failures[0].details["leftToCleanUp"]
    assert len(alert_left) == len(left), alert_left
    assert all(text in item for text, item in zip(left, alert_left, strict=True)), alert_left
    assert final.facts["leftToCleanUp"] == alert_left
    assert all(item in failures[0].summary for item in alert_left)
    # AND the cluster is as documented: rolled back before commit, else left for a person
    assert set(cluster.pools) == pools
    if ending is ROLLED_BACK:
        assert cluster.placement() == {"blue": ("a", "b", "c", "d")}
        assert not any(n.unschedulable for n in cluster.nodes.values() if n.pool == "blue")
    assert all(p.ready for p in cluster.pods.values())


@pytest.mark.parametrize(("state", "ending", "left"), [
    ("final_soak", "rolled back: workloads on blue, green deleted", []),
    ("commit", "commit: ", ["blue pool blue: cordoned and drained"]),
])
def test_the_cluster_refusing_the_run_during_final_soak_or_commit_is_not_a_silent_failure(state, ending, left):
    # GIVEN the app's access to the cluster is refused (HTTP 403) once, while `state` runs
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform)

    def refuse_in_state(message: StepMessage) -> StepMessage:
        if message.step == STEP_PREFIX + state and not refused:
            refused.append(message)
            cluster.refuse_once = NotAllowed("nodes is forbidden: the app's identity may not list nodes", status=403)
        return message

    refused: list = []
    final = Driver(platform, tamper=refuse_in_state).run(run_id=run.run_id)
    # THEN the run failed with an alert: rolled back from the final soak, blue left named after commit began
    assert refused and final.status == "failed", final.reason
    assert ending in final.reason and "forbidden" in final.reason
    alert = platform.alerts.published[-1]
    assert alert.kind == "run.failed" and len(alert.details["leftToCleanUp"]) == len(left)
    assert all(text in item for text, item in zip(left, alert.details["leftToCleanUp"], strict=True))


# ---- HTTP probes that fail -----------------------------------------------------------------------------


def _answers(status: int):
    return lambda url, timeout: status


def _raises(error: Exception):
    def probe(url, timeout):
        raise error

    return probe


@pytest.mark.parametrize(("probe", "pending", "text"), [
    (_answers(503), True, "expected 200"),
    (_raises(ConnectionRefusedError(111, "Connection refused")), True, "unreachable: [Errno 111] Connection refused"),
    (_raises(TimeoutError("timed out")), True, "unreachable: timed out"),
    (_raises(NotAllowed("https://shop.example/health redirects elsewhere: probe URL 'http://169.254.169.254/': "
                        "169.254.169.254 is a cloud metadata or platform address")), False,
     "refused: https://shop.example/health redirects elsewhere"),
], ids=["wrong-status", "connection-refused", "timeout", "redirect-to-metadata"])
def test_a_failing_http_probe_fails_validation_and_rolls_back(probe, pending, text):
    # GIVEN a run whose validation probes the shop's health URL on green, and the probe fails
    cluster = scenario3()
    platform = make_platform(cluster)
    platform.policy = UpgradePolicy(defaults=PoolPolicy(probeHosts=("*.example",)))
    asked = []
    platform.http_status = lambda url, timeout, allowed: asked.append((url, timeout, allowed)) or probe(url, timeout)
    run = start(platform, {"validation": {"readyTimeoutMinutes": 1,
                                          "httpProbes": [{"url": "https://shop.example/health"}]}})
    # WHEN the run reaches validation
    final = Driver(platform).run(run_id=run.run_id)
    # THEN validation fails naming the probe's answer (after the ready timeout when waiting may help),
    # the run rolls back to blue and fails with the alert
    check = next(c for c in final.facts["validation"]["checks"] if c["name"] == "http https://shop.example/health")
    assert (check["passed"], check["pending"]) == (False, pending) and text in check["reason"]
    assert final.status == "failed" and text in final.reason and "rolled back" in final.reason
    assert set(cluster.pools) == {"system", "blue"} and platform.alerts.kinds() == ["run.failed"]
    assert all(url == "https://shop.example/health" and timeout <= 10 and allowed == ("*.example",)
               for url, timeout, allowed in asked)
    # waiting is worth it only when the answer may change: a refused probe is asked once
    assert (len(asked) > 1) is pending


def test_a_poisoned_step_names_what_the_run_left_to_clean_up():
    # GIVEN a run in its final soak (blue cordoned and drained, workloads on green)
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"finalSoakMinutes": 60})
    driver = Driver(platform)
    while platform.runs.get(run.run_id).state != STEP_PREFIX + "final_soak":
        driver.run(run_id=run.run_id, max_deliveries=1)
    live = platform.runs.get(run.run_id)
    message = StepMessage(v=1, run_id=run.run_id, step=live.state, cluster=live.cluster, pool="blue",
                          attempt=live.attempt)
    # WHEN its step keeps crashing and the host moves the message to the poison queue
    record_poisoned_step(message.to_json(), platform)
    # THEN the run failed and the alert says what is left: nothing undone, blue cordoned, green standing
    assert platform.runs.get(run.run_id).status == "failed"
    alert = platform.alerts.published[-1]
    assert alert.kind == "run.failed"
    assert alert.details["cleanup"].startswith("nothing undone automatically; left to clean up: ")
    assert BLUE_CORDONED in alert.details["cleanup"] and f"green pool {GREEN}" in alert.details["cleanup"]


# ---- approve: paused runs and overrides ---------------------------------------------------------------


def _failing_probe_run(platform):
    """A run whose HTTP probe fails validation, with auto-rollback off: it waits for a decision."""
    platform.http_status = lambda url, timeout: 503
    return start(platform, {"autoRollbackOnFailedValidation": False,
                            "validation": {"readyTimeoutMinutes": 0.1,
                                           "httpProbes": [{"url": "https://shop.example/health"}]}})


def test_approve_after_a_failed_validation_needs_an_explicit_override_and_is_recorded_as_one():
    # GIVEN a run waiting for a decision after its validation failed
    cluster = scenario3()
    platform = make_platform(cluster)
    run = _failing_probe_run(platform)
    driver = Driver(platform)
    waiting = driver.run(run_id=run.run_id)
    assert waiting.status == "awaiting-decision" and not waiting.facts["validation"]["passed"]
    # WHEN the operator approves without saying it overrides the failed validation
    with pytest.raises(Conflict, match=r"validation failed .*only with override"):
        decide(platform, run.run_id, "approve", "carol")
    assert platform.runs.get(run.run_id).state == waiting.state  # nothing moved
    # WHEN the operator approves with override
    decided = decide(platform, run.run_id, "approve", "carol", "probe is flaky, metrics fine", override=True)
    # THEN the run commits, and the override is on the run and in its history
    assert decided.state == STEP_PREFIX + "commit"
    assert decided.facts["validationOverridden"]["actor"] == "carol"
    assert decided.facts["decisions"][-1]["override"] is True
    [row] = [h for h in platform.runs.history(run.run_id) if h.outcome == "override"]
    assert row.actor == "carol" and "overriding the failed validation" in row.reason
    final = driver.run(run_id=run.run_id)
    assert final.status == "succeeded" and "blue" not in cluster.pools


@pytest.mark.parametrize(("decision", "kwargs", "error", "text"), [
    ("approve", {}, Conflict, "is paused: resume first"),
    ("rollback", {"override": True}, InvalidInput, "applies to approve only"),
    ("resume", {"while_paused": True}, InvalidInput, "applies to approve only"),
])
def test_a_paused_run_ignores_approve_unless_the_operator_says_while_paused(decision, kwargs, error, text):
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True}})
    driver = Driver(platform)
    driver.run(run_id=run.run_id)
    paused = decide(platform, run.run_id, "pause", "dave")
    with pytest.raises(error, match=text):
        decide(platform, run.run_id, decision, "dave", **kwargs)
    assert platform.runs.get(run.run_id).status == "paused" and platform.runs.get(run.run_id).state == paused.state
    assert "blue" in cluster.pools


def test_approve_while_paused_commits_and_is_recorded():
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True}})
    driver = Driver(platform)
    driver.run(run_id=run.run_id)
    decide(platform, run.run_id, "pause", "dave")
    decided = decide(platform, run.run_id, "approve", "dave", "freeze lifted", while_paused=True)
    assert decided.facts["decisions"][-1]["whilePaused"] is True
    assert "approve while paused by dave" in platform.runs.history(run.run_id)[-1].reason
    assert driver.run(run_id=run.run_id).status == "succeeded"


@pytest.mark.parametrize("version", ["banana", "1.29.0", "1.30.0", "1.33.0"])
def test_an_active_run_answers_409_before_the_version_is_validated(version):
    platform = make_platform(scenario3())
    active = start(platform)
    with pytest.raises(Conflict) as caught:
        start(platform, version=version)
    assert caught.value.code == active.run_id


# ---- stable (alternating) names ----------------------------------------------------------------------


def test_two_alternating_upgrades_bring_the_original_name_back_and_the_logical_name_finds_the_twin():
    cluster = scenario3()
    platform = make_platform(cluster)
    first = Driver(platform).run(run_id=start(platform, {"naming": "alternate"}).run_id)
    twin = first.facts["greenPool"]
    assert first.status == "succeeded" and set(cluster.pools) == {"system", twin} and twin != "blue"
    assert cluster.pools[twin].tag_map()[LOGICAL_TAG] == "blue"
    # WHEN the next upgrade names the pool by its logical name, though the live pool is the twin
    second = Driver(platform).run(run_id=start(platform, {"naming": "alternate"}, version="1.32.0").run_id)
    # THEN it upgrades the twin and the original name is back
    assert second.status == "succeeded", second.reason
    assert (second.pool, second.facts["greenPool"]) == (twin, "blue")
    assert set(cluster.pools) == {"system", "blue"}
    assert cluster.placement() == {"blue": ("a", "b", "c", "d")}


def test_a_run_cannot_start_on_the_green_pool_another_run_is_building():
    cluster = scenario3()
    platform = make_platform(cluster)
    run = start(platform, {"approval": {"required": True}})
    Driver(platform).run(run_id=run.run_id)
    assert GREEN in cluster.pools
    with pytest.raises(Conflict) as caught:
        start(platform, pool=GREEN, version="1.32.0")
    assert caught.value.code == run.run_id
