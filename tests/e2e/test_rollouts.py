"""Staged rollouts end to end: function_app on the dev host over several emulated clusters, driven
through POST/GET /api/rollouts. A 3-stage rollout ends with every cluster's pools on one version;
a cluster whose upgrade quarantines a node stops its stage at the health gate with the node named;
a failure threshold of 1 halts after one failed cluster, and skip then resume finish the rollout;
bad plans are refused with the field named. A node-image rollout ends with every node on one image,
and holds a cluster AKS offered a newer image before its turn."""

from __future__ import annotations

import pytest

from sandbox.aks_emulator.arm import DEFAULT_NODE_IMAGE_VERSION, LATEST_NODE_IMAGE_VERSION
from sandbox.aks_emulator.scenarios import fleet
from tests.e2e.conftest import wait_until
from tests.e2e.rolling_support import policy_json
from upgrade.domain.model import NODE_IMAGE_LABEL

pytestmark = pytest.mark.e2e

NEWER_IMAGE = "AKSUbuntu-2204gen2containerd-202701.09.0"


def start(emulator, start_devhost, count: int, pdb_blocked=(), tags: dict[int, dict] | None = None):
    builders = fleet(count, pdb_blocked=pdb_blocked)
    for index, cluster_tags in (tags or {}).items():
        builders[index - 1].tags = cluster_tags
    emu = emulator(*builders)
    ids = [c.arm_id for c in emu.clusters()]
    host = start_devhost(emulator=emu, UPGRADE_POLICY=policy_json())
    return emu, host, ids


def stages(ids: list[str], *, threshold: int = 1) -> list[dict]:
    return [{"name": "dev", "groups": [{"clusters": [ids[0]]}]},
            {"name": "staging", "groups": [{"name": "a", "clusters": [ids[1]]}, {"name": "b", "clusters": [ids[2]]}],
             "failureThreshold": threshold},
            {"name": "prod", "groups": [{"clusters": ids[3:]}]}]


def post(host, path: str, body: dict | None = None) -> dict:
    status, answer = host.request("POST", path, body=body or {})
    assert status in (200, 202), (status, answer)
    return answer


def rollout(host, rollout_id: str) -> dict:
    status, body = host.request("GET", f"/api/rollouts/{rollout_id}")
    assert status == 200, body
    return body


def wait_status(host, rollout_id: str, wanted: str, timeout: float = 240.0) -> dict:
    return wait_until(lambda: (r := rollout(host, rollout_id))["status"] == wanted and r, timeout=timeout,
                      interval=0.5, what=f"rollout {rollout_id} to be {wanted}")


def pool_versions(emu) -> set[str]:
    return {pool.current_orchestrator_version for c in emu.clusters() for pool in c.pools.values()}


def cluster_status(view: dict) -> dict[str, str]:
    return {c["cluster"]: c["status"] for s in view["stages"] for g in s["groups"] for c in g["clusters"]}


def test_a_three_stage_rollout_ends_with_every_cluster_on_one_version(emulator, start_devhost):
    # GIVEN 4 clusters, the last one tagged ring=prod: the prod stage selects it through Resource Graph
    emu, host, ids = start(emulator, start_devhost, 4, tags={4: {"ring": "prod"}})
    plan = stages(ids)
    plan[2]["groups"] = [{"name": "prod", "tags": {"ring": "prod"}}]
    plan[1]["approval"] = True
    started = post(host, "/api/rollouts", {"name": "fleet", "stages": plan})
    assert [c["cluster"] for c in started["stages"][2]["groups"][0]["clusters"]] == [ids[3]]
    # staging waits for approval once its gate passed; prod has not started
    waiting = wait_status(host, started["id"], "awaiting-approval")
    assert waiting["stage"] == 1 and cluster_status(waiting)[ids[3]] == "pending"
    post(host, f"/api/rollouts/{started['id']}/approve", {"reason": "staging looks good"})
    target = started["targetVersion"]
    assert target.startswith("1.31.") and started["statusUrl"] == f"/api/rollouts/{started['id']}"
    view = wait_status(host, started["id"], "done")
    assert set(cluster_status(view).values()) == {"done"}
    assert pool_versions(emu) == {target}
    assert [g["stage"] for g in view["gates"]] == [0, 1, 2]
    assert [(d["decision"], d["reason"]) for d in view["decisions"]] == [("approve", "staging looks good")]
    # every pool of every cluster upgraded by an ordinary rolling run, one per pool
    status, body = host.request("GET", "/api/upgrades?limit=100")
    runs = [r for r in body["runs"] if r["kind"] == "rolling"]
    assert len(runs) == 8 and {r["status"] for r in runs} == {"succeeded"}
    status, listed = host.request("GET", "/api/rollouts")
    assert status == 200 and [r["id"] for r in listed["rollouts"]] == [started["id"]]


def test_a_quarantined_node_stops_its_stage_at_the_health_gate_with_the_node_named(emulator, start_devhost):
    emu, host, ids = start(emulator, start_devhost, 4, pdb_blocked=[2])
    started = post(host, "/api/rollouts", {"stages": stages(ids, threshold=2)})
    view = wait_status(host, started["id"], "gate-blocked")
    quarantined = [n["metadata"]["name"] for n in emu.clusters()[1].kube.nodes("nodepool1")
                   if n.get("spec", {}).get("unschedulable")]
    assert quarantined and all(node in view["reason"] for node in quarantined)
    assert "open quarantine findings" in view["reason"] and ids[1] in view["reason"]
    assert view["stage"] == 1 and cluster_status(view)[ids[3]] == "pending"


