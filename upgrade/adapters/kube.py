"""The Kube port over the official ``kubernetes`` client: one cluster's Kubernetes API.

Reads ask for raw JSON (``_preload_content=False``) and convert it straight into the domain's
frozen types: building the client's models for 100,000 pods only to throw them away would
dominate a preflight. Pods, the bulk of a snapshot, are decoded by msgspec into structs holding
only the fields the product reads (the rest is skipped, never built). Lists page with
``limit``/``continue``, the next page in flight while the current one is decoded. Writes patch only when the
object differs (cordon, labels), so repeating a step changes nothing. Every SDK or connection
error leaves as the project's errors with the HTTP status and Kubernetes' own message.
"""

from __future__ import annotations

import functools
import gc
import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import msgspec
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from upgrade.domain.model import (
    AGENTPOOL_LABEL,
    Autoscaler,
    ClusterRef,
    Node,
    Pdb,
    PdbManifest,
    Pod,
    Scale,
    StatefulSetState,
    Workload,
    product_annotations,
)
from upgrade.domain.pdb import MULTIPLE_PDBS
from upgrade.domain.selectors import NOTHING, LabelSelector
from upgrade.domain.versions import normalize_version
from upgrade.errors import Conflict, InvalidInput, NotFound, PermanentError, TemporaryError
from upgrade.settings import Settings

PAGE_SIZE = 500
DEFAULT_RETRY_SECONDS = 5.0
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# The eviction API's words for a pod that more than one PodDisruptionBudget covers.
MULTIPLE_PDBS_MESSAGE = "more than one PodDisruptionBudget"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Evictions of a whole node run in parallel: keep a connection per worker instead of discarding them.
CONNECTION_POOL_SIZE = 32


def _retry_after(exc: ApiException) -> float:
    raw = (exc.headers or {}).get("Retry-After") if exc.headers else None
    try:
        return max(float(raw), 0.0) if raw is not None else DEFAULT_RETRY_SECONDS
    except ValueError:
        return DEFAULT_RETRY_SECONDS


def _kubernetes_message(exc: ApiException) -> str:
    """Kubernetes' Status message, plus the causes (a PDB eviction refusal names its budget there)."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (ValueError, TypeError):
        body = {}
    if not isinstance(body, dict):
        return str(exc.reason or "")
    message = body.get("message") or exc.reason or ""
    causes = [c.get("message") for c in (body.get("details") or {}).get("causes", []) if c.get("message")]
    return f"{message} ({'; '.join(causes)})" if causes else str(message)


def translate_api_error(what: str, exc: Exception) -> Exception:
    """The project error for a failed Kubernetes call on ``what`` (raise it ``from exc``)."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        text = f"{what}: {status} {_kubernetes_message(exc)}"
        if status == 429:
            return TemporaryError(text, delay_seconds=_retry_after(exc), status=429)
        if status >= 500:
            return TemporaryError(text, delay_seconds=_retry_after(exc), status=status)
        if status == 404:
            return NotFound(text, status=404)
        if status == 409:
            return Conflict(text, status=409)
        return PermanentError(text, status=status)
    # urllib3 and socket errors: the API server is unreachable or hung up; worth another try.
    return TemporaryError(f"{what}: Kubernetes API unreachable: {exc}", delay_seconds=DEFAULT_RETRY_SECONDS)


