"""A blue-green run on a 1,000-node pool with 30,000 pods: its step messages stay under the queue's
message limit and its run record under Azure Table's limits, because neither carries per-node or
per-pod drain progress (each pass reads the pods again from the cluster)."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_bluegreen_steps import (  # noqa: F401 (bluegreen_registered: the autouse fixture)
    STEP_PREFIX,
    Driver,
    bluegreen_registered,
    make_platform,
    new_cluster,
    start,
)
from upgrade.adapters.tables import MAX_ENTITY_BYTES, _run_entity, check_entity_size, entity_bytes
from upgrade.domain.bluegreen import batch_count, batch_nodes, blue_cordoned_by_run
from upgrade.domain.steps import MAX_MESSAGE_BYTES, StepMessage
from upgrade.services.bluegreen.flow import MAX_RECORDED_BLOCKERS, carried_drain

NODES = 1000
PODS = 30_000
REPLICAS = 10
GOAL_ENTITY_BYTES = 32 * 1024  # the README's goal for the largest run entity, at 200 nodes and at 1,000


def large_cluster():
    cluster = new_cluster()
    cluster.add_pool("system", 1, with_nodes=True, mode="System")
    cluster.add_pool("blue", NODES)
    blue = [f"aks-blue-12345678-vmss{i:06x}" for i in range(NODES)]  # names as long as AKS gives them
    for name in blue:
        cluster.add_node(name, "blue")
    for w in range(PODS // REPLICAS):
        cluster.add_deployment(f"team-{w % 50:02d}", f"service-{w:05d}", replicas=REPLICAS,
                               place_on=[blue[(w * REPLICAS + r) % NODES] for r in range(REPLICAS)])
    cluster.graceful_evictions = True  # evicted pods stay terminating: the drain takes several passes
    return cluster, blue


def test_a_1000_node_30000_pod_drain_keeps_its_messages_and_run_record_within_the_limits():
    # GIVEN a 1,000-node blue pool running 30,000 pods, batches of 10 % (100 nodes, 3,000 pods),
    # and a PDB refusing the eviction of one pod on each node of the first batch
    cluster, blue = large_cluster()
    first_batch = sorted(blue)[:100]
    one_per_node = {p.node: p.key for p in cluster.pods.values() if p.node in first_batch}
    cluster.blocked = set(one_per_node.values())
    assert len(cluster.blocked) == 100
    platform = make_platform(cluster)
    run = start(platform, {"drainBatchSize": "10%"})
    sizes: list[tuple[str, int]] = []

    def measure(message: StepMessage) -> StepMessage:
        sizes.append((message.step, len(message.to_json().encode("utf-8"))))
        return message

    driver = Driver(platform, tamper=measure)
    # WHEN the run gets to the first batch and drains it for three passes (pods terminating, PDB holds)
    live = platform.runs.get(run.run_id)
    for _ in range(40):
        driver.run(run_id=run.run_id, max_deliveries=1)
        live = platform.runs.get(run.run_id)
        if live.state == STEP_PREFIX + "drain_batch" and live.attempt >= 4:
            break
    assert (live.state, live.status) == (STEP_PREFIX + "drain_batch", "running"), live.reason
    assert live.attempt >= 4 and cluster.calls["evict"] >= 3000
    # THEN every step message stayed under the queue limit, the drain's included
    assert [step for step, _ in sizes].count(STEP_PREFIX + "drain_batch") >= 3
    assert max(size for _, size in sizes) <= MAX_MESSAGE_BYTES
    # and the live message carries no node or pod: when the drain began and the DaemonSets known
    message = StepMessage.model_validate_json(live.outbox["message"])
    body = message.to_json()
    assert len(body.encode("utf-8")) < 1024
    assert not any(node in body for node in first_batch) and "service-" not in body
    assert carried_drain(message.args["drain"]).started_at is not None
    # and the run record fits Azure Table's limits (the fake store checks each write as the adapter does)
    entity = _run_entity(live)
    check_entity_size(entity, "run")
    assert entity_bytes(entity) < MAX_ENTITY_BYTES
    assert entity_bytes(entity) <= GOAL_ENTITY_BYTES
    # with one list of blue's nodes; batches and the nodes the run cordoned derived from it
    facts_text = json.dumps(live.facts)
    assert facts_text.count(first_batch[0]) == 1
    assert batch_count(live.facts) == 10 and batch_nodes(live.facts, 0) == first_batch
    assert blue_cordoned_by_run(live.facts) == sorted(blue)
    # and the pods holding the drain up are recorded as the first few, the reason counts the nodes
    assert 0 < len(live.facts["drainBlockers"]) <= MAX_RECORDED_BLOCKERS
    assert "100 nodes not drained yet" in live.reason


@pytest.mark.parametrize(
    ("carried", "started_at", "daemonsets"),
    [
        (None, None, {}),
        ({"started_at": 100.0, "daemonsets": {"kube-system/kube-proxy": True}}, 100.0,
         {"kube-system/kube-proxy": True}),
        # a message from before, node name -> that node's state: its earliest start, every DaemonSet known
        ({"aks-blue-0": {"started_at": 120.0, "daemonsets": {"a/x": True}, "evicted": {"shop/a": "u1"}},
          "aks-blue-1": {"started_at": 100.0, "daemonsets": {"a/y": False}}, "aks-blue-2": None}, 100.0,
         {"a/x": True, "a/y": False}),
    ],
    ids=["first pass", "carried", "per-node form of before"],
)
def test_the_carried_drain_progress_is_its_start_and_the_daemonsets(carried, started_at, daemonsets):
    state = carried_drain(carried)
    assert (state.started_at, dict(state.daemonsets), dict(state.evicted), dict(state.held)) == (
        started_at, daemonsets, {}, {})


@pytest.mark.parametrize("carried", ["half", {"started_at": True}, {"started_at": 1.0, "daemonsets": {"a/x": "yes"}},
                                     {"aks-blue-0": "half"}])
def test_an_unreadable_drain_progress_is_refused(carried):
    with pytest.raises((TypeError, ValueError, AttributeError)):
        carried_drain(carried)
