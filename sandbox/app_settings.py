"""The app settings that point function_app at the sandbox: Azurite, the AKS emulator, the alerts receiver.

One place builds them, so ``sandbox up``, the demo and the e2e fixtures configure the app the
same way, and the same way infra configures it in Azure (see upgrade.settings.SETTINGS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.aks_emulator.server import Emulator

# Used when no emulator runs: the setting is required, and steps for it never reach ARM.
PLACEHOLDER_CLUSTER = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sandbox"
    "/providers/Microsoft.ContainerService/managedClusters/aks-sandbox"
)
# Far away: the quarantine scan runs on demand (admin API); a caller wanting a schedule sets
# QUARANTINE_SCAN_SCHEDULE over these settings (Sandbox's app_settings).
ON_DEMAND_SCHEDULE = "0 0 0 1 1 *"
# The sandbox's emulated time runs fast: reconcile every 30 seconds.
RECONCILE_SCHEDULE = "*/30 * * * * *"


def sandbox_app_settings(
    *,
    storage_connection: str,
    emulator: Emulator | None = None,
    kubeconfig_dir: Path | None = None,
    alerts_url: str = "",
    alerts_key: str = "",
) -> dict[str, str]:
    """App settings for function_app; with an emulator, kubeconfigs are written to ``kubeconfig_dir``."""
    settings = {
        "AzureWebJobsStorage": storage_connection,
        "ALLOWED_CLUSTERS": PLACEHOLDER_CLUSTER,
        "QUARANTINE_SCAN_SCHEDULE": ON_DEMAND_SCHEDULE,
        "RUN_RECONCILE_SCHEDULE": RECONCILE_SCHEDULE,
        "ALERTS_TOPIC_ENDPOINT": alerts_url,
        "ALERTS_TOPIC_KEY": alerts_key,
    }
    if emulator is not None:
        if kubeconfig_dir is None:
            raise ValueError("kubeconfig_dir is needed to write the emulated clusters' kubeconfigs")
        kubeconfigs = {}
        for cluster in emulator.clusters():
            path = kubeconfig_dir / f"{cluster.name}.kubeconfig"
            emulator.write_kubeconfig(cluster.arm_id, path)
            kubeconfigs[cluster.arm_id] = str(path)
        settings.update(
            ALLOWED_CLUSTERS=",".join(kubeconfigs) or PLACEHOLDER_CLUSTER,
            ARM_ENDPOINT=emulator.arm_url,
            ARM_DEV_TOKEN=emulator.token,
            CLUSTER_KUBECONFIGS=json.dumps(kubeconfigs),
        )
    return settings
