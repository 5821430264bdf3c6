"""``POST /api/upgrades/preflight``: what the upgrade a start request describes would do, before
anyone starts it.

The body is ``POST /api/upgrades``'s (cluster by ARM id or unique name, pool, targetVersion,
strategy, options): a rolling prediction uses the settings the app's run would apply (the pool's
own upgradeSettings, the pool policy's rolling settings over them, the request's
``options.upgradeSettings`` over those). One snapshot through the ports, then the pure prediction
of upgrade.domain.preflight. ``aksDefaults`` names every setting still unset, with the value AKS
uses for it. A target the pool's upgrade profile does not offer (or not newer than the pool)
ends ``Refused``, with why and what is offered; ``nodeImage`` (a node image upgrade: targetVersion
``nodeImage`` or none) compares the pool's image and its nodes' with the latest its upgrade profile
offers; ``maintenanceWindows``, per action the pool policy gates, whether its window is open
and its next windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from upgrade.domain.model import NODE_IMAGE_LABEL, ClusterRef, ClusterSnapshot, UpgradeSettings
from upgrade.domain.preflight import BLUE_GREEN, ROLLING, PlannedUpgrade, preflight
from upgrade.domain.surge import aks_defaults_applied
from upgrade.domain.versions import NODE_IMAGE, kubernetes_target
from upgrade.errors import InvalidInput
from upgrade.ports import Platform
from upgrade.services.holds import pool_holds
from upgrade.services.quarantine_scan import resolve_cluster
from upgrade.services.snapshot import take_snapshot
from upgrade.services.windows import windows_report

WHAT = "preflight request"
FIELDS = frozenset({"cluster", "pool", "targetVersion", "strategy", "options"})


def _text(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(WHAT, name, "is required (a non-empty string)" if required else "must be a non-empty string")
    return value.strip()


def _settings(options: object) -> UpgradeSettings:
    if not isinstance(options, Mapping):
        raise InvalidInput(WHAT, "options", "must be a JSON object")
    unknown = sorted(set(options) - {"upgradeSettings"})
    if unknown:
        raise InvalidInput(WHAT, f"options.{unknown[0]}", "unknown field (a preflight takes upgradeSettings)")
    raw = options.get("upgradeSettings") or {}
    if not isinstance(raw, Mapping):
        raise InvalidInput(WHAT, "options.upgradeSettings", "must be a JSON object of upgradeSettings (ARM names)")
    known = set(UpgradeSettings().to_arm())
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(WHAT, f"options.upgradeSettings.{unknown[0]}", f"unknown field (expected {', '.join(sorted(known))})")
    return UpgradeSettings.from_arm({k: str(v) if isinstance(v, int) and k.startswith("max") else v
                                     for k, v in raw.items()})


def preflight_from_request(platform: Platform, body: object) -> dict[str, Any]:
    """The preflight report of the upgrade ``body`` describes (InvalidInput, NotFound, NotAllowed)."""
    if not isinstance(body, Mapping):
        raise InvalidInput(WHAT, "(body)", "must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidInput(WHAT, unknown[0], f"unknown field (allowed: {', '.join(sorted(FIELDS))})")
    cluster = resolve_cluster(platform, _text(body, "cluster", required=True) or "", None)
    pool = _text(body, "pool", required=True) or ""
    strategy = _text(body, "strategy", required=False) or ROLLING
    if strategy not in (ROLLING, BLUE_GREEN):
        raise InvalidInput(WHAT, "strategy", f"{strategy!r} is not one of {ROLLING}, {BLUE_GREEN}")
    requested = _settings(body.get("options") or {})
    policy_settings = platform.policy.for_pool(cluster, pool).rolling.to_upgrade_settings()
    target = _text(body, "targetVersion", required=False)
    version = kubernetes_target(target)
    snapshot = take_snapshot(platform, cluster)
    offered = None
    if version is not None and snapshot.pool(pool) is not None:
        offered = tuple(platform.aks(cluster).available_upgrades(cluster, pool))
    plan = PlannedUpgrade(pool=pool, strategy=strategy, target_version=version,
                          settings=policy_settings.with_overrides(requested), offered_versions=offered)
    report = preflight(snapshot, plan)
    answer = {**report.to_public(), "aksDefaults": aks_defaults_applied(report.settings),
              "maintenanceWindows": windows_report(platform, cluster, pool, platform.clock.now()),
              "holds": pool_holds(platform, cluster, pool)}
    if version is None:  # a node image upgrade: the pool's image against the latest
        answer.update(targetVersion=NODE_IMAGE, nodeImage=_node_images(platform, cluster, snapshot, pool))
    return answer


def _node_images(platform: Platform, cluster: ClusterRef, snapshot: ClusterSnapshot, pool: str) -> dict[str, Any]:
    latest = platform.aks(cluster).latest_node_image_version(cluster, pool)
    current = getattr(snapshot.pool(pool), "node_image_version", None)
    behind = sorted(n.name for n in snapshot.nodes if n.pool == pool and n.label(NODE_IMAGE_LABEL) != latest)
    return {"current": current, "latest": latest, "upToDate": bool(latest) and current == latest and not behind,
            "nodesBehind": behind}
