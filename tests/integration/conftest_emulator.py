"""Pytest fixtures for the AKS emulator (loaded by the project conftest through `pytest_plugins`).

- `emulator`: a factory; `emulator("seed-pdb")` or `emulator(ClusterBuilder(...))` starts an
  Emulator at a fast time scale with those clusters and stops it at teardown.
- `aks_client`: a factory building the real `ContainerServiceClient` against an emulator: static
  bearer token credential, bearer auth allowed over http for loopback only, tiny polling interval.
- `kube_client`: a factory building a real `kubernetes` CoreV1Api from the kubeconfig ARM's
  listClusterUserCredential returns.

The emulator modules are imported inside the fixtures so that collecting tests which do not use
them never depends on the emulator.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

# 0.02 real seconds per AKS minute: a 30-minute drain timeout passes in 0.6 s.
FAST_TIME_SCALE = 0.02
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class StaticTokenCredential:
    """A credential that always returns the emulator's bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object):
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


def _loopback_bearer_policy(credential: StaticTokenCredential, scope: str):
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy

    class LoopbackBearerTokenPolicy(BearerTokenCredentialPolicy):
        """Bearer auth that permits plain http to loopback (the emulator) and nowhere else."""

        def on_request(self, request) -> None:
            if urlparse(request.http_request.url).hostname in LOOPBACK_HOSTS:
                request.context.options["enforce_https"] = False
            super().on_request(request)

    return LoopbackBearerTokenPolicy(credential, scope)


@pytest.fixture
def emulator() -> Iterator[Callable]:
    """Factory: start an Emulator with scenarios (names or ClusterBuilders); stopped at teardown."""
    from sandbox.aks_emulator.scenarios import SCENARIOS
    from sandbox.aks_emulator.server import Emulator

    started = []

    def start(*clusters: object, time_scale: float = FAST_TIME_SCALE, fault_seed: int = 0,
              token: str | None = None) -> Emulator:
        emu = Emulator(time_scale=time_scale, fault_seed=fault_seed, token=token)
        started.append(emu)
        for cluster in clusters:
            builder = SCENARIOS[cluster]() if isinstance(cluster, str) else cluster
            builder.build(emu)
        return emu.start()

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def aks_client() -> Iterator[Callable]:
    """Factory: a real ContainerServiceClient for an emulator and subscription."""
    from azure.mgmt.containerservice import ContainerServiceClient

    clients = []

    def build(emu, subscription_id: str | None = None, **kwargs: object) -> ContainerServiceClient:
        subscription_id = subscription_id or emu.clusters()[0].subscription_id
        credential = StaticTokenCredential(emu.token)
        kwargs.setdefault("polling_interval", 0.01)
        kwargs.setdefault("retry_backoff_factor", 0.01)
        client = ContainerServiceClient(
            credential, subscription_id, base_url=emu.arm_url,
            authentication_policy=_loopback_bearer_policy(credential, "https://management.azure.com/.default"),
            **kwargs,
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def kube_client() -> Iterator[Callable]:
    """Factory: a kubernetes CoreV1Api for a cluster, configured from ARM's user kubeconfig."""
    import kubernetes

    api_clients = []
    workdir = tempfile.TemporaryDirectory()

    def build(aks, cluster) -> kubernetes.client.CoreV1Api:
        credentials = aks.managed_clusters.list_cluster_user_credentials(cluster.resource_group, cluster.name)
        kubeconfig = yaml.safe_load(_decoded(credentials.kubeconfigs[0].value))
        path = Path(workdir.name) / f"{cluster.name}.yaml"
        path.write_text(yaml.safe_dump(kubeconfig))
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(path), client_configuration=configuration)
        api_client = kubernetes.client.ApiClient(configuration)
        api_clients.append(api_client)
        return kubernetes.client.CoreV1Api(api_client)

    yield build
    for api_client in api_clients:
        api_client.close()
    workdir.cleanup()


def _decoded(value: bytes | str) -> str:
    """The SDK hands the kubeconfig over as bytes already decoded from base64; accept both forms."""
    if isinstance(value, bytes):
        return value.decode()
    return base64.b64decode(value).decode()


class EventReceiver:
    """A local webhook that answers Event Grid's validation handshakes and records notifications."""

    def __init__(self) -> None:
        import threading

        from sandbox.serving import LoopbackServer

        self.notifications: list[dict] = []
        self.fail_next = 0  # answer this many notifications with 500, to exercise Event Grid's retries
        self.refused = 0
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._app, name="event-receiver", quiet=False).start()
        self.url = f"{self._server.url}/runtime/webhooks/EventGrid?functionName=on_aks_event"

    def _app(self, environ, start_response):
        import json

        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        if request.method == "OPTIONS":
            response = Response(status=200, headers={
                "WebHook-Allowed-Origin": request.headers.get("WebHook-Request-Origin", "")})
        elif request.headers.get("aeg-event-type") == "SubscriptionValidation":
            code = request.get_json()[0]["data"]["validationCode"]
            response = Response(json.dumps({"validationResponse": code}), content_type="application/json")
        elif self._refuse_one():
            response = Response(status=500)
        else:
            with self._lock:
                self.notifications.append({
                    "event_type_header": request.headers.get("aeg-event-type"),
                    "content_type": request.headers.get("Content-Type"),
                    "body": request.get_json(force=True),
                })
            response = Response(status=200)
        return response(environ, start_response)

    def _refuse_one(self) -> bool:
        with self._lock:
            if self.fail_next <= 0:
                return False
            self.fail_next -= 1
            self.refused += 1
            return True

    def events(self) -> list[dict]:
        """Every delivered event, in arrival order."""
        with self._lock:
            return [event for notification in self.notifications for event in notification["body"]]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def event_receiver() -> Iterator[EventReceiver]:
    receiver = EventReceiver()
    yield receiver
    receiver.stop()
