"""``python -m upgrade status [ID]``: upgrade runs as the app records them, a run as a timeline.

The CLI talks to the app's HTTP API (one source of truth: the same run records, decisions and
audit trail as every other caller), never to storage directly. The API's base URL comes from
``--api-url`` or AKS_UPGRADE_API_URL; the CLI signs in as the operator (upgrade.cli.common.ApiCredential).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from upgrade.cli.common import ACCESS_TOKEN_ENV, API_SCOPE_ENV, ApiCredential
from upgrade.cli.output import Column, add_output_argument, cluster_name, print_data, print_lines, print_table
from upgrade.errors import (
    Conflict,
    InvalidInput,
    NotAllowed,
    NotFound,
    NotSignedIn,
    PermanentError,
    UpgradeError,
)

API_URL_ENV = "AKS_UPGRADE_API_URL"
API_HELP = (
    "Talks to the app's HTTP API (the single source of truth for runs): --api-url or "
    f"{API_URL_ENV} (e.g. https://<app>.azurewebsites.net), signed in with Entra ID for --api-scope "
    f"or {API_SCOPE_ENV} (or the token in {ACCESS_TOKEN_ENV})."
)


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("app API")
    group.add_argument("--api-url", default=os.environ.get(API_URL_ENV, ""), help=f"the app's base URL (${API_URL_ENV})")
    group.add_argument("--api-scope", default="",
                       help=f"the app registration's scope, api://<client id>/.default (${API_SCOPE_ENV})")


class UpgradeApi:
    """A thin client of /api/upgrades; the app's error answers come back as the project's errors.
    The first call says on stderr who the CLI acts as."""

    def __init__(self, base_url: str, credential: ApiCredential, *, timeout: float = 30.0) -> None:
        if not base_url:
            raise InvalidInput("command line", "--api-url", f"give the app's URL (or set {API_URL_ENV})")
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self._introduced = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> UpgradeApi:
        return cls(args.api_url, ApiCredential(args.api_scope))

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.credential.token()}"}
        if not self._introduced:
            self._introduced = True
            print(f"acting as {self.credential.acting_as()}", file=sys.stderr)
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _api_error(exc.code, exc.read()) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PermanentError(f"cannot reach the app at {self.base_url}: {exc}") from exc

    def run(self, run_id: str) -> dict:
        return self.call("GET", f"/api/upgrades/{run_id}")

    def runs(self, cluster: str | None = None, limit: int = 50) -> list[dict]:
        query = f"?limit={limit}" + (f"&cluster={urllib.request.quote(cluster)}" if cluster else "")
        return self.call("GET", "/api/upgrades" + query)["runs"]


def _api_error(status: int, raw: bytes) -> UpgradeError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"message": raw.decode("utf-8", "replace")[:500]}
    message = body.get("message") or f"HTTP {status}"
    if status == 400:
        return InvalidInput("request", body.get("field") or "(body)", message.split(": ", 2)[-1])
    if status == 401:
        return NotSignedIn(f"the app did not accept the sign-in (HTTP 401): {message}; check --api-scope "
                           f"(${API_SCOPE_ENV}) or ${ACCESS_TOKEN_ENV}")
    if status == 403:
        return NotAllowed(message, code=body.get("missingRole"))
    if status == 404:
        return NotFound(message)
    if status == 409:
        active = body.get("activeRunId")
        return Conflict(message + (f" (active run: {active})" if active else ""), code=active)
    return PermanentError(f"HTTP {status}: {message}", status=status)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="show upgrade runs, or one run as a timeline",
        description="Show the app's upgrade runs, or one run with its step timeline. " + API_HELP,
    )
    parser.add_argument("run_id", nargs="?", metavar="ID", help="a run id; without it, the latest runs")
    parser.add_argument("--cluster", metavar="ARM_ID", help="only runs on this cluster (list)")
    parser.add_argument("--limit", type=int, default=20, help="how many runs to list (default 20)")
    add_output_argument(parser)
    add_api_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    api = UpgradeApi.from_args(args)
    if args.run_id:
        body = api.run(args.run_id)
        if not print_data(body, args.output):
            print_timeline(body, args.output)
    else:
        runs = api.runs(args.cluster, args.limit)
        if not print_data(runs, args.output):
            print_runs(runs, args.output)
    return 0


def _short_state(state: str) -> str:
    return state.split(".", 1)[-1]


RUN_COLUMNS = (
    Column("id", key=True), Column("status", key=True), Column("kind", drop=2), Column("cluster", key=True),
    Column("pool", key=True), Column("target", drop=1), Column("state", drop=3), Column("updated", drop=4),
    Column("reason", wide=True),
)


def print_runs(runs: list[dict], output: str | None = None) -> None:
    rows = [(r["id"], r["status"], r["kind"], cluster_name(r["cluster"]), r.get("pool") or "",
             r.get("targetVersion") or "", _short_state(r["state"]), r["updatedAt"][:19], r.get("reason") or "")
            for r in runs]
    print_table(RUN_COLUMNS, rows, output=output)


TIMELINE_COLUMNS = (
    Column("at"), Column("step"), Column("#", drop=2), Column("outcome"), Column("actor", drop=1),
    Column("reason"),
)


def run_heading(run: dict) -> str:
    """``ID  KIND  CLUSTER/POOL -> TARGET``; a remediation names its kind and node instead."""
    options = run.get("options") or {}
    where = f"{cluster_name(run['cluster'])}/{run.get('pool') or ''}"
    if run.get("targetVersion"):
        where += f" -> {run['targetVersion']}"
    elif options.get("node"):
        where += f": {options.get('kind') or 'remediate'} node {options['node']}"
    return f"{run['id']}  {run['kind']}  {where}"


def print_timeline(run: dict, output: str | None = None) -> None:
    facts = run.get("facts") or {}
    # Reasons, actors and names come from operators and clusters: printed as they are, never as markup.
    lines = [run_heading(run),
             f"state {_short_state(run['state'])}  status {run['status']}"
             + (f"  green pool {facts['greenPool']}" if facts.get("greenPool") else "")]
    if run.get("reason"):
        lines.append(f"reason: {run['reason']}")
    print_lines(lines)
    timestamp = slice(0, 19) if output == "wide" else slice(11, 19)
    rows = [(e["at"][timestamp], _short_state(e["step"]), e["attempt"], e["outcome"], e["actor"], e["reason"])
            for e in run.get("timeline", [])]
    print_table(TIMELINE_COLUMNS, rows, output=output, title="timeline")
