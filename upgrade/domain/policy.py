"""The upgrade policy per cluster and pool, read from the ``UPGRADE_POLICY`` app setting.

The setting is JSON: ``defaults`` for every allowed cluster, then per-cluster overrides keyed by
ARM id, each with optional per-pool overrides (see docs/policy.md). Overrides are partial: a pool's
effective policy is defaults <- cluster <- pool, merged key by key, then validated as a whole, so
a mistake anywhere is reported at start-up with the JSON path of the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from upgrade.domain.model import ClusterRef, UpgradeSettings, cluster_key
from upgrade.domain.surge import DEFAULT_DRAIN_TIMEOUT_MINUTES, validate_upgrade_settings
from upgrade.errors import InvalidInput

SETTING = "UPGRADE_POLICY"
REMEDIATION_KINDS = ("scale-out", "relax-pdb", "delete-pod", "replace-node")
RemediationMode = Literal["off", "approval-required", "automatic"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RollingPolicy(_Strict):
    """The agent pool ``upgradeSettings`` a rolling upgrade applies before setting the version.

    A field left unset keeps what the pool already has (an operator's maxSurge of 33% is not
    silently reset to a default); only ``undrainableNodeBehavior`` has a product default, Cordon,
    so a PDB-blocked node is quarantined and reported instead of failing the whole upgrade.
    """

    max_surge: str | None = Field(None, alias="maxSurge")
    max_unavailable: str | None = Field(None, alias="maxUnavailable")
    drain_timeout_minutes: int | None = Field(None, alias="drainTimeoutInMinutes")
    node_soak_minutes: int | None = Field(None, alias="nodeSoakDurationInMinutes")
    undrainable_node_behavior: Literal["Cordon", "Schedule"] = Field("Cordon", alias="undrainableNodeBehavior")
    max_blocked_nodes: str | None = Field(None, alias="maxBlockedNodes")
    # Not an ARM field: after the run, put back the upgradeSettings the pool had before it.
    restore_settings: bool = Field(False, alias="restoreSettings")

    @field_validator("max_surge", "max_unavailable", "max_blocked_nodes", mode="before")
    @classmethod
    def _count_as_text(cls, value: object) -> object:
        # "5", 5 and "50%" are all accepted, as ARM accepts them; stored as text like ARM's.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _as_arm_validates(self) -> RollingPolicy:
        validate_upgrade_settings(self.to_upgrade_settings(), mode="User")
        return self

    @property
    def drain_timeout_or_default(self) -> int:
        """The drain timeout the product's own evictions wait for: the policy's, else AKS's default."""
        return self.drain_timeout_minutes if self.drain_timeout_minutes is not None else DEFAULT_DRAIN_TIMEOUT_MINUTES

    def upgrade_settings_arm(self) -> dict[str, Any]:
        """The ARM upgradeSettings fields the policy sets (None: the pool keeps its own)."""
        return self.model_dump(by_alias=True, exclude={"restore_settings"})

    def to_upgrade_settings(self) -> UpgradeSettings:
        return UpgradeSettings(
            max_surge=self.max_surge,
            max_unavailable=self.max_unavailable,
            drain_timeout_minutes=self.drain_timeout_minutes,
            node_soak_minutes=self.node_soak_minutes,
            undrainable_node_behavior=self.undrainable_node_behavior,
            max_blocked_nodes=self.max_blocked_nodes,
        )


class RemediationPolicy(_Strict):
    """Per remediation kind: off (only the alert), approval-required (an operator's request runs
    it) or automatic (the scan starts it for quarantined nodes)."""

    scale_out: RemediationMode = Field("off", alias="scale-out")
    relax_pdb: RemediationMode = Field("off", alias="relax-pdb")
    delete_pod: RemediationMode = Field("off", alias="delete-pod")
    replace_node: RemediationMode = Field("off", alias="replace-node")

    def mode(self, kind: str) -> str:
        if kind not in REMEDIATION_KINDS:
            raise InvalidInput("remediation request", "kind", f"{kind!r} is not one of {', '.join(REMEDIATION_KINDS)}")
        return getattr(self, kind.replace("-", "_"))

    def automatic_kinds(self) -> list[str]:
        return [kind for kind in REMEDIATION_KINDS if self.mode(kind) == "automatic"]


