"""The ARM HTTP API of the emulated AKS, as azure-mgmt-containerservice calls it.

Routes are ARM's (matched case-insensitively, as ARM does) for managedClusters (get, list by
subscription and resource group, upgradeProfiles/default, listClusterUserCredential),
maintenanceConfigurations (list, get, PUT, DELETE), agentPools
(list, get, PUT, DELETE, upgradeProfiles/default, abort, deleteMachines, upgradeNodeImageVersion)
and the operation status resources long-running operations point at. Every request needs
`Authorization: Bearer <token>`. Writes answer like ARM: 200/201 with the resource and
`Azure-AsyncOperation` for PUT, 202 with `Azure-AsyncOperation` and `Location` for DELETE and POST
actions, ETag headers, and `{"error": {"code", "message"}}` on failure.

api-versions are enforced like ARM: a request without one is refused with
MissingApiVersionParameter, one the emulator does not serve with InvalidApiVersionParameter (ARM's
text, naming the supported versions). It serves the SDK's stable version and the preview the
product uses, knowing each one's properties from `upgrade.adapters.arm_schema` (read from the SDK's
models). A request body holding a property its api-version does not define is refused with 400
InvalidRequestContent naming the property (the emulator's strict choice: an RP may also drop it
silently; either way the field would not take effect), and answers carry only the properties of
the request's version. A PUT at a version that lacks an upgradeSettings field the pool has (a
stable PUT after a preview one set maxBlockedNodes) leaves that field as it is. Every request is
appended to a request log (`ArmRequest`: method, path, api-version, body) that tests read.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from azure.mgmt.resourcegraph._configuration import ResourceGraphClientConfiguration
from werkzeug.wrappers import Request, Response

from sandbox.aks_emulator.arm import PROVIDER, ArmError, ArmModel, EmulatedCluster, Operation
from sandbox.aks_emulator.fleet import FleetModel
from upgrade.adapters import arm_schema

_SEGMENT = r"([^/]+)"
_SUBSCRIPTION = rf"/subscriptions/{_SEGMENT}"
_CLUSTER = rf"{_SUBSCRIPTION}/resourceGroups/{_SEGMENT}/providers/{PROVIDER}/managedClusters/{_SEGMENT}"
_POOL = rf"{_CLUSTER}/agentPools/{_SEGMENT}"
_MAINTENANCE = rf"{_CLUSTER}/maintenanceConfigurations"
_LOCATION = rf"{_SUBSCRIPTION}/providers/{PROVIDER}/locations/{_SEGMENT}"
_FLEET = rf"{_SUBSCRIPTION}/resourceGroups/{_SEGMENT}/providers/{PROVIDER}/fleets/{_SEGMENT}"
_FLEET_PATH = re.compile(rf"^{_FLEET}(/|$)", re.IGNORECASE)

_RESOURCE_GRAPH = "/providers/Microsoft.ResourceGraph/resources"
# What azure-mgmt-containerservicefleet speaks (Fleet Manager resources).
FLEET_API_VERSIONS = (arm_schema.FLEET_API_VERSION,)
# What azure-mgmt-resourcegraph speaks (the product's ResourceGraphClient keeps the SDK's default).
RESOURCE_GRAPH_API_VERSIONS = (ResourceGraphClientConfiguration("credential").api_version,)
# The one query shape the product sends (upgrade.adapters.resource_graph.tagged_clusters_query).
_GRAPH_QUERY = re.compile(
    r"^resources \| where type =~ 'microsoft\.containerservice/managedclusters'"
    r"(?P<wheres>( \| where tags\['(?:[^'\\]|\\.)*'\] == '(?:[^'\\]|\\.)*')*) \| project id$")
_GRAPH_TAG = re.compile(r"tags\['((?:[^'\\]|\\.)*)'\] == '((?:[^'\\]|\\.)*)'")

Handler = Callable[..., Response]


@dataclass(frozen=True)
class ArmRequest:
    """One request as the emulated ARM received it (the request log tests read)."""

    method: str
    path: str
    api_version: str | None
    body: object  # the parsed JSON body; None without one, the raw text if it is not JSON


def _json(body: object, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(error: ArmError) -> Response:
    return _json(error.to_arm(), error.status)


class ArmApp:
    """WSGI application serving `ArmModel` over ARM's REST shapes."""

    def __init__(self, model: ArmModel, request_log: list[ArmRequest] | None = None,
                 fleet: FleetModel | None = None) -> None:
        self.model = model
        self.fleet = fleet
        self.request_log = request_log if request_log is not None else []
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self._route("GET", rf"{_SUBSCRIPTION}/providers/{PROVIDER}/managedClusters", self.list_clusters)
        self._route("GET", rf"{_SUBSCRIPTION}/resourceGroups/{_SEGMENT}/providers/{PROVIDER}/managedClusters",
                    self.list_clusters_in_group)
        self._route("GET", _CLUSTER, self.get_cluster)
        self._route("POST", _RESOURCE_GRAPH, self.resource_graph_query)
        self._route("GET", rf"{_CLUSTER}/upgradeProfiles/default", self.get_cluster_upgrade_profile)
        self._route("POST", rf"{_CLUSTER}/listClusterUserCredential", self.list_user_credentials)
        self._route("GET", _MAINTENANCE, self.list_maintenance_configurations)
        self._route("GET", rf"{_MAINTENANCE}/{_SEGMENT}", self.get_maintenance_configuration)
        self._route("PUT", rf"{_MAINTENANCE}/{_SEGMENT}", self.put_maintenance_configuration)
        self._route("DELETE", rf"{_MAINTENANCE}/{_SEGMENT}", self.delete_maintenance_configuration)
        self._route("GET", rf"{_CLUSTER}/agentPools", self.list_pools)
        self._route("GET", _POOL, self.get_pool)
        self._route("PUT", _POOL, self.put_pool)
        self._route("DELETE", _POOL, self.delete_pool)
        self._route("GET", rf"{_POOL}/upgradeProfiles/default", self.get_pool_upgrade_profile)
        self._route("POST", rf"{_POOL}/abort", self.abort)
        self._route("POST", rf"{_POOL}/deleteMachines", self.delete_machines)
        self._route("POST", rf"{_POOL}/upgradeNodeImageVersion", self.upgrade_node_image)
        self._route("GET", rf"{_LOCATION}/operations/{_SEGMENT}", self.get_operation_status)
        if fleet is not None:
            self._route("GET", rf"{_FLEET}/gates/{_SEGMENT}", self.get_gate)
            self._route("PATCH", rf"{_FLEET}/gates/{_SEGMENT}", self.patch_gate)
            self._route("GET", rf"{_FLEET}/updateRuns/{_SEGMENT}", self.get_update_run)
        self._route("GET", rf"{_LOCATION}/operationresults/{_SEGMENT}", self.get_operation_result)

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}/?$", re.IGNORECASE), handler))

    def __call__(self, environ: dict, start_response: Callable) -> object:
        request = Request(environ)
        self.request_log.append(_recorded(request))
        response = self._dispatch(request)
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        response.headers["x-ms-correlation-request-id"] = request.headers.get(
            "x-ms-client-request-id", str(uuid.uuid4()))
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        unauthorized = self._check_token(request)
        if unauthorized is not None:
            return unauthorized
        graph = request.path.lower().startswith(_RESOURCE_GRAPH.lower())
        try:
            offered = (RESOURCE_GRAPH_API_VERSIONS if graph else FLEET_API_VERSIONS if _FLEET_PATH.match(request.path)
                       else self.model.api_versions)
            _check_api_version(request, offered)
        except ArmError as error:
            return _error(error)
        path_matched = False
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            path_matched = True
            if method != request.method:
                continue
            try:
                return handler(request, *match.groups())
            except ArmError as error:
                return _error(error)
        if path_matched:
            return _error(ArmError(405, "MethodNotAllowed", f"The method {request.method} is not allowed on this resource."))
        return _error(ArmError(404, "InvalidResourceType", f"The resource path {request.path} is not served by this emulator."))

    def _check_token(self, request: Request) -> Response | None:
        header = request.headers.get("Authorization")
        if not header:
            error = ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        elif header != f"Bearer {self.model.token}":
            error = ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        else:
            return None
        response = _error(error)
        response.headers["WWW-Authenticate"] = (
            'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'
        )
        return response

    # ---- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _body(request: Request, body_model: str | None = None) -> dict:
        """The request's JSON object; with ``body_model``, refused if it holds a property the
        request's api-version does not define for that model."""
        body = ArmApp._json_body(request)
        paths = arm_schema.defined_paths(request.args["api-version"], body_model) if body_model else None
        if paths is not None:
            undefined = arm_schema.undefined_properties(body, paths, body_model or "")
            if undefined:
                first = undefined[0]
                raise ArmError(
                    400, "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized: 'Could not find member "
                    f"'{first.name}' on object of type '{first.parent_type}'. Path '{first.path}'.'",
                    first.path,
                )
        return body

    @staticmethod
    def _json_body(request: Request) -> dict:
        if not request.data:
            return {}
        try:
            body = json.loads(request.data)
        except ValueError as exc:
            raise ArmError(400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: {exc}") from exc
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        return body

    @staticmethod
    def _lro_headers(request: Request, operation: Operation, *, location: bool) -> dict:
        query = f"?api-version={request.args.get('api-version', '')}"
        root = request.host_url.rstrip("/")
        headers = {"Azure-AsyncOperation": f"{root}{operation.async_operation_path}{query}"}
        if location:
            headers["Location"] = f"{root}{operation.result_path}{query}"
        return headers

    def _pool_to_arm(self, request: Request, cluster: EmulatedCluster, pool: object) -> dict:
        """The pool as the request's api-version shows it."""
        return _as_version(request, arm_schema.AGENT_POOL, self.model.pool_to_arm(cluster, pool))

    def _cluster_to_arm(self, request: Request, cluster: EmulatedCluster) -> dict:
        return _as_version(request, arm_schema.MANAGED_CLUSTER, self.model.cluster_to_arm(cluster))

    def _pool_response(self, request: Request, cluster: EmulatedCluster, pool_name: str, status: int = 200,
                       headers: dict | None = None) -> Response:
        pool = self.model.get_pool(cluster, pool_name)
        body = self._pool_to_arm(request, cluster, pool)
        all_headers = {"ETag": f'"{body["properties"]["eTag"]}"', **(headers or {})}
        return _json(body, status, all_headers)

    # ---- Fleet Manager gates and update runs --------------------------------------------------------
    def _gate_response(self, request: Request, gate: object) -> Response:
        assert self.fleet is not None
        body = _as_version(request, arm_schema.GATE, self.fleet.gate_to_arm(gate))
        return _json(body, 200, {"ETag": body["eTag"]})

    def get_gate(self, request: Request, subscription_id: str, resource_group: str, fleet: str, gate: str) -> Response:
        assert self.fleet is not None
        return self._gate_response(request, self.fleet.gate(_fleet_child(request)))

    def patch_gate(self, request: Request, subscription_id: str, resource_group: str, fleet: str, gate: str) -> Response:
        """PATCH a gate's ``properties.state`` (Fleet answers 200 or 202; this one is done at once),
        If-Match honoured."""
        assert self.fleet is not None
        body = self._body(request, arm_schema.GATE_PATCH)
        found = self.fleet.patch_gate(_fleet_child(request), body, request.headers.get("If-Match"))
        return self._gate_response(request, found)

    def get_update_run(self, request: Request, subscription_id: str, resource_group: str, fleet: str,
                       name: str) -> Response:
        assert self.fleet is not None
        run = self.fleet.update_run(_fleet_child(request))
        return _json(_as_version(request, arm_schema.UPDATE_RUN, self.fleet.update_run_to_arm(run)))

    # ---- managed clusters -----------------------------------------------------------------------
    def resource_graph_query(self, request: Request) -> Response:
        """Azure Resource Graph's POST /providers/Microsoft.ResourceGraph/resources for the one query
        shape the product sends: managed clusters of the subscriptions asked whose tags match
        (names without case, values exactly), ``project id``; paged by ``$top``/``$skipToken``."""
        body = self._json_body(request)
        query = body.get("query", "")
        match = _GRAPH_QUERY.match(query) if isinstance(query, str) else None
        if match is None:
            raise ArmError(400, "BadRequest", f"The emulator serves one Resource Graph query shape; got {query!r}.")
        unescape = lambda text: re.sub(r"\\(.)", r"\1", text)  # noqa: E731
        wanted = {unescape(k).lower(): unescape(v) for k, v in _GRAPH_TAG.findall(match["wheres"])}
        subscriptions = {s.lower() for s in body.get("subscriptions") or []}
        with self.model.lock:
            rows = sorted(c.arm_id for c in self.model.clusters.values()
                          if c.subscription_id.lower() in subscriptions
                          and all({k.lower(): v for k, v in c.tags.items()}.get(k) == v for k, v in wanted.items()))
        options = body.get("options") or {}
        start = int(options.get("$skipToken") or 0)
        top = int(options.get("$top") or 1000)
        page = rows[start:start + top]
        answer = {"totalRecords": len(rows), "count": len(page), "resultTruncated": "false",
                  "data": [{"id": arm_id} for arm_id in page], "facets": []}
        if start + top < len(rows):
            answer["$skipToken"] = str(start + top)
        return _json(answer)

    def list_clusters(self, request: Request, subscription_id: str) -> Response:
        clusters = self.model.list_clusters(subscription_id)
        return _json({"value": [self._cluster_to_arm(request, c) for c in clusters]})

    def list_clusters_in_group(self, request: Request, subscription_id: str, resource_group: str) -> Response:
        clusters = self.model.list_clusters(subscription_id, resource_group)
        return _json({"value": [self._cluster_to_arm(request, c) for c in clusters]})

    def get_cluster(self, request: Request, subscription_id: str, resource_group: str, name: str) -> Response:
        return _json(self._cluster_to_arm(request, self.model.get_cluster(subscription_id, resource_group, name)))

    def get_cluster_upgrade_profile(self, request: Request, subscription_id: str, resource_group: str,
                                    name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        return _json(self.model.cluster_upgrade_profile(cluster))

    def list_user_credentials(self, request: Request, subscription_id: str, resource_group: str,
                              name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        return _json(self.model.user_credentials(cluster))

    # ---- maintenance configurations -------------------------------------------------------------
    def list_maintenance_configurations(self, request: Request, subscription_id: str, resource_group: str,
                                        name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        return _json({"value": [_as_version(request, arm_schema.MAINTENANCE_CONFIGURATION, c)
                                for c in self.model.list_maintenance_configurations(cluster)]})

    def get_maintenance_configuration(self, request: Request, subscription_id: str, resource_group: str, name: str,
                                      config: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        return _json(_as_version(request, arm_schema.MAINTENANCE_CONFIGURATION,
                                 self.model.maintenance_configuration_to_arm(cluster, config)))

    def put_maintenance_configuration(self, request: Request, subscription_id: str, resource_group: str, name: str,
                                      config: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        body = self._body(request, arm_schema.MAINTENANCE_CONFIGURATION)
        return _json(_as_version(request, arm_schema.MAINTENANCE_CONFIGURATION,
                                 self.model.put_maintenance_configuration(cluster, config, body)))

    def delete_maintenance_configuration(self, request: Request, subscription_id: str, resource_group: str,
                                         name: str, config: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        return Response(status=200 if self.model.delete_maintenance_configuration(cluster, config) else 204)

    # ---- agent pools ----------------------------------------------------------------------------
    def list_pools(self, request: Request, subscription_id: str, resource_group: str, name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        pools = self.model.list_pools(cluster)
        return _json({"value": [self._pool_to_arm(request, cluster, p) for p in pools]})

    def get_pool(self, request: Request, subscription_id: str, resource_group: str, name: str,
                 pool_name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        return self._pool_response(request, cluster, pool_name)

    def put_pool(self, request: Request, subscription_id: str, resource_group: str, name: str,
                 pool_name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        paths = arm_schema.defined_paths(request.args["api-version"], arm_schema.AGENT_POOL) or {}
        pool, operation, created = self.model.put_pool(
            cluster, pool_name, self._body(request, arm_schema.AGENT_POOL),
            if_match=request.headers.get("If-Match"), if_none_match=request.headers.get("If-None-Match"),
            settings_defined=lambda field: f"properties.upgradeSettings.{field}" in paths,
        )
        body = self._pool_to_arm(request, cluster, pool)
        headers = {"ETag": f'"{body["properties"]["eTag"]}"', **self._lro_headers(request, operation, location=False)}
        return _json(body, 201 if created else 200, headers)

    def delete_pool(self, request: Request, subscription_id: str, resource_group: str, name: str,
                    pool_name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        ignore_pdbs = request.args.get("ignore-pod-disruption-budget", "false").lower() == "true"
        operation = self.model.delete_pool(cluster, pool_name, ignore_pdbs=ignore_pdbs,
                                           if_match=request.headers.get("If-Match"))
        if operation is None:
            return Response(status=204)
        return Response(status=202, headers=self._lro_headers(request, operation, location=True))

    def get_pool_upgrade_profile(self, request: Request, subscription_id: str, resource_group: str, name: str,
                                 pool_name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        return _json(self.model.pool_upgrade_profile(cluster, self.model.get_pool(cluster, pool_name)))

    def abort(self, request: Request, subscription_id: str, resource_group: str, name: str,
              pool_name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        operation = self.model.abort(cluster, pool_name)
        if operation is None:
            return Response(status=204)
        return Response(status=202, headers=self._lro_headers(request, operation, location=True))

    def delete_machines(self, request: Request, subscription_id: str, resource_group: str, name: str,
                        pool_name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        machine_names = self._body(request, arm_schema.DELETE_MACHINES).get("machineNames")
        if not isinstance(machine_names, list) or not all(isinstance(m, str) for m in machine_names):
            raise ArmError(400, "InvalidParameter", "The value of parameter machineNames is invalid: a list of "
                           "machine names is required.", "machineNames")
        operation = self.model.delete_machines(cluster, pool_name, machine_names)
        return Response(status=202, headers=self._lro_headers(request, operation, location=True))

    def upgrade_node_image(self, request: Request, subscription_id: str, resource_group: str, name: str,
                           pool_name: str) -> Response:
        cluster = self.model.get_cluster(subscription_id, resource_group, name)
        _, operation = self.model.upgrade_node_image(cluster, pool_name)
        return self._pool_response(request, cluster, pool_name, 202,
                                   self._lro_headers(request, operation, location=True))

    # ---- operations -----------------------------------------------------------------------------
    def get_operation_status(self, request: Request, subscription_id: str, location: str,
                             operation_id: str) -> Response:
        return _json(self.model.get_operation(operation_id).to_arm())

    def get_operation_result(self, request: Request, subscription_id: str, location: str,
                             operation_id: str) -> Response:
        operation = self.model.get_operation(operation_id)
        if operation.status == "InProgress":
            return Response(status=202, headers={"Location": request.url})
        if operation.status != "Succeeded":
            return _json({"error": operation.error}, 400)
        return Response(status=204)


def _recorded(request: Request) -> ArmRequest:
    data = request.get_data(cache=True)
    body: object = None
    if data:
        try:
            body = json.loads(data)
        except ValueError:
            body = data.decode(errors="replace")
    return ArmRequest(request.method, request.path, request.args.get("api-version"), body)


def _check_api_version(request: Request, offered: tuple[str, ...]) -> None:
    version = request.args.get("api-version")
    if not version:
        raise ArmError(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")
    if version not in offered:
        raise ArmError(400, "InvalidApiVersionParameter",
                       f"The api-version '{version}' is invalid. The supported versions are '{','.join(offered)}'.")


def _as_version(request: Request, body_model: str, body: dict) -> dict:
    paths = arm_schema.defined_paths(request.args["api-version"], body_model)
    return body if paths is None else arm_schema.drop_undefined(body, paths)


def _fleet_child(request: Request) -> str:
    """The ARM id of the Fleet resource the request names (its path without a trailing slash)."""
    return request.path.rstrip("/")


def make_arm_app(model: ArmModel, request_log: list[ArmRequest] | None = None,
                 fleet: FleetModel | None = None) -> ArmApp:
    return ArmApp(model, request_log, fleet)
