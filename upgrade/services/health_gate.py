"""The health gate, one implementation for a rollout's stage and a Fleet update-run gate: what it
finds on each cluster (read live, with the app's records) and why it does not hold (pure, in
``upgrade.domain.rollouts.gate_failures``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from upgrade.domain.alerts import SEVERITIES
from upgrade.domain.model import NODE_IMAGE_LABEL, ClusterRef
from upgrade.domain.node_images import nodes_off_image
from upgrade.domain.quarantine import AlertState, alert_state_partition
from upgrade.domain.rollouts import ClusterEvidence, HealthGate, gate_failures
from upgrade.ports import Platform

# The runs whose workload validation counts, per cluster: pool -> run id.
RunsOf = Callable[[str], Mapping[str, str]]


def gate_evidence(platform: Platform, clusters: Sequence[str], runs_of: RunsOf, *,
                  node_images: Mapping[str, str] | None = None) -> dict[str, ClusterEvidence]:
    """What the health gate looks at for each cluster: cordoned or quarantined nodes still there
    (read live), failed workload validation of the runs ``runs_of`` names (a blue-green run's), the
    node alerts still open (the quarantine alert states: an entry is removed when resolved), and,
    with ``node_images`` (a node-image rollout's pin, family -> image), the nodes not on it."""
    from upgrade.services.quarantine_scan import read_cordoned, rolling_upgrade_facts

    found = {}
    for cluster in clusters:
        ref = ClusterRef.parse(cluster)
        reading = read_cordoned(platform.kube(ref), ref, pool_facts=rolling_upgrade_facts(platform, ref))
        findings = tuple(f"node {f.node} of pool {f.pool} {f.condition}"
                         + (f" (pod {', '.join(f'{b.pod} held by PDB {b.pdb}' for b in f.blockers)})" if f.blockers else "")
                         for f in reading.findings)
        failed_validation = []
        for pool, run_id in runs_of(cluster).items():
            validation = platform.runs.get(run_id).facts.get("validation") or {}
            if validation.get("passed") is False:
                failed_validation.append(f"pool {pool}: {validation.get('summary', 'failed')}")
        alerts = []
        for _, value in platform.state.list(alert_state_partition(ref)):
            try:
                state = AlertState.from_storage(value)
            except (KeyError, ValueError):
                continue
            if state.severity in SEVERITIES:
                alerts.append((state.severity, f"node {state.node} {state.condition}"))
        images = [(n.name, n.label(NODE_IMAGE_LABEL)) for n in platform.kube(ref).list_nodes()] if node_images else []
        found[cluster] = ClusterEvidence(cluster, open_findings=findings, validation_failed=tuple(failed_validation),
                                         open_alerts=tuple(alerts), off_image=tuple(nodes_off_image(images, node_images or {})),
                                         past_image=tuple(nodes_off_image(images, node_images or {}, past_only=True)))
    return found


def latest_runs(platform: Platform, cluster: str) -> dict[str, str]:
    """The newest run of each pool of ``cluster`` (for a gate outside a rollout)."""
    newest: dict[str, str] = {}
    for run in platform.runs.list_runs(cluster=cluster):
        if run.pool and run.pool not in newest:
            newest[run.pool] = run.run_id
    return newest


def health_gate_failures(platform: Platform, gate: HealthGate, clusters: Sequence[str], runs_of: RunsOf) -> list[str]:
    """Why ``gate`` does not hold for ``clusters`` (empty: it holds)."""
    evidence = gate_evidence(platform, clusters, runs_of)
    return gate_failures(gate, [evidence[c] for c in clusters])
