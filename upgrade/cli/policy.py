"""``python -m upgrade policy check FILE|-``: validate an UPGRADE_POLICY before deploying it.

The file is checked exactly as the app checks the setting when it starts (the same code, the same
errors naming the JSON path at fault). Cluster entries are checked against ALLOWED_CLUSTERS when
``--allowed-clusters`` or the ALLOWED_CLUSTERS environment variable gives it.
"""

from __future__ import annotations

import argparse
import os
import sys

from upgrade.cli.output import add_output_argument, print_data
from upgrade.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("policy", help="validate an UPGRADE_POLICY file",
                                   description=__doc__.split("\n\n")[1])
    actions = parser.add_subparsers(dest="policy_action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate a policy file as the app would",
                               description=__doc__.split("\n\n")[1])
    check.add_argument("file", metavar="FILE|-", help="the policy JSON file, or - for stdin")
    check.add_argument("--allowed-clusters", default=os.environ.get("ALLOWED_CLUSTERS", ""), metavar="IDS",
                       help="comma-separated or JSON list of cluster ARM ids ($ALLOWED_CLUSTERS)")
    add_output_argument(check)
    check.set_defaults(handler=run_check)


def read_policy_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8-sig") as stream:
            return stream.read()
    except OSError as exc:
        raise InvalidInput("policy file", "FILE", f"cannot read {path!r}: {exc.strerror}") from exc


def run_check(args: argparse.Namespace) -> int:
    from upgrade.settings import check_policy

    policy = check_policy(read_policy_file(args.file), args.allowed_clusters)
    summary = {
        "valid": True,
        "clusters": sorted(policy.clusters),
        "pools": sorted(f"{cluster}/{pool}" for cluster, pool in policy.pools),
        "allowListChecked": bool(args.allowed_clusters.strip()),
        "defaults": policy.defaults.to_public(),
    }
    if print_data(summary, args.output):
        return 0
    print(f"{args.file}: a valid UPGRADE_POLICY (defaults, {len(policy.clusters)} cluster entr"
          f"{'y' if len(policy.clusters) == 1 else 'ies'}, {len(policy.pools)} pool entr"
          f"{'y' if len(policy.pools) == 1 else 'ies'})")
    if not summary["allowListChecked"]:
        print("note: cluster entries were not checked against ALLOWED_CLUSTERS (give --allowed-clusters)")
    return 0
