"""The Aks port over azure-mgmt-containerservice: agent pools and managed clusters through ARM.

Long-running operations are started and left running (``polling=False``: no poller thread, no
``.result()``): a function never blocks for the minutes an upgrade takes; a later delayed step
reads ``get_pool(...).provisioning_state`` instead. A pool PUT overlays the domain's changes on the
pool as ARM has it, so properties this project does not model (subnets, autoscaling, ...) survive.
ARM errors leave as the project's errors with ARM's ``error.code`` and message.

api-versions (docs/policy.md says why): requests speak the SDK's ``arm_schema.STABLE_API_VERSION``,
except pool reads and the pool writes that set a field only a preview defines (``maxBlockedNodes``),
which speak ``arm_schema.PREVIEW_API_VERSION``: only the preview shows a pool's maxBlockedNodes,
which the preflight counts. Where ARM does not offer the preview (its region, a retired preview),
reads fall back to the stable version and a write that needs the preview is refused. A pool body is
checked against the properties of its api-version before it leaves; a property the version lacks
is refused here, naming the property and the version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice import models as sdk
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

from upgrade.adapters import arm_schema
from upgrade.domain.model import AgentPool, ClusterRef, UpgradeSettings
from upgrade.domain.surge import QUOTA_ERROR_CODES
from upgrade.domain.windows import MaintenanceConfig, config_from_arm
from upgrade.errors import Conflict, InvalidInput, NotFound, PermanentError, TemporaryError, UpgradeError
from upgrade.settings import Settings, is_loopback_url

ARM_SCOPE = "https://management.azure.com/.default"
DEFAULT_RETRY_SECONDS = 10.0
# Another operation on the pool or cluster is running: it usually ends within minutes.
OPERATION_IN_PROGRESS_RETRY_SECONDS = 60.0
# The SDK retries 429/5xx itself; a few tries keep a step short, the step's own Retry does the rest.
SDK_RETRY_TOTAL = 3
# ARM's answers to an api-version it does not offer for the resource type.
API_VERSION_NOT_OFFERED = frozenset({"InvalidApiVersionParameter", "NoRegisteredProviderFound", "InvalidResourceType"})
# Preview setting the SDK's models lack (the models keep unknown keys as raw JSON); a pool write
# that sets it goes out at arm_schema.PREVIEW_API_VERSION, which defines it.
MAX_BLOCKED_NODES = "maxBlockedNodes"


class LoopbackBearerTokenPolicy(ARMChallengeAuthenticationPolicy):
    """ARM bearer auth that also permits plain http, used only when ARM_ENDPOINT is loopback (the
    emulator); every other endpoint keeps the SDK's https-only policy."""

    def on_request(self, request: Any) -> None:
        request.context.options["enforce_https"] = False
        super().on_request(request)


def container_service_client(
    settings: Settings, subscription_id: str, credential: Any, **kwargs: Any
) -> ContainerServiceClient:
    """A client for ARM_ENDPOINT; ``api_version=arm_schema.PREVIEW_API_VERSION`` for the preview one."""
    kwargs.setdefault("retry_total", SDK_RETRY_TOTAL)
    endpoint = settings.arm_endpoint
    if is_loopback_url(endpoint) and not endpoint.lower().startswith("https"):
        kwargs["authentication_policy"] = LoopbackBearerTokenPolicy(credential, ARM_SCOPE)
    return ContainerServiceClient(credential, subscription_id, base_url=endpoint, **kwargs)


def _retry_after(exc: HttpResponseError) -> float:
    headers = exc.response.headers if exc.response is not None else {}
    try:
        return float(headers.get("Retry-After", DEFAULT_RETRY_SECONDS))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_SECONDS


def _provisioning_error_text(error: Any) -> str | None:
    """ARM's ``status.provisioningError`` as one line: ``code: message`` and any details' messages."""
    if error is None:
        return None
    parts = [f"{error.code}: {error.message}" if error.code and error.message else (error.message or error.code)]
    parts += [detail.message for detail in (error.details or ()) if detail.message]
    return "; ".join(p for p in parts if p) or None


