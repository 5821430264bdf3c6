"""Credentials: Entra ID tokens for ARM and for AKS clusters' Kubernetes APIs, without kubelogin.

An AKS cluster with Entra ID hands out a kubeconfig whose user runs ``kubelogin`` (an ``exec``
plugin). Instead, the endpoint and CA come from ARM's ``listClusterUserCredential`` and the bearer
token from azure-identity for the AKS server application's scope; the kubernetes client's
``refresh_api_key_hook`` swaps in a new token before the old one expires. The app's managed
identity is used in Azure, DefaultAzureCredential elsewhere (developer logins). API clients are
built once per cluster per worker.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import yaml
from kubernetes import client as k8s

from upgrade.adapters.kube import tune_configuration
from upgrade.domain.model import ClusterRef
from upgrade.errors import NotAllowed, PermanentError
from upgrade.settings import Settings, is_loopback_url

# The AKS Entra ID server application: tokens for this scope open every AKS cluster's API.
AKS_SERVER_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
# Refresh this long before expiry (or halfway through a shorter token's life).
REFRESH_MARGIN_SECONDS = 300.0
DEV_TOKEN_LIFETIME_SECONDS = 3600


class StaticTokenCredential:
    """A TokenCredential for a fixed token: the loopback ARM emulator's (ARM_DEV_TOKEN)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + DEV_TOKEN_LIFETIME_SECONDS)


_default_credential: Any = None
_default_credential_lock = threading.Lock()


def default_azure_credential() -> Any:
    """The worker's Entra ID credential: the user-assigned managed identity (AZURE_CLIENT_ID) when
    running in Azure, else DefaultAzureCredential (az login, environment, ...). Built once."""
    global _default_credential
    with _default_credential_lock:
        if _default_credential is None:
            client_id = os.environ.get("AZURE_CLIENT_ID") or None
            in_azure = bool(os.environ.get("IDENTITY_ENDPOINT") or os.environ.get("MSI_ENDPOINT"))
            if in_azure:
                from azure.identity import ManagedIdentityCredential

                _default_credential = ManagedIdentityCredential(client_id=client_id)
            else:
                from azure.identity import DefaultAzureCredential

                _default_credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return _default_credential


def arm_credential(settings: Settings) -> Any:
    """The credential for ARM: the static dev token when ARM_DEV_TOKEN is set (settings accept it
    for a loopback ARM_ENDPOINT only), else the worker's Entra ID credential."""
    if settings.arm_dev_token:
        return StaticTokenCredential(settings.arm_dev_token)
    return default_azure_credential()


class BearerTokenRefresher:
    """A kubernetes ``refresh_api_key_hook``: puts a valid Entra ID token on the Configuration
    before each request, asking the credential again only when the token nears expiry."""

    def __init__(
        self, credential: Any, scope: str = AKS_SERVER_SCOPE, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._lock = threading.Lock()  # evictions run in parallel threads sharing one Configuration
        self._token: str | None = None
        self._refresh_at = 0.0

    def __call__(self, configuration: k8s.Configuration) -> None:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._refresh_at:
                access = self._credential.get_token(self._scope)
                lifetime = max(0.0, access.expires_on - now)
                self._token = access.token
                self._refresh_at = access.expires_on - min(REFRESH_MARGIN_SECONDS, lifetime / 2)
            configuration.api_key["authorization"] = self._token
            configuration.api_key_prefix["authorization"] = "Bearer"


def _decoded_kubeconfig(value: bytes | str) -> str:
    # The SDK hands kubeconfigs[0].value over already base64-decoded (bytes); accept text too.
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode()
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


def cluster_endpoint(kubeconfig_text: str) -> tuple[str, str | None]:
    """The API server URL and CA bundle (PEM) of a kubeconfig's current cluster; its user is ignored."""
    try:
        kubeconfig = yaml.safe_load(kubeconfig_text) or {}
        contexts = {c["name"]: c["context"] for c in kubeconfig.get("contexts") or []}
        current = contexts.get(kubeconfig.get("current-context"), {})
        clusters = {c["name"]: c["cluster"] for c in kubeconfig.get("clusters") or []}
        cluster = clusters.get(current.get("cluster")) or next(iter(clusters.values()))
        server = cluster["server"]
    except (yaml.YAMLError, KeyError, TypeError, StopIteration) as exc:
        raise PermanentError(f"cluster user credentials: unreadable kubeconfig ({exc})") from exc
    ca_data = cluster.get("certificate-authority-data")
    ca_pem = base64.b64decode(ca_data).decode() if ca_data else None
    return server, ca_pem


def entra_configuration(
    server: str, ca_pem: str | None, credential: Any, *, clock: Callable[[], float] = time.time
) -> k8s.Configuration:
    if urlparse(server).scheme != "https" and not is_loopback_url(server):
        # An Entra ID token is a credential for the whole cluster: never send it in clear text.
        raise NotAllowed(f"refusing to send an Entra ID token to {server}: only https (or loopback) API servers")
    configuration = k8s.Configuration(host=server)
    if ca_pem:
        configuration.ca_cert_data = ca_pem
    tune_configuration(configuration)
    configuration.refresh_api_key_hook = BearerTokenRefresher(credential, clock=clock)
    # The client consults the hook only when an authorization key exists: fetch the first token now.
    configuration.refresh_api_key_hook(configuration)
    return configuration


def _user_kubeconfig(settings: Settings, cluster: ClusterRef) -> str:
    from azure.core.exceptions import AzureError

    from upgrade.adapters.aks import arm_error, container_service_client

    client = container_service_client(settings, cluster.subscription_id, arm_credential(settings))
    try:
        credentials = client.managed_clusters.list_cluster_user_credentials(cluster.resource_group, cluster.name)
    except AzureError as exc:
        raise arm_error(f"list user credentials of {cluster.name}", exc) from exc
    finally:
        client.close()
    if not credentials.kubeconfigs:
        raise PermanentError(f"cluster {cluster.name}: ARM returned no user kubeconfig")
    return _decoded_kubeconfig(credentials.kubeconfigs[0].value)


_api_clients: dict[tuple[str, str], k8s.ApiClient] = {}
_api_clients_lock = threading.Lock()


def entra_api_client(
    settings: Settings,
    cluster: ClusterRef,
    *,
    kube_credential: Any = None,
    clock: Callable[[], float] = time.time,
) -> k8s.ApiClient:
    """A kubernetes ApiClient for ``cluster`` with Entra ID bearer tokens. Cached per cluster (and
    ARM endpoint) for the worker's life unless an explicit ``kube_credential`` is given."""
    key = (settings.arm_endpoint, cluster.arm_id.lower())
    if kube_credential is None:
        with _api_clients_lock:
            cached = _api_clients.get(key)
        if cached is not None:
            return cached
    server, ca_pem = cluster_endpoint(_user_kubeconfig(settings, cluster))
    configuration = entra_configuration(
        server, ca_pem, kube_credential or default_azure_credential(), clock=clock
    )
    api_client = k8s.ApiClient(configuration)
    if kube_credential is None:
        with _api_clients_lock:
            api_client = _api_clients.setdefault(key, api_client)
    return api_client
