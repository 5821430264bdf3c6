"""Before anything changes, and the first change: ``preflight`` (blue exists below the target,
the target is offered, the green name is free; quota and PDB report), ``create_green`` (only if
absent) and ``wait_green_ready``."""

from __future__ import annotations

from upgrade.domain.bluegreen import quota_estimate
from upgrade.domain.model import AgentPool, ClusterRef
from upgrade.domain.pdb import eviction_blockers
from upgrade.domain.pool_clone import clone_differences, green_properties, pool_arm_properties
from upgrade.domain.pool_names import choose_green_name, green_tags, logical_name
from upgrade.domain.steps import Outcome
from upgrade.domain.versions import version_key
from upgrade.errors import Conflict, InvalidInput
from upgrade.ports import Aks
from upgrade.services.bluegreen.flow import (
    NotOwned,
    advance,
    blue_of,
    current_time,
    find_pool,
    green_of,
    owns,
    parse_time,
    pool_nodes,
    run_options,
)
from upgrade.services.step_runner import StepContext


def green_clone(blue: AgentPool, target: str, *, run_id: str, logical: str) -> dict:
    """Green's ARM properties: blue's whole object at ``target``, tagged with the run."""
    return green_properties(pool_arm_properties(blue), count=blue.count, target_version=target,
                            tags=green_tags(blue.tag_map(), run_id, logical))


def plan_green(aks: Aks, cluster: ClusterRef, blue: AgentPool, target: str, *, naming: str,
               run_id: str) -> tuple[str, str, dict]:
    """(green name, logical name, green's ARM properties) for blue at ``target``: the name checked
    against every pool of the cluster; InvalidInput when no free, valid name exists."""
    logical = logical_name(blue.name, blue.tag_map())
    taken = {p.name for p in aks.list_pools(cluster)}
    green = choose_green_name(cluster.arm_id, blue.name, target, os_type=blue.os_type, naming=naming,
                              logical=logical, taken=taken)
    return green, logical, green_clone(blue, target, run_id=run_id, logical=logical)


