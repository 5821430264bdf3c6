"""Moving the workloads to green and committing: cordon blue, drain it batch by batch with soaks,
validate green, the final soak, the approval window, and ``commit`` (delete blue, and nothing
else; refused while it would lose capacity or availability)."""

from __future__ import annotations

from collections.abc import Mapping

from upgrade.domain.bluegreen import (
    batch_count,
    batch_facts,
    batch_nodes,
)
from upgrade.domain.model import AgentPool
from upgrade.domain.steps import Outcome
from upgrade.domain.validation import (
    BlueOrigin,
    ValidationReport,
    blue_origin_workloads,
    check_workloads,
)
from upgrade.ports import Kube
from upgrade.services.bluegreen.checks import run_validation
from upgrade.services.bluegreen.flow import (
    advance,
    blue_of,
    current_time,
    drain_nodes,
    green_of,
    parse_time,
    pool_nodes,
    require_owned,
    run_options,
    soak_then,
)
from upgrade.services.step_runner import StepContext


def cordon_blue(ctx: StepContext) -> Outcome:
    """Cordon every schedulable blue node; record blue's workloads and the drain batches. The nodes
    this run cordons are those schedulable now, and those schedulable when green became ready (a
    redelivery after a crash between the cordon and the record finds them all cordoned)."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    kube = ctx.platform.kube(cluster)
    require_owned(ctx, "cordon", blue_of(ctx))
    nodes = pool_nodes(kube, blue_of(ctx))
    known = set(run.facts.get("blueSchedulable") or [])
    cordoned_by_run = sorted(known | {n.name for n in nodes if n.name not in known and not n.unschedulable})
    for node in nodes:
        if not node.unschedulable:
            kube.set_unschedulable(node.name, True)
    names = [n.name for n in nodes]
    origin = blue_origin_workloads(kube.list_pods(), names, kube.list_workloads())
    batches = batch_facts(names, run_options(run).drain_batch_size, cordoned_by_run)
    # blueSchedulable (recorded as green became ready) is folded into blueNotCordonedByRun: one node list stays
    return advance(ctx, "cordoned", reason=f"cordoned {len(names)} blue node(s); {batch_count(batches)} drain batch(es)",
                    facts={**batches, "blueSchedulable": None, "blueOrigin": [o.to_dict() for o in origin]})


def drain_batch(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    options = run_options(run)
    index = int(run.facts.get("batchIndex", 0))
    count = batch_count(run.facts)
    if index >= count:
        return advance(ctx, "drained", reason="no blue node left to drain")
    require_owned(ctx, "drain", blue_of(ctx))
    drained = drain_nodes(ctx, batch_nodes(run.facts, index), options)
    label = f"batch {index + 1}/{count}: "
    if drained.event == "drained":
        return advance(ctx, "drained", reason=label + drained.reason,
                        facts={"batchIndex": index + 1, "drainBlockers": []})
    if drained.event == "blocked":
        return advance(ctx, "blocked", reason=label + drained.reason, retry_after=drained.retry_after,
                        args={"drain": drained.carried}, facts={"drainBlockers": drained.blockers})
    cause = label + drained.reason
    return advance(ctx, drained.event, reason=cause, facts={
        "rollbackAfterFailure": True, "rollbackCause": cause, "drainBlockers": drained.blockers,
    })


def batch_soak(ctx: StepContext) -> Outcome:
    return soak_then(ctx, lambda: advance(ctx, "soaked", reason="batch soak over"))


def _validation_failed(ctx: StepContext, report: ValidationReport) -> Outcome:
    cause = f"validation failed: {report.summary}"
    return advance(ctx, "failed", reason=cause, facts={
        "validation": report.to_facts(), "rollbackAfterFailure": True, "rollbackCause": cause,
    })


def validate(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    options = run_options(run)
    report = run_validation(ctx)
    if report.passed:
        return advance(ctx, "passed", reason=report.summary, facts={"validation": report.to_facts()})
    since = parse_time(ctx.message.args.get("since")) or current_time(ctx)
    waited = (current_time(ctx) - since).total_seconds()
    if report.pending and waited < options.validation.ready_timeout_minutes * 60:
        return advance(ctx, "pending", reason=f"waiting for green: {report.summary}",
                        facts={"validation": report.to_facts()})
    return _validation_failed(ctx, report)


def final_soak(ctx: StepContext) -> Outcome:
    def revalidate() -> Outcome:
        report = run_validation(ctx)
        if report.passed:
            return advance(ctx, "passed", reason=f"final soak over; {report.summary}",
                            facts={"validation": report.to_facts()})
        return _validation_failed(ctx, report)

    return soak_then(ctx, revalidate)


def await_decision(ctx: StepContext) -> Outcome:
    """Runs when the approval window closes (a decision moves the run before that)."""
    run = ctx.run
    assert run is not None
    deadline = parse_time(run.facts.get("decisionDeadline"))
    now = current_time(ctx)
    if deadline is not None and now < deadline:
        return advance(ctx, "waiting", reason=run.reason, retry_after=(deadline - now).total_seconds())
    validated = bool((run.facts.get("validation") or {}).get("passed")) and not run.facts.get("commitRefused")
    cause = f"no decision before the approval timeout ({run_options(run).approval.on_timeout} on timeout)"
    return advance(ctx, "timed_out", reason=cause,
                    facts={"rollbackAfterFailure": not validated, "rollbackCause": cause})


def commit(ctx: StepContext) -> Outcome:
    """Delete the blue pool, and nothing else; refuse when it would lose capacity or availability."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    aks, kube = ctx.platform.aks(cluster), ctx.platform.kube(cluster)
    blue_name, green_name = blue_of(ctx), green_of(ctx)
    pools = {p.name: p for p in aks.list_pools(cluster)}
    blue = pools.get(blue_name)
    if blue is None:
        return advance(ctx, "committed", reason=f"blue pool {blue_name} deleted; {green_name} is the pool now",
                        facts={"committed": True})
    if blue.provisioning_state == "Deleting":
        return advance(ctx, "deleting", reason=f"deleting blue pool {blue_name}")
    refusal = _commit_refusal(ctx, kube, pools, blue, green_name)
    if refusal:
        return advance(ctx, "refused", reason=f"commit refused: {refusal}", facts={"commitRefused": refusal})
    require_owned(ctx, "delete", blue_name, blue.tag_map())
    aks.begin_delete_pool(cluster, blue_name)
    return advance(ctx, "deleting", reason=f"deleting blue pool {blue_name}",
                    facts={"blueDeleteRequestedAt": current_time(ctx).isoformat()})


def _commit_refusal(ctx: StepContext, kube: Kube, pools: Mapping[str, AgentPool], blue: AgentPool,
                    green_name: str) -> str:
    assert ctx.run is not None
    green = pools.get(green_name)
    if green is None or green.provisioning_state != "Succeeded":
        return f"green pool {green_name} is {'missing' if green is None else green.provisioning_state}"
    if blue.mode == "System" and not any(p.mode == "System" for n, p in pools.items() if n != blue.name):
        return f"{blue.name} is the last System pool"
    blue_nodes = [n.name for n in pool_nodes(kube, blue.name)]
    green_nodes = [n.name for n in pool_nodes(kube, green_name)]
    origin = [BlueOrigin.from_dict(o) for o in ctx.run.facts.get("blueOrigin", [])]
    check = check_workloads(origin, kube.list_workloads(), kube.list_pods(),
                            blue_nodes=blue_nodes, green_nodes=green_nodes)
    return "" if check.passed else f"blue-origin workloads not ready on green: {check.reason}"
