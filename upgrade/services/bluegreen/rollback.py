"""The way back before commit: uncordon the blue nodes this run cordoned, drain green, delete
green (only the pool this run created), wait until it is gone."""

from __future__ import annotations

from upgrade.domain.bluegreen import blue_cordoned_by_run
from upgrade.domain.steps import Outcome
from upgrade.errors import PermanentError
from upgrade.services.bluegreen.flow import (
    advance,
    blue_of,
    drain_nodes,
    find_pool,
    pool_nodes,
    require_owned,
    run_options,
)
from upgrade.services.step_runner import StepContext


def rollback(ctx: StepContext) -> Outcome:
    assert ctx.run is not None
    return advance(ctx, "started", reason=f"rolling back: {ctx.run.facts.get('rollbackCause', 'asked')}")


def uncordon_blue(ctx: StepContext) -> Outcome:
    """Uncordon the blue nodes this run cordoned (nodes cordoned by others stay as they were)."""
    run = ctx.run
    assert run is not None
    if not run.facts.get("cordonStarted"):
        return advance(ctx, "uncordoned", reason="blue was never cordoned")
    kube = ctx.platform.kube(ctx.cluster)
    ours = set(blue_cordoned_by_run(run.facts))
    uncordoned = [n.name for n in pool_nodes(kube, blue_of(ctx)) if n.name in ours and n.unschedulable]
    for name in uncordoned:
        kube.set_unschedulable(name, False)
    return advance(ctx, "uncordoned", reason=f"uncordoned {len(uncordoned)} blue node(s)")


def drain_green(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    green = run.facts.get("greenPool")
    pool = find_pool(ctx.platform.aks(ctx.cluster), ctx.cluster, green) if green else None
    if pool is None:
        return advance(ctx, "drained", reason="no green pool to drain")
    require_owned(ctx, "drain", pool.name, pool.tag_map())  # never cordon a pool that only shares the name
    nodes = [n.name for n in pool_nodes(ctx.platform.kube(ctx.cluster), green)]
    if not nodes:
        return advance(ctx, "drained", reason="green has no nodes to drain")
    drained = drain_nodes(ctx, nodes, run_options(run))
    if drained.event == "drained":
        return advance(ctx, "drained", reason=f"green: {drained.reason}")
    if drained.event == "blocked":
        return advance(ctx, "blocked", reason=drained.reason, retry_after=drained.retry_after,
                        args={"drain": drained.carried}, facts={"greenDrainBlockers": drained.blockers})
    return advance(ctx, drained.event, reason=f"rollback stopped, both pools remain: {drained.reason}",
                    facts={"greenDrainBlockers": drained.blockers})


def delete_green(ctx: StepContext) -> Outcome:
    """Delete the green pool, only if this run created it (recorded name and the run's tag)."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    green = run.facts.get("greenPool")
    aks = ctx.platform.aks(cluster)
    pool = find_pool(aks, cluster, green) if green else None
    if pool is None:
        return advance(ctx, "requested", reason="no green pool to delete")
    require_owned(ctx, "delete", pool.name, pool.tag_map())
    if pool.provisioning_state == "Deleting":
        return advance(ctx, "requested", reason=f"green pool {green} is being deleted")
    aks.begin_delete_pool(cluster, green)
    return advance(ctx, "requested", reason=f"deleting green pool {green}")


def wait_green_deleted(ctx: StepContext) -> Outcome:
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    green = run.facts.get("greenPool")
    pool = find_pool(ctx.platform.aks(cluster), cluster, green) if green else None
    if pool is None:
        cause = run.facts.get("rollbackCause", "")
        return advance(ctx, "deleted", reason=f"rolled back ({cause}): workloads on blue, green deleted",
                        facts={"rolledBack": True})
    if pool.provisioning_state == "Failed":
        raise PermanentError(f"deleting green pool {green} failed: {pool.error or 'no reason given'}")
    return advance(ctx, "deleting", reason=f"green pool {green}: {pool.provisioning_state}")
