"""Node image upgrades as a first-class target: rolling (upgradeNodeImageVersion), blue-green (green
on the latest image at blue's version), preflight and the reconcile."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.fake_cluster import CLUSTER, POOL, deliver_all
from tests.unit.test_event_reactions import platform_for, seed_rolling_cluster
from upgrade.domain.model import NODE_IMAGE_LABEL
from upgrade.errors import InvalidInput
from upgrade.services import rolling
from upgrade.services.preflight import preflight_from_request

OLD_IMAGE = "AKSUbuntu-2204gen2containerd-202611.01.0"

pytestmark = pytest.mark.usefixtures("production_steps")


def on_old_image(fake):
    fake.pools[POOL] = replace(fake.pools[POOL], node_image_version=OLD_IMAGE)
    for name, node in list(fake.nodes.items()):
        fake.nodes[name] = replace(node, labels=(*node.labels, (NODE_IMAGE_LABEL, OLD_IMAGE)))
    return fake


def test_a_node_image_rolling_run_upgrades_the_image_at_the_same_version_and_ends_done():
    fake = on_old_image(seed_rolling_cluster())
    platform = platform_for(fake)
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="nodeImage")
    deliver_all(platform)
    final = platform.runs.get(run.run_id)
    assert final.status == "succeeded", final.reason
    assert final.facts["target_node_image"] == fake.latest_image and final.facts["node_image_before"] == OLD_IMAGE
    assert {n.label(NODE_IMAGE_LABEL) for n in fake.nodes.values()} == {fake.latest_image}
    assert {n.kubernetes_version for n in fake.nodes.values()} == {"1.30.0"}  # the version is untouched
    assert fake.calls["begin_upgrade_node_image"] == 1  # (the one pool PUT is the policy's upgradeSettings)
    assert f"every node at node image {fake.latest_image}" in final.reason


def test_a_node_image_run_on_a_pool_already_on_the_latest_image_does_nothing():
    fake = seed_rolling_cluster()
    fake.pools[POOL] = replace(fake.pools[POOL], node_image_version=fake.latest_image)
    for name, node in list(fake.nodes.items()):
        fake.nodes[name] = replace(node, labels=(*node.labels, (NODE_IMAGE_LABEL, fake.latest_image)))
    platform = platform_for(fake)
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="nodeImage")
    deliver_all(platform)
    assert platform.runs.get(run.run_id).status == "succeeded"
    assert fake.calls["begin_upgrade_node_image"] == 0


def test_the_reconcile_names_nodes_left_on_the_old_image_and_a_quarantined_node_is_reported():
    fake = on_old_image(seed_rolling_cluster())
    platform = platform_for(fake)
    node = fake.nodes["aks-nodepool1-1"]
    fake.nodes["aks-nodepool1-1"] = replace(node, unschedulable=True,
                                            labels=(*node.labels, ("kubernetes.azure.com/upgrade-status", "Quarantined")))
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="nodeImage")
    deliver_all(platform)
    final = platform.runs.get(run.run_id)
    assert final.status == "failed"
    assert f"node(s) not at {fake.latest_image}: aks-nodepool1-1" in final.reason
    assert final.facts["quarantined_nodes"] == ["aks-nodepool1-1"]


def test_preflight_compares_the_pools_image_with_the_latest():
    fake = on_old_image(seed_rolling_cluster())
    platform = platform_for(fake)
    report = preflight_from_request(platform, {"cluster": CLUSTER.arm_id, "pool": POOL, "targetVersion": "nodeImage"})
    assert report["targetVersion"] == "nodeImage"
    assert report["nodeImage"] == {"current": OLD_IMAGE, "latest": fake.latest_image, "upToDate": False,
                                   "nodesBehind": ["aks-nodepool1-1", "aks-nodepool1-2"]}
    assert report["nodesToUpgrade"] == ["aks-nodepool1-1", "aks-nodepool1-2"]


def test_a_blue_green_node_image_run_is_refused_when_blue_is_on_the_latest_image():
    from upgrade.services.bluegreen.start import start_bluegreen_run

    fake = seed_rolling_cluster()
    fake.pools[POOL] = replace(fake.pools[POOL], node_image_version=fake.latest_image)
    with pytest.raises(InvalidInput, match="already on the latest node image"):
        start_bluegreen_run(platform_for(fake), cluster=CLUSTER.arm_id, pool=POOL, target_version="nodeImage",
                            options={}, actor="alice")


# ---- a run fixed on one image (a rollout's pin) never goes past it --------------------------------

NEWER_IMAGE = "AKSUbuntu-2204gen2containerd-202701.09.0"


def test_a_rolling_run_started_for_an_image_fails_unupgraded_once_aks_offers_a_newer_one():
    fake = on_old_image(seed_rolling_cluster())
    pinned = fake.latest_image
    platform = platform_for(fake)
    run = rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="nodeImage",
                                    node_image=pinned)
    assert run.facts["target_node_image"] == pinned  # fixed at the start, not when the upgrade is asked for
    fake.latest_image = NEWER_IMAGE  # AKS publishes while the run waits (for its maintenance window, say)
    deliver_all(platform)
    final = platform.runs.get(run.run_id)
    assert final.status == "failed"
    assert f"this run is for node image {pinned}, but AKS now offers it {NEWER_IMAGE}" in final.reason
    assert fake.calls["begin_upgrade_node_image"] == 0
    assert {n.label(NODE_IMAGE_LABEL) for n in fake.nodes.values()} == {OLD_IMAGE}


def test_a_blue_green_run_started_for_an_image_creates_no_green_once_aks_offers_a_newer_one():
    from upgrade.services.bluegreen.start import start_bluegreen_run

    fake = on_old_image(seed_rolling_cluster())
    pinned = fake.latest_image
    platform = platform_for(fake)
    fake.latest_image = NEWER_IMAGE
    with pytest.raises(InvalidInput, match=f"a new pool would get node image {NEWER_IMAGE}, not {pinned}"):
        start_bluegreen_run(platform, cluster=CLUSTER.arm_id, pool=POOL, target_version="nodeImage",
                            options={}, actor="alice", node_image=pinned)
    fake.latest_image = pinned
    run = start_bluegreen_run(platform, cluster=CLUSTER.arm_id, pool=POOL, target_version="nodeImage",
                              options={}, actor="alice", node_image=pinned)
    fake.latest_image = NEWER_IMAGE  # published before green's creation (while the run waited for a window)
    deliver_all(platform)
    final = platform.runs.get(run.run_id)
    assert final.status == "failed"
    assert f"green would get node image {NEWER_IMAGE}, not {pinned} this run is for" in final.reason
    assert fake.calls["begin_create_pool"] == 0 and set(fake.pools) == {POOL}
