"""What the app does for each AKS event: the shared vocabulary of ``on_aks_event``.

``planned_reaction`` is pure: it describes the reaction (for the CLI's dry run, logs and the
services that carry it out) without doing anything. The policy decides what a new Kubernetes
version leads to; every other event type has one fixed reaction. Reactions are keyed by the
event id so a duplicate delivery is recognised, and none depends on arrival order.
"""

from __future__ import annotations

from typing import Any

from upgrade.domain import events as ev
from upgrade.domain.policy import PoolPolicy

# Actions
PREFLIGHT = "preflight"
ALERT = "alert"
RECORD_ROLLING_RUN = "record-rolling-run"
POST_UPGRADE_RECONCILE = "post-upgrade-reconcile"

# What follows the preflight of a new version, by policy ``onNewVersion`` and ``strategy``.
THEN_NOTIFY = "notify"
THEN_REPORT = "report"
THEN_START_ROLLING = "start-rolling"
THEN_START_BLUE_GREEN = "start-blue-green"


def planned_reaction(event: ev.AksEvent, policy: PoolPolicy | None = None) -> dict[str, Any]:
    """The reaction to ``event`` as plain data: ``action`` plus what it needs.

    ``policy`` is the cluster's effective policy; None means the policy's defaults."""
    base: dict[str, Any] = {
        "event": event.event_type,
        "eventId": event.id,
        "cluster": event.cluster.arm_id,
        "dedupKey": f"{event.cluster.arm_id.lower()}|{event.event_type}|{event.id}",
    }
    if isinstance(event, ev.NewKubernetesVersionAvailable):
        policy = policy or PoolPolicy()
        strategy, on_new_version = policy.strategy, policy.on_new_version
        then = {
            "notify": THEN_NOTIFY,
            "preflight-report": THEN_REPORT,
            "start": THEN_START_BLUE_GREEN if strategy == "blue-green" else THEN_START_ROLLING,
        }[on_new_version]
        target = event.latest_stable_kubernetes_version
        steps = {
            THEN_NOTIFY: ["preflight", "alert info: new version available"],
            THEN_REPORT: ["preflight", "alert info: preflight report"],
            THEN_START_ROLLING: ["preflight", "apply upgradeSettings", "set pool version"],
            THEN_START_BLUE_GREEN: ["preflight", "start the blue-green workflow"],
        }[then]
        return base | {
            "action": PREFLIGHT,
            "then": then,
            "strategy": strategy,
            "targetVersion": target,
            "steps": steps,
            "summary": f"run the upgrade preflight for {target} on every pool, then {then.replace('-', ' ')}",
        }
    if isinstance(event, ev.ClusterSupportEnding | ev.ClusterSupportEnded):
        ended = isinstance(event, ev.ClusterSupportEnded)
        state = "has ended" if ended else "is ending"
        return base | {
            "action": ALERT,
            "severity": "error" if ended else "warning",
            "kubernetesVersion": event.kubernetes_version,
            "summary": f"alert: support for Kubernetes {event.kubernetes_version} {state}",
        }
    if isinstance(event, ev.NodePoolRollingStarted):
        return base | {
            "action": RECORD_ROLLING_RUN,
            "pool": event.node_pool_name,
            "snapshot": ["pool count", "upgradeSettings", "nodes"],
            "summary": f"record a rolling run for pool {event.node_pool_name} with a snapshot of its count and settings",
        }
    if isinstance(event, ev.NodePoolRollingSucceeded | ev.NodePoolRollingFailed):
        outcome = "succeeded" if isinstance(event, ev.NodePoolRollingSucceeded) else "failed"
        return base | {
            "action": POST_UPGRADE_RECONCILE,
            "pool": event.node_pool_name,
            "outcome": outcome,
            "summary": (
                f"enqueue a post-upgrade reconcile of pool {event.node_pool_name} ({outcome}): quarantined and "
                "cordoned nodes, their blocking pods and PDBs, permanent surge nodes, the failure reason"
            ),
        }
    raise TypeError(f"no reaction defined for {type(event).__name__}")
