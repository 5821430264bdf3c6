"""``python -m upgrade preflight``: predict what an upgrade of a pool will do, before starting it.

Predicts the surge and its vCPU quota, the pods that cannot be evicted and why, the nodes AKS will
quarantine (Cordon) or fail on (Schedule), the permanent surge nodes, the resulting node count and
the operation's expected final state. With ``--cluster`` the app predicts it
(``POST /api/upgrades/preflight``) with the settings its own run would apply: the pool's, the
pool policy's rolling settings over them, the flags over those. With ``--kubeconfig`` the CLI reads
that cluster itself, not through the app, and says which AKS defaults it assumed for the
upgradeSettings a kubeconfig cannot see.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from upgrade.cli.output import Column, add_output_argument, print_data, print_lines, print_table
from upgrade.cli.status import API_HELP, UpgradeApi, add_api_arguments
from upgrade.domain.model import ClusterRef, UpgradeSettings
from upgrade.domain.pdb import budget_text
from upgrade.domain.preflight import BLUE_GREEN, ROLLING, PlannedUpgrade, preflight
from upgrade.domain.surge import aks_defaults_applied
from upgrade.errors import InvalidInput

UNDRAINABLE_CHOICES = {"cordon": "Cordon", "schedule": "Schedule"}
EXIT_REFUSED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("preflight", help="predict the outcome of a node pool upgrade",
                                   description=" ".join(__doc__.split("\n\n")[1:3]) + " " + API_HELP)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cluster", metavar="NAME|ARM_ID", help="an allowed cluster: the app predicts")
    where.add_argument("--kubeconfig", metavar="FILE", help="read this cluster directly, not through the app")
    parser.add_argument("--pool", required=True, help="the agent pool to upgrade")
    parser.add_argument("--target-version", help="Kubernetes version (default: a node image upgrade of every node)")
    parser.add_argument("--strategy", choices=(ROLLING, BLUE_GREEN), default=ROLLING)
    parser.add_argument("--max-surge", help='integer or percent, e.g. "1" or "33%%"')
    parser.add_argument("--max-unavailable", help="integer or percent")
    parser.add_argument("--max-blocked-nodes", help="integer or percent (Cordon only)")
    parser.add_argument("--drain-timeout", type=int, metavar="MINUTES", help="drainTimeoutInMinutes")
    parser.add_argument("--undrainable", choices=sorted(UNDRAINABLE_CHOICES), help="undrainableNodeBehavior")
    add_output_argument(parser)
    add_api_arguments(parser)
    parser.set_defaults(handler=run)


def requested_settings(args: argparse.Namespace) -> UpgradeSettings:
    return UpgradeSettings(
        max_surge=args.max_surge,
        max_unavailable=args.max_unavailable,
        drain_timeout_minutes=args.drain_timeout,
        undrainable_node_behavior=UNDRAINABLE_CHOICES[args.undrainable] if args.undrainable else None,
        max_blocked_nodes=args.max_blocked_nodes,
    )


def report_through_the_app(args: argparse.Namespace) -> dict[str, Any]:
    settings = {k: v for k, v in requested_settings(args).to_arm().items() if v is not None}
    body: dict[str, Any] = {"cluster": args.cluster, "pool": args.pool, "strategy": args.strategy}
    if args.target_version:
        body["targetVersion"] = args.target_version
    if settings:
        body["options"] = {"upgradeSettings": settings}
    return UpgradeApi.from_args(args).call("POST", "/api/upgrades/preflight", body)


def report_from_kubeconfig(args: argparse.Namespace) -> dict[str, Any]:
    """Read the cluster directly; the pool's upgradeSettings are in ARM, out of a kubeconfig's
    reach, so every setting not given as a flag is AKS's default: the report names them."""
    from upgrade.adapters.kube import kube_from_kubeconfig
    from upgrade.services.snapshot import read_snapshot

    if not Path(args.kubeconfig).is_file():
        raise InvalidInput("command line", "--kubeconfig", f"no such file: {args.kubeconfig}")
    kube = kube_from_kubeconfig(args.kubeconfig)
    try:
        # A bare kubeconfig names no ARM resource: the report is labelled with the file's name.
        snapshot = read_snapshot(kube, None, ClusterRef("local", "kubeconfig", Path(args.kubeconfig).stem))
    finally:
        close = getattr(kube, "close", None)
        if callable(close):
            close()
    report = preflight(snapshot, PlannedUpgrade(pool=args.pool, strategy=args.strategy,
                                                target_version=args.target_version, settings=requested_settings(args)))
    return {**report.to_public(), "assumedDefaults": aks_defaults_applied(report.settings)}


