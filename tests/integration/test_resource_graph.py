"""Clusters chosen by tag: the Resource Graph adapter (real azure-mgmt-resourcegraph client) against
the emulator's Resource Graph endpoint, which serves the one query shape the product sends."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError

from sandbox.aks_emulator.scenarios import ClusterBuilder
from upgrade.adapters import resource_graph
from upgrade.adapters.resource_graph import search_from_settings, tagged_clusters_query
from upgrade.errors import PermanentError, TemporaryError
from upgrade.settings import load_settings

pytestmark = pytest.mark.integration

OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-000000000009"


def builder(name: str, subscription: str | None = None, **tags: str) -> ClusterBuilder:
    built = ClusterBuilder(name, tags=dict(tags)).pool("system", count=1, mode="System")
    if subscription:
        built.subscription_id = subscription
    return built


@pytest.fixture
def search(emulator):
    emu = emulator(builder("aks-a", env="prod", team="o'brien"), builder("aks-b", Env="prod"),
                   builder("aks-c", env="dev"), builder("aks-d", OTHER_SUBSCRIPTION, env="prod"))
    ids = {c.name: c.arm_id for c in emu.clusters()}
    settings = load_settings({"ALLOWED_CLUSTERS": ",".join(ids.values()), "ARM_ENDPOINT": emu.arm_url,
                              "ARM_DEV_TOKEN": emu.token})
    return search_from_settings(settings), ids, emu


def test_tags_select_the_clusters_of_the_subscriptions_asked(search):
    graph, ids, emu = search
    subscription = ids["aks-a"].split("/")[2]
    assert graph.clusters_tagged([subscription], {"env": "prod"}) == sorted([ids["aks-a"], ids["aks-b"]])
    assert graph.clusters_tagged([subscription, OTHER_SUBSCRIPTION], {"env": "prod"}) == sorted(
        [ids["aks-a"], ids["aks-b"], ids["aks-d"]])
    assert graph.clusters_tagged([subscription], {"env": "prod", "team": "o'brien"}) == [ids["aks-a"]]
    assert graph.clusters_tagged([subscription], {"env": "staging"}) == []
    sent = [r for r in emu.arm_requests if "ResourceGraph" in r.path]
    assert sent and all(r.api_version == "2021-03-01" and r.method == "POST" for r in sent)
    assert sent[-1].body["query"] == tagged_clusters_query({"env": "staging"})


def test_pages_are_followed(search, monkeypatch):
    graph, ids, _ = search
    monkeypatch.setattr(resource_graph, "PAGE_SIZE", 1)
    subscription = ids["aks-a"].split("/")[2]
    assert graph.clusters_tagged([subscription], {"env": "prod"}) == sorted([ids["aks-a"], ids["aks-b"]])


class _Refusing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def resources(self, request):
        raise self.exc


@pytest.mark.parametrize(("exc", "expected"), [
    (ClientAuthenticationError("no token", response=None), PermanentError),
    (ServiceRequestError("connection refused"), TemporaryError),
    (ServiceResponseError("connection reset while reading the answer"), TemporaryError),
])
def test_a_failed_query_is_the_projects_error_as_for_every_arm_call(exc, expected):
    """Resource Graph errors map as every ARM call's do (the aks adapter's arm_error): refused
    credentials are permanent, an unreachable endpoint or a broken answer temporary; no SDK
    exception escapes."""
    with pytest.raises(expected) as caught:
        resource_graph.ResourceGraphSearch(_Refusing(exc)).clusters_tagged(["sub"], {"env": "prod"})
    assert "Resource Graph query for tagged clusters" in str(caught.value)
