"""Entra ID auth to AKS without kubelogin: endpoint + CA from ARM, bearer tokens refreshed before expiry."""

from __future__ import annotations

import base64
import threading

import pytest
import yaml

from upgrade.adapters import auth
from upgrade.adapters.auth import (
    AKS_SERVER_SCOPE,
    StaticTokenCredential,
    arm_credential,
    cluster_endpoint,
    entra_api_client,
)
from upgrade.adapters.kube import KubernetesKube, kube_from_settings
from upgrade.domain.model import ClusterRef
from upgrade.errors import PermanentError
from upgrade.settings import load_settings

pytestmark = pytest.mark.integration


class CountingCredential:
    """A fake azure-identity credential: short-lived tokens, every get_token call recorded."""

    def __init__(self, tokens, lifetime: float, clock) -> None:
        self._tokens = iter(tokens)
        self.lifetime = lifetime
        self.clock = clock
        self.calls: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs):
        from azure.core.credentials import AccessToken

        with self._lock:
            self.calls.append(scopes)
            return AccessToken(next(self._tokens), int(self.clock() + self.lifetime))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emulated(emulator):
    emu = emulator("seed-pdb")
    (cluster,) = emu.clusters()
    ref = ClusterRef.parse(cluster.arm_id)
    settings = load_settings(
        {"ALLOWED_CLUSTERS": cluster.arm_id, "ARM_ENDPOINT": emu.arm_url, "ARM_DEV_TOKEN": emu.token}
    )
    return emu, ref, settings


def test_kubeconfig_endpoint_and_ca_are_read_and_the_exec_user_ignored():
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    kubeconfig = {
        "clusters": [{"name": "c", "cluster": {"server": "https://aks.example:443",
                                              "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
        "users": [{"name": "u", "user": {"exec": {"command": "kubelogin", "args": ["get-token"]}}}],
    }
    assert cluster_endpoint(yaml.safe_dump(kubeconfig)) == ("https://aks.example:443", ca)
    with pytest.raises(PermanentError, match="unreadable kubeconfig"):
        cluster_endpoint("clusters: []")


def test_token_is_fetched_once_then_refreshed_before_expiry(emulated):
    emu, ref, settings = emulated
    clock = FakeClock()
    # GIVEN a credential handing out 10-minute tokens (the emulator accepts its own token only)
    credential = CountingCredential([emu.token] * 10, lifetime=600, clock=clock)
    kube = KubernetesKube(entra_api_client(settings, ref, kube_credential=credential, clock=clock))
    # WHEN several calls go out within the token's life
    for _ in range(3):
        assert kube.list_nodes()
    # THEN the credential was asked once, for the AKS server application's scope
    assert credential.calls == [(AKS_SERVER_SCOPE,)]
    # WHEN the clock passes the refresh point (5 minutes before expiry)
    clock.now += 301
    kube.list_nodes()
    kube.list_pods()
    # THEN exactly one new token was fetched
    assert len(credential.calls) == 2
    kube.close()


def test_short_lived_tokens_refresh_halfway_and_the_refreshed_token_is_what_is_sent(emulated):
    emu, ref, settings = emulated
    clock = FakeClock()
    # GIVEN 60-second tokens, the second of which the emulator does not accept
    credential = CountingCredential([emu.token, "revoked-token"], lifetime=60, clock=clock)
    kube = KubernetesKube(entra_api_client(settings, ref, kube_credential=credential, clock=clock))
    clock.now += 29
    assert kube.list_nodes()
    assert len(credential.calls) == 1
    # WHEN half the token's life has passed THEN the next request carries the new token: 401
    clock.now += 2
    with pytest.raises(PermanentError) as refused:
        kube.list_nodes()
    assert refused.value.status == 401
    assert len(credential.calls) == 2
    kube.close()


def test_the_emulator_checks_the_bearer_header(emulated):
    _, ref, settings = emulated
    clock = FakeClock()
    credential = CountingCredential(["not-the-token"], lifetime=3600, clock=clock)
    kube = KubernetesKube(entra_api_client(settings, ref, kube_credential=credential, clock=clock))
    with pytest.raises(PermanentError) as refused:
        kube.list_nodes()
    assert refused.value.status == 401
    kube.close()


def test_clients_are_cached_per_cluster_and_user_credentials_read_once(emulated, monkeypatch):
    emu, ref, settings = emulated
    clock = FakeClock()
    credential = CountingCredential([emu.token] * 5, lifetime=3600, clock=clock)
    monkeypatch.setattr(auth, "default_azure_credential", lambda: credential)
    monkeypatch.setattr(auth, "_api_clients", {})
    emu.faults.reset_counts()
    first = kube_from_settings(settings, ref)
    second = kube_from_settings(settings, ref)
    assert first.api_client is second.api_client
    assert first.list_nodes() == second.list_nodes()
    credential_reads = {k: n for k, n in emu.faults.counts("arm").items() if "listClusterUserCredential" in k}
    assert list(credential_reads.values()) == [1]
    first.close()


def test_a_kubeconfig_named_in_settings_wins_over_entra(emulated, tmp_path, monkeypatch):
    emu, ref, _ = emulated
    path = tmp_path / "kubeconfig"
    emu.write_kubeconfig(ref.arm_id, path)
    settings = load_settings({"ALLOWED_CLUSTERS": ref.arm_id, "CLUSTER_KUBECONFIGS": f'{{"{ref.arm_id}": "{path}"}}'})

    def no_entra():
        raise AssertionError("Entra ID must not be used when a kubeconfig is configured")

    monkeypatch.setattr(auth, "default_azure_credential", no_entra)
    kube = kube_from_settings(settings, ref)
    assert {n.pool for n in kube.list_nodes()} == {"system", "nodepool1"}
    kube.close()


def test_arm_credential_is_static_only_with_the_dev_token(emulated, monkeypatch):
    emu, _, settings = emulated
    static = arm_credential(settings)
    assert isinstance(static, StaticTokenCredential)
    assert static.get_token("https://management.azure.com/.default").token == emu.token
    sentinel = object()
    monkeypatch.setattr(auth, "default_azure_credential", lambda: sentinel)
    production = load_settings({"ALLOWED_CLUSTERS": next(iter(settings.allowed_clusters))})
    assert arm_credential(production) is sentinel


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("https://aks-prod-dns.hcp.westeurope.azmk8s.io:443", True),
        ("http://127.0.0.1:6443", True),  # a local emulator
        ("http://aks-prod-dns.hcp.westeurope.azmk8s.io:80", False),  # the token would travel in clear text
    ],
)
def test_an_entra_token_is_only_sent_over_https_or_loopback(server, allowed):
    credential = CountingCredential(["t1"], lifetime=3600, clock=lambda: 0.0)
    if allowed:
        configuration = auth.entra_configuration(server, None, credential, clock=lambda: 0.0)
        assert configuration.host == server
    else:
        with pytest.raises(PermanentError, match=r"clear text|only https"):
            auth.entra_configuration(server, None, credential, clock=lambda: 0.0)
        assert credential.calls == []  # refused before any token was fetched