def preflight(ctx: StepContext) -> Outcome:
    """Blue exists below the target, the target is offered, a free green name; report quota, PDBs
    and every property where green will differ from blue."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None and run.target_version
    aks, kube = ctx.platform.aks(cluster), ctx.platform.kube(cluster)
    blue = find_pool(aks, cluster, blue_of(ctx))
    if blue is None:
        return advance(ctx, "refused", reason=f"pool {blue_of(ctx)} not found in {cluster.name}")
    target = run.target_version
    image = run.facts.get("nodeImage")  # a node image run: green at blue's version, on the latest image
    if image and version_key(blue.orchestrator_version) != version_key(target):
        return advance(ctx, "refused", reason=f"pool {blue.name} runs {blue.orchestrator_version}, no longer {target}")
    if not image and version_key(blue.orchestrator_version) >= version_key(target):
        return advance(ctx, "refused", reason=f"pool {blue.name} runs {blue.orchestrator_version}, "
                                               f"not lower than the target {target}")
    offered = [target] if image else aks.available_upgrades(cluster, blue.name)
    if target not in offered:
        return advance(ctx, "refused", reason=f"{target} is not offered by pool {blue.name}'s upgrade profile "
                                               f"(offered: {', '.join(offered) or 'none'})")
    try:
        green, logical, properties = plan_green(aks, cluster, blue, target, naming=run_options(run).naming,
                                                run_id=run.run_id)
    except InvalidInput as exc:
        return advance(ctx, "refused", reason=exc.problem)
    nodes = pool_nodes(kube, blue.name)
    names = {n.name for n in nodes}
    pods_on_blue = [p for p in kube.list_pods() if p.node in names]
    blockers = eviction_blockers(pods_on_blue, kube.list_pdbs())
    quota = quota_estimate(blue)
    differences = clone_differences(pool_arm_properties(blue), properties)
    reason = (f"green pool {green} will clone {blue.name} at {target}; quota while both exist: "
              f"+{quota['extraNodes']} nodes, +{quota['extraVcpus'] or 'an unknown number of'} vCPUs; "
              f"{len(blockers)} pod(s) a PDB blocks now; green differs from blue in "
              f"{', '.join(d['property'] for d in differences) or 'nothing'}")
    return advance(ctx, "passed", reason=reason, facts={
        "bluePool": {"name": blue.name, "version": blue.orchestrator_version, "count": blue.count,
                     "mode": blue.mode, "vmSize": blue.vm_size},
        "greenPool": green,  # recorded before the create call: the only pool this run may create or delete
        "logicalPool": logical,
        "cloneDifferences": differences,
        "quota": quota,
        "pdbBlockers": [b.to_public() for b in blockers],
    })


def create_green(ctx: StepContext) -> Outcome:
    """Create the green pool if absent: a clone of blue at the target, tagged with the run."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None and run.target_version
    aks = ctx.platform.aks(cluster)
    green = green_of(ctx)
    existing = find_pool(aks, cluster, green)
    if existing is None:
        blue = aks.get_pool(cluster, blue_of(ctx))
        image = run.facts.get("nodeImage") or {}
        if image.get("pinned"):
            # green gets AKS's latest image when created: once that moved past the pinned one (a
            # rollout's; the run may have waited days for its window) green would overshoot it
            latest = aks.latest_node_image_version(cluster, blue.name)
            if latest != image["to"]:
                cause = (f"green would get node image {latest or 'unknown'}, not {image['to']} this run is for "
                         "(a new pool gets the latest): not created")
                return advance(ctx, "error", reason=cause,
                               facts={"rollbackAfterFailure": True, "rollbackCause": cause})
        logical = run.facts.get("logicalPool") or logical_name(blue.name, blue.tag_map())
        properties = green_clone(blue, run.target_version, run_id=run.run_id, logical=logical)
        try:
            aks.begin_create_pool(cluster, green, properties)  # only if absent (If-None-Match: *)
        except Conflict:
            existing = find_pool(aks, cluster, green)  # someone created it meanwhile: whose is it?
            if existing is None:
                raise
        else:
            return advance(ctx, "requested", reason=f"creating green pool {green} ({blue.count} x {blue.vm_size}, "
                                                    f"{run.target_version}), a clone of {blue.name}",
                           facts={"greenRequestedAt": current_time(ctx).isoformat(), "greenOwned": True})
    if not owns(existing, run.run_id):
        raise NotOwned(f"pool {green} exists but was not created by run {run.run_id} (no aks-upgrade-run tag "
                       "naming it): not touching it", pool=green)
    return advance(ctx, "requested", reason=f"green pool {green} already requested ({existing.provisioning_state})",
                   facts={"greenOwned": True})


def wait_green_ready(ctx: StepContext) -> Outcome:
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    options = run_options(run)
    green = green_of(ctx)
    pool = find_pool(ctx.platform.aks(cluster), cluster, green)
    started = parse_time(run.facts.get("greenRequestedAt")) or current_time(ctx)
    late = (current_time(ctx) - started).total_seconds() > options.green_ready_timeout_minutes * 60
    if pool is not None and pool.provisioning_state == "Failed":
        return advance(ctx, "create_failed", reason=f"green pool {green} failed: {pool.error or 'no reason given'}",
                        facts={"rollbackAfterFailure": True, "rollbackCause": f"green pool {green} failed to create"})
    nodes = pool_nodes(ctx.platform.kube(cluster), green) if pool is not None else []
    ready = [n for n in nodes if n.ready]
    if pool is not None and pool.provisioning_state == "Succeeded" and len(ready) >= pool.count == len(nodes):
        # Blue's schedulable nodes as the cordon starts, not as preflight saw them: a node someone
        # cordons while green is created is not this run's to uncordon on a rollback.
        blue = pool_nodes(ctx.platform.kube(cluster), blue_of(ctx))
        return advance(ctx, "ready", reason=f"green pool {green}: {len(ready)} node(s) Ready",
                        facts={"cordonStarted": True, "blueSchedulable": [n.name for n in blue if not n.unschedulable]})
    state = pool.provisioning_state if pool else "not visible yet"
    if late:
        return advance(ctx, "timed_out", reason=f"green pool {green} not ready after "
                                                  f"{options.green_ready_timeout_minutes:g} min ({state})",
                        facts={"rollbackAfterFailure": True, "rollbackCause": "green pool not ready in time"})
    return advance(ctx, "pending", reason=f"green pool {green}: {state}, {len(ready)}/{pool.count if pool else '?'} "
                                           "node(s) Ready")
