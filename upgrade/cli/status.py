"""``python -m upgrade status [ID]``: upgrade runs as the app records them, a run as a timeline.

The CLI talks to the app's HTTP API (one source of truth: the same run records, decisions and
audit trail as every other caller), never to storage directly. The API's base URL and function key
come from ``--api-url``/``--function-key`` or AKS_UPGRADE_API_URL/AKS_UPGRADE_FUNCTION_KEY.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

from upgrade.errors import Conflict, InvalidInput, NotAllowed, NotFound, PermanentError, UpgradeError

API_URL_ENV = "AKS_UPGRADE_API_URL"
FUNCTION_KEY_ENV = "AKS_UPGRADE_FUNCTION_KEY"
API_HELP = (
    "Talks to the app's HTTP API (the single source of truth for runs): --api-url or "
    f"{API_URL_ENV} (e.g. https://<app>.azurewebsites.net), --function-key or {FUNCTION_KEY_ENV}."
)


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("app API")
    group.add_argument("--api-url", default=os.environ.get(API_URL_ENV, ""), help=f"the app's base URL (${API_URL_ENV})")
    group.add_argument("--function-key", default=os.environ.get(FUNCTION_KEY_ENV, ""),
                       help=f"a function key of the app (${FUNCTION_KEY_ENV})")


class UpgradeApi:
    """A thin client of /api/upgrades; the app's error answers come back as the project's errors."""

    def __init__(self, base_url: str, function_key: str, *, timeout: float = 30.0) -> None:
        if not base_url:
            raise InvalidInput("command line", "--api-url", f"give the app's URL (or set {API_URL_ENV})")
        self.base_url = base_url.rstrip("/")
        self.function_key = function_key
        self.timeout = timeout

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> UpgradeApi:
        return cls(args.api_url, args.function_key)

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.function_key:
            headers["x-functions-key"] = self.function_key
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
        return NotAllowed(f"the app refused the function key (HTTP 401); give --function-key or ${FUNCTION_KEY_ENV}")
    if status == 403:
        return NotAllowed(message)
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
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    add_api_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    api = UpgradeApi.from_args(args)
    if args.run_id:
        body = api.run(args.run_id)
        print(json.dumps(body, indent=2)) if args.json else print_timeline(body)
    else:
        runs = api.runs(args.cluster, args.limit)
        print(json.dumps(runs, indent=2)) if args.json else print_runs(runs)
    return 0


def _cluster_name(arm_id: str) -> str:
    return arm_id.rstrip("/").rsplit("/", 1)[-1]


def print_runs(runs: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="upgrade runs", title_justify="left")
    for column in ("id", "kind", "cluster", "pool", "target", "state", "status", "updated"):
        table.add_column(column)
    for r in runs:
        # Text cells: what the app answers is data (names, reasons), never rich markup
        table.add_row(*map(Text, (r["id"], r["kind"], _cluster_name(r["cluster"]), r.get("pool") or "",
                                  r.get("targetVersion") or "", r["state"].split(".", 1)[-1], r["status"],
                                  r["updatedAt"][:19])))
    Console().print(table)


def print_timeline(run: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    facts = run.get("facts") or {}
    # Reasons, actors and names come from operators and clusters: printed as Text, markup never applied.
    console.print(Text.assemble((run["id"], "bold"), f"  {run['kind']}  {_cluster_name(run['cluster'])}/"
                                f"{run.get('pool') or ''} -> {run.get('targetVersion') or ''}"))
    console.print(Text.assemble("state ", (run["state"].split(".", 1)[-1], "bold"), "  status ",
                                (run["status"], "bold"),
                                f"  green pool {facts['greenPool']}" if facts.get("greenPool") else ""))
    if run.get("reason"):
        console.print(Text(f"reason: {run['reason']}"))
    table = Table(title="timeline", title_justify="left")
    for column in ("at", "step", "#", "outcome", "actor", "reason"):
        table.add_column(column, overflow="fold")
    for entry in run.get("timeline", []):
        table.add_row(*map(Text, (entry["at"][11:19], entry["step"].split(".", 1)[-1], str(entry["attempt"]),
                                  entry["outcome"], entry["actor"], entry["reason"])))
    console.print(table)
