"""Kubernetes' IntOrString counts: "5" or "50%" of a total, rounded up.

maxSurge, maxUnavailable, maxBlockedNodes, a blue-green drain batch and a PDB's minAvailable /
maxUnavailable all use this form. Each caller keeps its own limits (AKS refuses "0%" where a PDB
accepts it) and its own error message; the syntax and the rounding are defined once, here.
"""

from __future__ import annotations

import re

_INT_OR_PERCENT = re.compile(r"^(?P<number>\d+)(?P<percent>%?)$")


def split_int_or_percent(value: object) -> tuple[int, bool] | None:
    """``"5"``/``5`` -> (5, False); ``"50%"`` -> (50, True); None when it is neither."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    match = _INT_OR_PERCENT.match(str(value).strip())
    if not match:
        return None
    return int(match["number"]), bool(match["percent"])


def ceil_percent(percent: int, total: int) -> int:
    """``percent`` of ``total`` rounded up, in exact integer arithmetic."""
    return -(-percent * total // 100)
