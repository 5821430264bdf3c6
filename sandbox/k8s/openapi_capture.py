"""``python -m sandbox.k8s openapi``: capture the real API server's OpenAPI documents for the emulator.

Starts the control plane, reads ``/openapi/v2`` and the ``/openapi/v3`` documents of the groups the
emulator serves, keeps only the paths of resources it serves (and their subresources it serves)
plus every schema those paths reference, and writes them gzipped to
``sandbox/aks_emulator/openapi/``. Rerun after changing the Kubernetes pin.
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

from sandbox.aks_emulator.kube_api import SERVED
from sandbox.aks_emulator.openapi import DOCUMENTS, V2_FILE, V3_FILES
from sandbox.k8s.controlplane import ControlPlane, ControlPlaneError

SERVED_SUBRESOURCES = {("", "v1", "pods"): {"eviction"}}
_PATH = re.compile(r"^/(?:api/(?P<cv>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/\{namespace\})?/(?P<resource>[^/{]+)(?:/\{name\}(?:/(?P<sub>[^/]+))?)?$")


def served_path(path: str) -> bool:
    match = _PATH.match(path)
    if not match:
        return False
    group = match["group"] or ""
    version = match["cv"] or match["version"]
    key = (group, version, match["resource"])
    if key not in SERVED:
        return False
    return match["sub"] is None or match["sub"] in SERVED_SUBRESOURCES.get(key, set())


def _refs(value: Any, prefix: str) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefix):
            found.add(ref.removeprefix(prefix))
        for child in value.values():
            found |= _refs(child, prefix)
    elif isinstance(value, list):
        for child in value:
            found |= _refs(child, prefix)
    return found


def trimmed(document: dict[str, Any], schemas: dict[str, Any], prefix: str) -> tuple[dict, dict]:
    """The served paths and the closure of the schemas they reference."""
    paths = {p: v for p, v in document["paths"].items() if served_path(p)}
    wanted, todo = set(), _refs(paths, prefix)
    while todo:
        name = todo.pop()
        if name in wanted or name not in schemas:
            continue
        wanted.add(name)
        todo |= _refs(schemas[name], prefix)
    return paths, {name: schemas[name] for name in sorted(wanted)}


def _write(file: str, document: dict[str, Any]) -> None:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    (DOCUMENTS / file).write_bytes(gzip.compress(data, compresslevel=9, mtime=0))


def capture(cp: ControlPlane) -> None:
    DOCUMENTS.mkdir(exist_ok=True)
    status, v2 = cp.request("GET", "/openapi/v2")
    if status != 200:
        raise ControlPlaneError(f"/openapi/v2: {status}")
    paths, definitions = trimmed(v2, v2["definitions"], "#/definitions/")
    _write(V2_FILE, {**v2, "paths": paths, "definitions": definitions})
    status, index = cp.request("GET", "/openapi/v3")
    for group_version, file in V3_FILES.items():
        status, document = cp.request("GET", index["paths"][group_version]["serverRelativeURL"])
        if status != 200:
            raise ControlPlaneError(f"/openapi/v3/{group_version}: {status}")
        schemas = document["components"]["schemas"]
        paths, kept = trimmed(document, schemas, "#/components/schemas/")
        _write(file, {**document, "paths": paths, "components": {**document["components"], "schemas": kept}})


def main() -> int:
    with ControlPlane() as cp:
        capture(cp)
    for file in sorted(DOCUMENTS.iterdir()):
        print(f"{file.name}: {file.stat().st_size} bytes")
    return 0