def arm_error(what: str, exc: Exception) -> UpgradeError:
    """The project error for a failed ARM call on ``what`` (the caller raises it ``from exc``)."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TemporaryError(f"{what}: ARM unreachable: {exc}", delay_seconds=DEFAULT_RETRY_SECONDS)
    if isinstance(exc, ClientAuthenticationError):
        return PermanentError(f"{what}: ARM refused the credentials: {exc.message}", status=exc.status_code)
    if not isinstance(exc, HttpResponseError):
        return TemporaryError(f"{what}: {exc}", delay_seconds=DEFAULT_RETRY_SECONDS)
    status = exc.status_code or 0
    code = exc.error.code if exc.error is not None else None
    message = (exc.error.message if exc.error is not None else None) or exc.reason or str(exc)
    text = f"{what}: {code or status}: {message}"
    if code in QUOTA_ERROR_CODES:
        return PermanentError(text, status=status, code=code)
    if status == 404:
        return NotFound(text, status=status, code=code)
    if status == 409 and code == "OperationNotAllowed":
        # A conflicting operation in progress: temporary, it finishes on its own.
        return TemporaryError(text, delay_seconds=OPERATION_IN_PROGRESS_RETRY_SECONDS, status=status)
    if status in (409, 412):
        return Conflict(text, status=status, code=code)
    if status == 429 or status >= 500:
        return TemporaryError(text, delay_seconds=_retry_after(exc), status=status)
    return PermanentError(text, status=status, code=code)


def _text(value: Any) -> str | None:
    """SDK enums are str subclasses whose str() is "AgentPoolMode.USER": take the wire value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def pool_from_sdk(pool: sdk.AgentPool) -> AgentPool:
    settings = pool.upgrade_settings
    upgrade = UpgradeSettings()
    if settings is not None:
        upgrade = UpgradeSettings(
            max_surge=settings.max_surge,
            max_unavailable=settings.max_unavailable,
            drain_timeout_minutes=settings.drain_timeout_in_minutes,
            node_soak_minutes=settings.node_soak_duration_in_minutes,
            undrainable_node_behavior=_text(settings.undrainable_node_behavior),
            max_blocked_nodes=settings.get(MAX_BLOCKED_NODES),
        )
    error = pool.status.provisioning_error if pool.status is not None else None
    return AgentPool(
        name=pool.name or "",
        mode=_text(pool.mode) or "User",
        count=pool.count or 0,
        orchestrator_version=pool.orchestrator_version or pool.current_orchestrator_version or "",
        vm_size=pool.vm_size or AgentPool.__dataclass_fields__["vm_size"].default,
        provisioning_state=_text(pool.provisioning_state) or "Succeeded",
        power_state=(_text(pool.power_state.code) if pool.power_state else None) or "Running",
        os_type=_text(pool.os_type) or "Linux",
        os_sku=_text(pool.os_sku),
        max_pods=pool.max_pods,
        zones=tuple(pool.availability_zones or ()),
        node_labels=tuple(sorted((pool.node_labels or {}).items())),
        node_taints=tuple(pool.node_taints or ()),
        upgrade_settings=upgrade,
        node_image_version=pool.node_image_version,
        etag=pool.e_tag,
        error=_provisioning_error_text(error),
        tags=tuple(sorted((pool.tags or {}).items())),
        properties=dict(pool.as_dict().get("properties") or {}),
    )


def _sdk_upgrade_settings(settings: UpgradeSettings) -> sdk.AgentPoolUpgradeSettings:
    result = sdk.AgentPoolUpgradeSettings(
        max_surge=settings.max_surge,
        max_unavailable=settings.max_unavailable,
        drain_timeout_in_minutes=settings.drain_timeout_minutes,
        node_soak_duration_in_minutes=settings.node_soak_minutes,
        undrainable_node_behavior=settings.undrainable_node_behavior,
    )
    if settings.max_blocked_nodes is not None:
        result[MAX_BLOCKED_NODES] = settings.max_blocked_nodes
    return result


def pool_to_sdk(pool: AgentPool, current: sdk.AgentPool | None = None) -> sdk.AgentPool:
    """The PUT body: ``current`` (as ARM has it) with the domain's version, count, mode, labels,
    taints and upgrade settings; a new pool also gets its size, OS, max pods and zones."""
    if current is None:
        body = sdk.AgentPool(
            vm_size=pool.vm_size,
            os_type=pool.os_type,
            max_pods=pool.max_pods,
            availability_zones=list(pool.zones) or None,
        )
        if pool.os_sku:
            body.os_sku = pool.os_sku
    else:
        body = sdk.AgentPool(current.as_dict())
    body.count = pool.count
    body.mode = pool.mode
    body.orchestrator_version = pool.orchestrator_version
    body.node_labels = dict(pool.node_labels)
    body.node_taints = list(pool.node_taints)
    body.upgrade_settings = _sdk_upgrade_settings(pool.upgrade_settings)
    return body


