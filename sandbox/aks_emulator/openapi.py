"""The OpenAPI documents the emulator serves, and the strict field validation they allow.

kubectl ``create``/``apply`` look for ``/openapi/v3`` (then ``/openapi/v2``) before sending: from
the documents they learn whether the server validates fields (``?fieldValidation=Strict``) and how
to compute apply's patch. The documents here are the real kube-apiserver's, captured from the
pinned Kubernetes release by ``python -m sandbox.k8s openapi`` and trimmed to the paths this
emulator serves and the schemas those reference (``openapi/*.json.gz``).

``unknown_fields`` walks an object against those schemas the way the API server's strict decoding
does, so a typo in a manifest is refused here as it is there.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

DOCUMENTS = Path(__file__).resolve().parent / "openapi"
V3_PREFIX = "/openapi/v3/"
# group/version path of a v3 document -> its file
V3_FILES = {"api/v1": "v3-api-v1.json.gz", "apis/apps/v1": "v3-apis-apps-v1.json.gz",
            "apis/policy/v1": "v3-apis-policy-v1.json.gz",
            "apis/events.k8s.io/v1": "v3-apis-events.k8s.io-v1.json.gz"}
V2_FILE = "v2.json.gz"
SCHEMA_PREFIX = "#/components/schemas/"


@functools.cache
def _raw(file: str) -> bytes:
    return gzip.decompress((DOCUMENTS / file).read_bytes())


@functools.cache
def _document(file: str) -> dict[str, Any]:
    return json.loads(_raw(file))


def _hash(file: str) -> str:
    return hashlib.sha512(_raw(file)).hexdigest()[:128].upper()


def v3_index() -> dict[str, Any]:
    return {"paths": {group: {"serverRelativeURL": f"{V3_PREFIX}{group}?hash={_hash(file)}"}
                      for group, file in V3_FILES.items()}}


def v3_document(group_version: str) -> bytes | None:
    file = V3_FILES.get(group_version)
    return _raw(file) if file else None


def v2_document() -> bytes:
    return _raw(V2_FILE)


def _schemas(group_version: str) -> dict[str, Any]:
    return _document(V3_FILES[group_version])["components"]["schemas"]


def _kind_schema(group_version: str, kind: str) -> dict[str, Any] | None:
    for schema in _schemas(group_version).values():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if gvk.get("kind") == kind and f"{gvk.get('group')}/{gvk.get('version')}".strip("/") in (
                    group_version.removeprefix("apis/").removeprefix("api/"),):
                return schema
    return None


def _resolve(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (directly or through ``allOf: [{$ref}]``, as v3 documents wrap them)."""
    while True:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].removeprefix(SCHEMA_PREFIX)]
        elif len(schema.get("allOf", [])) == 1 and "$ref" in schema["allOf"][0]:
            schema = schemas[schema["allOf"][0]["$ref"].removeprefix(SCHEMA_PREFIX)]
        else:
            return schema


def unknown_fields(group_version: str, kind: str, obj: Any) -> list[str]:
    """Paths (``spec.maxUnavaliable``) of fields the kind's schema does not declare, in document order."""
    if group_version not in V3_FILES:
        return []  # no document captured for it (autoscaling/v2): nothing to check against
    schema = _kind_schema(group_version, kind)
    if schema is None:
        return []
    schemas = _schemas(group_version)
    found: list[str] = []

    def walk(value: Any, schema: dict[str, Any], path: str) -> None:
        schema = _resolve(schemas, schema)
        if isinstance(value, dict) and "properties" in schema:
            for key, child in value.items():
                if key in schema["properties"]:
                    walk(child, schema["properties"][key], f"{path}.{key}" if path else key)
                elif not schema.get("additionalProperties"):
                    found.append(f"{path}.{key}" if path else key)
        elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
            for key, child in value.items():
                walk(child, schema["additionalProperties"], f"{path}[{key}]")
        elif isinstance(value, list) and "items" in schema:
            for index, child in enumerate(value):
                walk(child, schema["items"], f"{path}[{index}]")

    walk(obj, schema, "")
    return found