class AlertThresholds(_Strict):
    """Quarantine alert dedup: re-alert the same node and condition after the interval, raise the
    severity once the node has been stuck longer than the escalation age. A node only cordoned
    (no quarantine label) is alerted after a grace period: AKS cordons nodes briefly while it
    upgrades them, and an operator may cordon one on purpose."""

    re_alert_interval_minutes: int = Field(60, alias="reAlertIntervalMinutes", ge=1)
    escalate_after_minutes: int = Field(240, alias="escalateAfterMinutes", ge=1)
    cordoned_grace_minutes: int = Field(30, alias="cordonedGraceMinutes", ge=0)


ARM_MAINTENANCE_CONFIGS = ("default", "aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule")


class MaintenancePolicy(_Strict):
    """Which maintenance windows gate which cluster-changing action (docs/policy.md).

    ``windows`` are the policy's own, in AKS's ``maintenanceWindow`` shape (plus an IANA
    ``timeZone`` and ``durationMinutes``); ``default`` names the configurations (the policy's
    windows or the cluster's ARM maintenance configurations) every action waits for, ``actions``
    overrides that per action. Nothing named: the action is not gated.
    """

    windows: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default: list[str] = Field(default_factory=list)
    actions: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _windows_valid(self) -> MaintenancePolicy:
        from upgrade.domain.windows import ACTIONS, config_from_policy

        for name, raw in self.windows.items():
            if name in ARM_MAINTENANCE_CONFIGS:
                raise InvalidInput("setting", f"windows.{name}", "is the name of a cluster's maintenance configuration")
            config_from_policy(name, raw, f"windows.{name}")
        known = set(self.windows) | set(ARM_MAINTENANCE_CONFIGS)
        for action, names in [("default", self.default), *self.actions.items()]:
            where = "default" if action == "default" else f"actions.{action}"
            if action != "default" and action not in ACTIONS:
                raise InvalidInput("setting", where, f"unknown action (expected {', '.join(ACTIONS)})")
            unknown = [n for n in names if n not in known]
            if unknown:
                raise InvalidInput("setting", where, f"{unknown[0]!r} is neither a window of this policy nor one of "
                                   f"the cluster's maintenance configurations ({', '.join(ARM_MAINTENANCE_CONFIGS)})")
        return self

    def names_for(self, action: str) -> list[str]:
        return self.actions.get(action, self.default)


class HoldPolicy(_Strict):
    """Application holds (docs/holds.md): how long a drain waits for a held node, what happens then,
    and the kured-style blocking-pod selectors (a pod they select on a node holds it)."""

    max_hold_minutes: int = Field(240, alias="maxHoldMinutes", ge=1)
    on_expiry: Literal["wait", "proceed"] = Field("wait", alias="onExpiry")
    blocking_pod_selectors: list[str] = Field(default_factory=list, alias="blockingPodSelectors")

    @field_validator("blocking_pod_selectors")
    @classmethod
    def _selectors_parse(cls, value: list[str]) -> list[str]:
        from upgrade.domain.selectors import LabelSelector

        for index, text in enumerate(value):
            LabelSelector.parse(text, what="setting", field=str(index))
        return value

    def selectors(self) -> list[Any]:
        from upgrade.domain.selectors import LabelSelector

        return [LabelSelector.parse(text) for text in self.blocking_pod_selectors]


