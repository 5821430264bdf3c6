"""``python -m upgrade preflight``: predict what an upgrade of a pool will do, before starting it.

Reads the cluster once (nodes, pods, PDBs, pools) and prints the surge and its vCPU quota, the
pods that cannot be evicted and why, the nodes AKS will quarantine (Cordon) or fail on (Schedule),
the permanent surge nodes, the resulting node count and the operation's expected final state.
Upgrade settings given on the command line replace the pool's own for the prediction only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from upgrade.cli.common import add_cluster_arguments, connect
from upgrade.domain.model import ClusterRef, UpgradeSettings
from upgrade.domain.pdb import budget_text
from upgrade.domain.preflight import BLUE_GREEN, ROLLING, PlannedUpgrade, PreflightReport, preflight
from upgrade.services.snapshot import read_snapshot

UNDRAINABLE_CHOICES = {"cordon": "Cordon", "schedule": "Schedule"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preflight", help="predict the outcome of a node pool upgrade", description=__doc__.split("\n\n")[1]
    )
    add_cluster_arguments(parser)
    parser.add_argument("--pool", required=True, help="the agent pool to upgrade")
    parser.add_argument("--target-version", help="Kubernetes version (default: a node image upgrade of every node)")
    parser.add_argument("--strategy", choices=(ROLLING, BLUE_GREEN), default=ROLLING)
    parser.add_argument("--max-surge", help='integer or percent, e.g. "1" or "33%%"')
    parser.add_argument("--max-unavailable", help="integer or percent")
    parser.add_argument("--max-blocked-nodes", help="integer or percent (Cordon only)")
    parser.add_argument("--drain-timeout", type=int, metavar="MINUTES", help="drainTimeoutInMinutes")
    parser.add_argument("--undrainable", choices=sorted(UNDRAINABLE_CHOICES), help="undrainableNodeBehavior")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def planned_upgrade(args: argparse.Namespace) -> PlannedUpgrade:
    return PlannedUpgrade(
        pool=args.pool,
        strategy=args.strategy,
        target_version=args.target_version,
        settings=UpgradeSettings(
            max_surge=args.max_surge,
            max_unavailable=args.max_unavailable,
            drain_timeout_minutes=args.drain_timeout,
            undrainable_node_behavior=UNDRAINABLE_CHOICES[args.undrainable] if args.undrainable else None,
            max_blocked_nodes=args.max_blocked_nodes,
        ),
    )


def run(args: argparse.Namespace) -> int:
    plan = planned_upgrade(args)
    connection = connect(args)
    try:
        # A bare kubeconfig names no ARM resource: the report is labelled with the file's name.
        cluster = connection.cluster or ClusterRef("local", "kubeconfig", Path(args.kubeconfig).stem)
        snapshot = read_snapshot(connection.kube, connection.aks, cluster)
    finally:
        connection.close()
    report = preflight(snapshot, plan)
    if args.json:
        json.dump(report.to_public(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(report)
    return 0


def print_report(report: PreflightReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    colour = {"Succeeded": "green", "Failed": "red", "Canceled": "yellow"}[report.final_state]
    summary = Table(title=f"Preflight: {report.strategy} upgrade of pool {report.pool}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    settings = report.settings
    rows = [
        ("cluster", report.cluster),
        ("target version", report.target_version or "node image"),
        ("upgrade settings", f"maxSurge={settings.max_surge or '10%'} maxUnavailable={settings.max_unavailable or '0'} "
                             f"undrainable={settings.undrainable_node_behavior or 'Schedule'} "
                             f"maxBlockedNodes={settings.max_blocked_nodes or '(= maxSurge)'}"),
        ("nodes", f"{report.pool_node_count} in pool, {len(report.nodes_to_upgrade)} to upgrade, "
                  f"batches of {report.batch_size}"),
        ("surge nodes", f"{report.surge_node_count} x {report.vm_size}"),
        ("extra vCPU quota", "unknown" if report.extra_vcpus is None else str(report.extra_vcpus)),
        ("quarantined (Cordon)", ", ".join(report.quarantined_nodes) or "none"),
        ("failed on (Schedule)", ", ".join(report.failed_nodes) or "none"),
        ("not reached", ", ".join(report.untouched_nodes) or "none"),
        ("permanent surge nodes", str(report.permanent_surge_nodes)),
        ("resulting node count", str(report.resulting_node_count)),
        ("final state", f"[{colour}]{report.final_state}[/{colour}]"),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)
    blockers = [(n.node, b) for n in report.undrainable_nodes for b in n.blockers]
    if blockers:
        table = Table(title="Pods that will never be evicted")
        for column in ("node", "pod", "PDB", "budget", "allowed", "healthy/expected", "owner"):
            table.add_column(column)
        for node, b in blockers:
            table.add_row(node, b.pod, b.pdb, budget_text(b.min_available, b.max_unavailable), str(b.disruptions_allowed),
                          f"{b.current_healthy}/{b.expected_pods}", f"{b.owner or 'unmanaged'} ({b.replicas})")
        console.print(table)
    # Text from the cluster is printed as it is, never read as rich markup.
    if report.blocked_now:
        console.print("Evictions refused right now: " + ", ".join(b.pod for b in report.blocked_now), markup=False)
    for problem in report.unsatisfiable_pdbs:
        console.print(Text("UnsatisfiablePDB: ", style="yellow") + Text(problem))
    if report.final_message:
        console.print("AKS will report: " + report.final_message, markup=False)
    for warning in report.warnings:
        console.print(Text("warning: ", style="yellow") + Text(warning))
