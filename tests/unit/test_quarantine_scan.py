"""The quarantine scan over seed Scenario 2: one alert per node with the four ways out, no
duplicate on the next scan, re-alert and escalation as time passes, a resolved notice when clear,
a fixed API cost, and automatic remediation where the policy says so."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.fakes import FakePlatform, InMemoryStateStore
from tests.unit.fake_cluster import (
    CLUSTER,
    POOL,
    FakeCluster,
    deliver_all,
    scenario2_after_upgrade,
)
from upgrade.domain.model import Autoscaler
from upgrade.domain.policy import parse_policy
from upgrade.domain.quarantine import alert_state_partition
from upgrade.domain.runs import RunRecord
from upgrade.errors import NotAllowed, NotFound
from upgrade.services.quarantine_scan import (
    SCAN_STEP,
    current_findings,
    fan_out_scans,
    findings_from_query,
    resolve_node,
    scan_cluster,
    scans_from_request,
)

NODE1 = "aks-nodepool1-1"
OTHER = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg2/providers/Microsoft.ContainerService/managedClusters/aks-two"


pytestmark = pytest.mark.usefixtures("production_steps")


def platform_for(fake: FakeCluster, policy: dict | None = None) -> FakePlatform:
    return FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                        allowed_clusters=frozenset({CLUSTER.arm_id}),
                        policy=parse_policy(json.dumps(policy or {"defaults": {"pollSeconds": 1}})))


def test_one_alert_names_node_pod_pdb_and_the_four_options():
    platform = platform_for(scenario2_after_upgrade(),
                            {"defaults": {"remediation": {"relax-pdb": "approval-required"}}})
    scan_cluster(platform, CLUSTER)
    [alert] = platform.alerts.published
    assert (alert.kind, alert.severity, alert.node, alert.pool) == ("node.quarantined", "error", NODE1, POOL)
    [blocker] = alert.blockers
    assert (blocker["pod"], blocker["pdb"], blocker["minAvailable"], blocker["disruptionsAllowed"],
            blocker["expectedPods"]) == ("default/a-1", "default/a-pdb", "1", 0, 1)
    assert [o["kind"] for o in alert.options] == ["scale-out", "relax-pdb", "delete-pod", "replace-node"]
    commands = "\n".join(o["command"] for o in alert.options)
    assert "kubectl patch pdb a-pdb --namespace default --type merge" in commands
    assert "kubectl delete pod a-1 --namespace default" in commands
    assert f"az aks nodepool delete-machines --subscription {CLUSTER.subscription_id}" in commands
    assert f"kubectl label node {NODE1} kubernetes.azure.com/upgrade-status-" in commands
    assert alert.options[0]["request"] is None  # scale-out is off in this policy
    assert alert.options[1]["request"] == {
        "method": "POST", "path": f"/api/quarantine/{CLUSTER.name}/{NODE1}/remediate",
        "body": {"kind": "relax-pdb", "clusterId": CLUSTER.arm_id, "force": False},
    }


@pytest.mark.parametrize(("modes", "offered"), [
    # (the pool's remediation policy, the kinds whose app request the alert offers)
    ({}, []),
    ({"relax-pdb": "approval-required"}, ["relax-pdb"]),
    ({"delete-pod": "automatic", "replace-node": "approval-required"}, ["delete-pod", "replace-node"]),
])
def test_the_alert_offers_the_apps_request_only_for_what_policy_allows(modes, offered):
    # GIVEN a quarantined node and a pool policy with some remediations off
    platform = platform_for(scenario2_after_upgrade(), {"defaults": {"remediation": modes}})
    # WHEN the scan alerts
    scan_cluster(platform, CLUSTER)
    [alert] = platform.alerts.published
    # THEN only the allowed kinds carry a request; the others say how to enable them, commands stay
    assert [o["kind"] for o in alert.options if o["request"]] == offered
    for option in alert.options:
        assert option["command"]
        assert option["policy"] == modes.get(option["kind"], "off")
        assert ("enable" in option) == (option["kind"] not in offered)
        if option["kind"] not in offered:
            assert f"remediation.{option['kind']} to approval-required" in option["enable"]
    # AND the live findings (GET /api/quarantine) say the same
    [finding] = current_findings(platform, CLUSTER)
    assert [o["kind"] for o in finding["options"] if o["request"]] == offered


def test_the_scan_costs_one_node_list_one_pdb_list_one_pod_list_per_cordoned_node_and_one_hpa_list_per_namespace():
    fake = scenario2_after_upgrade()
    for index in range(2, 4):
        fake.add_node(f"aks-nodepool1-q{index}", POOL, "1.30.0", quarantined=True)
    for index in range(40):
        fake.add_node(f"aks-nodepool1-ok{index}", POOL, "1.31.7")
    platform = platform_for(fake)
    scan_cluster(platform, CLUSTER)
    # the HPAs of the one namespace with a blocking pod (default), for scale-out's commands
    assert sum(fake.calls.values()) == 2 + 3 + 1
    assert (fake.calls["list_nodes"], fake.calls["list_pdbs"], fake.calls["list_pods"]) == (1, 1, 3)
    assert fake.calls["list_autoscalers"] == 1


def test_the_alert_raises_an_hpa_that_owns_the_blocking_pods_workload_not_its_scale():
    # GIVEN Scenario 2 with pod A's ReplicaSet scaled by HorizontalPodAutoscaler a-hpa
    fake = scenario2_after_upgrade()
    fake.autoscalers = [Autoscaler("default", "a-hpa", "ReplicaSet", "a-rs", 1, 3)]
    platform = platform_for(fake)
    # WHEN the scan alerts
    scan_cluster(platform, CLUSTER)
    [alert] = platform.alerts.published
    # THEN scale-out's commands patch the HPA's bounds (conditionally), never kubectl scale, which it would undo
    scale_out = next(o for o in alert.options if o["kind"] == "scale-out")
    assert "kubectl patch hpa a-hpa --namespace default --type json" in scale_out["command"]
    assert "kubectl scale" not in scale_out["command"]


# minutes after the first scan -> alerts sent by a scan at that time
DEDUP = [
    ([1, 2], ["node.quarantined"]),  # the second scan says nothing new
    ([61], ["node.quarantined", "node.quarantined"]),  # the re-alert interval (60 min) passed
    ([241], ["node.quarantined", "node.quarantined"]),  # escalated
]


@pytest.mark.parametrize("later_scans, kinds", DEDUP)
def test_dedup_realert_and_escalation(later_scans, kinds):
    platform = platform_for(scenario2_after_upgrade())
    first_scan = platform.clock.now()
    scan_cluster(platform, CLUSTER)
    for minute in later_scans:
        platform.clock.current = first_scan + timedelta(minutes=minute)
        scan_cluster(platform, CLUSTER)
    assert [a.kind for a in platform.alerts.published] == kinds


def test_escalation_raises_the_severity_once():
    platform = platform_for(scenario2_after_upgrade())
    scan_cluster(platform, CLUSTER)
    platform.clock.advance(241 * 60)
    scan_cluster(platform, CLUSTER)
    platform.clock.advance(5 * 60)
    scan_cluster(platform, CLUSTER)
    assert [a.severity for a in platform.alerts.published] == ["error", "critical"]


def test_a_node_cleared_by_hand_gets_one_resolved_notice():
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    scan_cluster(platform, CLUSTER)
    fake.set_node_label(NODE1, "kubernetes.azure.com/upgrade-status", None)
    fake.set_unschedulable(NODE1, False)
    scan_cluster(platform, CLUSTER)
    scan_cluster(platform, CLUSTER)
    assert [a.kind for a in platform.alerts.published] == ["node.quarantined", "node.resolved"]


def test_a_node_only_cordoned_is_alerted_after_the_grace_period():
    fake = FakeCluster()
    fake.add_pool(POOL, 2, "1.31.7")
    fake.add_node("aks-nodepool1-1", POOL, "1.31.7", cordoned=True)
    platform = platform_for(fake)
    scan_cluster(platform, CLUSTER)
    assert platform.alerts.published == []
    platform.clock.advance(31 * 60)
    scan_cluster(platform, CLUSTER)
    assert [(a.kind, a.severity) for a in platform.alerts.published] == [("node.cordoned", "warning")]


def test_fan_out_sends_one_stateless_scan_step_per_allowed_cluster():
    platform = platform_for(scenario2_after_upgrade())
    platform.allowed_clusters = frozenset({CLUSTER.arm_id, OTHER})
    assert len(fan_out_scans(platform)) == 2
    sent = platform.queue.take()
    assert sorted(s.message.cluster for s in sent) == sorted([CLUSTER.arm_id, OTHER])
    assert {s.message.step for s in sent} == {SCAN_STEP}


@pytest.mark.parametrize(("segment", "scanned"), [(None, [CLUSTER.arm_id, OTHER]), ("aks-two", [OTHER]),
                                                  (CLUSTER.arm_id, [CLUSTER.arm_id])])
def test_a_scan_on_request_queues_the_timers_steps_for_one_cluster_or_all(segment, scanned):
    # GIVEN two allowed clusters WHEN an operator asks for a scan now (by name, ARM id, or none)
    platform = platform_for(scenario2_after_upgrade())
    platform.allowed_clusters = frozenset({CLUSTER.arm_id, OTHER})
    answer = scans_from_request(platform, segment, actor="oscar")
    # THEN the same scan steps as the timer's are queued, acting as the operator
    sent = platform.queue.take()
    assert sorted(answer["scansQueued"]) == sorted(scanned) == sorted(s.message.cluster for s in sent)
    assert {(s.message.step, s.message.actor) for s in sent} == {(SCAN_STEP, "oscar")}


def test_a_scan_of_a_cluster_outside_the_allow_list_is_refused():
    platform = platform_for(scenario2_after_upgrade())
    with pytest.raises(NotFound):
        scans_from_request(platform, "aks-elsewhere", actor="oscar")
    assert platform.queue.take() == []


def test_the_scan_step_runs_through_the_executor_without_a_run_record():
    platform = platform_for(scenario2_after_upgrade())
    fan_out_scans(platform)
    reports = deliver_all(platform)
    assert [(r.step, r.result) for r in reports] == [(SCAN_STEP, "executed")]
    assert [a.kind for a in platform.alerts.published] == ["node.quarantined"]


def test_automatic_remediation_starts_from_the_scan_and_resolves_the_node():
    fake = scenario2_after_upgrade()
    platform = platform_for(fake, {"defaults": {"pollSeconds": 1, "remediation": {"relax-pdb": "automatic"}}})
    fan_out_scans(platform)
    deliver_all(platform)
    assert [a.kind for a in platform.alerts.published] == ["node.quarantined", "node.resolved"]
    assert fake.pools[POOL].count == 2
    [run] = [r for r in platform.runs.list_runs() if r.kind == "remediation"]
    assert (run.status, run.options["requestedBy"]) == ("succeeded", "policy:automatic")


def test_current_findings_lists_live_findings_with_their_alert_state():
    platform = platform_for(scenario2_after_upgrade())
    scan_cluster(platform, CLUSTER)
    [finding] = current_findings(platform)
    assert (finding["node"], finding["condition"], finding["alert"]["alert_count"]) == (NODE1, "quarantined", 1)


def test_findings_of_a_cluster_outside_the_allow_list_are_refused_even_by_arm_id():
    # GIVEN an app allowed to act on one cluster
    platform = platform_for(scenario2_after_upgrade())
    # WHEN GET /api/quarantine names another cluster by its ARM id
    # THEN it is refused before anything reads that cluster
    with pytest.raises(NotAllowed, match="ALLOWED_CLUSTERS"):
        findings_from_query(platform, OTHER)


class StateStoreWithConcurrentScan(InMemoryStateStore):
    """A state store where another scan writes right after this scan listed the alert states."""

    def __init__(self) -> None:
        super().__init__()
        self.after_list = None

    def list(self, partition):
        listed = super().list(partition)
        if self.after_list is not None:
            action, self.after_list = self.after_list, None
            action()
        return listed


def test_a_scan_decides_on_the_alert_state_it_writes_against():
    # GIVEN a quarantined node whose alert state a first scan recorded
    platform = platform_for(scenario2_after_upgrade())
    platform.state = StateStoreWithConcurrentScan()
    scan_cluster(platform, CLUSTER)
    assert len(platform.alerts.published) == 1
    # ... and, an hour later, two scans at once: the other one re-alerts between this scan's
    # read of the states and its write
    platform.clock.advance(61 * 60)
    platform.state.after_list = lambda: scan_cluster(platform, CLUSTER)
    scan_cluster(platform, CLUSTER)
    # THEN the operator hears about the node once more, not twice
    assert [a.kind for a in platform.alerts.published] == ["node.quarantined", "node.quarantined"]
    [(node, state)] = platform.state.list(alert_state_partition(CLUSTER))
    assert (node, state["alert_count"]) == (NODE1, 2)


def test_a_cordoned_node_whose_pool_starts_upgrading_gets_no_false_resolved_notice():
    # GIVEN a node cordoned past the grace period, alerted once
    fake = FakeCluster()
    fake.add_pool(POOL, 2, "1.31.7")
    fake.add_node(NODE1, POOL, "1.31.7", cordoned=True)
    platform = platform_for(fake)
    scan_cluster(platform, CLUSTER)
    platform.clock.advance(31 * 60)
    scan_cluster(platform, CLUSTER)
    # WHEN the pool starts upgrading (AKS cordons nodes as it drains them) and the timer scans
    now = platform.clock.now()
    upgrade = platform.runs.create(RunRecord(run_id="rolling-1", kind="rolling", cluster=CLUSTER.arm_id, pool=POOL,
                                             state="rolling.wait_pool", status="running", created_at=now,
                                             updated_at=now))
    scan_cluster(platform, CLUSTER)
    # THEN the still-cordoned node is neither re-alerted nor declared resolved
    assert [a.kind for a in platform.alerts.published] == ["node.cordoned"]
    # AND once the upgrade is over and the node schedulable again, it is resolved once
    platform.runs.update(upgrade.evolve(now=now, status="succeeded"))
    fake.set_unschedulable(NODE1, False)
    scan_cluster(platform, CLUSTER)
    scan_cluster(platform, CLUSTER)
    assert [a.kind for a in platform.alerts.published] == ["node.cordoned", "node.resolved"]


def test_an_alert_the_topic_did_not_take_is_sent_by_the_next_scan():
    # GIVEN a quarantined node and an alerts topic that fails the first delivery (after its retries)
    platform = platform_for(scenario2_after_upgrade())
    platform.alerts.fail_next = 1
    scan_cluster(platform, CLUSTER)
    assert [a.kind for a in platform.alerts.undelivered] == ["node.quarantined"]
    # WHEN the timer scans again a few minutes later (well within the re-alert interval)
    platform.clock.advance(5 * 60)
    scan_cluster(platform, CLUSTER)
    scan_cluster(platform, CLUSTER)
    # THEN the alert reaches the operator once, as the first one sent
    [alert] = platform.alerts.published
    assert (alert.kind, alert.details["alertReason"], alert.details["alertCount"]) == ("node.quarantined", "new", 1)


def test_a_resolved_notice_the_topic_did_not_take_is_sent_by_the_next_scan():
    # GIVEN a node alerted, then cleared by hand, and a topic that fails the next delivery
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    scan_cluster(platform, CLUSTER)
    fake.set_node_label(NODE1, "kubernetes.azure.com/upgrade-status", None)
    fake.set_unschedulable(NODE1, False)
    platform.alerts.fail_next = 1
    scan_cluster(platform, CLUSTER)
    # WHEN the timer scans again, twice
    scan_cluster(platform, CLUSTER)
    scan_cluster(platform, CLUSTER)
    # THEN the resolved notice arrives once, and nothing is left to resolve
    assert [a.kind for a in platform.alerts.undelivered] == ["node.resolved"]
    assert [a.kind for a in platform.alerts.published] == ["node.quarantined", "node.resolved"]
    assert platform.state.list(alert_state_partition(CLUSTER)) == []


class StateStoreWithConcurrentResolve(InMemoryStateStore):
    """A state store where another worker resolves the same node right after this one read its state."""

    def __init__(self) -> None:
        super().__init__()
        self.after_get = None

    def get(self, partition, key):
        stored = super().get(partition, key)
        if self.after_get is not None:
            action, self.after_get = self.after_get, None
            action()
        return stored


def test_two_workers_resolving_the_same_node_send_one_resolved_notice():
    # GIVEN a quarantined node that was alerted, then cleared by hand
    fake = scenario2_after_upgrade()
    platform = platform_for(fake)
    platform.state = StateStoreWithConcurrentResolve()
    scan_cluster(platform, CLUSTER)
    fake.set_node_label(NODE1, "kubernetes.azure.com/upgrade-status", None)
    fake.set_unschedulable(NODE1, False)
    # WHEN another worker resolves it between this one's read of the alert state and its delete
    platform.state.after_get = lambda: resolve_node(platform, CLUSTER, NODE1, how="cleared by hand")
    outcome = resolve_node(platform, CLUSTER, NODE1, how="cleared by hand")
    # THEN the operator gets one resolved notice, from the worker that removed the state first
    assert [a.kind for a in platform.alerts.published] == ["node.quarantined", "node.resolved"]
    assert "changed meanwhile" in outcome