class _CollectorPause:
    """Pauses Python's cyclic garbage collector while bulk reads run (nested across threads).

    A 100,000-pod list builds that many long-lived objects, none in a reference cycle (reference
    counting frees them). Each full collection would walk the growing set again, a third of the
    read's CPU. The collector is re-enabled as it was when the last read ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._readers == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if self._readers == 0 and self._was_enabled:
                    gc.enable()


_collector_paused = _CollectorPause()


@contextmanager
def _decoded(what: str) -> Iterator[None]:
    try:
        yield
    except msgspec.MsgspecError as exc:
        raise PermanentError(f"{what}: the Kubernetes API answered with unexpected JSON: {exc}") from exc


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise translate_api_error(what, exc) from exc


def _parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)  # a cluster's pods repeat a few request strings ("100m", "1")
def _cpu_millis(raw: str | None) -> int:
    if not raw:
        return 0
    raw = str(raw)
    try:
        if raw.endswith("m"):
            return int(float(raw[:-1]))
        return int(float(raw) * 1000)
    except ValueError:
        return 0


def _taint_text(taint: dict[str, Any]) -> str:
    value = taint.get("value")
    key = f"{taint.get('key', '')}={value}" if value else str(taint.get("key", ""))
    return f"{key}:{taint.get('effect', '')}"


def node_from_json(raw: dict[str, Any]) -> Node:
    meta, spec, status = raw.get("metadata", {}), raw.get("spec", {}), raw.get("status", {})
    labels = meta.get("labels") or {}
    taints = spec.get("taints") or []
    cordon_taint = next((t for t in taints if t.get("key") == UNSCHEDULABLE_TAINT), None)
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    version = (status.get("nodeInfo") or {}).get("kubeletVersion", "")
    return Node(
        name=meta.get("name", ""),
        pool=labels.get(AGENTPOOL_LABEL) or labels.get("agentpool", ""),
        kubernetes_version=normalize_version(version),
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready,
        labels=tuple(sorted(labels.items())),
        taints=tuple(_taint_text(t) for t in taints),
        created_at=_parse_time(meta.get("creationTimestamp")),
        cordoned_at=_parse_time(cordon_taint.get("timeAdded")) if cordon_taint else None,
        allocatable_cpu_millis=_cpu_millis((status.get("allocatable") or {}).get("cpu")),
        annotations=product_annotations(meta.get("annotations")),
    )


class _Condition(msgspec.Struct, gc=False):
    type: str = ""
    status: str = ""


class _Owner(msgspec.Struct, gc=False):
    kind: str | None = None
    name: str | None = None
    controller: bool | None = None


class _PodMeta(msgspec.Struct, gc=False):
    namespace: str = ""
    name: str = ""
    uid: str = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[_Owner] | None = None
    deletionTimestamp: str | None = None


class _Volume(msgspec.Struct, gc=False):
    emptyDir: Any = msgspec.UNSET


class _Resources(msgspec.Struct, gc=False):
    requests: dict[str, str] | None = None


class _Container(msgspec.Struct, gc=False):
    resources: _Resources | None = None


class _PodSpec(msgspec.Struct, gc=False):
    nodeName: str | None = None
    terminationGracePeriodSeconds: int | None = None
    volumes: list[_Volume] | None = None
    containers: list[_Container] | None = None


class _Waiting(msgspec.Struct, gc=False):
    reason: str | None = None


class _ContainerState(msgspec.Struct, gc=False):
    waiting: _Waiting | None = None


class _ContainerStatus(msgspec.Struct, gc=False):
    restartCount: int = 0
    state: _ContainerState | None = None


class _PodStatus(msgspec.Struct, gc=False):
    phase: str = "Pending"
    conditions: list[_Condition] | None = None
    containerStatuses: list[_ContainerStatus] | None = None


class PodJson(msgspec.Struct, gc=False):
    """The fields of a Pod's JSON that the product reads (the API's own names, nested structs alike);
    msgspec skips every other field without building it."""

    metadata: _PodMeta = msgspec.field(default_factory=_PodMeta)
    spec: _PodSpec = msgspec.field(default_factory=_PodSpec)
    status: _PodStatus = msgspec.field(default_factory=_PodStatus)


class _ListMeta(msgspec.Struct, gc=False):
    continue_: str | None = msgspec.field(default=None, name="continue")


class _ListHead(msgspec.Struct, gc=False):
    metadata: _ListMeta | None = None


class _PodList(msgspec.Struct, gc=False):
    items: list[PodJson] | None = None


class _ObjectList(msgspec.Struct):
    items: list[dict[str, Any]] | None = None


_LIST_HEAD = msgspec.json.Decoder(_ListHead)
_ITEMS_KEY = b',"items":['


def _continue_token(page: bytes) -> str | None:
    """The list's continue token. The API server writes the list's metadata before its items, so
    only the head is decoded when the top-level items follow the metadata; any other layout is
    decoded whole. (``,"items":[`` cannot occur inside a JSON string: its quotes would be escaped.)"""
    end = page.find(_ITEMS_KEY, 0, 8192)
    if end > 0:
        try:
            head = _LIST_HEAD.decode(page[:end] + b"}")
        except msgspec.DecodeError:
            head = None  # the marker closed a nested object, not the list: decode the whole page
        if head is not None and head.metadata is not None:
            return head.metadata.continue_
    metadata = _LIST_HEAD.decode(page).metadata
    return metadata.continue_ if metadata is not None else None
_POD_LIST = msgspec.json.Decoder(_PodList)
_OBJECT_LIST = msgspec.json.Decoder(_ObjectList)
_POD = msgspec.json.Decoder(PodJson)


def pod_list_decoder() -> msgspec.json.Decoder:
    """The decoder of a PodList page into PodJson items."""
    return _POD_LIST


def pod_from_json(raw: PodJson) -> Pod:
    # Plain loops, not generator expressions: a preflight projects every pod of the cluster
    # (105,000 in bench/preflight_scale.py), and this is most of its client CPU after decoding.
    meta, spec, status = raw.metadata, raw.spec, raw.status
    # Only the controller makes a pod managed (kubectl's GetControllerOf): other owners do not count.
    owner = None
    for reference in meta.ownerReferences or ():
        if reference.controller:
            owner = reference
            break
    ready = False
    for condition in status.conditions or ():
        if condition.type == "Ready" and condition.status == "True":
            ready = True
            break
    restarts, crash_looping = 0, False
    for container in status.containerStatuses or ():
        restarts += container.restartCount
        state = container.state
        if state is not None and state.waiting is not None and state.waiting.reason == "CrashLoopBackOff":
            crash_looping = True
    empty_dir = False
    for volume in spec.volumes or ():
        if volume.emptyDir is not msgspec.UNSET:
            empty_dir = True
            break
    cpu = 0
    for container in spec.containers or ():
        if container.resources and container.resources.requests:
            cpu += _cpu_millis(container.resources.requests.get("cpu"))
    annotations = meta.annotations
    return Pod(
        namespace=meta.namespace,
        name=meta.name,
        uid=meta.uid,
        node=spec.nodeName,
        phase=status.phase,
        ready=ready,
        labels=tuple(sorted(meta.labels.items())) if meta.labels else (),
        owner_kind=owner.kind if owner else None,
        owner_name=owner.name if owner else None,
        deleting=bool(meta.deletionTimestamp),
        mirror=bool(annotations) and MIRROR_ANNOTATION in annotations,
        empty_dir=empty_dir,
        restart_count=restarts,
        crash_looping=crash_looping,
        grace_seconds=spec.terminationGracePeriodSeconds,
        cpu_request_millis=cpu,
        annotations=product_annotations(annotations) if annotations else (),
    )


def _int_or_percent(value: Any) -> str | None:
    return None if value is None else str(value)


def pdb_from_json(raw: dict[str, Any]) -> Pdb:
    meta, spec, status = raw.get("metadata", {}), raw.get("spec", {}), raw.get("status", {})
    try:
        selector = LabelSelector.from_api(spec.get("selector"), what=f"PDB {meta.get('name')}")
    except InvalidInput:
        selector = NOTHING  # as the eviction API treats a selector it cannot convert: it covers no pod
    return Pdb(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        selector=selector,
        min_available=_int_or_percent(spec.get("minAvailable")),
        max_unavailable=_int_or_percent(spec.get("maxUnavailable")),
        disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
        current_healthy=int(status.get("currentHealthy") or 0),
        desired_healthy=int(status.get("desiredHealthy") or 0),
        expected_pods=int(status.get("expectedPods") or 0),
    )


def pdb_manifest_from_json(raw: dict[str, Any]) -> PdbManifest:
    meta = raw.get("metadata") or {}
    return PdbManifest(spec=raw.get("spec") or {}, resource_version=str(meta.get("resourceVersion") or ""),
                       generation=int(meta.get("generation") or 0))


def _workload(kind: str, raw: dict[str, Any]) -> Workload:
    meta, spec, status = raw.get("metadata", {}), raw.get("spec", {}), raw.get("status", {})
    replicas = spec.get("replicas")
    return Workload(
        namespace=meta.get("namespace", ""),
        kind=kind,
        name=meta.get("name", ""),
        desired=1 if replicas is None else int(replicas),
        ready=int(status.get("readyReplicas") or 0),
        statefulset=_statefulset_state(meta, spec, status) if kind == "StatefulSet" else None,
    )


def _statefulset_state(meta: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]) -> StatefulSetState:
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    return StatefulSetState(
        current_revision=str(status.get("currentRevision") or ""),
        update_revision=str(status.get("updateRevision") or ""),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        partition=int(rolling.get("partition") or 0),
        update_strategy=str(strategy.get("type") or "RollingUpdate"),
        replicas=int(status.get("replicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        pod_management_policy=str(spec.get("podManagementPolicy") or "OrderedReady"),
        when_scaled=str((spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") or "Retain"),
        claim_templates=tuple(str((t.get("metadata") or {}).get("name") or "")
                              for t in spec.get("volumeClaimTemplates") or ()),
        ordinals_start=int((spec.get("ordinals") or {}).get("start") or 0),
    )


def autoscaler_from_json(raw: dict[str, Any], namespace: str = "") -> Autoscaler:
    meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    return Autoscaler(
        namespace=meta.get("namespace", namespace), name=meta.get("name", ""),
        target_kind=target.get("kind", ""), target_name=target.get("name", ""),
        min_replicas=int(spec.get("minReplicas") or 1), max_replicas=int(spec.get("maxReplicas") or 0),
        resource_version=str(meta.get("resourceVersion") or ""))


def _event(raw: dict[str, Any]) -> dict[str, Any]:
    involved = raw.get("involvedObject") or {}
    return {
        "reason": raw.get("reason"),
        "message": raw.get("message"),
        "type": raw.get("type"),
        "count": raw.get("count"),
        "object": {
            "kind": involved.get("kind"),
            "namespace": involved.get("namespace"),
            "name": involved.get("name"),
        },
        "time": raw.get("lastTimestamp") or raw.get("eventTime") or raw.get("firstTimestamp"),
    }


class KubernetesKube:
    """The Kube port for one cluster, over a configured ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: k8s.ApiClient, *, page_size: int = PAGE_SIZE) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.policy = k8s.PolicyV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.autoscaling = k8s.AutoscalingV2Api(api_client)
        self.page_size = page_size

    def close(self) -> None:
        self.api_client.close()

    # -- reading -------------------------------------------------------------------------------

    def _pages(self, what: str, call: Any, decoder: msgspec.json.Decoder, **kwargs: Any) -> Iterator[list[Any]]:
        """The items of a list call page by page, following ``continue`` tokens. The next page is
        requested before this one is decoded, so the transfer overlaps the decoding."""

        def fetch(token: str | None) -> bytes:
            with _translated(what):
                return call(limit=self.page_size, _continue=token, _preload_content=False, **kwargs).data

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kube-page") as prefetch:
            data = fetch(None)
            while True:
                with _decoded(what):
                    token = _continue_token(data)
                pending = prefetch.submit(fetch, token) if token else None
                with _decoded(what):
                    items = decoder.decode(data).items or []
                del data
                yield items
                if pending is None:
                    return
                data = pending.result()

    def _list(self, what: str, call: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list call as JSON objects."""
        for page in self._pages(what, call, _OBJECT_LIST, **kwargs):
            yield from page

    def _get(self, what: str, call: Any, *args: Any) -> dict[str, Any]:
        with _translated(what):
            return json.loads(call(*args, _preload_content=False).data)

    def list_nodes(self, *, label_selector: str | None = None, field_selector: str | None = None) -> list[Node]:
        items = self._list(
            "list nodes", self.core.list_node, label_selector=label_selector, field_selector=field_selector
        )
        return [node_from_json(n) for n in items]

    def get_node(self, name: str) -> Node:
        return node_from_json(self._get(f"get node {name}", self.core.read_node, name))

    def list_pods(
        self, *, node: str | None = None, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Pod]:
        field_selector = f"spec.nodeName={node}" if node else None
        what = f"list pods{' on ' + node if node else ''}"
        if namespace:
            pages = self._pages(
                what,
                self.core.list_namespaced_pod,
                _POD_LIST,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
            )
        else:
            pages = self._pages(
                what,
                self.core.list_pod_for_all_namespaces,
                _POD_LIST,
                label_selector=label_selector,
                field_selector=field_selector,
            )
        with _collector_paused():
            return [pod_from_json(p) for page in pages for p in page]

    def get_pod(self, namespace: str, name: str) -> Pod:
        what = f"get pod {namespace}/{name}"
        with _translated(what):
            data = self.core.read_namespaced_pod(name, namespace, _preload_content=False).data
        with _decoded(what):
            return pod_from_json(_POD.decode(data))

    def list_pdbs(self, *, namespace: str | None = None) -> list[Pdb]:
        if namespace:
            items = self._list(
                "list PDBs", self.policy.list_namespaced_pod_disruption_budget, namespace=namespace
            )
        else:
            items = self._list("list PDBs", self.policy.list_pod_disruption_budget_for_all_namespaces)
        return [pdb_from_json(p) for p in items]

    def get_pdb_manifest(self, namespace: str, name: str) -> PdbManifest:
        raw = self._get(
            f"get PDB {namespace}/{name}",
            self.policy.read_namespaced_pod_disruption_budget,
            name,
            namespace,
        )
        return pdb_manifest_from_json(raw)

    def list_workloads(self, *, namespace: str | None = None) -> list[Workload]:
        def listed(kind: str, namespaced: Any, everywhere: Any) -> list[dict[str, Any]]:
            try:
                if namespace:
                    return list(self._list(f"list {kind}s", namespaced, namespace=namespace))
                return list(self._list(f"list {kind}s", everywhere))
            except NotFound:
                # A 404 on a collection: the server does not serve this kind, so it runs none of it.
                return []

        # A ReplicaSet whose controller is a Deployment counts through it; any other counts itself.
        controlled: dict[tuple[str, str], list[str]] = {}
        standalone = []
        for rs in listed(
            "ReplicaSet", self.apps.list_namespaced_replica_set, self.apps.list_replica_set_for_all_namespaces
        ):
            meta = rs.get("metadata") or {}
            owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
            if owner is not None and owner.get("kind") == "Deployment":
                controlled.setdefault((meta.get("namespace", ""), owner.get("name", "")), []).append(meta.get("name", ""))
            else:
                standalone.append(_workload("ReplicaSet", rs))
        workloads = []
        for d in listed(
            "Deployment", self.apps.list_namespaced_deployment, self.apps.list_deployment_for_all_namespaces
        ):
            deployment = _workload("Deployment", d)
            key = (deployment.namespace, deployment.name)
            workloads.append(replace(deployment, replica_sets=tuple(sorted(controlled.get(key, ())))))
        workloads += standalone
        workloads += [
            _workload("StatefulSet", s)
            for s in listed(
                "StatefulSet",
                self.apps.list_namespaced_stateful_set,
                self.apps.list_stateful_set_for_all_namespaces,
            )
        ]
        return workloads

    def list_events(self, *, reasons: Sequence[str] = ()) -> list[dict[str, Any]]:
        wanted = set(reasons)
        items = self._list("list events", self.core.list_event_for_all_namespaces)
        return [_event(e) for e in items if not wanted or e.get("reason") in wanted]

    # -- writing -------------------------------------------------------------------------------

    def set_unschedulable(self, node: str, value: bool) -> bool:
        current = self._get(f"get node {node}", self.core.read_node, node)
        if bool((current.get("spec") or {}).get("unschedulable")) == value:
            return False
        with _translated(f"{'cordon' if value else 'uncordon'} node {node}"):
            self.core.patch_node(
                node, {"spec": {"unschedulable": value}}, _content_type=STRATEGIC_MERGE_PATCH
            )
        return True

    def set_node_label(self, node: str, key: str, value: str | None) -> bool:
        current = self._get(f"get node {node}", self.core.read_node, node)
        labels = (current.get("metadata") or {}).get("labels") or {}
        if labels.get(key) == value:
            return False
        with _translated(f"label node {node} {key}"):
            self.core.patch_node(
                node, {"metadata": {"labels": {key: value}}}, _content_type=MERGE_PATCH
            )
        return True

    def evict(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        body = k8s.V1Eviction(
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=(
                k8s.V1DeleteOptions(grace_period_seconds=grace_seconds) if grace_seconds is not None else None
            ),
        )
        try:
            with _translated(f"evict pod {namespace}/{name}"):
                self.core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False)
        except TemporaryError as exc:
            # The API server's 500 for a pod under several PDBs is no transient fault: it never evicts it.
            if exc.status == 500 and MULTIPLE_PDBS_MESSAGE in str(exc):
                raise PermanentError(str(exc), status=500, code=MULTIPLE_PDBS) from exc
            raise

    def daemonset_exists(self, namespace: str, name: str) -> bool:
        try:
            self._get(f"get DaemonSet {namespace}/{name}", self.apps.read_namespaced_daemon_set, name, namespace)
        except NotFound:
            return False
        return True

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        with _translated(f"delete pod {namespace}/{name}"):
            self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=grace_seconds, _preload_content=False
            )

    def patch_pdb_spec(
        self, namespace: str, name: str, spec: dict[str, Any], *, resource_version: str | None = None
    ) -> PdbManifest:
        """Make the PDB's spec exactly ``spec``: a merge patch that also nulls the keys ``spec`` lacks
        (restoring minAvailable must drop a temporary maxUnavailable, and the reverse). With
        ``resource_version`` the patch carries it in metadata, so the API server applies it only to
        that version and answers 409 Conflict otherwise."""
        current = self.get_pdb_manifest(namespace, name)
        body: dict[str, Any] = {"spec": {key: None for key in current.spec if key not in spec} | dict(spec)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        with _translated(f"patch PDB {namespace}/{name}"):
            response = self.policy.patch_namespaced_pod_disruption_budget(
                name, namespace, body, _content_type=MERGE_PATCH, _preload_content=False
            )
            return pdb_manifest_from_json(json.loads(response.data))

    def _scale_calls(self, kind: str) -> tuple[Any, Any]:
        calls = {
            "Deployment": (self.apps.read_namespaced_deployment_scale, self.apps.replace_namespaced_deployment_scale),
            "ReplicaSet": (self.apps.read_namespaced_replica_set_scale, self.apps.replace_namespaced_replica_set_scale),
            "StatefulSet": (self.apps.read_namespaced_stateful_set_scale,
                            self.apps.replace_namespaced_stateful_set_scale),
        }
        if kind not in calls:
            raise InvalidInput("scale", "kind", f"{kind!r}: only a Deployment's, a ReplicaSet's or a StatefulSet's "
                                                "scale is read here")
        return calls[kind]

    def get_scale(self, kind: str, namespace: str, name: str) -> Scale:
        read, _ = self._scale_calls(kind)
        return _scale_from_json(kind, self._get(f"get the scale of {kind} {namespace}/{name}", read, name, namespace))

    def list_autoscalers(self, *, namespace: str) -> list[Autoscaler]:
        try:
            items = list(self._list("list HorizontalPodAutoscalers",
                                    self.autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace=namespace))
        except NotFound:
            return []  # the server does not serve autoscaling/v2: nothing autoscales
        return [autoscaler_from_json(raw, namespace) for raw in items]

    def get_autoscaler(self, namespace: str, name: str) -> Autoscaler:
        return autoscaler_from_json(self._get(f"get HorizontalPodAutoscaler {namespace}/{name}",
                                               self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                                               name, namespace), namespace)

    def patch_autoscaler_bounds(self, namespace: str, name: str, min_replicas: int, max_replicas: int, *,
                                resource_version: str) -> Autoscaler:
        """A merge patch of both bounds carrying ``resource_version`` in metadata: the API server
        applies it only to that version (409 Conflict otherwise)."""
        body = {"metadata": {"resourceVersion": resource_version},
                "spec": {"minReplicas": min_replicas, "maxReplicas": max_replicas}}
        with _translated(f"set HorizontalPodAutoscaler {namespace}/{name} to minReplicas {min_replicas}, "
                         f"maxReplicas {max_replicas}"):
            response = self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                name, namespace, body, _content_type=MERGE_PATCH, _preload_content=False)
            return autoscaler_from_json(json.loads(response.data), namespace)

    def list_volume_claims(self, *, namespace: str) -> list[str]:
        items = self._list("list PersistentVolumeClaims", self.core.list_namespaced_persistent_volume_claim,
                           namespace=namespace)
        return sorted(str((c.get("metadata") or {}).get("name") or "") for c in items)

    def replace_scale(self, kind: str, namespace: str, name: str, replicas: int, *, resource_version: str) -> Scale:
        _, write = self._scale_calls(kind)
        body = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
                "spec": {"replicas": replicas}}
        with _translated(f"scale {kind} {namespace}/{name} to {replicas}"):
            response = write(name, namespace, body, _preload_content=False)
            return _scale_from_json(kind, json.loads(response.data))


def _scale_from_json(kind: str, raw: dict[str, Any]) -> Scale:
    meta = raw.get("metadata") or {}
    return Scale(kind=kind, namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                 replicas=int((raw.get("spec") or {}).get("replicas") or 0),
                 resource_version=str(meta.get("resourceVersion", "")))


def tune_configuration(configuration: k8s.Configuration) -> k8s.Configuration:
    """Connections for parallel evictions; retries for dropped connections only. urllib3 would
    otherwise sleep out a 429/503's Retry-After inside the call: the caller decides when to retry."""
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    configuration.retries = urllib3.Retry(
        total=3, backoff_factor=0.1, status=0, respect_retry_after_header=False, raise_on_status=False
    )
    return configuration


def api_client_from_kubeconfig(path: str) -> k8s.ApiClient:
    from kubernetes import config

    configuration = k8s.Configuration()
    try:
        config.load_kube_config(config_file=path, client_configuration=configuration)
    except (OSError, config.ConfigException) as exc:
        raise PermanentError(f"kubeconfig {path}: {exc}") from exc
    return k8s.ApiClient(tune_configuration(configuration))


def kube_from_kubeconfig(path: str) -> KubernetesKube:
    """A cluster reached with a plain kubeconfig file (the emulator, or a user's own cluster)."""
    return KubernetesKube(api_client_from_kubeconfig(path))


def kube_from_settings(settings: Settings, cluster: ClusterRef) -> KubernetesKube:
    """The cluster's Kubernetes API: a kubeconfig from CLUSTER_KUBECONFIGS when one is named for
    it, else the endpoint from ARM's user credentials with an Entra ID token (upgrade.adapters.auth)."""
    path = settings.cluster_kubeconfigs.get(cluster.arm_id.lower())
    if path:
        return kube_from_kubeconfig(path)
    from upgrade.adapters.auth import entra_api_client

    return KubernetesKube(entra_api_client(settings, cluster))
