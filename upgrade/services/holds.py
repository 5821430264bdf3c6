"""Application holds applied to the product's drains (see upgrade.domain.holds and docs/holds.md).

Before a step drains nodes it asks ``hold_gate``: the blue-green drain batch (its nodes, before the
batch's first eviction), a rolling run's version or node image write (every node of the pool: AKS
will drain them all) and a remediation's plan (its node). A held node makes the step wait as a
delayed message (looking again every ``pollSeconds`` of the pool policy) with ``reason`` "held: node … held by … (…): why"; the run's ``holdWait`` fact says
since when and which holds, ``holds`` keeps every hold the run waited for. Past the policy's
maximum the run keeps waiting with an alert whose severity rises, or proceeds, as the policy says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.bluegreen import batch_nodes
from upgrade.domain.holds import Hold, decide, holds_on
from upgrade.domain.model import ClusterRef, pool_selector
from upgrade.domain.steps import Outcome, Retry
from upgrade.ports import Platform

PER_NODE_READS = 10  # up to this many nodes, their pods are read node by node (a field selector each)


def _batch_nodes(ctx: Any) -> list[str] | None:
    if ctx.message.args.get("drain"):
        return None  # the batch has started: a hold found now does not cut it
    index = int(ctx.run.facts.get("batchIndex", 0))
    return batch_nodes(ctx.run.facts, index) or None


def _pool_nodes(ctx: Any) -> list[str] | None:
    kube = ctx.platform.kube(ctx.cluster)
    return [n.name for n in kube.list_nodes(label_selector=pool_selector(ctx.message.pool)) if n.pool == ctx.message.pool]


def _remediated_node(ctx: Any) -> list[str] | None:
    node = ctx.run.options.get("node")
    return [node] if node else None


# step -> the nodes it is about to drain (None: nothing to hold now)
HELD_STEPS: dict[str, Callable[[Any], list[str] | None]] = {
    "bluegreen.drain_batch": _batch_nodes,
    "rolling.set_version": _pool_nodes,
    "remediation.plan": _remediated_node,
}


def holds_for(platform: Platform, cluster: ClusterRef, pool: str | None, nodes: Sequence[str]) -> list[Hold]:
    """Every hold on ``nodes`` (node annotations, pod annotations, the pool policy's blocking pods)."""
    if not nodes:
        return []
    kube = platform.kube(cluster)
    wanted = set(nodes)
    selectors = platform.policy.for_pool(cluster, pool).holds.selectors()
    node_objects = [n for n in kube.list_nodes() if n.name in wanted]
    if len(wanted) <= PER_NODE_READS:
        pods = [p for name in sorted(wanted) for p in kube.list_pods(node=name)]
    else:
        pods = [p for p in kube.list_pods() if p.node in wanted]
    return [h for node in node_objects for h in holds_on(node, pods, selectors)]


def hold_gate(ctx: Any, execute: Callable[[], Outcome]) -> Outcome:
    run = ctx.run
    pick = HELD_STEPS.get(ctx.message.step)
    nodes = pick(ctx) if pick is not None and run is not None else None
    if not nodes:
        return execute()
    holds = holds_for(ctx.platform, ctx.cluster, ctx.message.pool, nodes)
    waiting = run.facts.get("holdWait") or {}
    if not holds:
        return _cleared(run, execute()) if waiting else execute()
    now: datetime = ctx.platform.clock.now()
    since = datetime.fromisoformat(waiting["since"]) if waiting.get("since") else now
    pool_policy = ctx.platform.policy.for_pool(ctx.cluster, ctx.message.pool)
    policy, policy_poll = pool_policy.holds, pool_policy.poll_seconds
    decision = decide(holds, since, now, max_minutes=policy.max_hold_minutes, on_expiry=policy.on_expiry)
    seen = {(h["node"], h["source"]) for h in run.facts.get("holds", [])}
    recorded = [*run.facts.get("holds", []), *[h.to_public() for h in holds if (h.node, h.source) not in seen]]
    if decision.severity != waiting.get("alerted") or not waiting:
        _alert(ctx, holds, decision.reason, decision.severity)
    if not decision.wait:
        outcome = execute()
        return replace(outcome, facts={"holdWait": None, "holds": recorded,
                                       "holdsIgnored": [h.to_public() for h in holds], **outcome.facts})
    record = {"since": since.isoformat(), "step": ctx.message.step, "nodes": sorted({h.node for h in holds}),
              "alerted": decision.severity}
    return Retry(policy_poll, reason=decision.reason, facts={"holdWait": record, "holds": recorded})


def _cleared(run: Any, outcome: Outcome) -> Outcome:
    return replace(outcome, facts={"holdWait": None, **outcome.facts})


def _alert(ctx: Any, holds: Sequence[Hold], reason: str, severity: str) -> None:
    run = ctx.run
    ctx.platform.alerts.publish(Alert(
        kind="node.held", severity=severity, cluster=ctx.cluster.arm_id, pool=ctx.message.pool,
        node=holds[0].node, run_id=run.run_id,
        summary=f"Run {run.run_id} waits before draining: {reason}",
        details={"holds": [h.to_public() for h in holds], "step": ctx.message.step},
        dedup_key=f"{run.run_id}|held|{severity}",
    ))


def pool_holds(platform: Platform, cluster: ClusterRef, pool: str) -> list[dict[str, Any]]:
    """The holds on a pool's nodes now (what preflight shows)."""
    kube = platform.kube(cluster)
    nodes = [n.name for n in kube.list_nodes(label_selector=pool_selector(pool)) if n.pool == pool]
    return [h.to_public() for h in holds_for(platform, cluster, pool, nodes)]
