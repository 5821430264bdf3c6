"""Kubernetes version strings: one normal form, one ordering, one notion of "the same version".

Versions arrive as "v1.30.0" (a node's kubelet), "1.30.0" (ARM) and "1.31" (an operator naming a
minor); everything the product stores and compares is the form without the leading "v".
"""

from __future__ import annotations

import re


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


_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")


def is_version(text: str) -> bool:
    """"1.31" or "1.31.2" (after normalize_version): a minor or a full Kubernetes version."""
    return bool(_VERSION.match(text.strip()))


def check_target_version(target: object, *, pool: str, current: str, offered: list[str]) -> str:
    """The exact version to upgrade pool ``pool`` (at ``current``) to: ``target`` must be a version
    ("1.31" means the newest offered 1.31 patch), newer than the pool, and offered by the pool's
    upgrade profile (``offered``). Raises InvalidInput on ``targetVersion`` listing what is offered."""
    from upgrade.errors import InvalidInput

    listed = f"offered for pool {pool}: {', '.join(sorted(offered, key=version_key)) or 'none'}"
    if not isinstance(target, str) or not _VERSION.match(target.strip()):
        raise InvalidInput("upgrade request", "targetVersion",
                           f'{target!r} is not a Kubernetes version like "1.31" or "1.31.2" ({listed})')
    target = target.strip()
    wanted = version_key(target)
    if wanted < version_key(current)[: len(wanted)] or wanted == version_key(current):
        raise InvalidInput("upgrade request", "targetVersion",
                           f"{target} is not newer than pool {pool}'s {current}: AKS never downgrades a pool, and a "
                           f"pool already at a version has nothing to upgrade ({listed})")
    matching = [v for v in offered if v == target or v.startswith(target + ".")]
    if not matching:
        raise InvalidInput("upgrade request", "targetVersion",
                           f"{target} is not offered by pool {pool}'s upgrade profile ({listed})")
    return max(matching, key=version_key)


# The target of a node-image-only upgrade (AKS's upgradeNodeImageVersion): the latest node image of
# the pool's OS at the same Kubernetes version. A run's ``target_version`` holds it for a rolling run.
NODE_IMAGE = "nodeImage"


def is_node_image(target: str | None) -> bool:
    return (target or "").strip() == NODE_IMAGE


def kubernetes_target(target: str | None) -> str | None:
    """The Kubernetes version a target asks for; None for a node image upgrade (no version change)."""
    return None if is_node_image(target) else target
