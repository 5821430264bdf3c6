"""``python -m upgrade drain NODE``: cordon and drain a node like ``kubectl drain``, with live progress.

It reads and changes the cluster directly (with ``--kubeconfig``, or the cluster's own
credentials), not through the app, and says so. Same options and pod rules as kubectl drain; evictions of the node go out concurrently and pods
are checked with one list call per poll. Exit 0 when the node is drained; 1 when a PDB still
blocks it at the timeout, pods are refused, or an eviction failed (the blocking PDBs are named).
"""

from __future__ import annotations

import argparse
import re

from upgrade.cli.common import add_cluster_arguments, connect
from upgrade.domain.drain import DrainOptions, DrainStatus, PodDrainState
from upgrade.errors import InvalidInput

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)?")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}


def parse_duration(text: str) -> float:
    """kubectl's durations: ``90``, ``90s``, ``5m``, ``1h30m``; 0 = no timeout."""
    text = text.strip()
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if not match:
            raise InvalidInput("command line", "--timeout", f"{text!r} is not a duration like 90s, 5m, 1h30m")
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        position = match.end()
    if not text:
        raise InvalidInput("command line", "--timeout", "empty duration")
    return total


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drain", help="cordon and drain a node (kubectl drain semantics)", description=__doc__.split("\n\n")[1]
    )
    add_cluster_arguments(parser)
    parser.add_argument("node", metavar="NODE")
    parser.add_argument("--ignore-daemonsets", action="store_true", help="skip DaemonSet-managed pods")
    parser.add_argument(
        "--delete-emptydir-data", action="store_true", help="evict pods with emptyDir (their data is lost)"
    )
    parser.add_argument("--force", action="store_true", help="evict pods no controller recreates")
    parser.add_argument(
        "--grace-period", type=int, default=-1, metavar="N", help="seconds; -1 = each pod's own (default)"
    )
    parser.add_argument("--pod-selector", metavar="S", help="only pods matching this label selector")
    parser.add_argument("--timeout", default="0", metavar="DURATION", help="give up after this (0 = never)")
    parser.set_defaults(handler=run)


def _options(args: argparse.Namespace) -> DrainOptions:
    return DrainOptions(
        ignore_daemonsets=args.ignore_daemonsets,
        delete_emptydir_data=args.delete_emptydir_data,
        force=args.force,
        grace_seconds=args.grace_period,
        pod_selector=args.pod_selector,
        timeout_seconds=parse_duration(args.timeout),
    )


def _render(progress):
    from rich.table import Table

    table = Table(title=f"drain {progress.node}: {progress.status.value} ({progress.elapsed_seconds:.1f}s)")
    for column in ("gone", "terminating", "blocked", "skipped", "refused", "failed"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            str(progress.count(state))
            for state in (
                PodDrainState.GONE,
                PodDrainState.EVICTING,
                PodDrainState.BLOCKED,
                PodDrainState.SKIPPED,
                PodDrainState.REFUSED,
                PodDrainState.FAILED,
            )
        )
    )
    return table


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from upgrade.services.drain import drain_node

    options = _options(args)
    console = Console()
    connection = connect(args)
    # The one operator command that acts on a cluster itself: say so, it is not in the app's audit.
    Console(stderr=True).print(f"note: draining {args.node} directly with your own credentials "
                  f"({'kubeconfig ' + args.kubeconfig if args.kubeconfig else 'cluster ' + args.cluster}), "
                  "not through the app: no run record, no audit trail", markup=False, highlight=False)
    try:
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            result = drain_node(
                connection.kube, args.node, options, lambda progress: live.update(_render(progress))
            )
    finally:
        connection.close()
    for report in result.pods:
        if report.state in (PodDrainState.BLOCKED, PodDrainState.REFUSED, PodDrainState.FAILED):
            console.print(f"  {report.describe()}", markup=False, highlight=False)
        elif report.state is PodDrainState.SKIPPED:
            console.print(f"  warning: {report.describe()}", markup=False, highlight=False)
    console.print(result.summary(), markup=False, highlight=False)
    return 0 if result.status is DrainStatus.DRAINED else 1
