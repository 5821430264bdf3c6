"""``python -m upgrade quarantine list|remediate|scan``: stuck nodes and their ways out, through the app.

``list`` prints the app's live findings (``GET /api/quarantine``): each cordoned or quarantined
node, the pods and PDBs that hold it, and the ways out, with the app's request only for those the
pool's policy allows. ``remediate`` starts a remediation run
(``POST /api/quarantine/{cluster}/{node}/remediate``); ``scan`` runs the timer's scan now
(``POST /api/quarantine/scan``), so alerts go out at once.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from upgrade.cli.output import Column, add_output_argument, cluster_name, print_data, print_lines, print_table
from upgrade.cli.status import API_HELP, UpgradeApi, add_api_arguments
from upgrade.domain.policy import REMEDIATION_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    description = " ".join(__doc__.split("\n\n")[1:2]) + " " + API_HELP
    parser = subparsers.add_parser("quarantine", help="quarantined nodes: list them, remediate one, scan now",
                                   description=description)
    actions = parser.add_subparsers(dest="quarantine_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="cordoned and quarantined nodes with their blockers",
                                 description=description)
    listing.add_argument("--cluster", metavar="NAME|ARM_ID", help="one allowed cluster (default: all)")
    add_output_argument(listing)
    add_api_arguments(listing)
    listing.set_defaults(handler=run_list)
    remediate = actions.add_parser("remediate", help="start a remediation run for a node", description=description)
    remediate.add_argument("node", help="the node's name")
    remediate.add_argument("--cluster", metavar="NAME|ARM_ID", required=True, help="the node's cluster")
    remediate.add_argument("--kind", required=True, choices=REMEDIATION_KINDS)
    remediate.add_argument("--force", action="store_true", help="delete-pod: also delete pods without a controller")
    add_output_argument(remediate)
    add_api_arguments(remediate)
    remediate.set_defaults(handler=run_remediate)
    scan = actions.add_parser("scan", help="scan now, as the timer does, and alert", description=description)
    scan.add_argument("--cluster", metavar="NAME|ARM_ID", help="one allowed cluster (default: all)")
    add_output_argument(scan)
    add_api_arguments(scan)
    scan.set_defaults(handler=run_scan)


def _cluster_query(cluster: str | None) -> str:
    return f"?cluster={quote(cluster, safe='')}" if cluster else ""


FINDING_COLUMNS = (
    Column("node", key=True), Column("condition", key=True), Column("pool", key=True), Column("version", drop=2),
    Column("blocked by", key=True), Column("cluster", wide=True), Column("since", wide=True),
)
OPTION_COLUMNS = (
    Column("node", key=True), Column("option"), Column("app request"), Column("note", drop=1),
)


def run_list(args: argparse.Namespace) -> int:
    findings = UpgradeApi.from_args(args).call("GET", "/api/quarantine" + _cluster_query(args.cluster))["findings"]
    if print_data(findings, args.output):
        return 0
    if not findings:
        print_lines([f"no cordoned nodes in {args.cluster or 'any allowed cluster'}"])
        return 0
    rows = [(f["node"], f["condition"], f["pool"], f["kubernetesVersion"], _blocked_by(f),
             cluster_name(f["cluster"]), f.get("cordonedAt") or "") for f in findings]
    print_table(FINDING_COLUMNS, rows, output=args.output)
    options = [(f["node"], o["kind"], _request_state(o), o.get("enable") or o["caveat"])
               for f in findings for o in f["options"]]
    print_table(OPTION_COLUMNS, options, output=args.output, title="ways out")
    if args.output == "wide":
        for finding in findings:
            for option in finding["options"]:
                print_lines([f"{finding['node']} {option['kind']}:", *(f"    {line}" for line in
                                                                        option["command"].splitlines())])
    return 0


def _blocked_by(finding: dict[str, Any]) -> str:
    """Each blocking pod with its PDB, one per line: ``ns/pod (PDB ns/pdb)``."""
    return "\n".join(f"{b['pod']} (PDB {b['pdb']})" for b in finding["blockers"]) or "nothing now"


def _request_state(option: dict[str, Any]) -> str:
    if not option.get("request"):
        return "off in policy"
    return "ready" if option["applicable"] else "not applicable"


def run_remediate(args: argparse.Namespace) -> int:
    segment = args.cluster if not args.cluster.startswith("/") else cluster_name(args.cluster)
    body: dict[str, Any] = {"kind": args.kind, "force": args.force}
    if args.cluster.startswith("/"):
        body["clusterId"] = args.cluster
    run = UpgradeApi.from_args(args).call(
        "POST", f"/api/quarantine/{quote(segment, safe='')}/{quote(args.node, safe='')}/remediate", body)
    if not print_data(run, args.output):
        print_lines([f"started {run['id']}: {args.kind} of node {args.node} ({run['status']})",
                     f"follow it with: python -m upgrade status {run['id']}"])
    return 0


def run_scan(args: argparse.Namespace) -> int:
    answer = UpgradeApi.from_args(args).call("POST", "/api/quarantine/scan" + _cluster_query(args.cluster))
    if not print_data(answer, args.output):
        print_lines([f"scan queued for {cluster_name(c)}" for c in answer["scansQueued"]] + [answer["note"]])
    return 0
