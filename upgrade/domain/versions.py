"""Kubernetes version strings: one normal form, one ordering, one notion of "the same version".

Versions arrive as "v1.30.0" (a node's kubelet), "1.30.0" (ARM) and "1.31" (an operator naming a
minor); everything the product stores and compares is the form without the leading "v".
"""

from __future__ import annotations


def normalize_version(version: str) -> str:
    """"v1.30.0" -> "1.30.0"; surrounding blanks dropped."""
    version = version.strip()
    return version[1:] if version[:1] in ("v", "V") else version


def version_key(version: str) -> tuple[int, ...]:
    """An ordering key: "1.9" < "1.10"; a non-numeric part ("0-preview") counts as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in normalize_version(version).split("."))


def same_version(a: str | None, b: str | None) -> bool:
    """"1.31" names every 1.31 patch; "1.31.7" only itself (a pool may be set to a minor)."""
    if not a or not b:
        return False
    left, right = normalize_version(a).split("."), normalize_version(b).split(".")
    size = min(len(left), len(right))
    return left[:size] == right[:size]
