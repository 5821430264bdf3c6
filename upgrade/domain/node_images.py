"""One node image release across many clusters: what a node-image rollout pins and checks.

An AKS node image version is ``<family>-<release>``: the family names the OS, its version, the VM
generation and the runtime (``AKSUbuntu-2204gen2containerd``, ``AKSAzureLinux-V2gen2``,
``AKSWindows-2022-containerd``), the release is the build (``202411.12.0`` for a weekly Linux image,
``20348.2762.241009`` for a monthly Windows one). Releases compare only within a family, so "one
consistent version" is one release per family, as Fleet Manager's ``Consistent`` node image
selection means it.

AKS's node-image-only upgrade (``upgradeNodeImageVersion``) takes no version: it moves a pool to
the latest image its upgrade profile offers (``latestNodeImageVersion``); the pool's
``nodeImageVersion`` accepts only a rollback to one of its ``recentlyUsedVersions``. So a pool
"offers" exactly two images, the one it runs and its latest, and a rollout can pin a release only
when every pool of the family either runs it or has it as its latest. When AKS publishes a newer
image before a pool's turn, that pool can no longer reach the pin: its cluster is held, never
upgraded past it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from upgrade.errors import InvalidInput


def image_family(image: str) -> str:
    """``AKSUbuntu-2204gen2containerd-202411.12.0`` -> ``AKSUbuntu-2204gen2containerd``."""
    return image.rsplit("-", 1)[0] if "-" in image else image


def image_release(image: str) -> str:
    """``AKSUbuntu-2204gen2containerd-202411.12.0`` -> ``202411.12.0``."""
    return image.rsplit("-", 1)[1] if "-" in image else image


def release_key(image: str) -> tuple:
    """Order of releases within a family: numerically, part by part (``202412.2.0`` < ``202412.10.0``)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in image_release(image).split("."))


@dataclass(frozen=True)
class PoolImage:
    """One pool's images as ARM reports them: the one its nodes run and its upgrade profile's latest."""

    cluster: str
    pool: str
    current: str | None
    latest: str | None

    @property
    def family(self) -> str | None:
        image = self.latest or self.current
        return image_family(image) if image else None

    def offered(self) -> set[str]:
        return {image for image in (self.current, self.latest) if image}

    def describe(self) -> str:
        return f"{self.cluster} pool {self.pool} (on {self.current or 'unknown'}, latest {self.latest or 'none'})"


def resolve_node_images(pools: Iterable[PoolImage], *, field: str = "targetVersion") -> dict[str, str]:
    """The one image per family every pool of the rollout ends on: the highest release that each
    pool of the family runs already or is offered as its latest. InvalidInput on ``field`` naming
    the pools when a family has no such release (the regions' latest images differ, or a pool is
    past the others)."""
    by_family: dict[str, list[PoolImage]] = {}
    for pool in pools:
        if pool.family is None:
            raise InvalidInput("rollout plan", field, f"{pool.cluster} pool {pool.pool} reports no node image version")
        by_family.setdefault(pool.family, []).append(pool)
    pinned = {}
    for family, members in sorted(by_family.items()):
        common = set.intersection(*(p.offered() for p in members))
        if not common:
            latest = sorted({p.latest for p in members if p.latest}, key=release_key)
            raise InvalidInput(
                "rollout plan", field,
                f"no {family} node image is offered by every pool (AKS upgrades a node image only to a pool's "
                f"latest; latest images seen: {', '.join(latest) or 'none'}): "
                + "; ".join(p.describe() for p in members))
        pinned[family] = max(common, key=release_key)
    return pinned


def pool_image_check(pool: PoolImage, pinned: Mapping[str, str]) -> str | None:
    """The pinned image the pool's node image upgrade is to reach (its latest is it), or None when
    the pool runs it already; ValueError with why the pool cannot reach the pin: its latest image
    moved past it (or it runs another one already), or its family was not in the rollout when the
    pin was resolved."""
    target = pinned.get(pool.family or "")
    if target is None:
        raise ValueError(f"pool {pool.pool} runs node image family {pool.family or 'unknown'}, not pinned by the "
                         f"rollout (pinned: {', '.join(sorted(pinned.values())) or 'none'})")
    if pool.current == target:
        return None
    if pool.latest == target:
        return target
    raise ValueError(f"pool {pool.pool} can no longer reach the pinned node image {target}: it runs "
                     f"{pool.current or 'an unknown image'} and AKS now offers it {pool.latest or 'none'} "
                     "(a node image upgrade goes only to the latest)")


def nodes_off_image(nodes: Sequence[tuple[str, str | None]], pinned: Mapping[str, str], *,
                    past_only: bool = False) -> list[str]:
    """The nodes, given as (name, node image label), not on their family's pinned image, each with
    the image it runs; ``past_only``: only those on a newer release than the pin (overshot). A node
    with no image label is not judged."""
    return [f"{name} ({image})" for name, image in nodes
            if image is not None and (pin := pinned.get(image_family(image))) != image
            and (not past_only or (pin is not None and release_key(image) > release_key(pin)))]
