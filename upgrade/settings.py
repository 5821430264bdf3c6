"""Configuration from app settings (environment variables), validated once, with clear errors.

``SETTINGS`` is the one list of every setting the code reads. The infrastructure test checks
that the deployed ones are exactly the app settings the Bicep templates set, and that
local.settings.json.example names every one of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from ipaddress import ip_address
from urllib.parse import urlparse

from upgrade.domain.model import ClusterRef, is_allowed_cluster
from upgrade.domain.policy import UpgradePolicy, parse_policy
from upgrade.errors import InvalidInput


@dataclass(frozen=True)
class SettingSpec:
    name: str
    description: str
    deployed: bool  # set by infra in Azure; False = local development only
    required: bool = False
    default: str | None = None


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "AzureWebJobsStorage",
        "Storage for the step queue and the tables. Locally a connection string; in Azure the "
        "identity-based form AzureWebJobsStorage__queueServiceUri/__tableServiceUri/"
        "__credential/__clientId is used instead.",
        deployed=False,
    ),
    SettingSpec(
        "AzureWebJobsStorage__queueServiceUri",
        "Queue endpoint of the app's storage account (identity-based access).",
        deployed=True,
    ),
    SettingSpec(
        "AzureWebJobsStorage__tableServiceUri",
        "Table endpoint of the app's storage account (identity-based access).",
        deployed=True,
    ),
    SettingSpec(
        "AzureWebJobsStorage__blobServiceUri",
        "Blob endpoint of the app's storage account (the host's leases and deployment package).",
        deployed=True,
    ),
    SettingSpec(
        "AzureWebJobsStorage__credential",
        "'managedidentity' in Azure: storage is reached with the app's identity, never a key.",
        deployed=True,
    ),
    SettingSpec(
        "AzureWebJobsStorage__clientId",
        "Client id of the user-assigned identity used for storage.",
        deployed=True,
    ),
    SettingSpec(
        "AZURE_CLIENT_ID",
        "Client id of the app's user-assigned managed identity (ARM, Kubernetes, Event Grid).",
        deployed=True,
    ),
    SettingSpec(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "Application Insights for logs, traces and the structured alert lines.",
        deployed=True,
    ),
    SettingSpec(
        "ALLOWED_CLUSTERS",
        "Comma-separated (or JSON array) AKS cluster ARM ids the app may act on. Anything else is refused.",
        deployed=True,
        required=True,
    ),
    SettingSpec(
        "QUARANTINE_SCAN_SCHEDULE",
        "NCRONTAB schedule of the quarantine scan timer (six fields, seconds first).",
        deployed=True,
        default="0 */5 * * * *",
    ),
    SettingSpec(
        "RUN_RECONCILE_SCHEDULE",
        "NCRONTAB schedule of the run reconciler, which re-sends the live step of a run that did not "
        "run in time and marks a run it cannot recover stuck.",
        deployed=True,
        default="0 */2 * * * *",
    ),
    SettingSpec(
        "RUN_RECONCILE_MARGIN_SECONDS",
        "How long past its due time a run's live step may stay unstarted before the reconciler acts.",
        deployed=False,
        default="120",
    ),
    SettingSpec(
        "UPGRADE_POLICY",
        "JSON policy per cluster/pool: strategy, reaction to new versions, rolling upgradeSettings, "
        "remediation modes, alert thresholds. Empty means the defaults for every allowed cluster.",
        deployed=True,
        default="{}",
    ),
    SettingSpec(
        "ALERTS_TOPIC_ENDPOINT",
        "Event Grid custom topic endpoint that receives alerts as CloudEvents. Empty: alerts are "
        "only logged.",
        deployed=True,
        default="",
    ),
    SettingSpec(
        "ALERTS_TOPIC_KEY",
        "Access key of the alerts topic. Leave empty in Azure: the managed identity is used.",
        deployed=False,
        default="",
    ),
    SettingSpec(
        "ARM_ENDPOINT",
        "Azure Resource Manager endpoint. Only changed for sovereign clouds or a local emulator; "
        "plain http is accepted for loopback addresses only.",
        deployed=False,
        default="https://management.azure.com",
    ),
    SettingSpec(
        "ARM_DEV_TOKEN",
        "Local development only: a static bearer token for a loopback ARM_ENDPOINT instead of "
        "Entra ID. Refused for any other endpoint.",
        deployed=False,
        default="",
    ),
    SettingSpec(
        "CLUSTER_KUBECONFIGS",
        "Optional JSON object {clusterArmId: kubeconfigPath} to reach a cluster's Kubernetes API "
        "with a plain kubeconfig instead of ARM user credentials + Entra ID.",
        deployed=False,
        default="{}",
    ),
)


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    storage_connection: str
    storage_queue_uri: str
    storage_table_uri: str
    storage_client_id: str
    azure_client_id: str
    allowed_clusters: frozenset[str]
    quarantine_scan_schedule: str
    run_reconcile_margin_seconds: float
    upgrade_policy_json: str
    upgrade_policy: UpgradePolicy
    alerts_topic_endpoint: str
    alerts_topic_key: str
    arm_endpoint: str
    arm_dev_token: str
    cluster_kubeconfigs: Mapping[str, str] = field(default_factory=dict)

    def is_allowed(self, cluster_arm_id: str) -> bool:
        return is_allowed_cluster(cluster_arm_id, self.allowed_clusters)


def _read(environ: Mapping[str, str], name: str) -> str:
    spec = next(s for s in SETTINGS if s.name == name)
    value = environ.get(name, "").strip()
    if not value and spec.default is not None:
        value = spec.default
    if spec.required and not value:
        raise InvalidInput("setting", name, f"is required: {spec.description}")
    return value


def _seconds(environ: Mapping[str, str], name: str) -> float:
    raw = _read(environ, name)
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidInput("setting", name, f"{raw!r} is not a number of seconds") from exc
    if not 0 <= value <= 86400:
        raise InvalidInput("setting", name, f"{raw} is outside 0..86400 seconds")
    return value


def _parse_cluster_list(raw: str) -> frozenset[str]:
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput("setting", "ALLOWED_CLUSTERS", f"not valid JSON: {exc}") from exc
        if not all(isinstance(i, str) for i in items):
            raise InvalidInput("setting", "ALLOWED_CLUSTERS", "must be a list of ARM id strings")
    else:
        items = raw.split(",")
    # Parsed as every other ARM id is, so a scan never meets an entry it cannot read.
    return frozenset(
        ClusterRef.parse(item, what="setting", field="ALLOWED_CLUSTERS").arm_id for item in items if item.strip()
    )


def check_policy(policy: str, allowed_clusters: str = "") -> UpgradePolicy:
    """UPGRADE_POLICY validated as the app validates it at start-up (``allowed_clusters`` in the
    ALLOWED_CLUSTERS format; empty: cluster entries are not checked against an allow-list)."""
    return parse_policy(policy, _parse_cluster_list(allowed_clusters.strip()) if allowed_clusters.strip() else ())


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises InvalidInput naming the setting at fault."""
    env = os.environ if environ is None else environ
    kubeconfigs_raw = _read(env, "CLUSTER_KUBECONFIGS")
    try:
        kubeconfigs = json.loads(kubeconfigs_raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput("setting", "CLUSTER_KUBECONFIGS", f"not valid JSON: {exc}") from exc
    if not isinstance(kubeconfigs, dict):
        raise InvalidInput("setting", "CLUSTER_KUBECONFIGS", "must be a JSON object")
    arm_endpoint = _read(env, "ARM_ENDPOINT").rstrip("/")
    arm_dev_token = _read(env, "ARM_DEV_TOKEN")
    if urlparse(arm_endpoint).scheme != "https" and not is_loopback_url(arm_endpoint):
        raise InvalidInput("setting", "ARM_ENDPOINT", "plain http is allowed for loopback only")
    if arm_dev_token and not is_loopback_url(arm_endpoint):
        raise InvalidInput(
            "setting", "ARM_DEV_TOKEN", "a static token is accepted only with a loopback ARM_ENDPOINT"
        )
    policy = _read(env, "UPGRADE_POLICY")
    allowed_clusters = _parse_cluster_list(_read(env, "ALLOWED_CLUSTERS"))
    # Validated now, at start-up, so a typo in the policy is one clear error, not a surprise mid-upgrade.
    upgrade_policy = check_policy(policy, ",".join(allowed_clusters))
    return Settings(
        storage_connection=env.get("AzureWebJobsStorage", "").strip(),
        storage_queue_uri=env.get("AzureWebJobsStorage__queueServiceUri", "").strip(),
        storage_table_uri=env.get("AzureWebJobsStorage__tableServiceUri", "").strip(),
        storage_client_id=env.get("AzureWebJobsStorage__clientId", "").strip(),
        azure_client_id=env.get("AZURE_CLIENT_ID", "").strip(),
        allowed_clusters=allowed_clusters,
        quarantine_scan_schedule=_read(env, "QUARANTINE_SCAN_SCHEDULE"),
        run_reconcile_margin_seconds=_seconds(env, "RUN_RECONCILE_MARGIN_SECONDS"),
        upgrade_policy_json=policy,
        upgrade_policy=upgrade_policy,
        alerts_topic_endpoint=_read(env, "ALERTS_TOPIC_ENDPOINT"),
        alerts_topic_key=_read(env, "ALERTS_TOPIC_KEY"),
        arm_endpoint=arm_endpoint,
        arm_dev_token=arm_dev_token,
        cluster_kubeconfigs={str(k).lower(): str(v) for k, v in kubeconfigs.items()},
    )


@cache
def current_settings() -> Settings:
    """The worker's settings, read once."""
    return load_settings()
