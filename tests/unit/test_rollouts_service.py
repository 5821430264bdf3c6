"""Rollouts on the step executor over fake clusters: every cluster's pools upgraded by ordinary runs,
stage after stage; duplicate deliveries and crashes between a step's effects and its write change
nothing; the health gate names a quarantined node; the threshold halts; skip and resume finish."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import POOL, FakeCluster, deliver_all
from upgrade.domain.model import ClusterRef
from upgrade.domain.policy import parse_policy
from upgrade.errors import Conflict, InvalidInput, PermanentError
from upgrade.services import rollouts
from upgrade.services.quarantine_scan import scan_cluster
from upgrade.services.step_runner import run_step_message

pytestmark = pytest.mark.usefixtures("production_steps")

REFS = [ClusterRef(f"00000000-0000-0000-0000-00000000000{i}", "rg", f"aks-{i}") for i in range(1, 5)]
IDS = [r.arm_id for r in REFS]


def clusters(quarantined: int | None = None, upgrades: dict | None = None) -> dict[str, FakeCluster]:
    fakes = {}
    for index, ref in enumerate(REFS):
        fake = FakeCluster(ref, upgrades=upgrades)
        fake.add_pool(POOL, 2, "1.30.0")
        fake.add_node(f"aks-{POOL}-{index}-1", POOL, "1.30.0", quarantined=index == quarantined)
        fake.add_node(f"aks-{POOL}-{index}-2", POOL, "1.30.0")
        fakes[ref.arm_id] = fake
    return fakes


def platform_for(fakes: dict[str, FakeCluster]) -> FakePlatform:
    policy = {"defaults": {"pollSeconds": 1}}
    return FakePlatform(kubes=fakes, aks_by_subscription={ClusterRef.parse(c).subscription_id: f for c, f in fakes.items()},
                        policy=parse_policy(json.dumps(policy)))


def deliver_until(platform: FakePlatform, run_id: str, status: str, *, rounds: int = 300) -> dict:
    """Deliver queued messages (advancing the clock by their delays) until the rollout is ``status``:
    a gate-blocked rollout keeps polling, so the queue never drains by itself."""
    for _ in range(rounds):
        view = rollouts.rollout_view(platform, run_id)
        if view["status"] == status:
            return view
        batch = platform.queue.take()
        assert batch, f"the queue drained with the rollout {view['status']}: {view['reason']}"
        for sent in batch:
            platform.clock.advance(sent.delay_seconds)
            run_step_message(sent.message.to_json(), platform, message_id=str(uuid.uuid4()))
    raise AssertionError(f"rollout not {status} after {rounds} rounds")


def three_stages(**second: object) -> dict:
    return {"name": "fleet", "stages": [
        {"name": "dev", "groups": [{"clusters": [IDS[0]]}]},
        {"name": "staging", "groups": [{"clusters": [IDS[1], IDS[2]]}], **second},
        {"name": "prod", "groups": [{"clusters": [IDS[3]]}]},
    ]}


@pytest.mark.parametrize(("duplicate", "crash"), [(False, False), (True, False), (False, True)])
def test_a_three_stage_rollout_ends_with_every_cluster_on_one_version(duplicate, crash):
    fakes = clusters()
    platform = platform_for(fakes)
    run = rollouts.start_rollout(platform, three_stages(), actor="alice")
    assert run.target_version == "1.31.7"
    deliver_all(platform, duplicate=duplicate, crash_after_effect=crash)
    view = rollouts.rollout_view(platform, run.run_id)
    assert view["status"] == "done" and view["runStatus"] == "succeeded", view["reason"]
    assert {f.pools[POOL].orchestrator_version for f in fakes.values()} == {"1.31.7"}
    pool_runs = [r for r in platform.runs.list_runs(limit=100) if r.kind == "rolling"]
    assert len(pool_runs) == 4 and {r.status for r in pool_runs} == {"succeeded"}  # one run per pool, never two
    # stages ran in order: each stage's first run started after the previous gate passed
    assert [s["stage"] for s in view["stageStarts"]] == [0, 1, 2]
    assert [g["stage"] for g in view["gates"]] == [0, 1, 2]
    assert all(g["passedAt"] <= s["at"] for g, s in zip(view["gates"], view["stageStarts"][1:], strict=False))
    assert rollouts.list_rollouts(platform, limit=None)["rollouts"][0]["id"] == run.run_id


def test_a_stage_selected_by_tag_takes_the_allowed_clusters_carrying_it():
    platform = platform_for(clusters())
    platform.cluster_tags = {IDS[2]: {"Env": "prod"}, IDS[3]: {"env": "prod"}, IDS[1]: {"env": "dev"}}
    body = {"stages": [{"groups": [{"clusters": [IDS[0]]}]}, {"groups": [{"tags": {"env": "prod"}}]}]}
    run = rollouts.start_rollout(platform, body, actor="alice")
    view = rollouts.rollout_view(platform, run.run_id)
    assert [c["cluster"] for c in view["stages"][1]["groups"][0]["clusters"]] == [IDS[2], IDS[3]]
    deliver_all(platform)
    assert rollouts.rollout_view(platform, run.run_id)["status"] == "done"


def test_bad_plans_are_refused_with_the_field_and_nothing_is_recorded():
    platform = platform_for(clusters(upgrades={"1.30.0": ["1.31.7"]}))
    with pytest.raises(InvalidInput) as caught:
        rollouts.start_rollout(platform, {**three_stages(), "targetVersion": "1.32"}, actor="alice")
    assert caught.value.field == "targetVersion" and "not offered by every cluster" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        rollouts.start_rollout(platform, {"stages": [{"groups": [{"clusters": [IDS[0], IDS[0]]}]}]}, actor="a")
    assert caught.value.field == "stages[0].groups[0].clusters[1]"
    assert platform.runs.list_runs() == [] and platform.queue.take() == []


def test_a_quarantined_node_stops_the_stage_at_its_gate_with_the_node_named():
    fakes = clusters(quarantined=1)
    platform = platform_for(fakes)
    run = rollouts.start_rollout(platform, three_stages(failureThreshold=2), actor="alice")
    view = deliver_until(platform, run.run_id, "gate-blocked")
    assert "aks-nodepool1-1-1" in view["reason"] and IDS[1] in view["reason"]
    assert view["stage"] == 1 and view["runStatus"] == "running"  # the gate is looked at again each poll
    for _ in range(5):
        platform.clock.advance(1)
        deliver_until(platform, run.run_id, "gate-blocked")
        for sent in platform.queue.take():
            run_step_message(sent.message.to_json(), platform, message_id=str(uuid.uuid4()))
    assert fakes[IDS[3]].pools[POOL].orchestrator_version == "1.30.0"  # prod never started
    assert [a.kind for a in platform.alerts.published if a.kind.startswith("rollout.")] == ["rollout.gate-blocked"]
    # WHEN the node is gone (an operator replaced it) the gate still waits for its open alert...
    fakes[IDS[1]].nodes.pop("aks-nodepool1-1-1")
    view = deliver_until(platform, run.run_id, "gate-blocked")
    platform.clock.advance(1)
    for sent in platform.queue.take():
        run_step_message(sent.message.to_json(), platform, message_id=str(uuid.uuid4()))
    view = rollouts.rollout_view(platform, run.run_id)
    assert view["status"] == "gate-blocked" and "open alerts" in view["reason"] and "open quarantine findings" not in view["reason"]
    # ...which the quarantine scan resolves; the next look passes the gate and prod runs
    scan_cluster(platform, REFS[1])
    deliver_all(platform)
    assert rollouts.rollout_view(platform, run.run_id)["status"] == "done"
    assert fakes[IDS[3]].pools[POOL].orchestrator_version == "1.31.7"


def test_a_threshold_of_one_halts_then_skip_and_resume_finish():
    fakes = clusters()
    fakes[IDS[2]].put_error = PermanentError("refused by ARM")
    platform = platform_for(fakes)
    run = rollouts.start_rollout(platform, three_stages(), actor="alice")
    deliver_all(platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert view["status"] == "halted" and view["runStatus"] == "paused", view["reason"]
    assert IDS[2] in view["reason"]
    with pytest.raises(Conflict):
        rollouts.decide_rollout(platform, run.run_id, "approve", {}, actor="bob")
    rollouts.decide_rollout(platform, run.run_id, "skip", {"cluster": IDS[2], "reason": "broken"}, actor="bob")
    assert rollouts.rollout_view(platform, run.run_id)["status"] == "halted"
    rollouts.decide_rollout(platform, run.run_id, "resume", {}, actor="bob")
    deliver_all(platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert view["status"] == "done", view["reason"]
    statuses = {c["cluster"]: c["status"] for s in view["stages"] for g in s["groups"] for c in g["clusters"]}
    assert statuses == {IDS[0]: "done", IDS[1]: "done", IDS[2]: "skipped", IDS[3]: "done"}
    assert [(d["decision"], d["actor"]) for d in view["decisions"]] == [("skip", "bob"), ("resume", "bob")]
    assert [t["outcome"] for t in view["timeline"]].count("decision") == 2


def test_approval_parks_the_rollout_until_approved():
    platform = platform_for(clusters())
    run = rollouts.start_rollout(platform, three_stages(approval=True), actor="alice")
    deliver_all(platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert (view["status"], view["runStatus"], view["stage"]) == ("awaiting-approval", "paused", 1)
    # a parked rollout has no due time the reconciler sees: the wait for a decision is alerted
    [alert] = [a for a in platform.alerts.published if a.kind.startswith("rollout.")]
    assert (alert.kind, alert.severity, alert.run_id) == ("rollout.awaiting-approval", "warning", run.run_id)
    rollouts.decide_rollout(platform, run.run_id, "approve", {}, actor="carol")
    deliver_all(platform)
    assert rollouts.rollout_view(platform, run.run_id)["status"] == "done"
    assert [a.kind for a in platform.alerts.published if a.kind.startswith("rollout.")] == [
        "rollout.awaiting-approval"]  # once, not on each look while it waited


def test_a_poisoned_tick_fails_the_rollout_and_says_so():
    from upgrade.services.run_failures import record_poisoned_step

    platform = platform_for(clusters())
    run = rollouts.start_rollout(platform, three_stages(), actor="alice")
    (sent,) = platform.queue.take()
    record_poisoned_step(sent.message.to_json(), platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert (view["status"], view["runStatus"]) == ("failed", "failed")
    assert any(a.kind == "run.failed" and a.run_id == run.run_id for a in platform.alerts.published)


def test_a_rollout_the_reconciler_marked_stuck_resumes_on_its_route_and_finishes():
    from upgrade.services.reconciler import mark_stuck

    platform = platform_for(clusters())
    run = rollouts.start_rollout(platform, three_stages(), actor="alice")
    platform.queue.take()  # its tick is lost
    mark_stuck(platform, platform.runs.get(run.run_id), platform.clock.now(), "lost")
    assert rollouts.rollout_view(platform, run.run_id)["runStatus"] == "stuck"
    with pytest.raises(Conflict):
        rollouts.decide_rollout(platform, run.run_id, "approve", {}, actor="bob")
    rollouts.decide_rollout(platform, run.run_id, "resume", {}, actor="bob")
    deliver_all(platform)
    assert rollouts.rollout_view(platform, run.run_id)["status"] == "done"


def test_a_blue_green_pool_run_takes_the_pool_policys_blue_green_options():
    platform = platform_for(clusters())
    platform.policy = parse_policy(json.dumps({"defaults": {"pollSeconds": 1, "strategy": "blue-green", "blueGreen": {
        "drainBatchSize": "1", "batchSoakMinutes": 3, "approval": {"required": True}}}}))
    run = rollouts.start_rollout(platform, {"stages": [{"groups": [{"clusters": [IDS[0]]}]}]}, actor="alice")
    [first] = platform.queue.take()
    run_step_message(first.message.to_json(), platform, message_id="m1")
    [pool_run] = [r for r in platform.runs.list_runs() if r.run_id != run.run_id]
    assert pool_run.kind == "blue-green"
    assert (pool_run.options["drainBatchSize"], pool_run.options["batchSoakMinutes"],
            pool_run.options["approval"]["required"]) == ("1", 3, True)


# ---- node-image rollouts: one image for all, held when AKS moved past the pin ---------------------

OLD_IMAGE, NEW_IMAGE, NEWER_IMAGE = (f"AKSUbuntu-2204gen2containerd-{r}" for r in ("202611.01.0", "202612.05.0",
                                                                                   "202701.09.0"))


def on_image(fake: FakeCluster, image: str) -> None:
    from dataclasses import replace

    from upgrade.domain.model import NODE_IMAGE_LABEL

    fake.pools[POOL] = replace(fake.pools[POOL], node_image_version=image)
    for name, node in list(fake.nodes.items()):
        labels = {**dict(node.labels), NODE_IMAGE_LABEL: image}
        fake.nodes[name] = replace(node, labels=tuple(labels.items()))


def on_old_image(fakes: dict[str, FakeCluster]) -> dict[str, FakeCluster]:
    for fake in fakes.values():
        fake.latest_image = NEW_IMAGE
        on_image(fake, OLD_IMAGE)
    return fakes


def node_images(fakes: dict[str, FakeCluster]) -> set[str]:
    from upgrade.domain.model import NODE_IMAGE_LABEL

    return {n.label(NODE_IMAGE_LABEL) for f in fakes.values() for n in f.nodes.values()}


def test_a_node_image_rollout_pins_one_image_and_ends_with_every_node_on_it():
    fakes = on_old_image(clusters())
    on_image(fakes[IDS[1]], NEW_IMAGE)  # already on the pin: nothing to do there
    fakes[IDS[1]].latest_image = NEWER_IMAGE  # even though AKS offers it a newer one
    platform = platform_for(fakes)
    run = rollouts.start_rollout(platform, {**three_stages(), "targetVersion": "nodeImage"}, actor="alice")
    assert run.target_version == "nodeImage"
    assert run.options["node_images"] == {"AKSUbuntu-2204gen2containerd": NEW_IMAGE}
    deliver_all(platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert view["status"] == "done", view["reason"]
    assert view["nodeImages"] == {"AKSUbuntu-2204gen2containerd": NEW_IMAGE}
    assert f"to node image {NEW_IMAGE}" in view["timeline"][0]["reason"]  # the history names the pin
    assert node_images(fakes) == {NEW_IMAGE}
    assert {f.pools[POOL].orchestrator_version for f in fakes.values()} == {"1.30.0"}  # no version change
    pool_runs = [r for r in platform.runs.list_runs(limit=100) if r.kind == "rolling"]
    assert {r.target_version for r in pool_runs} == {"nodeImage"} and len(pool_runs) == 3  # not IDS[1]'s pool
    assert {r.facts["target_node_image"] for r in pool_runs} == {NEW_IMAGE}


def test_clusters_with_no_common_image_are_refused_naming_them():
    fakes = on_old_image(clusters())
    on_image(fakes[IDS[3]], NEW_IMAGE)  # a region that already has next week's image, and this cluster took it
    fakes[IDS[3]].latest_image = NEWER_IMAGE
    fakes[IDS[2]].latest_image = OLD_IMAGE  # and one that has not received this week's yet
    platform = platform_for(fakes)
    with pytest.raises(InvalidInput) as caught:
        rollouts.start_rollout(platform, {**three_stages(), "targetVersion": "nodeImage"}, actor="alice")
    assert caught.value.field == "targetVersion", caught.value
    assert f"{IDS[3]} pool {POOL} (on {NEW_IMAGE}, latest {NEWER_IMAGE})" in str(caught.value)
    assert f"{IDS[2]} pool {POOL} (on {OLD_IMAGE}, latest {OLD_IMAGE})" in str(caught.value)
    assert platform.runs.list_runs() == []


def test_a_cluster_whose_latest_image_moved_past_the_pin_is_held_not_upgraded():
    fakes = on_old_image(clusters())
    platform = platform_for(fakes)
    run = rollouts.start_rollout(platform, {**three_stages(approval=True), "targetVersion": "nodeImage"},
                                 actor="alice")
    deliver_until(platform, run.run_id, "awaiting-approval")
    fakes[IDS[3]].latest_image = NEWER_IMAGE  # AKS publishes next week's image for prod's region meanwhile
    rollouts.decide_rollout(platform, run.run_id, "approve", {}, actor="bob")
    deliver_all(platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert (view["status"], view["runStatus"]) == ("halted", "paused"), view["reason"]
    why = (f"pool {POOL} can no longer reach the pinned node image {NEW_IMAGE}: it runs {OLD_IMAGE} and AKS now "
           f"offers it {NEWER_IMAGE}")
    assert "held, not upgraded" in view["reason"] and why in view["reason"]
    [prod] = view["stages"][2]["groups"][0]["clusters"]
    assert (prod["status"], prod["runs"]) == ("held", {}) and why in prod["reason"]
    assert fakes[IDS[3]].calls["begin_upgrade_node_image"] == 0  # never upgraded past the pin
    [alert] = [a for a in platform.alerts.published if a.kind == "rollout.halted"]
    assert why in alert.summary and alert.severity == "error"
    # resume checks it again: still past the pin, held again
    rollouts.decide_rollout(platform, run.run_id, "resume", {}, actor="bob")
    deliver_all(platform)
    assert rollouts.rollout_view(platform, run.run_id)["status"] == "halted"
    rollouts.decide_rollout(platform, run.run_id, "skip", {"cluster": IDS[3], "reason": "next rollout"}, actor="bob")
    rollouts.decide_rollout(platform, run.run_id, "resume", {}, actor="bob")
    deliver_all(platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert view["status"] == "done", view["reason"]
    assert node_images({c: f for c, f in fakes.items() if c != IDS[3]}) == {NEW_IMAGE}


def test_a_run_that_overshot_the_pin_is_caught_by_the_gate_naming_the_nodes():
    fakes = on_old_image(clusters())
    late = fakes[IDS[1]]
    upgrade = late.begin_upgrade_node_image

    def published_meanwhile(cluster, pool):  # AKS publishes between the rollout's check and the upgrade
        late.latest_image = NEWER_IMAGE
        upgrade(cluster, pool)

    late.begin_upgrade_node_image = published_meanwhile
    platform = platform_for(fakes)
    run = rollouts.start_rollout(platform, {**three_stages(failureThreshold=2), "targetVersion": "nodeImage"},
                                 actor="alice")
    view = deliver_until(platform, run.run_id, "gate-blocked")
    assert f"{IDS[1]}: node(s) not on the rollout's node image: aks-{POOL}-1-1 ({NEWER_IMAGE})" in view["reason"]
    assert view["stage"] == 1 and fakes[IDS[3]].calls["begin_upgrade_node_image"] == 0


def test_a_pool_run_that_waited_while_aks_published_a_newer_image_fails_rather_than_overshoot_the_pin():
    fakes = on_old_image(clusters())
    platform = platform_for(fakes)
    run = rollouts.start_rollout(platform, {"stages": [{"name": "dev", "groups": [{"clusters": [IDS[0]]}]}],
                                            "targetVersion": "nodeImage"}, actor="alice")
    [tick] = platform.queue.take()
    run_step_message(tick.message.to_json(), platform, message_id=str(uuid.uuid4()))  # the pool's run starts
    [pool_run] = [r for r in platform.runs.list_runs(limit=100) if r.kind == "rolling"]
    assert pool_run.facts["target_node_image"] == NEW_IMAGE  # the run carries the pin from its start
    fakes[IDS[0]].latest_image = NEWER_IMAGE  # published while the run waits (for its maintenance window, say)
    deliver_all(platform)
    view = rollouts.rollout_view(platform, run.run_id)
    assert view["status"] == "halted", view["reason"]
    assert f"this run is for node image {NEW_IMAGE}, but AKS now offers it {NEWER_IMAGE}" in view["reason"]
    assert fakes[IDS[0]].calls["begin_upgrade_node_image"] == 0 and node_images(fakes) == {OLD_IMAGE}


def one_stage(cluster: str, **plan: object) -> dict:
    return {"stages": [{"name": "dev", "groups": [{"clusters": [cluster]}]}], **plan}


@pytest.mark.parametrize("node_image", [False, True])
def test_a_pools_active_run_that_goes_elsewhere_is_not_taken_as_the_rollouts(node_image):
    from upgrade.services.rolling import start_rolling_run

    fakes = on_old_image(clusters(upgrades={"1.30.0": ["1.30.9", "1.31.7"]}))
    platform = platform_for(fakes)
    # someone's run on the pool: to another version, or a node image run not fixed on the pin
    theirs = start_rolling_run(platform, cluster=IDS[0], pool=POOL, target_version="nodeImage" if node_image else "1.30.9")
    platform.queue.take()  # it waits (its window, say)
    run = rollouts.start_rollout(platform, one_stage(IDS[0], **({"targetVersion": "nodeImage"} if node_image else {})),
                                 actor="alice")
    deliver_until(platform, run.run_id, "halted")
    view = rollouts.rollout_view(platform, run.run_id)
    [cluster] = view["stages"][0]["groups"][0]["clusters"]
    assert cluster["status"] == "failed" and cluster["runs"] == {}
    assert f"has another active run, rolling run {theirs.run_id} (to " in cluster["reason"]
    assert (f"no recorded target, not {NEW_IMAGE}" if node_image else "1.30.9, not 1.31.7") in cluster["reason"]


@pytest.mark.parametrize("pinned", [False, True])
def test_a_blue_green_node_image_run_is_taken_as_the_rollouts_only_when_pinned(pinned):
    from upgrade.domain.runs import RunRecord

    fakes = on_old_image(clusters())
    platform = platform_for(fakes)
    now = platform.clock.now()
    # someone's blue-green node image run to the image the rollout pins; unpinned, its green would be
    # created on whatever image AKS offers by then (it may overshoot the pin)
    image = {"from": OLD_IMAGE, "to": NEW_IMAGE, **({"pinned": True} if pinned else {})}
    platform.runs.create(RunRecord(run_id="bg-theirs", kind="blue-green", cluster=IDS[0], pool=POOL,
                                   target_version="nodeImage", state="bluegreen.wait_green_ready",
                                   status="running", created_at=now, updated_at=now, facts={"nodeImage": image}))
    run = rollouts.start_rollout(platform, one_stage(IDS[0], targetVersion="nodeImage"), actor="alice")
    for sent in platform.queue.take():  # the rollout's first tick: it starts the cluster
        run_step_message(sent.message.to_json(), platform, message_id=str(uuid.uuid4()))
    [cluster] = rollouts.rollout_view(platform, run.run_id)["stages"][0]["groups"][0]["clusters"]
    if pinned:
        assert cluster["status"] == "running" and cluster["runs"] == {POOL: "bg-theirs"}
    else:
        assert cluster["status"] == "failed" and cluster["runs"] == {}
        assert f"has another active run, blue-green run bg-theirs (to no recorded target, not {NEW_IMAGE})" \
            in cluster["reason"]
