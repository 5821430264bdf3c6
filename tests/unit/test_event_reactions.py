"""Reactions to AKS events: once per event id, in any order, per the cluster's policy."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import (
    CLUSTER,
    POOL,
    FakeCluster,
    deliver_all,
    scenario2_after_upgrade,
)
from upgrade.domain.events import parse_events
from upgrade.domain.policy import parse_policy
from upgrade.errors import PermanentError, TemporaryError
from upgrade.services import rolling
from upgrade.services.event_reactions import (
    EVENT_CLAIM,
    EVENTS_PARTITION,
    choose_target_version,
    react_to_events,
)

PREFIX = "Microsoft.ContainerService."


pytestmark = pytest.mark.usefixtures("production_steps")


def event(short_type: str, event_id: str, data: dict, time: str = "2026-01-15T09:00:00+00:00"):
    [parsed] = parse_events({"id": event_id, "topic": CLUSTER.arm_id, "subject": CLUSTER.name,
                             "eventType": PREFIX + short_type, "eventTime": time, "dataVersion": "1", "data": data})
    return parsed


def started(event_id="s1", time="2026-01-15T09:00:00+00:00"):
    return event("NodePoolRollingStarted", event_id, {"nodePoolName": POOL}, time)


def succeeded(event_id="ok1", time="2026-01-15T09:20:00+00:00"):
    return event("NodePoolRollingSucceeded", event_id, {"nodePoolName": POOL}, time)


def failed(event_id="ko1", time="2026-01-15T09:20:00+00:00"):
    return event("NodePoolRollingFailed", event_id, {"nodePoolName": POOL}, time)


def new_version(event_id="v1"):
    return event("NewKubernetesVersionAvailable", event_id, {
        "latestSupportedKubernetesVersion": "1.32.4", "latestStableKubernetesVersion": "1.31.7",
        "lowestMinorKubernetesVersion": "1.30.0"})


def seed_rolling_cluster() -> FakeCluster:
    """Seed Scenario 1 before the upgrade: 2 nodes at 1.30 with A, B / C, D."""
    fake = FakeCluster()
    fake.add_pool(POOL, 2, "1.30.0")
    fake.add_node("aks-nodepool1-1", POOL, "1.30.0")
    fake.add_node("aks-nodepool1-2", POOL, "1.30.0")
    for name, node in (("a-1", 1), ("b-1", 1), ("c-1", 2), ("d-1", 2)):
        fake.add_pod("default", name, f"aks-nodepool1-{node}", app=name[0])
    return fake


def platform_for(fake: FakeCluster, defaults: dict | None = None) -> FakePlatform:
    return FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                        allowed_clusters=frozenset({CLUSTER.arm_id}),
                        policy=parse_policy(json.dumps({"defaults": {"pollSeconds": 1, **(defaults or {})}})))


def test_started_records_a_rolling_run_with_a_snapshot_of_the_pool():
    fake = seed_rolling_cluster()
    fake.busy_reads = 1  # AKS is upgrading the pool
    platform = platform_for(fake)
    [note] = react_to_events([started()], platform)
    [run] = platform.runs.list_runs()
    assert "recorded rolling run" in note
    assert (run.kind, run.state, run.facts["pre_upgrade_count"], run.facts["version_before"]) == (
        "rolling", rolling.WAIT_POOL, 2, "1.30.0")


def test_a_started_event_for_an_operation_already_over_records_nothing():
    platform = platform_for(seed_rolling_cluster())
    [note] = react_to_events([started()], platform)
    assert "already over" in note and platform.runs.list_runs() == []


@pytest.mark.parametrize("order", [
    pytest.param(["started", "started", "succeeded", "succeeded"], id="duplicates"),
    pytest.param(["succeeded", "started"], id="succeeded-before-started"),
    pytest.param(["succeeded", "started", "succeeded", "started"], id="reordered-and-duplicated"),
])
def test_duplicate_and_reordered_delivery_reacts_once(order):
    # GIVEN a pool AKS upgraded cleanly
    fake = seed_rolling_cluster()
    platform = platform_for(fake)
    fake.begin_put_pool(CLUSTER, fake.pools[POOL].__class__(**{**fake.pools[POOL].__dict__,
                                                               "orchestrator_version": "1.31.7"}))
    events = {"started": started(), "succeeded": succeeded()}
    # WHEN the events arrive in this order, each reaction followed by the steps it enqueued
    for name in order:
        react_to_events([events[name]], platform)
        deliver_all(platform)
    # THEN exactly one run was recorded, it reconciled to success, and nobody was alerted
    [run] = platform.runs.list_runs()
    assert (run.kind, run.status) == ("rolling", "succeeded"), run.reason
    assert run.facts["final"]["count"] == 2
    assert platform.alerts.published == []


# the order the events arrive in -> what the reconcile knows of the surge nodes that stayed
SURGE_BASIS = [
    # Started recorded the pool's count before the upgrade (2): 3 nodes now, one stayed.
    pytest.param(["started", "failed"], "snapshot", id="started-first"),
    # Failed first: no snapshot, so each quarantined node counts for the one surge node AKS kept.
    pytest.param(["failed", "started"], "quarantined-nodes", id="failed-before-started"),
]


@pytest.mark.parametrize("order, basis", SURGE_BASIS)
def test_failed_reconciles_the_quarantine_once_with_one_node_alert(order, basis):
    # GIVEN Scenario 2 after AKS's upgrade: node 1 quarantined, its surge node kept (3 nodes)
    fake = scenario2_after_upgrade()
    if order[0] == "started":
        fake.pools[POOL] = replace(fake.pools[POOL], count=2)  # what Started snapshots while AKS works
        fake.busy_reads = 1
    platform = platform_for(fake)
    events = {"started": started(), "failed": failed()}
    # WHEN the events arrive in this order
    for name in order:
        react_to_events([events[name]], platform)
        if name == "started":
            fake.pools[POOL] = replace(fake.pools[POOL], count=3)
    deliver_all(platform)
    # THEN one run reconciled the quarantine, and says how many surge nodes stayed and how it knows
    [run] = platform.runs.list_runs()
    assert run.status == "failed"
    assert run.facts["quarantined_nodes"] == ["aks-nodepool1-1"]
    assert (run.facts["permanent_surge_nodes"], run.facts["permanent_surge_basis"]) == (1, basis)
    assert "1 surge node(s) stayed" in run.reason
    assert run.facts["blockers"][0]["pod"] == "default/a-1"
    assert run.facts["arm_error"].startswith("Drain node")
    assert run.facts["kubernetes_events"]
    kinds = [a.kind for a in platform.alerts.published]
    assert sorted(kinds) == ["node.quarantined", "upgrade.failed"]


@pytest.mark.parametrize("short_type, kind, severity", [
    ("ClusterSupportEnding", "cluster.support-ending", "warning"),
    ("ClusterSupportEnded", "cluster.support-ended", "error"),
])
def test_support_events_alert_with_rising_severity(short_type, kind, severity):
    platform = platform_for(seed_rolling_cluster())
    react_to_events([event(short_type, "x", {"kubernetesVersion": "1.30.0"})] * 2, platform)
    assert [(a.kind, a.severity) for a in platform.alerts.published] == [(kind, severity)]


def test_new_version_with_a_preflight_report_policy_sends_the_surge_and_quota_estimate():
    platform = platform_for(seed_rolling_cluster(), {"rolling": {"maxSurge": "1"}})
    react_to_events([new_version()], platform)
    [alert] = platform.alerts.published
    assert alert.kind == "version.available"
    report = alert.details["preflight"]
    assert (report["targetVersion"], report["surgeNodeCount"], report["extraVcpuQuota"]) == ("1.31.7", 1, 4)
    assert "1 surge node(s)" in alert.summary and "4 extra vCPU" in alert.summary
    assert platform.runs.list_runs() == []


def test_new_version_with_start_runs_a_rolling_upgrade_that_applies_settings_then_the_version():
    fake = seed_rolling_cluster()
    platform = platform_for(fake, {"onNewVersion": "start", "rolling": {"maxSurge": "1"}})
    react_to_events([new_version()], platform)
    reports = deliver_all(platform)
    [run] = platform.runs.list_runs()
    assert run.status == "succeeded", run.reason
    assert [r.step for r in reports][:2] == [rolling.APPLY_SETTINGS, rolling.WAIT_POOL]
    assert rolling.SET_VERSION in [r.step for r in reports]
    assert fake.pools[POOL].upgrade_settings.max_surge == "1"
    assert {n.kubernetes_version for n in fake.nodes.values()} == {"1.31.7"}
    assert [a.kind for a in platform.alerts.published] == ["upgrade.started"]


def test_a_surge_quota_error_is_a_clear_alert_not_a_silent_failure():
    fake = seed_rolling_cluster()
    fake.put_error = PermanentError("Insufficient vcpu quota requested 4, remaining 0", code="InsufficientVCPUQuota")
    platform = platform_for(fake, {"rolling": {"maxSurge": "1"}})
    fake.pools[POOL] = fake.pools[POOL].__class__(**{**fake.pools[POOL].__dict__,
                                                    "upgrade_settings": platform.policy.defaults.rolling.to_upgrade_settings()})
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="1.31.7", actor="alice")
    deliver_all(platform)
    run = platform.runs.get(run.run_id)
    assert run.status == "failed" and "surge nodes unavailable" in run.reason
    [alert] = platform.alerts.published
    assert alert.kind == "upgrade.surge-unavailable" and "quota" in alert.summary


@pytest.mark.parametrize("available, stable, target", [
    (["1.30.10", "1.31.7", "1.31.8"], "1.31.7", "1.31.7"),
    (["1.31.7"], "1.32.4", "1.31.7"),
    (["1.32.4"], "1.31.7", None),
    ([], "1.31.7", None),
])
def test_target_version_is_the_newest_offered_up_to_the_latest_stable(available, stable, target):
    assert choose_target_version(available, stable) == target


@pytest.mark.parametrize("short_type", ["NewKubernetesVersionAvailable", "NodePoolRollingStarted",
                                        "NodePoolRollingSucceeded", "ClusterSupportEnded"])
def test_an_event_from_a_cluster_outside_the_allow_list_is_ignored(short_type):
    # GIVEN an app allowed to act on one cluster, and an event about another (same subscription)
    fake = seed_rolling_cluster()
    fake.busy_reads = 1
    platform = platform_for(fake, {"onNewVersion": "start"})
    other = CLUSTER.arm_id.replace(CLUSTER.name, "aks-not-ours")
    data = {"nodePoolName": POOL, "kubernetesVersion": "1.30.0", "latestSupportedKubernetesVersion": "1.32.4",
            "latestStableKubernetesVersion": "1.31.7", "lowestMinorKubernetesVersion": "1.30.0"}
    [foreign] = parse_events({"id": "x1", "topic": other, "subject": "aks-not-ours", "eventType": PREFIX + short_type,
                              "dataVersion": "1", "data": data})
    # WHEN it is delivered
    [note] = react_to_events([foreign], platform)
    # THEN nothing is read, started, recorded or alerted for it
    assert "not in ALLOWED_CLUSTERS" in note
    assert (platform.runs.list_runs(), platform.queue.sent, platform.alerts.published) == ([], [], [])
    assert sum(fake.calls.values()) == 0


# ---- the dedup record is completed only after the reaction ----------------------------------------


def test_the_dedup_record_is_done_only_after_the_reaction_and_a_redelivery_is_then_a_duplicate():
    fake = seed_rolling_cluster()
    fake.busy_reads = 1
    platform = platform_for(fake)
    react_to_events([started()], platform)
    record, _ = platform.state.get(EVENTS_PARTITION, "s1")
    assert record["done"] is True and "recorded rolling run" in record["outcome"]
    [again] = react_to_events([started()], platform)
    assert "duplicate delivery" in again
    assert len(platform.runs.list_runs()) == 1


def test_a_worker_killed_mid_reaction_does_not_turn_the_redelivery_into_a_duplicate():
    # GIVEN a worker that claimed the Started event and was killed before reacting
    fake = seed_rolling_cluster()
    platform = platform_for(fake)
    killed_at = platform.clock.now()
    platform.state.put(EVENTS_PARTITION, "s1", {"type": "x", "cluster": CLUSTER.arm_id,
                                                "at": killed_at.isoformat(), "done": False}, etag=None)
    # WHEN Event Grid redelivers while the claim may still be a live worker's
    fake.busy_reads = 1
    with pytest.raises(TemporaryError, match="being handled by another worker"):
        react_to_events([started()], platform)
    assert platform.runs.list_runs() == []
    # WHEN it redelivers after the claim expired
    platform.clock.advance(EVENT_CLAIM.total_seconds() + 1)
    [note] = react_to_events([started()], platform)
    # THEN the event is reacted to (once) and recorded done
    assert "recorded rolling run" in note
    assert len(platform.runs.list_runs()) == 1
    assert platform.state.get(EVENTS_PARTITION, "s1")[0]["done"] is True


def test_a_reaction_that_fails_releases_its_claim_for_the_redelivery():
    fake = seed_rolling_cluster()
    platform = platform_for(fake)
    fake.busy_reads = 1

    def broken(*args, **kwargs):
        raise PermanentError("ARM said no")

    fake.get_pool = broken
    with pytest.raises(PermanentError):
        react_to_events([started()], platform)
    assert platform.state.get(EVENTS_PARTITION, "s1") is None
