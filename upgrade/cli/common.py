"""What the CLI commands share: how to reach a cluster, and who the CLI acts as on the app's API.

``--cluster ARM_ID`` reaches ARM and the cluster's Kubernetes API the way the app does (Entra ID,
or a kubeconfig named for the cluster in CLUSTER_KUBECONFIGS), with settings from the environment
over the ``Values`` of ``local.settings.json`` in the working directory. ``--kubeconfig FILE``
reaches a Kubernetes API directly (the emulator, or a user's own cluster); given together with
``--cluster`` it replaces only the Kubernetes side. Adapters are imported only when connecting, so
listing commands stays fast.

On the app's HTTP API the CLI acts as the signed-in operator, like ``az``: an Entra ID access token
for the app registration's scope (``--api-scope`` or AKS_UPGRADE_API_SCOPE, e.g.
``api://<client id>/.default``) from azure-identity's DefaultAzureCredential (``az login``,
environment, managed identity), sent as ``Authorization: Bearer``. App Service authentication
validates it; the app's roles decide what the caller may do. AKS_UPGRADE_ACCESS_TOKEN gives a
token obtained elsewhere instead (``az account get-access-token --scope ...``, or one of the
sandbox's tokens from ``python -m sandbox up``); it is read from the environment only, never from
the command line, where other users of the machine could see it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
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
API_SCOPE_ENV = "AKS_UPGRADE_API_SCOPE"
ACCESS_TOKEN_ENV = "AKS_UPGRADE_ACCESS_TOKEN"


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


class ApiCredential:
    """The operator's bearer token for the app's API, and who it names."""

    def __init__(self, scope: str = "", environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.scope = scope or env.get(API_SCOPE_ENV, "")
        self._static = env.get(ACCESS_TOKEN_ENV, "").strip()
        self._credential: Any = None

    def token(self) -> str:
        if self._static:
            return self._static
        if not self.scope:
            raise InvalidInput("command line", "--api-scope",
                               f"give the app registration's scope, e.g. api://<client id>/.default "
                               f"(or set {API_SCOPE_ENV}, or {ACCESS_TOKEN_ENV} with a token)")
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        try:
            return self._credential.get_token(self.scope).token
        except Exception as exc:  # azure-identity raises one of several types, each with the remedy
            from upgrade.errors import NotAllowed

            raise NotAllowed(f"no Entra ID token for {self.scope}: {exc}") from exc

    def acting_as(self) -> str:
        """Who the token names, for the operator's eyes: name, object id and app roles (read from
        the token's claims without verifying them; the app's authentication does that)."""
        claims = token_claims(self.token())
        name = claims.get("name") or claims.get("preferred_username") or claims.get("upn") or claims.get("appid") or "?"
        roles = ", ".join(claims.get("roles") or []) or "no app roles"
        return f"{name} (oid {claims.get('oid', '?')}; {roles})"


def token_claims(token: str) -> dict:
    """The payload of a JWT, unverified; empty when the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}
