"""What the CLI commands share: how to reach a cluster from the command line.

``--cluster ARM_ID`` reaches ARM and the cluster's Kubernetes API the way the app does (Entra ID,
or a kubeconfig named for the cluster in CLUSTER_KUBECONFIGS), with settings from the environment
over the ``Values`` of ``local.settings.json`` in the working directory. ``--kubeconfig FILE``
reaches a Kubernetes API directly (the emulator, or a user's own cluster); given together with
``--cluster`` it replaces only the Kubernetes side. Adapters are imported only when connecting, so
listing commands stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrade.domain.model import ClusterRef
from upgrade.errors import InvalidInput
from upgrade.ports import Aks, Kube
from upgrade.settings import Settings, load_settings

LOCAL_SETTINGS_FILE = "local.settings.json"


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (one at least)")
    group.add_argument("--cluster", metavar="ARM_ID", help="the AKS cluster's ARM resource id")
    group.add_argument(
        "--kubeconfig", metavar="FILE", help="reach the Kubernetes API with this kubeconfig instead"
    )


@dataclass
class Connection:
    """A command's handles on one cluster. ``aks`` and ``cluster`` are None with ``--kubeconfig`` alone."""

    kube: Kube
    aks: Aks | None
    cluster: ClusterRef | None
    settings: Settings | None

    def close(self) -> None:
        for adapter in (self.kube, self.aks):
            close = getattr(adapter, "close", None)
            if callable(close):
                close()


def local_settings_values(path: str | Path = LOCAL_SETTINGS_FILE) -> dict[str, str]:
    """The ``Values`` of a Functions local.settings.json, or nothing when the file is absent."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInput("settings file", str(path), f"unreadable: {exc}") from exc
    values = raw.get("Values") if isinstance(raw, dict) else None
    return {str(k): str(v) for k, v in (values or {}).items()}


def cli_settings(cluster: ClusterRef, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for a command on ``cluster``: the environment wins over local.settings.json. The
    operator names the cluster explicitly, so ALLOWED_CLUSTERS defaults to it when unset."""
    env: dict[str, Any] = {**local_settings_values(), **(os.environ if environ is None else environ)}
    if not str(env.get("ALLOWED_CLUSTERS", "")).strip():
        env["ALLOWED_CLUSTERS"] = cluster.arm_id
    return load_settings(env)


def connect(args: argparse.Namespace) -> Connection:
    """Build the Kube (and, with --cluster, the Aks) port from ``--cluster`` / ``--kubeconfig``."""
    if not args.cluster and not args.kubeconfig:
        raise InvalidInput("command line", "--cluster", "give --cluster ARM_ID or --kubeconfig FILE")
    cluster = settings = aks = None
    if args.cluster:
        cluster = ClusterRef.parse(args.cluster, what="command line", field="--cluster")
        settings = cli_settings(cluster)
        from upgrade.adapters.aks import aks_from_settings

        aks = aks_from_settings(settings, cluster.subscription_id)
    if args.kubeconfig:
        if not Path(args.kubeconfig).is_file():
            raise InvalidInput("command line", "--kubeconfig", f"no such file: {args.kubeconfig}")
        from upgrade.adapters.kube import kube_from_kubeconfig

        kube = kube_from_kubeconfig(args.kubeconfig)
    else:
        from upgrade.adapters.kube import kube_from_settings

        kube = kube_from_settings(settings, cluster)
    return Connection(kube=kube, aks=aks, cluster=cluster, settings=settings)
