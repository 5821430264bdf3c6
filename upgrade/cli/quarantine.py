"""``python -m upgrade quarantine``: list quarantined and cordoned nodes, request a remediation.

``list`` reads each cluster live (one node list, one PDB list, one pod list per cordoned node)
and prints every finding with its blockers and ways out; ``remediate`` starts the same
remediation run as ``POST /api/quarantine/{cluster}/{node}/remediate`` (the app's queue and
tables, so the Functions worker carries it out).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from upgrade.cli.common import cli_settings
from upgrade.domain.model import ClusterRef
from upgrade.domain.policy import REMEDIATION_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quarantine", help="quarantined nodes: list them, remediate one",
                                   description=__doc__.split("\n\n")[1])
    actions = parser.add_subparsers(dest="quarantine_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list cordoned and quarantined nodes with their blockers")
    listing.add_argument("--cluster", metavar="ARM_ID", required=True, help="the AKS cluster's ARM resource id")
    listing.add_argument("--json", action="store_true", help="print the findings as JSON")
    listing.set_defaults(handler=run_list)
    remediate = actions.add_parser("remediate", help="start a remediation run for a node")
    remediate.add_argument("--cluster", metavar="ARM_ID", required=True, help="the AKS cluster's ARM resource id")
    remediate.add_argument("node", help="the node's name")
    remediate.add_argument("--kind", required=True, choices=REMEDIATION_KINDS)
    remediate.add_argument("--force", action="store_true", help="delete-pod: also delete pods without a controller")
    remediate.set_defaults(handler=run_remediate)


def _platform(cluster_id: str):
    from upgrade.wiring import AzurePlatform

    cluster = ClusterRef.parse(cluster_id, what="command line", field="--cluster")
    return cluster, AzurePlatform(cli_settings(cluster))


def run_list(args: argparse.Namespace) -> int:
    from upgrade.services.quarantine_scan import current_findings

    cluster, platform = _platform(args.cluster)
    findings = current_findings(platform, cluster)
    if args.json:
        json.dump(findings, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not findings:
        print(f"no cordoned nodes in {cluster.name}")
    for finding in findings:
        print(f"{finding['node']} ({finding['pool']}, {finding['kubernetesVersion']}): {finding['condition']}")
        for blocker in finding["blockers"]:
            print(f"  blocked: {blocker['pod']} by PDB {blocker['pdb']} "
                  f"({blocker['disruptionsAllowed']} disruptions allowed)")
        for option in finding["options"]:
            note = "" if option["applicable"] else f"  [not applicable: {option['caveat']}]"
            print(f"  option {option['kind']}: {option['description']}{note}")
            for line in option["command"].splitlines():
                print(f"      {line}")
    return 0


def run_remediate(args: argparse.Namespace) -> int:
    from upgrade.services.remediation import request_remediation

    cluster, platform = _platform(args.cluster)
    run = request_remediation(platform, cluster, args.node, args.kind, actor=f"cli:{getpass.getuser()}",
                              force=args.force)
    print(json.dumps(run.to_public(), indent=2, default=str))
    return 0