class PoolPolicy(_Strict):
    """The effective policy of one cluster/pool."""

    strategy: Literal["rolling", "blue-green"] = "rolling"
    on_new_version: Literal["notify", "preflight-report", "start"] = Field("preflight-report", alias="onNewVersion")
    rolling: RollingPolicy = Field(default_factory=RollingPolicy)
    remediation: RemediationPolicy = Field(default_factory=RemediationPolicy)
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    blue_green: dict[str, Any] = Field(default_factory=dict, alias="blueGreen")
    maintenance: MaintenancePolicy = Field(default_factory=MaintenancePolicy)
    holds: HoldPolicy = Field(default_factory=HoldPolicy)
    # How often a rolling or remediation run looks at a pool operation in progress.
    poll_seconds: float = Field(30.0, alias="pollSeconds", ge=0.5, le=600)
    # Hosts blue-green HTTP probes may reach ("name" or "*.suffix"); empty refuses every probe
    # (upgrade.domain.probes has the rest of the rules).
    probe_hosts: tuple[str, ...] = Field((), alias="probeHosts", max_length=100)
    # Four-eyes: the approver of a blue-green commit must not be the one who started the run.
    four_eyes: bool = Field(False, alias="fourEyes")

    @field_validator("blue_green")
    @classmethod
    def _blue_green_options_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:  # empty: the workflow's defaults; no need to load the blue-green domain
            validate_blue_green_options(value)
        return value

    def to_public(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def validate_blue_green_options(options: Mapping[str, Any]) -> None:
    """The blue-green workflow owns its options' schema; the policy passes them through to it."""
    from upgrade.domain.bluegreen_options import BlueGreenOptions

    BlueGreenOptions.parse(options)


_SECTIONS = ("rolling", "remediation", "alerts", "blueGreen", "maintenance", "holds")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """defaults <- override, section by section (a pool may change only maxSurge)."""
    merged = dict(base)
    for key, value in override.items():
        if key in _SECTIONS and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class UpgradePolicy:
    """Every cluster's and pool's effective policy, validated once."""

    defaults: PoolPolicy
    clusters: Mapping[str, PoolPolicy] = field(default_factory=dict)  # lower-case ARM id
    pools: Mapping[tuple[str, str], PoolPolicy] = field(default_factory=dict)  # (lower-case ARM id, pool)

    def for_pool(self, cluster: str | ClusterRef, pool: str | None = None) -> PoolPolicy:
        key = cluster_key(cluster.arm_id if isinstance(cluster, ClusterRef) else cluster)
        if pool is not None and (key, pool) in self.pools:
            return self.pools[(key, pool)]
        return self.clusters.get(key, self.defaults)


def _validated(raw: Mapping[str, Any], path: str) -> PoolPolicy:
    try:
        return PoolPolicy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidInput):
            where, problem = ".".join(filter(None, [where, cause.field.removeprefix("options.")])), cause.problem
        raise InvalidInput("setting", f"{SETTING}.{path}{'.' if where else ''}{where}", problem) from exc
    except InvalidInput as exc:
        raise InvalidInput("setting", f"{SETTING}.{path}.{exc.field}", exc.problem) from exc


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput("setting", f"{SETTING}.{path}", "must be a JSON object")
    return value


def parse_policy(text: str, allowed_clusters: Iterable[str] = ()) -> UpgradePolicy:
    """Parse and validate the setting; raises InvalidInput naming the JSON path at fault.

    A cluster entry must be an allowed cluster: a policy for a cluster the app may not act on is
    almost always a typo in the ARM id, and would otherwise be silently ignored.
    """
    try:
        raw = json.loads(text.strip() or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput("setting", SETTING, f"not valid JSON: {exc}") from exc
    raw = _object(raw, "(root)")
    unknown = sorted(set(raw) - {"defaults", "clusters"})
    if unknown:
        raise InvalidInput("setting", f"{SETTING}.{unknown[0]}", "unknown field (expected defaults, clusters)")
    defaults_raw = dict(_object(raw.get("defaults", {}), "defaults"))
    defaults = _validated(defaults_raw, "defaults")
    allowed = {cluster_key(c) for c in allowed_clusters}
    clusters: dict[str, PoolPolicy] = {}
    pools: dict[tuple[str, str], PoolPolicy] = {}
    for cluster_id, entry in _object(raw.get("clusters", {}), "clusters").items():
        path = f"clusters[{cluster_id}]"
        key = cluster_key(ClusterRef.parse(cluster_id, what="setting", field=f"{SETTING}.{path}").arm_id)
        if allowed and key not in allowed:
            raise InvalidInput("setting", f"{SETTING}.{path}", "is not in ALLOWED_CLUSTERS")
        entry = dict(_object(entry, path))
        pool_entries = _object(entry.pop("pools", {}), f"{path}.pools")
        cluster_raw = _merge(defaults_raw, entry)
        clusters[key] = _validated(cluster_raw, path)
        for pool, pool_entry in pool_entries.items():
            pool_path = f"{path}.pools[{pool}]"
            pools[(key, pool)] = _validated(_merge(cluster_raw, _object(pool_entry, pool_path)), pool_path)
    return UpgradePolicy(defaults=defaults, clusters=clusters, pools=pools)