def test_a_failure_threshold_of_one_halts_and_skip_then_resume_finish(emulator, start_devhost):
    _emu, host, ids = start(emulator, start_devhost, 4, pdb_blocked=[2])
    started = post(host, "/api/rollouts", {"stages": stages(ids)})
    view = wait_status(host, started["id"], "halted")
    assert ids[1] in view["reason"] and "failure threshold" in view["reason"]
    assert cluster_status(view)[ids[0]] == "done" and cluster_status(view)[ids[3]] == "pending"
    status, refused = host.request("POST", f"/api/rollouts/{started['id']}/approve", body={})
    assert status == 409, refused
    post(host, f"/api/rollouts/{started['id']}/skip", {"cluster": ids[1], "reason": "PDB owners asked"})
    post(host, f"/api/rollouts/{started['id']}/resume")
    view = wait_status(host, started["id"], "done")
    assert cluster_status(view) == {ids[0]: "done", ids[1]: "skipped", ids[2]: "done", ids[3]: "done"}
    assert [d["decision"] for d in view["decisions"]] == ["skip", "resume"]


def test_bad_plans_are_refused_with_the_field_named(emulator, start_devhost):
    _emu, host, ids = start(emulator, start_devhost, 2)
    other = ids[0].rsplit("/", 1)[0] + "/not-allowed"
    for plan, field in [
        ({"stages": [{"groups": []}]}, "stages[0].groups"),
        ({"stages": [{"groups": [{"clusters": [ids[0], other]}]}]}, "stages[0].groups[0].clusters[1]"),
        ({"stages": [{"groups": [{"clusters": [ids[0]]}]}, {"groups": [{"clusters": [ids[0].upper()]}]}]},
         "stages[1].groups[0].clusters[0]"),
        ({"stages": [{"groups": [{"clusters": ids}]}], "targetVersion": "1.33"}, "targetVersion"),
    ]:
        status, body = host.request("POST", "/api/rollouts", body=plan)
        assert status == 400 and body["field"] == field, (plan, body)
    status, listed = host.request("GET", "/api/rollouts")
    assert status == 200 and listed["rollouts"] == []


def node_images(cluster) -> set[str]:
    return {n["metadata"]["labels"].get(NODE_IMAGE_LABEL) for pool in cluster.pools for n in cluster.kube.nodes(pool)}


def test_a_node_image_rollout_ends_with_every_node_of_every_cluster_on_one_image(emulator, start_devhost):
    emu, host, ids = start(emulator, start_devhost, 3)
    assert {image for c in emu.clusters() for image in node_images(c)} == {DEFAULT_NODE_IMAGE_VERSION}
    versions_before = pool_versions(emu)
    started = post(host, "/api/rollouts", {"name": "weekly image", "targetVersion": "nodeImage", "stages": [
        {"name": "dev", "groups": [{"clusters": [ids[0]]}]}, {"name": "prod", "groups": [{"clusters": ids[1:]}]}]})
    assert started["targetVersion"] == "nodeImage"
    assert started["nodeImages"] == {"AKSUbuntu-2204gen2containerd": LATEST_NODE_IMAGE_VERSION}
    view = wait_status(host, started["id"], "done")
    assert set(cluster_status(view).values()) == {"done"}
    assert {image for c in emu.clusters() for image in node_images(c)} == {LATEST_NODE_IMAGE_VERSION}
    assert pool_versions(emu) == versions_before  # the node image only, no Kubernetes version change
    assert f"to node image {LATEST_NODE_IMAGE_VERSION}" in view["timeline"][0]["reason"]


def test_a_cluster_offered_an_image_past_the_pin_is_held_with_the_reason(emulator, start_devhost):
    emu, host, ids = start(emulator, start_devhost, 2)
    started = post(host, "/api/rollouts", {"targetVersion": "nodeImage", "stages": [
        {"name": "dev", "approval": True, "groups": [{"clusters": [ids[0]]}]},
        {"name": "prod", "groups": [{"clusters": [ids[1]]}]}]})
    wait_status(host, started["id"], "awaiting-approval")
    # AKS publishes next week's image in prod's region before its turn
    emu.arm.publish_node_image(emu.clusters()[1], NEWER_IMAGE)
    post(host, f"/api/rollouts/{started['id']}/approve")
    view = wait_status(host, started["id"], "halted")
    why = f"can no longer reach the pinned node image {LATEST_NODE_IMAGE_VERSION}"
    assert why in view["reason"] and NEWER_IMAGE in view["reason"] and ids[1] in view["reason"]
    [prod] = view["stages"][1]["groups"][0]["clusters"]
    assert prod["status"] == "held" and why in prod["reason"] and prod["runs"] == {}
    assert node_images(emu.clusters()[1]) == {DEFAULT_NODE_IMAGE_VERSION}  # not upgraded past the pin
    assert node_images(emu.clusters()[0]) == {LATEST_NODE_IMAGE_VERSION}
    post(host, f"/api/rollouts/{started['id']}/skip", {"cluster": ids[1], "reason": "next week's rollout"})
    post(host, f"/api/rollouts/{started['id']}/resume")
    view = wait_status(host, started["id"], "done")
    assert cluster_status(view) == {ids[0]: "done", ids[1]: "skipped"}
