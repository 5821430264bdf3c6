"""The quarantine scan: find cordoned and quarantined nodes, alert once per node and condition.

``fan_out_scans`` (the timer) enqueues one stateless ``quarantine.scan`` step per allowed cluster,
so hundreds of clusters scale out across instances. A cluster's scan costs one node list with a
field selector, one PDB list and one pod list per cordoned node, whatever the cluster's size.
Alert dedup state lives in the ``alertstate`` table (StateStore), one row per node; the decisions
are upgrade.domain.quarantine's. The post-upgrade reconcile alerts through the same path, so an
operator hears about a node once, whoever saw it first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from upgrade.domain.model import Autoscaler, ClusterRef, Pdb, pool_selector, require_allowed_cluster
from upgrade.domain.quarantine import (
    AlertState,
    NodeFinding,
    PoolUpgradeFacts,
    alert_state_partition,
    decide_node_alert,
    diagnose_cordoned_nodes,
    finding_alert,
    resolved_alert,
)
from upgrade.domain.selectors import LabelSelector
from upgrade.domain.steps import Done, Outcome, StepMessage
from upgrade.domain.versions import kubernetes_target
from upgrade.errors import Conflict, InvalidInput, NotFound, PermanentError
from upgrade.ports import Kube, Platform
from upgrade.services.pdb_leases import sweep_stale_leases
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import StepContext

log = logging.getLogger("upgrade.quarantine")

SCAN_STEP = "quarantine.scan"
CORDONED_SELECTOR = "spec.unschedulable=true"


def allowed_cluster_refs(platform: Platform) -> list[ClusterRef]:
    """ALLOWED_CLUSTERS as parsed cluster ids, in a stable order."""
    return sorted(ClusterRef.parse(c) for c in platform.allowed_clusters)


def resolve_cluster(platform: Platform, segment: str, cluster_id: str | None) -> ClusterRef:
    """The allowed cluster a request names: by ARM id, or by name when the name is unique."""
    allowed = allowed_cluster_refs(platform)
    segment = unquote(segment or "").strip()
    if cluster_id or segment.startswith("/"):
        ref = ClusterRef.parse(cluster_id or segment, what="remediation request", field="clusterId")
        if cluster_id and segment and segment.lower() not in (ref.name.lower(), ref.arm_id.lower()):
            raise InvalidInput("remediation request", "cluster", f"{segment!r} does not name cluster {ref.arm_id}")
        require_allowed_cluster(ref, platform.allowed_clusters)
        return ref
    named = [c for c in allowed if c.name.lower() == segment.lower()]
    if not named:
        raise NotFound(f"no allowed cluster is named {segment!r}")
    if len(named) > 1:
        raise InvalidInput("remediation request", "clusterId",
                           f"{len(named)} allowed clusters are named {segment!r}: give the ARM id as clusterId")
    return named[0]


def findings_from_query(platform: Platform, segment: str | None) -> list[dict]:
    """GET /api/quarantine[?cluster=name-or-ARM-id]: the live findings of one allowed cluster, or all."""
    return current_findings(platform, resolve_cluster(platform, segment, None) if segment else None)


# ---- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterReading:
    findings: list[NodeFinding]
    pdbs: list[Pdb]
    api_calls: int


def read_cordoned(kube: Kube, cluster: ClusterRef, *, pool: str | None = None,
                  pool_facts: dict[str, PoolUpgradeFacts] | None = None,
                  hold_selectors: Callable[[str], Sequence[LabelSelector]] | None = None) -> ClusterReading:
    """Cordoned nodes (of one pool, or all) with their blockers: 1 + (1 + N if any) API calls, and
    one HPA list per namespace of blocking pods."""
    nodes = kube.list_nodes(
        field_selector=CORDONED_SELECTOR, label_selector=pool_selector(pool) if pool else None
    )
    calls = 1
    if not nodes:
        return ClusterReading([], [], calls)
    pdbs = kube.list_pdbs()
    pods_by_node = {node.name: kube.list_pods(node=node.name) for node in nodes}
    calls += 1 + len(nodes)
    findings = diagnose_cordoned_nodes(cluster, nodes, pods_by_node, pdbs, pool_facts=pool_facts,
                                       hold_selectors=hold_selectors)
    # scale-out's commands raise an HPA that owns a blocking pod's workload, not the scale it would undo
    namespaces = sorted({b.pod.split("/", 1)[0] for finding in findings for b in finding.blockers})
    autoscalers = _autoscalers(kube, cluster, namespaces)
    calls += len(namespaces)
    if autoscalers:
        findings = diagnose_cordoned_nodes(cluster, nodes, pods_by_node, pdbs, pool_facts=pool_facts,
                                           hold_selectors=hold_selectors, autoscalers=autoscalers)
    return ClusterReading(findings, pdbs, calls)


def _autoscalers(kube: Kube, cluster: ClusterRef, namespaces: Sequence[str]) -> list[Autoscaler]:
    """The HPAs of ``namespaces``; none when they cannot be read (the findings and their alerts
    matter more than the commands' form: the caveat still says what an HPA changes)."""
    try:
        return [a for namespace in namespaces for a in kube.list_autoscalers(namespace=namespace)]
    except PermanentError as exc:
        log.warning("HorizontalPodAutoscalers of %s in %s not read: %s", cluster.name, ", ".join(namespaces), exc)
        return []


def rolling_upgrade_facts(platform: Platform, cluster: ClusterRef) -> dict[str, PoolUpgradeFacts]:
    """Each pool's node count before its latest rolling upgrade and that upgrade's target version,
    from the run records (one table query, no cluster API call)."""
    facts: dict[str, PoolUpgradeFacts] = {}
    for run in platform.runs.list_runs(cluster=cluster.arm_id, limit=50):  # newest first
        if run.kind != "rolling" or not run.pool or run.pool in facts:
            continue
        count = run.facts.get("pre_upgrade_count")
        facts[run.pool] = PoolUpgradeFacts(
            pre_upgrade_count=count if isinstance(count, int) else None,
            # a node image run keeps the pool's version: a quarantined node is judged as after a version run
            target_version=kubernetes_target(run.target_version) or run.facts.get("version_before"),
        )
    return facts


# ---- alerting with dedup ------------------------------------------------------------------


def pool_hold_selectors(platform: Platform, cluster: ClusterRef) -> Callable[[str], Sequence[LabelSelector]]:
    """A pool's blocking-pod selectors, as its policy gives them (the ones the hold gate applies)."""
    return lambda pool: platform.policy.for_pool(cluster, pool).holds.selectors()


def _load_states(platform: Platform, cluster: ClusterRef) -> tuple[dict[str, AlertState], dict[str, str]]:
    """Each node's alert state and the ETag of that very value: a decision made on one value and
    written against a newer ETag would overwrite what a concurrent scan just recorded."""
    partition = alert_state_partition(cluster)
    states: dict[str, AlertState] = {}
    etags: dict[str, str] = {}
    for key, _ in platform.state.list(partition):
        stored = platform.state.get(partition, key)
        if stored is None:
            continue  # resolved meanwhile
        value, etags[key] = stored
        try:
            states[key] = AlertState.from_storage(value)
        except (KeyError, ValueError) as exc:
            # The ETag is kept, so this scan's write replaces the unreadable row.
            log.warning("alert state %s of %s unreadable (%s): starting it afresh", key, cluster.name, exc)
    return states, etags


def alert_on_findings(
    platform: Platform,
    cluster: ClusterRef,
    findings: Sequence[NodeFinding],
    *,
    scope_pools: Iterable[str] | None = None,
    skip_pools: Iterable[str] = (),
    still_cordoned: Iterable[str] = (),
    run_id: str | None = None,
) -> list[str]:
    """Alert per node as the dedup rules say, and send resolved notices for nodes that were
    alerted and are clear now (within ``scope_pools`` when the caller looked at some pools only).
    ``still_cordoned`` names nodes not alerted now that are not clear either: no notice for them.

    The dedup row is written (ETag-conditional) before the alert goes out, so two concurrent scans
    cannot both send it; when the sink reports the alert undelivered, the row is put back to what
    was last told, so the next scan sends it again instead of waiting for the re-alert interval."""
    policy = platform.policy
    now = platform.clock.now()
    partition = alert_state_partition(cluster)
    skipped = set(skip_pools)
    scope = set(scope_pools) if scope_pools is not None else None
    states, etags = _load_states(platform, cluster)
    held = sorted(set(still_cordoned))
    notes = [f"{node}: its pool is upgrading, not alerted" for node in held]
    seen = set(held)
    for finding in findings:
        seen.add(finding.node)
        if finding.pool in skipped:
            notes.append(f"{finding.node}: pool {finding.pool} is being remediated, not alerted")
            continue
        pool_policy = policy.for_pool(cluster, finding.pool)
        finding = finding.under_policy(pool_policy.remediation)
        thresholds = pool_policy.alerts
        decision = decide_node_alert(states.get(finding.node), finding, now, thresholds)
        previous = states.get(finding.node)
        if previous is not None and decision.state == previous:
            notes.append(f"{finding.node}: {decision.reason}")
            continue
        try:
            etag = platform.state.put(partition, finding.node, decision.state.to_storage(),
                                      etag=etags.get(finding.node))
        except Conflict:
            notes.append(f"{finding.node}: alert state changed concurrently; left to that writer")
            continue
        if not decision.send:
            notes.append(f"{finding.node}: {decision.reason}")
        elif platform.alerts.publish(finding_alert(finding, decision, now, run_id=run_id)):
            notes.append(f"{finding.node}: {decision.reason} (alerted {decision.severity})")
        else:
            notes.append(_forget_undelivered(platform, partition, finding.node, decision.state_if_undelivered, etag))
    for node, state in states.items():
        if node in seen or state.pool in skipped or (scope is not None and state.pool not in scope):
            continue
        notes.append(resolve_node(platform, cluster, node, how="the node is no longer cordoned", run_id=run_id))
    return notes


def _forget_undelivered(platform: Platform, partition: str, node: str, unsent: AlertState, etag: str) -> str:
    """The sink could not deliver the alert: store what was last told, so the next scan retries."""
    try:
        platform.state.put(partition, node, unsent.to_storage(), etag=etag)
    except Conflict:
        return f"{node}: alert not delivered; the alert state changed meanwhile, left to that writer"
    return f"{node}: alert not delivered; the next scan sends it again"


def resolve_node(platform: Platform, cluster: ClusterRef, node: str, *, how: str, run_id: str | None = None) -> str:
    """Forget a node's alert state and tell the operator it is clear (if they were told it was not).
    A notice the sink could not deliver puts the state back, so the next scan resolves it again."""
    partition = alert_state_partition(cluster)
    stored = platform.state.get(partition, node)
    if stored is None:
        return f"{node}: nothing to resolve"
    try:
        # Conditional: of two workers resolving the same node, only one sends the notice.
        platform.state.delete(partition, node, etag=stored[1])
    except Conflict:
        return f"{node}: its alert state changed meanwhile; left to the writer that changed it"
    notice = resolved_alert(cluster, AlertState.from_storage(stored[0]), platform.clock.now(), how=how, run_id=run_id)
    if notice is None:
        return f"{node}: cleared (never alerted)"
    if platform.alerts.publish(notice):
        return f"{node}: resolved notice sent"
    try:
        platform.state.put(partition, node, stored[0], etag=None)
    except Conflict:
        return f"{node}: resolved notice not delivered; the node has a new alert state meanwhile"
    return f"{node}: resolved notice not delivered; the next scan sends it again"


# ---- the scan -----------------------------------------------------------------------------


def fan_out_scans(platform: Platform, clusters: Sequence[ClusterRef] | None = None, *,
                  actor: str = "timer:scan_quarantine") -> list[ClusterRef]:
    """One scan step per cluster (default: every allowed one); returns the clusters enqueued."""
    stamp = platform.clock.now().strftime("%Y%m%dT%H%M%S")
    clusters = allowed_cluster_refs(platform) if clusters is None else list(clusters)
    for cluster in clusters:
        platform.queue.send(
            StepMessage(v=1, run_id=f"scan-{cluster.name}-{stamp}"[:100], step=SCAN_STEP, cluster=cluster.arm_id,
                        actor=actor)
        )
    return clusters


def scans_from_request(platform: Platform, segment: str | None, *, actor: str) -> dict:
    """POST /api/quarantine/scan[?cluster=name-or-ARM-id]: the timer's scan, now, for one allowed
    cluster or all; its alerts go out as the timer's do."""
    clusters = fan_out_scans(platform, [resolve_cluster(platform, segment, None)] if segment else None, actor=actor)
    return {"scansQueued": [c.arm_id for c in clusters],
            "note": "each scan alerts as the timer's does; GET /api/quarantine lists the findings"}


def _pools_busy(platform: Platform, cluster: ClusterRef, pools: Iterable[str]) -> tuple[set[str], set[str]]:
    """Pools with an active remediation run (left alone) and with an active upgrade (where a
    cordoned node is AKS at work, not a stuck node)."""
    remediating, upgrading = set(), set()
    for pool in set(pools):
        active = platform.runs.find_active(cluster.arm_id, pool)
        if active is None:
            continue
        (remediating if active.kind == "remediation" else upgrading).add(pool)
    return remediating, upgrading


def scan_cluster(platform: Platform, cluster: ClusterRef, *, actor: str = "system") -> list[str]:
    """Scan one cluster, alert with dedup, start automatic remediations; returns what happened."""
    reading = read_cordoned(platform.kube(cluster), cluster, pool_facts=rolling_upgrade_facts(platform, cluster),
                            hold_selectors=pool_hold_selectors(platform, cluster))
    remediating, upgrading = _pools_busy(platform, cluster, (f.pool for f in reading.findings))
    findings = [f for f in reading.findings if f.quarantined or f.pool not in upgrading]
    # A cordoned node of an upgrading pool is AKS at work: not alerted now, but not clear either.
    draining = [f.node for f in reading.findings if not f.quarantined and f.pool in upgrading]
    notes = alert_on_findings(platform, cluster, findings, skip_pools=remediating, still_cordoned=draining)
    notes.extend(_automatic_remediations(platform, cluster, findings, remediating))
    notes.extend(sweep_stale_leases(platform, cluster))
    log.info("quarantine scan of %s: %d cordoned node(s), %d API call(s); %s",
             cluster.name, len(reading.findings), reading.api_calls, "; ".join(notes) or "all clear")
    return notes


def _automatic_remediations(
    platform: Platform, cluster: ClusterRef, findings: Sequence[NodeFinding], remediating: set[str]
) -> list[str]:
    from upgrade.services.remediation import request_remediation

    policy = platform.policy
    notes = []
    started_pools: set[str] = set()
    for finding in findings:
        if not finding.quarantined or finding.pool in remediating or finding.pool in started_pools:
            continue
        options = {o.kind: o for o in finding.options}
        # In policy order; a kind refused here (scale-out without room, say) gives way to the next.
        for kind in policy.for_pool(cluster, finding.pool).remediation.automatic_kinds():
            if not options[kind].applicable:
                continue
            try:
                run = request_remediation(platform, cluster, finding.node, kind, actor="policy:automatic")
            except PermanentError as exc:
                notes.append(f"{finding.node}: automatic {kind} not started: {exc}")
                continue
            started_pools.add(finding.pool)  # one remediation per pool at a time (one active run per pool)
            notes.append(f"{finding.node}: automatic {kind} started as run {run.run_id}")
            break
    return notes


def scan_step(ctx: StepContext) -> Outcome:
    notes = scan_cluster(ctx.platform, ctx.cluster, actor=ctx.message.actor)
    return Done(summary="; ".join(notes) or "no cordoned nodes")


def current_findings(platform: Platform, cluster: ClusterRef | None = None) -> list[dict]:
    """Live findings for GET /api/quarantine: every allowed cluster, or one."""
    clusters = [cluster] if cluster is not None else allowed_cluster_refs(platform)
    result = []
    for ref in clusters:
        reading = read_cordoned(platform.kube(ref), ref, pool_facts=rolling_upgrade_facts(platform, ref),
                                hold_selectors=pool_hold_selectors(platform, ref))
        states, _ = _load_states(platform, ref)
        for finding in reading.findings:
            public = finding.under_policy(platform.policy.for_pool(ref, finding.pool).remediation).to_public()
            state = states.get(finding.node)
            public["alert"] = state.to_storage() if state else None
            result.append(public)
    return result


STEPS = {SCAN_STEP: StepSpec(SCAN_STEP, scan_step, needs_run=False, lease_seconds=300.0)}
