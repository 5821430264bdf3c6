"""Clusters chosen by tag through Azure Resource Graph (azure-mgmt-resourcegraph).

One query shape: the managed clusters of the given subscriptions whose tags equal every given
name/value (tag names compare without case, as ARM's do; values exactly), projected to their ids.
Pages are followed with the skip token. The emulator serves exactly this shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from upgrade.adapters.aks import ARM_SCOPE, SDK_RETRY_TOTAL, LoopbackBearerTokenPolicy, arm_error
from upgrade.settings import Settings, is_loopback_url

PAGE_SIZE = 1000


def _kql_string(text: str) -> str:
    """A KQL string literal: single-quoted, with backslash and quote escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tagged_clusters_query(tags: Mapping[str, str]) -> str:
    """``resources | where type =~ 'microsoft.containerservice/managedclusters' | where tags[k] == v … | project id``."""
    where = "".join(f" | where tags[{_kql_string(name)}] == {_kql_string(value)}" for name, value in sorted(tags.items()))
    return f"resources | where type =~ 'microsoft.containerservice/managedclusters'{where} | project id"


class ResourceGraphSearch:
    def __init__(self, client: Any) -> None:
        self._client = client

    def clusters_tagged(self, subscriptions: Sequence[str], tags: Mapping[str, str]) -> list[str]:
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        found: list[str] = []
        skip_token = None
        while True:
            request = QueryRequest(subscriptions=list(subscriptions), query=tagged_clusters_query(tags),
                                   options=QueryRequestOptions(top=PAGE_SIZE, skip_token=skip_token,
                                                               result_format="objectArray"))
            try:
                answer = self._client.resources(request)
            except Exception as exc:
                raise arm_error("Resource Graph query for tagged clusters", exc) from exc
            found.extend(row["id"] for row in (answer.data or []) if isinstance(row, dict) and row.get("id"))
            skip_token = answer.skip_token
            if not skip_token:
                return found


def search_from_settings(settings: Settings) -> ResourceGraphSearch:
    from azure.mgmt.resourcegraph import ResourceGraphClient

    from upgrade.adapters.auth import arm_credential

    credential = arm_credential(settings)
    kwargs: dict[str, Any] = {"retry_total": SDK_RETRY_TOTAL}
    if is_loopback_url(settings.arm_endpoint) and not settings.arm_endpoint.lower().startswith("https"):
        kwargs["authentication_policy"] = LoopbackBearerTokenPolicy(credential, ARM_SCOPE)
    return ResourceGraphSearch(ResourceGraphClient(credential, base_url=settings.arm_endpoint, **kwargs))
