"""The dev host's configuration: host.json's queue and HTTP settings, and test overrides.

Only what the dev host honours is read. Time spans use host.json's ``[d.]hh:mm:ss[.fff]``
format; overrides (for fast tests) are given in seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)$")


def timespan_seconds(value: str | float | int) -> float:
    """Seconds in a host.json time span ("00:00:02", "1.00:00:00") or a plain number."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise ValueError(f"not a time span: {value!r}")
    days = int(match["days"] or 0)
    return days * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + float(match["s"])


@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues``, with the Functions host's defaults (field names are
    host.json's, so an override reads exactly like the setting it replaces)."""

    maxPollingInterval: float = 60.0
    visibilityTimeout: float = 0.0
    batchSize: int = 16
    newBatchThreshold: int = 8
    maxDequeueCount: int = 5
    messageEncoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    queues: QueueOptions
    route_prefix: str = "api"

    @classmethod
    def load(cls, path: Path = REPO_ROOT / "host.json", queue_overrides: Mapping[str, object] | None = None) -> HostConfig:
        raw = json.loads(path.read_text())
        extensions = raw.get("extensions", {})
        queue_raw = {**extensions.get("queues", {}), **(queue_overrides or {})}
        known = {f.name: f.type for f in fields(QueueOptions)}
        unknown = set(queue_raw) - set(known)
        if unknown:
            raise ValueError(f"unsupported queue options: {sorted(unknown)}")
        options = QueueOptions()
        for name, value in queue_raw.items():
            if name in ("maxPollingInterval", "visibilityTimeout"):
                value = timespan_seconds(value)
            elif name in ("batchSize", "newBatchThreshold", "maxDequeueCount"):
                value = int(value)
            options = replace(options, **{name: value})
        if options.messageEncoding not in ("base64", "none"):
            raise ValueError(f"messageEncoding must be base64 or none, not {options.messageEncoding!r}")
        # The host caps a batch at 32 messages (the queue service's limit per receive).
        options = replace(options, batchSize=max(1, min(32, options.batchSize)))
        return cls(queues=options, route_prefix=extensions.get("http", {}).get("routePrefix", "api"))


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["visibilityTimeout=0", ...]`` from the command line."""
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"expected NAME=VALUE, got {pair!r}")
        overrides[name.strip()] = value.strip()
    return overrides