def run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        report = report_from_kubeconfig(args)
        if report["assumedDefaults"]:
            print(f"note: read {args.kubeconfig} directly, not through the app; a kubeconfig does not show the "
                  f"pool's upgradeSettings, so these are AKS's defaults, assumed: {_settings_text(report['assumedDefaults'])} "
                  "(give them as flags, or use --cluster to have the app read the pool's own)", file=sys.stderr)
    else:
        report = report_through_the_app(args)
    if not print_data(report, args.output):
        print_report(report, args.output)
    return EXIT_REFUSED if report.get("finalState") == "Refused" else 0


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in settings.items())


def print_report(report: dict[str, Any], output: str | None = None) -> None:
    defaults = report.get("assumedDefaults") or report.get("aksDefaults") or {}
    settings = {k: v for k, v in (report.get("upgradeSettings") or {}).items() if v is not None}
    quota = report.get("extraVcpuQuota")
    lines = [
        f"Preflight: {report['strategy']} upgrade of pool {report['pool']}",
        f"cluster: {report['cluster']}",
        f"target version: {report.get('targetVersion') or 'node image'}",
        f"upgrade settings: {_settings_text(settings) or 'none set'}",
        (f"{'assumed AKS defaults' if 'assumedDefaults' in report else 'AKS defaults'}: "
         f"{_settings_text(defaults)}") if defaults else "",
        f"nodes: {report['poolNodeCount']} in pool, {len(report['nodesToUpgrade'])} to upgrade, "
        f"batches of {report['batchSize']}",
        f"surge nodes: {report['surgeNodeCount']} x {report['vmSize']}",
        f"extra vCPU quota: {'unknown' if quota is None else quota}",
        f"quarantined (Cordon): {', '.join(report['quarantinedNodes']) or 'none'}",
        f"failed on (Schedule): {', '.join(report['failedNodes']) or 'none'}",
        f"not reached: {', '.join(report['untouchedNodes']) or 'none'}",
        f"permanent surge nodes: {report['permanentSurgeNodes']}",
        f"resulting node count: {report['resultingNodeCount']}",
        f"final state: {report['finalState']}",
    ]
    print_lines(line for line in lines if line)
    blockers = [b for n in report["undrainableNodes"] for b in n["blockers"]]
    if blockers:
        columns = (Column("node", key=True), Column("pod", key=True), Column("pdb", key=True),
                   Column("budget", drop=2), Column("allowed"), Column("healthy/expected", drop=1),
                   Column("owner", drop=3))
        rows = [(b["node"], b["pod"], b["pdb"], budget_text(b["minAvailable"], b["maxUnavailable"]),
                 b["disruptionsAllowed"], f"{b['currentHealthy']}/{b['expectedPods']}",
                 f"{b['owner'] or 'unmanaged'} ({b['replicas']})") for b in blockers]
        print_table(columns, rows, output=output, title="Pods that will never be evicted")
    extra = [f"Evictions refused right now: {', '.join(b['pod'] for b in report['blockedNow'])}"
             if report["blockedNow"] else ""]
    extra += [f"UnsatisfiablePDB: {problem}" for problem in report["unsatisfiablePdbs"]]
    if report.get("finalMessage"):
        refused = report["finalState"] == "Refused"
        extra.append(f"{'AKS would refuse it' if refused else 'AKS will report'}: {report['finalMessage']}")
    extra += [f"warning: {warning}" for warning in report.get("warnings") or ()]
    print_lines(line for line in extra if line)
    print_lines(_gates_lines(report))


def _gates_lines(report: dict[str, Any]) -> list[str]:
    """The node image comparison, the maintenance windows of each gated action and the holds."""
    lines = []
    image = report.get("nodeImage")
    if image:
        lines.append(f"node image: {image['current'] or 'unknown'} -> latest {image['latest'] or 'unknown'}"
                     + (" (up to date)" if image["upToDate"] else
                        f"; nodes behind: {', '.join(image['nodesBehind']) or 'none'}"))
    for action, window in (report.get("maintenanceWindows") or {}).items():
        upcoming = ", ".join(f"{w['start'][:16]}Z-{w['end'][11:16]}Z ({w['config']})" for w in window["next"])
        lines.append(f"window for {action}: {window['status']}; next: {upcoming or 'none'}")
    lines += [f"held: node {h['node']} by {h['by']} ({h['source']}): {h['reason']}" for h in report.get("holds") or ()]
    return lines
