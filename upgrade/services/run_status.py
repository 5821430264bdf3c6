"""A run as an operator reads it: the record and its step history as a timeline."""

from __future__ import annotations

from typing import Any

from upgrade.ports import Platform


def run_timeline(run_id: str, platform: Platform) -> dict[str, Any]:
    """The run's public record plus its history, oldest first. Raises NotFound."""
    run = platform.runs.get(run_id)
    history = sorted(platform.runs.history(run_id), key=lambda h: (h.at, h.attempt))
    return {**run.to_public(), "timeline": [h.to_public() for h in history]}