def undefined_properties_error(what: str, body: dict[str, Any], api_version: str) -> PermanentError | None:
    """The error for an AgentPool ``body`` holding a property ``api_version`` does not define."""
    paths = arm_schema.defined_paths(api_version, arm_schema.AGENT_POOL)
    if paths is None:
        return PermanentError(f"{what}: api-version {api_version} is not one this app knows the properties of")
    undefined = arm_schema.undefined_properties(body, paths, arm_schema.AGENT_POOL)
    if not undefined:
        return None
    names = ", ".join(u.path for u in undefined)
    return PermanentError(f"{what}: api-version {api_version} does not define {names}; not sent")


class ContainerServiceAks:
    """The Aks port for one subscription. ``preview_client`` speaks arm_schema.PREVIEW_API_VERSION;
    without it a pool write that needs the preview is refused."""

    def __init__(self, client: ContainerServiceClient, preview_client: ContainerServiceClient | None = None) -> None:
        self.client = client
        self.preview_client = preview_client
        self.preview_offered = preview_client is not None

    def _read(self, what: str, call: Callable[[ContainerServiceClient], Any]) -> Any:
        """``call`` at the preview while ARM offers it, else at the stable api-version."""
        if self.preview_client is not None and self.preview_offered:
            try:
                return self._call(what, call, self.preview_client)
            except PermanentError as exc:
                if exc.code not in API_VERSION_NOT_OFFERED or isinstance(exc, NotFound):
                    raise
                self.preview_offered = False
        return self._call(what, call, self.client)

    def close(self) -> None:
        self.client.close()
        if self.preview_client is not None:
            self.preview_client.close()

    def _client_for(self, what: str, pool: AgentPool) -> tuple[ContainerServiceClient, str]:
        """The client and api-version a write of ``pool`` needs: the preview only for its fields."""
        if pool.upgrade_settings.max_blocked_nodes is None:
            return self.client, arm_schema.STABLE_API_VERSION
        if self.preview_client is None or not self.preview_offered:
            raise PermanentError(
                f"{what}: upgradeSettings.{MAX_BLOCKED_NODES} is defined only by api-version "
                f"{arm_schema.PREVIEW_API_VERSION} (not by {arm_schema.STABLE_API_VERSION}), which ARM does not "
                "offer here (the cluster's region or the subscription's preview registration): leave it unset"
            )
        return self.preview_client, arm_schema.PREVIEW_API_VERSION

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except AzureError as exc:
            raise arm_error(what, exc) from exc

    def get_cluster_version(self, cluster: ClusterRef) -> str:
        managed = self._call(
            f"get cluster {cluster.name}", self.client.managed_clusters.get, cluster.resource_group, cluster.name
        )
        return managed.current_kubernetes_version or managed.kubernetes_version or ""

    def list_maintenance_configurations(self, cluster: ClusterRef) -> list[MaintenanceConfig]:
        what = f"list maintenance configurations of {cluster.name}"
        listed = self._call(what, lambda: list(self.client.maintenance_configurations.list_by_managed_cluster(
            cluster.resource_group, cluster.name)))
        try:
            return [config_from_arm(c.name, c.as_dict().get("properties") or {}) for c in listed]
        except InvalidInput as exc:
            raise PermanentError(f"{what}: ARM returned a configuration this app cannot read: {exc}") from exc

    def list_pools(self, cluster: ClusterRef) -> list[AgentPool]:
        def listed(client: ContainerServiceClient) -> list[AgentPool]:
            return [pool_from_sdk(p) for p in client.agent_pools.list(cluster.resource_group, cluster.name)]

        return self._read(f"list pools of {cluster.name}", listed)

    def _get_sdk_pool(self, cluster: ClusterRef, pool: str, client: ContainerServiceClient) -> sdk.AgentPool:
        return self._call(
            f"get pool {pool} of {cluster.name}",
            client.agent_pools.get,
            cluster.resource_group,
            cluster.name,
            pool,
        )

    def get_pool(self, cluster: ClusterRef, pool: str) -> AgentPool:
        return pool_from_sdk(self._read(
            f"get pool {pool} of {cluster.name}",
            lambda client: client.agent_pools.get(cluster.resource_group, cluster.name, pool),
        ))

    def begin_put_pool(self, cluster: ClusterRef, pool: AgentPool, *, if_match: str | None = None) -> None:
        what = f"put pool {pool.name} of {cluster.name}"
        client, api_version = self._client_for(what, pool)
        try:
            current = self._get_sdk_pool(cluster, pool.name, client)
        except NotFound:
            current = None
        body = pool_to_sdk(pool, current)
        refused = undefined_properties_error(what, body.as_dict(), api_version)
        if refused is not None:
            raise refused
        conditions: dict[str, Any] = {}
        if if_match:
            conditions = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        self._call(
            what,
            client.agent_pools.begin_create_or_update,
            cluster.resource_group,
            cluster.name,
            pool.name,
            body,
            polling=False,
            **conditions,
        )

    def begin_create_pool(self, cluster: ClusterRef, name: str, properties: Mapping[str, Any]) -> None:
        """A clone's body as read from ARM: at the stable api-version when it defines every property,
        else at the preview (which the read spoke); refused when neither does."""
        what = f"create pool {name} of {cluster.name}"
        body = sdk.AgentPool({"properties": dict(properties)})
        client, api_version = self.client, arm_schema.STABLE_API_VERSION
        refused = undefined_properties_error(what, body.as_dict(), api_version)
        if refused is not None and self.preview_client is not None and self.preview_offered:
            client, api_version = self.preview_client, arm_schema.PREVIEW_API_VERSION
            refused = undefined_properties_error(what, body.as_dict(), api_version)
        if refused is not None:
            raise refused
        self._call(what, client.agent_pools.begin_create_or_update, cluster.resource_group, cluster.name, name,
                   body, polling=False, match_condition=MatchConditions.IfMissing)

    def begin_delete_pool(
        self, cluster: ClusterRef, pool: str, *, ignore_pod_disruption_budget: bool = False
    ) -> None:
        self._call(
            f"delete pool {pool} of {cluster.name}",
            self.client.agent_pools.begin_delete,
            cluster.resource_group,
            cluster.name,
            pool,
            ignore_pod_disruption_budget=ignore_pod_disruption_budget or None,
            polling=False,
        )

    def begin_delete_machines(self, cluster: ClusterRef, pool: str, machines: Sequence[str]) -> None:
        self._call(
            f"delete machines of pool {pool} of {cluster.name}",
            self.client.agent_pools.begin_delete_machines,
            cluster.resource_group,
            cluster.name,
            pool,
            sdk.AgentPoolDeleteMachinesParameter(machine_names=list(machines)),
            polling=False,
        )

    def latest_node_image_version(self, cluster: ClusterRef, pool: str) -> str | None:
        profile = self._call(
            f"get upgrade profile of pool {pool} of {cluster.name}",
            self.client.agent_pools.get_upgrade_profile, cluster.resource_group, cluster.name, pool,
        )
        return (profile.properties.latest_node_image_version or None) if profile.properties else None

    def begin_upgrade_node_image(self, cluster: ClusterRef, pool: str) -> None:
        self._call(
            f"upgrade the node image of pool {pool} of {cluster.name}",
            self.client.agent_pools.begin_upgrade_node_image_version, cluster.resource_group, cluster.name, pool,
            polling=False,
        )

    def available_upgrades(self, cluster: ClusterRef, pool: str) -> list[str]:
        profile = self._call(
            f"get upgrade profile of pool {pool} of {cluster.name}",
            self.client.agent_pools.get_upgrade_profile,
            cluster.resource_group,
            cluster.name,
            pool,
        )
        upgrades = (profile.properties.upgrades or []) if profile.properties else []
        return [u.kubernetes_version for u in upgrades if u.kubernetes_version]


def aks_from_settings(settings: Settings, subscription_id: str) -> ContainerServiceAks:
    from upgrade.adapters.auth import arm_credential

    credential = arm_credential(settings)
    return ContainerServiceAks(
        container_service_client(settings, subscription_id, credential),
        container_service_client(settings, subscription_id, credential, api_version=arm_schema.PREVIEW_API_VERSION),
    )
