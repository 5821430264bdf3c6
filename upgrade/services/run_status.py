"""A run as an operator reads it: the record and its step history as a timeline."""

from __future__ import annotations

from typing import Any

from upgrade.errors import InvalidInput
from upgrade.ports import Platform

MAX_LIST_LIMIT = 500


def run_timeline(run_id: str, platform: Platform) -> dict[str, Any]:
    """The run's public record plus its history, oldest first. Raises NotFound."""
    run = platform.runs.get(run_id)
    history = sorted(platform.runs.history(run_id), key=lambda h: (h.at, h.attempt))
    return {**run.to_public(), "timeline": [h.to_public() for h in history]}


def list_runs_from_query(platform: Platform, *, cluster: str | None, limit: str | None) -> dict[str, Any]:
    """GET /api/upgrades[?cluster=ARM-id&limit=N]: the newest runs, public form."""
    limit = "50" if limit is None else limit
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST_LIMIT:
        raise InvalidInput("query", "limit", f"must be an integer from 1 to {MAX_LIST_LIMIT}")
    runs = platform.runs.list_runs(cluster=cluster or None, limit=int(limit))
    return {"runs": [run.to_public() for run in runs]}
