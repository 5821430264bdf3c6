"""Node image upgrades end to end on the dev host: a rolling run with target ``nodeImage`` (AKS's
upgradeNodeImageVersion, through the emulator's surge-and-drain) and a blue-green run with target
``nodeImage`` (green at blue's Kubernetes version on the latest image) each end done with every
node of the pool on the new image."""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.arm import DEFAULT_NODE_IMAGE_VERSION, LATEST_NODE_IMAGE_VERSION
from sandbox.aks_emulator.scenarios import seed_bluegreen, seed_rolling
from tests.e2e.rolling_support import POOL, policy_json, start_sandbox
from tests.e2e.test_bluegreen import FAST, app_pods, pools
from upgrade.domain.model import NODE_IMAGE_LABEL

pytestmark = pytest.mark.e2e

NEWER = "AKSUbuntu-2204gen2containerd-202701.09.0"


def images(cluster, pool: str) -> dict[str, str]:
    return {n["metadata"]["name"]: n["metadata"]["labels"].get(NODE_IMAGE_LABEL) for n in cluster.kube.nodes(pool)}


def versions(cluster, pool: str) -> set[str]:
    return {n["status"]["nodeInfo"]["kubeletVersion"] for n in cluster.kube.nodes(pool)}


def test_a_node_image_rolling_run_ends_done_with_every_node_on_the_new_image(emulator, start_devhost, alerts_receiver):
    sandbox = start_sandbox(emulator, start_devhost, alerts_receiver, seed_rolling(), policy=policy_json(),
                            subscribe=False)
    cluster = sandbox.cluster
    assert set(images(cluster, POOL).values()) == {DEFAULT_NODE_IMAGE_VERSION}
    # AKS released a newer image for this pool than the emulator's default latest
    sandbox.emulator.arm.release_node_image(cluster, POOL, NEWER)
    version_before = versions(cluster, POOL)
    # the preflight compares the pool's image with the latest
    status, report = sandbox.host.request("POST", "/api/upgrades/preflight", body={
        "cluster": cluster.arm_id, "pool": POOL, "targetVersion": "nodeImage", "strategy": "rolling"})
    assert status == 200, report
    assert (report["nodeImage"]["current"], report["nodeImage"]["latest"], report["nodeImage"]["upToDate"]) == (
        DEFAULT_NODE_IMAGE_VERSION, NEWER, False)
    status, body = sandbox.host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": POOL, "targetVersion": "nodeImage", "strategy": "rolling", "actor": "e2e"})
    assert status == 202, body
    run = sandbox.wait_run(body["id"], timeout=120)
    assert run["status"] == "succeeded", run["reason"]
    assert run["facts"]["target_node_image"] == NEWER
    assert set(images(cluster, POOL).values()) == {NEWER}
    assert versions(cluster, POOL) == version_before
    assert all(n["nodeImage"] == NEWER for n in run["facts"]["final"]["nodes"])
    pods = sandbox.app_pods()
    assert all(len(p) == 1 and p[0][1] for p in pods.values())


def test_a_node_image_blue_green_run_ends_done_with_green_on_the_new_image(emulator, start_devhost):
    emu = emulator(seed_bluegreen())
    (cluster,) = emu.clusters()
    host = start_devhost(emulator=emu)
    version_before = versions(cluster, "blue")
    status, body = host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "nodeImage", "strategy": "blue-green",
        "options": FAST, "actor": "e2e"})
    assert status == 202, body
    from tests.e2e.test_bluegreen import wait_status

    run = wait_status(host, body["id"], timeout=180)
    assert run["status"] == "succeeded", run["reason"]
    green = run["facts"]["greenPool"]
    assert pools(cluster) == {"system", green}
    assert run["facts"]["nodeImage"] == {"from": DEFAULT_NODE_IMAGE_VERSION, "to": LATEST_NODE_IMAGE_VERSION}
    assert set(images(cluster, green).values()) == {LATEST_NODE_IMAGE_VERSION}
    assert versions(cluster, green) == version_before
    assert all(where == ((green, True),) for where in app_pods(cluster).values())
