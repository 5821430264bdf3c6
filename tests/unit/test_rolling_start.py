"""A rolling start is checked against the cluster before anything is written or applied; the pool's
own upgradeSettings come back after the run when policy asks; a pool state nobody knows is busy."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import CLUSTER, POOL, FakeCluster, deliver_all
from upgrade.domain.model import AgentPool, UpgradeSettings
from upgrade.domain.policy import parse_policy
from upgrade.errors import Conflict, InvalidInput, NotFound
from upgrade.services import rolling
from upgrade.services.step_runner import run_step_message

pytestmark = pytest.mark.usefixtures("production_steps")

OWN_SETTINGS = UpgradeSettings(max_surge="33%", undrainable_node_behavior="Schedule")


def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.add_pool(POOL, 2, "1.30.0", upgrade_settings=OWN_SETTINGS)
    fake.add_node("aks-nodepool1-1", POOL, "1.30.0")
    fake.add_node("aks-nodepool1-2", POOL, "1.30.0")
    return fake


def platform_for(fake: FakeCluster, **rolling_policy) -> FakePlatform:
    policy = {"defaults": {"pollSeconds": 1, "rolling": rolling_policy}}
    return FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                        allowed_clusters=frozenset({CLUSTER.arm_id}), policy=parse_policy(json.dumps(policy)))


@pytest.mark.parametrize(
    ("pool", "target", "error", "text"),
    [
        (POOL, "banana", InvalidInput, "'banana' is not a Kubernetes version"),
        (POOL, "1.31.99", InvalidInput, "1.31.99 is not offered by pool nodepool1's upgrade profile"),
        (POOL, "1.29.9", InvalidInput, "1.29.9 is not newer than pool nodepool1's 1.30.0"),
        (POOL, "1.30.0", InvalidInput, "1.30.0 is not newer than pool nodepool1's 1.30.0"),
        (POOL, "1.30", InvalidInput, "1.30 is not offered"),  # a newer 1.30 patch would be; none is
        ("nopool", "1.31.7", NotFound, "pool nopool not found"),
    ],
    ids=["not-a-version", "not-offered", "downgrade", "current", "current-minor", "unknown-pool"],
)
def test_a_start_the_cluster_cannot_take_is_refused_at_once_and_nothing_is_written_or_applied(
    pool, target, error, text
):
    fake = cluster()
    platform = platform_for(fake)
    with pytest.raises(error, match=text) as caught:
        rolling.start_rolling_run(platform, cluster=CLUSTER, pool=pool, target_version=target, actor="alice")
    if error is InvalidInput:
        assert caught.value.field == "targetVersion"
        assert "offered for pool nodepool1: 1.31.7" in str(caught.value)
    assert platform.runs.list_runs() == []
    assert platform.queue.sent == []
    assert fake.calls["begin_put_pool"] == 0
    assert fake.pools[POOL].upgrade_settings == OWN_SETTINGS


def test_a_busy_pool_answers_conflict_before_the_version_is_looked_at():
    platform = platform_for(cluster())
    first = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="1.31", actor="alice")
    with pytest.raises(Conflict) as caught:
        rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="banana", actor="bob")
    assert caught.value.code == first.run_id


def test_a_minor_target_starts_at_the_newest_offered_patch():
    platform = platform_for(cluster())
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="1.31", actor="alice")
    assert run.target_version == "1.31.7"


@pytest.mark.parametrize("restore", [True, False])
def test_the_pools_own_upgrade_settings_come_back_after_the_run_when_policy_asks(restore):
    # GIVEN a pool with its own upgradeSettings, and a policy that applies Cordon for the run
    fake = cluster()
    platform = platform_for(fake, undrainableNodeBehavior="Cordon", restoreSettings=restore)
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="1.31.7", actor="alice")
    # WHEN the run goes to its end
    deliver_all(platform)
    # THEN it succeeded, and the pool has its own settings back only when asked for
    done = platform.runs.get(run.run_id)
    assert done.status == "succeeded", done.reason
    assert fake.pools[POOL].orchestrator_version == "1.31.7"
    settings = fake.pools[POOL].upgrade_settings
    if restore:
        assert settings == OWN_SETTINGS
        assert "upgradeSettings restored" in done.reason
        assert done.facts["settings_restored"] == OWN_SETTINGS.to_arm()
    else:
        assert settings.undrainable_node_behavior == "Cordon"


def test_a_failed_run_restores_the_settings_too_and_alerts_once():
    fake = cluster()
    platform = platform_for(fake, undrainableNodeBehavior="Cordon", restoreSettings=True)
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="1.31.7", actor="alice")
    real_put = fake.begin_put_pool

    def upgrade_leaves_a_node_behind(cluster_ref, pool: AgentPool, *, if_match=None):
        real_put(cluster_ref, pool, if_match=if_match)
        if pool.orchestrator_version == "1.31.7" and pool.upgrade_settings != OWN_SETTINGS:
            fake.nodes["aks-nodepool1-1"] = replace(fake.nodes["aks-nodepool1-1"], kubernetes_version="1.30.0")

    fake.begin_put_pool = upgrade_leaves_a_node_behind
    deliver_all(platform)
    ended = platform.runs.get(run.run_id)
    assert ended.status == "failed"
    assert "upgradeSettings restored" in ended.reason
    assert fake.pools[POOL].upgrade_settings == OWN_SETTINGS
    assert [a.kind for a in platform.alerts.published] == ["upgrade.needs-attention"]


@pytest.mark.parametrize("state", ["Migrating", "Reconciling", "SomethingNew"])
def test_a_pool_state_nobody_knows_counts_as_busy(state):
    # GIVEN a pool in a provisioning state this code has no name for
    fake = cluster()
    fake.pools[POOL] = replace(fake.pools[POOL], provisioning_state=state)
    platform = platform_for(fake)
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="1.31.7", actor="alice")
    [sent] = platform.queue.take()
    # WHEN the first step looks at it THEN it waits, and touches nothing
    report = run_step_message(sent.message.to_json(), platform, message_id="m1")
    assert report.outcome is not None and type(report.outcome).__name__ == "Retry"
    assert state in report.outcome.reason
    assert fake.calls["begin_put_pool"] == 0
    assert platform.runs.get(run.run_id).state == rolling.APPLY_SETTINGS


def test_a_node_image_run_refused_surge_quota_restores_the_settings_too():
    from upgrade.errors import PermanentError

    fake = cluster()
    platform = platform_for(fake, undrainableNodeBehavior="Cordon", restoreSettings=True)

    def no_quota(cluster_ref, pool):
        raise PermanentError("Insufficient vcpu quota requested 4, remaining 0", code="InsufficientVCPUQuota")

    fake.begin_upgrade_node_image = no_quota
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="nodeImage", actor="alice")
    deliver_all(platform)
    ended = platform.runs.get(run.run_id)
    assert ended.status == "failed" and "surge nodes unavailable" in ended.reason
    assert "upgradeSettings restored" in ended.reason
    assert fake.pools[POOL].upgrade_settings == OWN_SETTINGS
    assert [a.kind for a in platform.alerts.published] == ["upgrade.surge-unavailable"]
