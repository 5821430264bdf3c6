"""Starting a blue-green run: the request checked against the cluster (pool, target version,
custom checks), one active run per pool, then the first step."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from upgrade.domain.bluegreen import (
    KIND,
)
from upgrade.domain.bluegreen_options import BlueGreenOptions
from upgrade.domain.model import AgentPool, ClusterRef, require_allowed_cluster
from upgrade.domain.pool_names import LOGICAL_TAG, logical_name
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.domain.versions import check_target_version, is_node_image
from upgrade.errors import Conflict, InvalidInput, NotFound
from upgrade.ports import Aks, Platform
from upgrade.services.bluegreen.checks import CUSTOM_CHECKS
from upgrade.services.bluegreen.flow import (
    STEP_PREFIX,
)
from upgrade.services.bluegreen.prepare import plan_green
from upgrade.services.outbox import create_run


def _node_image_target(aks: Aks, cluster: ClusterRef, pool: AgentPool,
                       pinned: str | None) -> tuple[str, dict[str, Any]]:
    """A node image run: green at blue's version with the latest image (a new pool gets it);
    ``pinned``: the only image the run may create green on (a rollout's pin; see create_green)."""
    latest = aks.latest_node_image_version(cluster, pool.name)
    if not latest or latest == pool.node_image_version:
        raise InvalidInput("upgrade request", "targetVersion",
                           f"pool {pool.name} is already on the latest node image ({pool.node_image_version})")
    if pinned and latest != pinned:
        raise InvalidInput("upgrade request", "targetVersion",
                           f"a new pool would get node image {latest}, not {pinned}")
    return pool.orchestrator_version, {"nodeImage": {"from": pool.node_image_version, "to": latest,
                                                     **({"pinned": True} if pinned else {})}}



def resolve_pool(aks: Aks, cluster: ClusterRef, name: str) -> AgentPool:
    """The pool ``name`` addresses: the pool of that name, else the live generation of the pool whose
    logical name it is (alternating naming: ``blue`` while the live pool is its twin)."""
    try:
        return aks.get_pool(cluster, name)
    except NotFound:
        generations = [p for p in aks.list_pools(cluster) if p.tag_map().get(LOGICAL_TAG) == name]
    if len(generations) == 1:
        return generations[0]
    if generations:
        raise Conflict(f"pool {name} has {len(generations)} generations now "
                       f"({', '.join(sorted(p.name for p in generations))}): name one of them")
    raise NotFound(f"pool {name} not found in cluster {cluster.name}")


def _refuse_if_active(platform: Platform, cluster: ClusterRef, pools: set[str]) -> None:
    for name in sorted(pools):
        active = platform.runs.find_active(cluster.arm_id, name)
        if active is not None:
            raise Conflict(f"run {active.run_id} is already active on pool {name}", code=active.run_id)


def start_bluegreen_run(platform: Platform, *, cluster: str, pool: str, target_version: str,
                        options: Mapping[str, Any] | None, actor: str, node_image: str | None = None) -> RunRecord:
    """Validate the request against the cluster, create the run (one active run per pool) and
    send its first step. Raises InvalidInput, NotAllowed, NotFound or Conflict(code=active run id).
    ``node_image``: a node image run's image fixed at its start (a rollout's pin), the only one green
    may be created on."""
    ref = ClusterRef.parse(cluster, what="upgrade request", field="cluster")
    require_allowed_cluster(ref, platform.allowed_clusters)
    if not isinstance(pool, str) or not pool:
        raise InvalidInput("upgrade request", "pool", "must name the agent pool to upgrade")
    _refuse_if_active(platform, ref, {pool})  # a busy pool answers 409 before anything is validated
    aks = platform.aks(ref)
    blue = resolve_pool(aks, ref, pool)
    _refuse_if_active(platform, ref, {blue.name, logical_name(blue.name, blue.tag_map())})
    parsed = BlueGreenOptions.parse(options)
    unknown = [n for n in parsed.validation.custom_checks if n not in CUSTOM_CHECKS]
    if unknown:
        raise InvalidInput("options", "options.validation.customChecks",
                           f"no check registered as {', '.join(unknown)} "
                           f"(registered: {', '.join(sorted(CUSTOM_CHECKS)) or 'none'})")
    facts: dict[str, Any] = {}
    if is_node_image(target_version):
        target, facts = _node_image_target(aks, ref, blue, node_image)
    else:
        target = check_target_version(target_version, pool=blue.name, current=blue.orchestrator_version,
                                      offered=aks.available_upgrades(ref, blue.name))
    green, logical, _ = plan_green(aks, ref, blue, target, naming=parsed.naming, run_id="")  # a free name, or 400
    pool = blue.name
    now = platform.clock.now()
    run = RunRecord(
        run_id=f"bg-{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}", kind=KIND, cluster=ref.arm_id, pool=pool,
        state=STEP_PREFIX + "preflight", status="running", created_at=now, updated_at=now,
        target_version=target, options=parsed.for_storage(), facts=facts, reason=f"started by {actor}",
    )
    first = StepMessage(v=1, run_id=run.run_id, step=run.state, cluster=ref.arm_id, pool=pool, attempt=1, actor=actor)
    run = create_run(platform, run, first, source=KIND)  # the store's conditional insert: one active run per pool
    platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, 0, "started",
                                              f"blue-green {pool} {blue.orchestrator_version} -> {target} "
                                              + (f"node image {facts['nodeImage']['to']} " if facts else "") +
                                              f"(green {green}, pool {logical} across generations)", actor))
    return run
