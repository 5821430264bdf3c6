"""Quarantined and cordoned nodes: what blocks them, the ways out, and when to alert.

Pure decisions over what the scan read (cordoned nodes, their pods, the PDBs) and over the stored
alert dedup state. With ``undrainableNodeBehavior: Cordon`` AKS leaves a node it could not drain
cordoned on the old version, labelled ``kubernetes.azure.com/upgrade-status=Quarantined``, and
keeps a surge node as its permanent replacement. The ways out (AKS documentation, seed Scenario 2):
adjust the PDB, delete the pod, or delete the machine; then remove the label (AKS ignores a
quarantined node until it is gone), let the node finish upgrading and scale the pool back.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from upgrade.domain.alerts import Alert
from upgrade.domain.holds import Hold, holds_on
from upgrade.domain.model import QUARANTINE_LABEL, Autoscaler, ClusterRef, Node, Pdb, Pod
from upgrade.domain.pdb import EvictionBlocker, eviction_blockers
from upgrade.domain.policy import AlertThresholds, RemediationPolicy
from upgrade.domain.scale_out import autoscalers_by_target
from upgrade.domain.selectors import LabelSelector

REMEDIATE_PATH = "/api/quarantine/{cluster}/{node}/remediate"
QUARANTINED = "quarantined"
CORDONED = "cordoned"
# Severity of a first alert and of an escalated one, per condition.
SEVERITIES = {QUARANTINED: ("error", "critical"), CORDONED: ("warning", "error")}


def is_application_pod(pod: Pod) -> bool:
    """Pods a drain must move: not DaemonSet pods, not static (mirror) pods, not finished ones."""
    return (
        pod.owner_kind != "DaemonSet"
        and not pod.mirror
        and pod.phase not in ("Succeeded", "Failed")
    )


@dataclass(frozen=True)
class RemediationOption:
    """One way out for a node: the commands an operator would type, and the product's request.

    ``policy`` is the pool's remediation mode for this kind once known (``under_policy``): when it
    is off the app would refuse the request, so none is offered, only how to enable it."""

    kind: str  # scale-out | relax-pdb | delete-pod | replace-node
    description: str
    commands: tuple[str, ...]
    request: Mapping[str, Any]
    applicable: bool = True
    caveat: str = ""
    policy: str | None = None

    @property
    def enabled(self) -> bool:
        return self.policy != "off"

    def to_public(self) -> dict[str, Any]:
        public: dict[str, Any] = {
            "kind": self.kind,
            "description": self.description,
            "command": "\n".join(self.commands),
            "request": dict(self.request) if self.enabled else None,
            "applicable": self.applicable,
            "caveat": self.caveat,
        }
        if self.policy is not None:
            public["policy"] = self.policy
        if not self.enabled:
            public["enable"] = (f"the app's {self.kind} is off for this pool: set UPGRADE_POLICY remediation."
                                f"{self.kind} to approval-required (or automatic) to request it from the app")
        return public


@dataclass(frozen=True)
class NodeFinding:
    """One cordoned node: whether AKS quarantined it, since when, and what holds it."""

    cluster: ClusterRef
    node: str
    pool: str
    kubernetes_version: str
    quarantined: bool
    cordoned_at: datetime | None
    pods: tuple[str, ...]  # application pods still on the node (namespace/name)
    blockers: tuple[EvictionBlocker, ...]
    unmanaged_pods: tuple[str, ...]
    options: tuple[RemediationOption, ...]
    holds: tuple[Hold, ...] = ()  # applications' holds on the node (upgrade.domain.holds)

    @property
    def condition(self) -> str:
        return QUARANTINED if self.quarantined else CORDONED

    def under_policy(self, remediation: RemediationPolicy) -> NodeFinding:
        """The finding with each way out marked by the pool's remediation mode."""
        return replace(self, options=tuple(replace(o, policy=remediation.mode(o.kind)) for o in self.options))

    def to_public(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster.arm_id,
            "node": self.node,
            "pool": self.pool,
            "kubernetesVersion": self.kubernetes_version,
            "condition": self.condition,
            "cordonedAt": self.cordoned_at.isoformat() if self.cordoned_at else None,
            "pods": list(self.pods),
            "blockers": [b.to_public() for b in self.blockers],
            "unmanagedPods": list(self.unmanaged_pods),
            "options": [o.to_public() for o in self.options],
            "holds": [h.to_public() for h in self.holds],
        }


# ---- PDB relax and exact restore ---------------------------------------------------------


def pdb_budget_spec(pdb: Pdb) -> dict[str, Any]:
    """The budget fields of a PDB's spec as a merge patch (absent fields as null, so applying it
    removes what a relax added)."""
    return {"minAvailable": _int_or_text(pdb.min_available), "maxUnavailable": _int_or_text(pdb.max_unavailable)}


def relax_patch(pdb: Pdb) -> dict[str, Any]:
    """A merge patch that lets exactly one more pod go: maxUnavailable = the pods already
    unhealthy + 1, minAvailable removed (a PDB holds only one of the two)."""
    unhealthy = max(0, pdb.expected_pods - pdb.current_healthy)
    return {"minAvailable": None, "maxUnavailable": unhealthy + 1}


def relaxed_spec(original_spec: Mapping[str, Any], max_unavailable: int) -> dict[str, Any]:
    """The whole PDB spec (selector kept) with the budget relaxed to ``maxUnavailable``."""
    relaxed = {key: value for key, value in original_spec.items() if key != "minAvailable"}
    relaxed["maxUnavailable"] = max(1, max_unavailable)
    return relaxed


def _int_or_text(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


# ---- diagnosis -----------------------------------------------------------------------------


def remediation_request(cluster: ClusterRef, node: str, kind: str) -> dict[str, Any]:
    """The product's own remediation call for this node (docs/alerts.md)."""
    return {
        "method": "POST",
        "path": REMEDIATE_PATH.format(cluster=quote(cluster.name, safe=""), node=quote(node, safe="")),
        "body": {"kind": kind, "clusterId": cluster.arm_id, "force": False},
    }


def _az_target(cluster: ClusterRef) -> str:
    return (
        f"--subscription {shlex.quote(cluster.subscription_id)} --resource-group {shlex.quote(cluster.resource_group)}"
    )


def _finish_commands(cluster: ClusterRef, node: str, pool: str, pool_version: str | None,
                     pre_upgrade_count: int | None) -> list[str]:
    """After the node is unblocked: unquarantine, finish its upgrade, drop the extra surge node."""
    target = _az_target(cluster)
    name = shlex.quote(cluster.name)
    show = f"az aks nodepool show {target} --cluster-name {name} --name {shlex.quote(pool)}"
    # Without the run's snapshot the commands read what they need from ARM at the moment they run,
    # so every command stays one an operator can paste as it is.
    version = pool_version or f"$({show} --query orchestratorVersion -o tsv)"
    # Each quarantined node left one permanent surge node behind: one node fewer than now.
    count = str(pre_upgrade_count) if pre_upgrade_count is not None else f"$(( $({show} --query count -o tsv) - 1 ))"
    return [
        f"kubectl label node {shlex.quote(node)} {QUARANTINE_LABEL}-",
        f"az aks nodepool upgrade {target} --cluster-name {name} --name {shlex.quote(pool)} "
        f"--kubernetes-version {version} --yes",
        f"az aks nodepool scale {target} --cluster-name {name} --name {shlex.quote(pool)} --node-count {count}",
    ]


def _scaled_workload(pod: Pod) -> tuple[str, str] | None:
    """The kind and name ``kubectl scale`` takes for a pod's controller: a Deployment's ReplicaSet
    is named after it plus the pods' ``pod-template-hash``."""
    if pod.owner_kind == "StatefulSet" and pod.owner_name:
        return "statefulset", pod.owner_name
    if pod.owner_kind != "ReplicaSet" or not pod.owner_name:
        return None
    suffix = f"-{pod.label_map().get('pod-template-hash', '')}"
    if len(suffix) > 1 and pod.owner_name.endswith(suffix):
        return "deployment", pod.owner_name[: -len(suffix)]
    return "replicaset", pod.owner_name


def _hpa_patch(hpa: str, namespace: str, test: tuple[str, str], to: tuple[str, str]) -> str:
    """``kubectl patch`` of an HPA's bounds from the shell variables ``test`` to ``to``, applied only
    while both are still at ``test`` (JSON patch ``test`` operations: the API server refuses it otherwise)."""
    ops = [("test", "minReplicas", test[0]), ("test", "maxReplicas", test[1]),
           ("replace", "minReplicas", to[0]), ("replace", "maxReplicas", to[1])]
    body = ",".join(f'{{\\"op\\":\\"{op}\\",\\"path\\":\\"/spec/{field}\\",\\"value\\":${var}}}'
                    for op, field, var in ops)
    return f'kubectl patch hpa {shlex.quote(hpa)} --namespace {shlex.quote(namespace)} --type json -p "[{body}]"'


def _scale_commands(i: int, kind: str, name: str, namespace: str, add: int,
                    hpa: str | None) -> tuple[list[str], list[str]]:
    """The raise and the restore of one workload by ``add`` replicas, each conditional on the value
    read: its scale, or, when HorizontalPodAutoscaler ``hpa`` owns its replicas (it would undo a
    ``kubectl scale`` at its next sync), the HPA's bounds as the app's request raises them."""
    target = f"{kind} {shlex.quote(name)} --namespace {shlex.quote(namespace)}"
    var = f"REPLICAS{i}"
    read = f"{var}=$(kubectl get {target} -o jsonpath='{{.spec.replicas}}')"
    if hpa is None:
        return ([read, f'kubectl scale {target} --current-replicas="${var}" --replicas=$(( {var} + {add} ))',
                 f"kubectl rollout status {target}"],
                [f'kubectl scale {target} --current-replicas=$(( {var} + {add} )) --replicas="${var}"'])
    # The HPA's minReplicas to the current count plus the blocked pods, its maxReplicas up to it if
    # lower; the HPA controller sets the replicas at its next sync and the drain retries until then.
    get = f"kubectl get hpa {shlex.quote(hpa)} --namespace {shlex.quote(namespace)} -o jsonpath="
    low, high, new_low, new_high = (f"HPA{i}_MIN", f"HPA{i}_MAX", f"HPA{i}_RAISED_MIN", f"HPA{i}_RAISED_MAX")
    return ([read, f"{low}=$({get}'{{.spec.minReplicas}}')", f"{high}=$({get}'{{.spec.maxReplicas}}')",
             f"{new_low}=$(( ({var} > {low} ? {var} : {low}) + {add} )); "
             f"{new_high}=$(( {high} > {new_low} ? {high} : {new_low} ))",
             _hpa_patch(hpa, namespace, (low, high), (new_low, new_high))],
            [_hpa_patch(hpa, namespace, (new_low, new_high), (low, high))])


def _scale_out_option(cluster: ClusterRef, node: str, blocking: Sequence[Pod], finish: Sequence[str],
                      nothing_blocks: str, autoscalers: Sequence[Autoscaler] = ()) -> RemediationOption:
    workloads: dict[tuple[str, str, str], int] = {}
    unscalable = []
    for pod in blocking:
        scaled = _scaled_workload(pod)
        if scaled is None:
            unscalable.append(pod.key)
        else:
            key = (scaled[0], scaled[1], pod.namespace)
            workloads[key] = workloads.get(key, 0) + 1
    owners = autoscalers_by_target(autoscalers)
    contested = sorted(f"{namespace}/{name}" for (kind, name, namespace) in workloads
                       if len(owners.get((namespace, kind, name), ())) > 1)
    raise_, restore = [], []
    for i, ((kind, name, namespace), add) in enumerate(sorted(workloads.items())):
        hpas = owners.get((namespace, kind, name), [])
        up, down = _scale_commands(i, kind, name, namespace, add, hpas[0] if hpas else None)
        raise_ += up
        restore += down
    drain = f"kubectl drain {shlex.quote(node)} --ignore-daemonsets --delete-emptydir-data"
    applicable = bool(workloads) and not unscalable and not contested
    if not blocking:
        caveat = nothing_blocks
    elif unscalable:
        caveat = f"{', '.join(unscalable)} has no Deployment, ReplicaSet or StatefulSet whose replicas could be raised"
    elif contested:
        caveat = f"more than one HorizontalPodAutoscaler scales {', '.join(contested)}: no one minReplicas decides"
    else:
        caveat = ("refused when the extra pods' cpu requests do not fit on the schedulable nodes, a StatefulSet "
                  "is mid-rollout or two HorizontalPodAutoscalers scale one workload; where a HorizontalPodAutoscaler "
                  "owns the replicas, the commands and the app's request raise its minReplicas (and maxReplicas if "
                  "lower) instead of the scale, which it would undo; a StatefulSet keeps the added ordinals' volume "
                  "claims unless its whenScaled policy is Delete; a value someone else changes meanwhile is left as "
                  "they set it")
    return RemediationOption(
        kind="scale-out",
        description=(
            "Add one replica per blocked pod to its workload, wait until the new pods are Ready elsewhere "
            "and the PDB allows the disruption, drain the node, then restore the replica count exactly "
            "(nobody's availability drops), unquarantine and finish the node's upgrade."
        ),
        commands=(*raise_, drain, *restore, *finish) if applicable else (drain, *finish),
        request=remediation_request(cluster, node, "scale-out"),
        applicable=applicable,
        caveat=caveat,
    )


def remediation_options(
    cluster: ClusterRef,
    node: str,
    pool: str,
    blockers: Sequence[EvictionBlocker],
    unmanaged_pods: Sequence[str],
    pdbs: Iterable[Pdb],
    *,
    pool_version: str | None = None,
    pre_upgrade_count: int | None = None,
    pods: Sequence[Pod] = (),
    autoscalers: Sequence[Autoscaler] = (),
) -> tuple[RemediationOption, ...]:
    """The four ways out from seed Scenario 2, each with exact commands and the product request.
    scale-out, the kindest, comes first when it applies (every blocking pod has a workload with a
    scale subresource), last otherwise."""
    by_key = {p.key: p for p in pdbs}
    finish = _finish_commands(cluster, node, pool, pool_version, pre_upgrade_count)
    blocking_pdbs = [by_key[b.pdb] for b in blockers if b.pdb in by_key]
    relax: list[str] = []
    restore: list[str] = []
    for pdb in {p.key: p for p in blocking_pdbs}.values():
        target = f"pdb {shlex.quote(pdb.name)} --namespace {shlex.quote(pdb.namespace)}"
        relax.append(
            f"kubectl patch {target} --type merge -p "
            f"{shlex.quote(json.dumps({'spec': relax_patch(pdb)}, separators=(',', ':')))}"
        )
        restore.append(
            f"kubectl patch {target} --type merge -p "
            f"{shlex.quote(json.dumps({'spec': pdb_budget_spec(pdb)}, separators=(',', ':')))}"
        )
    drain = f"kubectl drain {shlex.quote(node)} --ignore-daemonsets --delete-emptydir-data"
    blocking_pods = [b.pod for b in blockers]
    unmanaged_blockers = [p for p in blocking_pods if p in unmanaged_pods]
    deletes = [
        f"kubectl delete pod {shlex.quote(p.split('/', 1)[1])} --namespace {shlex.quote(p.split('/', 1)[0])}"
        for p in blocking_pods
    ]
    machine = (
        f"az aks nodepool delete-machines {_az_target(cluster)} --cluster-name {shlex.quote(cluster.name)} "
        f"--name {shlex.quote(pool)} --machine-names {shlex.quote(node)}"
    )
    nothing_blocks = "no PDB blocks this node's pods now: removing the label and re-applying the version is enough"
    by_pod = {p.key: p for p in pods}
    scale_out = _scale_out_option(cluster, node, [by_pod[k] for k in dict.fromkeys(blocking_pods) if k in by_pod],
                                  finish, nothing_blocks, autoscalers)
    others = (
        RemediationOption(
            kind="relax-pdb",
            description=(
                "Adjust the PDB so the blocking pod may be evicted: allow one disruption, drain the node, "
                "then restore the PDB exactly, unquarantine and finish the node's upgrade."
            ),
            commands=(*relax, drain, *restore, *finish) if relax else (drain, *finish),
            request=remediation_request(cluster, node, "relax-pdb"),
            applicable=bool(relax),
            caveat="" if relax else nothing_blocks,
        ),
        RemediationOption(
            kind="delete-pod",
            description=(
                "Delete the blocking pod by hand; its controller recreates it on a schedulable node. "
                "Then unquarantine and finish the node's upgrade."
            ),
            commands=(*deletes, *finish),
            request=remediation_request(cluster, node, "delete-pod"),
            applicable=bool(deletes) and not unmanaged_blockers,
            caveat=(
                f"{', '.join(unmanaged_blockers)} has no controller and would not come back; "
                "the product refuses unless the request sets force"
                if unmanaged_blockers
                else ("" if deletes else nothing_blocks)
            ),
        ),
        RemediationOption(
            kind="replace-node",
            description=(
                "Delete the machine once the blocking condition is resolved; AKS drops it from the pool "
                "(the permanent surge node already replaces it) and the pods are recreated elsewhere."
            ),
            commands=(machine,),
            request=remediation_request(cluster, node, "replace-node"),
            caveat="the node's pods are deleted with it after the drain timeout, whatever their PDB says",
        ),
    )
    return (scale_out, *others) if scale_out.applicable else (*others, scale_out)


def diagnose_node(
    cluster: ClusterRef,
    node: Node,
    pods: Iterable[Pod],
    pdbs: Sequence[Pdb],
    *,
    pool_version: str | None = None,
    pre_upgrade_count: int | None = None,
    hold_selectors: Sequence[LabelSelector] = (),
    autoscalers: Sequence[Autoscaler] = (),
) -> NodeFinding:
    app_pods = [p for p in pods if is_application_pod(p) and p.node == node.name]
    blockers = tuple(eviction_blockers(app_pods, pdbs))
    unmanaged = tuple(p.key for p in app_pods if p.owner_kind is None)
    return NodeFinding(
        cluster=cluster,
        node=node.name,
        pool=node.pool,
        kubernetes_version=node.kubernetes_version,
        quarantined=node.quarantined,
        cordoned_at=node.cordoned_at,
        pods=tuple(p.key for p in app_pods),
        blockers=blockers,
        unmanaged_pods=unmanaged,
        options=remediation_options(
            cluster, node.name, node.pool, blockers, unmanaged, pdbs,
            pool_version=pool_version, pre_upgrade_count=pre_upgrade_count, pods=app_pods, autoscalers=autoscalers,
        ),
        holds=tuple(holds_on(node, app_pods, hold_selectors)),
    )


@dataclass(frozen=True)
class PoolUpgradeFacts:
    """What the latest rolling run of a pool recorded: its node count before the upgrade and the
    version it upgraded to. Either may be unknown (an upgrade the product did not see start)."""

    pre_upgrade_count: int | None = None
    target_version: str | None = None


def diagnose_cordoned_nodes(
    cluster: ClusterRef,
    nodes: Iterable[Node],
    pods_by_node: Mapping[str, Sequence[Pod]],
    pdbs: Sequence[Pdb],
    *,
    pool_facts: Mapping[str, PoolUpgradeFacts] | None = None,
    hold_selectors: Callable[[str], Sequence[LabelSelector]] | None = None,
    autoscalers: Sequence[Autoscaler] = (),
) -> list[NodeFinding]:
    """One finding per cordoned node, by node name; ``hold_selectors`` gives a pool's blocking-pod
    selectors (the policy's), so a finding names every hold its remediation's drain would wait for;
    ``autoscalers`` (the HPAs of the blocking pods' namespaces) make scale-out's commands raise an
    HPA that owns a workload's replicas rather than its scale."""
    facts = pool_facts or {}
    findings = []
    for node in sorted(nodes, key=lambda n: n.name):
        if not node.unschedulable:
            continue
        pool = facts.get(node.pool, PoolUpgradeFacts())
        findings.append(diagnose_node(
            cluster, node, pods_by_node.get(node.name, ()), pdbs,
            pool_version=pool.target_version, pre_upgrade_count=pool.pre_upgrade_count,
            hold_selectors=hold_selectors(node.pool) if hold_selectors else (), autoscalers=autoscalers,
        ))
    return findings


# ---- alert dedup ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertState:
    """What was last told about one node (a row of the ``alertstate`` table)."""

    node: str
    pool: str
    condition: str
    first_seen: datetime
    last_alert_at: datetime | None = None
    severity: str | None = None
    alert_count: int = 0

    def to_storage(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "pool": self.pool,
            "condition": self.condition,
            "first_seen": self.first_seen.isoformat(),
            "last_alert_at": self.last_alert_at.isoformat() if self.last_alert_at else "",
            "severity": self.severity or "",
            "alert_count": self.alert_count,
        }

    @classmethod
    def from_storage(cls, value: Mapping[str, Any]) -> AlertState:
        return cls(
            node=value["node"],
            pool=value.get("pool", ""),
            condition=value["condition"],
            first_seen=datetime.fromisoformat(value["first_seen"]),
            last_alert_at=datetime.fromisoformat(value["last_alert_at"]) if value.get("last_alert_at") else None,
            severity=value.get("severity") or None,
            alert_count=int(value.get("alert_count") or 0),
        )


@dataclass(frozen=True)
class AlertDecision:
    send: bool
    severity: str
    reason: str  # new | condition-changed | escalated | re-alert | suppressed | grace
    state: AlertState  # to store once the alert (if any) is delivered
    undelivered: AlertState | None = None  # to store instead when the alert could not be delivered

    @property
    def state_if_undelivered(self) -> AlertState:
        """What was last told stays as it was, so the next scan sends the alert again."""
        return self.undelivered or self.state


def decide_node_alert(
    previous: AlertState | None, finding: NodeFinding, now: datetime, thresholds: AlertThresholds
) -> AlertDecision:
    """Whether to alert about ``finding`` now, at what severity, and the state to store."""
    condition = finding.condition
    first_seen = previous.first_seen if previous else now
    if finding.cordoned_at is not None:
        first_seen = min(first_seen, finding.cordoned_at)
    age = now - first_seen
    base, escalated = SEVERITIES[condition]
    severity = escalated if age >= timedelta(minutes=thresholds.escalate_after_minutes) else base
    state = AlertState(
        node=finding.node, pool=finding.pool, condition=condition, first_seen=first_seen,
        last_alert_at=previous.last_alert_at if previous else None,
        severity=previous.severity if previous else None,
        alert_count=previous.alert_count if previous else 0,
    )
    if condition == CORDONED and state.alert_count == 0 and age < timedelta(minutes=thresholds.cordoned_grace_minutes):
        return AlertDecision(False, severity, "grace", state)
    if previous is None or previous.alert_count == 0:
        reason = "new"
    elif previous.condition != condition:
        reason = "condition-changed"
    elif severity != previous.severity:
        reason = "escalated"
    elif previous.last_alert_at is None or now - previous.last_alert_at >= timedelta(
        minutes=thresholds.re_alert_interval_minutes
    ):
        reason = "re-alert"
    else:
        return AlertDecision(False, severity, "suppressed", state)
    sent = replace(state, last_alert_at=now, severity=severity, alert_count=state.alert_count + 1)
    return AlertDecision(True, severity, reason, sent, undelivered=state)


def dedup_key(cluster: ClusterRef, node: str, condition: str) -> str:
    return f"{cluster.arm_id.lower()}|{node}|{condition}"


def finding_alert(finding: NodeFinding, decision: AlertDecision, now: datetime, *, run_id: str | None = None) -> Alert:
    age_minutes = int((now - decision.state.first_seen).total_seconds() // 60)
    if finding.blockers:
        held = "; ".join(f"pod {b.pod} blocked by PDB {b.pdb} ({b.disruptions_allowed} disruptions allowed)"
                         for b in finding.blockers)
    else:
        held = "no PDB blocks its pods now"
    if finding.holds:
        held += "; held by its applications: " + "; ".join(f"{h.by} ({h.reason})" for h in finding.holds)
    what = (
        f"Node {finding.node} of pool {finding.pool} is quarantined by AKS ({QUARANTINE_LABEL}=Quarantined), "
        f"cordoned at {finding.kubernetes_version}"
        if finding.quarantined
        else f"Node {finding.node} of pool {finding.pool} is cordoned at {finding.kubernetes_version}"
    )
    return Alert(
        kind=f"node.{finding.condition}",
        severity=decision.severity,
        cluster=finding.cluster.arm_id,
        pool=finding.pool,
        node=finding.node,
        run_id=run_id,
        summary=f"{what} for {age_minutes} min: {held}.",
        blockers=tuple(b.to_public() for b in finding.blockers),
        options=tuple(o.to_public() for o in finding.options),
        details={
            "clusterName": finding.cluster.name,
            "condition": finding.condition,
            "since": decision.state.first_seen.isoformat(),
            "ageMinutes": age_minutes,
            "pods": list(finding.pods),
            "unmanagedPods": list(finding.unmanaged_pods),
            "holds": [h.to_public() for h in finding.holds],
            "alertReason": decision.reason,
            "alertCount": decision.state.alert_count,
        },
        dedup_key=dedup_key(finding.cluster, finding.node, finding.condition),
    )


def resolved_alert(cluster: ClusterRef, state: AlertState, now: datetime, *, how: str = "",
                   run_id: str | None = None) -> Alert | None:
    """The notice that a node we alerted about is clear; None when no alert was ever sent."""
    if state.alert_count == 0:
        return None
    minutes = int((now - state.first_seen).total_seconds() // 60)
    return Alert(
        kind="node.resolved",
        severity="info",
        cluster=cluster.arm_id,
        pool=state.pool or None,
        node=state.node,
        run_id=run_id,
        summary=f"Node {state.node} is no longer {state.condition} (after {minutes} min){': ' + how if how else ''}.",
        details={"clusterName": cluster.name, "condition": state.condition, "since": state.first_seen.isoformat(),
                 "resolvedAt": now.isoformat()},
        dedup_key=dedup_key(cluster, state.node, state.condition),
    )


def alert_state_partition(cluster: ClusterRef) -> str:
    """Table storage keys may not hold '/', so the cluster is named by its id parts."""
    return f"quarantine:{cluster.subscription_id}:{cluster.resource_group}:{cluster.name}".lower()
