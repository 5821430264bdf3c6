"""One node image release across a rollout: image names split into family and release, the pin
resolved from every pool's current and latest image (refused, naming the pools, when none is
common), a pool checked before its turn (held when AKS moved its latest past the pin), and the
nodes the gate finds off the pin."""

from __future__ import annotations

import pytest

from upgrade.domain.node_images import (
    PoolImage,
    image_family,
    image_release,
    nodes_off_image,
    pool_image_check,
    release_key,
    resolve_node_images,
)
from upgrade.errors import InvalidInput

U = "AKSUbuntu-2204gen2containerd-"
OLD, MID, NEW, NEWER = (U + r for r in ("202611.01.0", "202611.20.0", "202612.05.0", "202701.09.0"))
AZL_OLD, AZL_NEW = "AKSAzureLinux-V2gen2-202611.01.0", "AKSAzureLinux-V2gen2-202612.05.0"
WIN = "AKSWindows-2022-containerd-20348.2762.241009"


@pytest.mark.parametrize(("image", "family", "release"), [
    (NEW, "AKSUbuntu-2204gen2containerd", "202612.05.0"),
    (AZL_NEW, "AKSAzureLinux-V2gen2", "202612.05.0"),
    (WIN, "AKSWindows-2022-containerd", "20348.2762.241009"),
    # names as AKS reports them (nodeImageVersion and the nodes' node-image-version label)
    ("AKSUbuntu-2404gen2containerd-202411.12.0", "AKSUbuntu-2404gen2containerd", "202411.12.0"),
    ("AKSUbuntu-2204gen2arm64containerd-202411.12.0", "AKSUbuntu-2204gen2arm64containerd", "202411.12.0"),
    ("AKSAzureLinux-V3gen2-202411.12.0", "AKSAzureLinux-V3gen2", "202411.12.0"),
    ("AKSWindows-2019-17763.2114.210811", "AKSWindows-2019", "17763.2114.210811"),
    ("AKSWindows-2022-containerd-gen2-20348.4529.251212", "AKSWindows-2022-containerd-gen2", "20348.4529.251212"),
    ("AKSWindows-2025-gen2-26100.6905.251027", "AKSWindows-2025-gen2", "26100.6905.251027"),
])
def test_an_image_name_is_its_family_then_its_release(image, family, release):
    assert (image_family(image), image_release(image)) == (family, release)


def test_releases_order_numerically_part_by_part():
    images = [U + "202612.10.0", U + "202612.2.0", U + "202611.30.1", U + "202612.2.1"]
    assert sorted(images, key=release_key) == [U + "202611.30.1", U + "202612.2.0", U + "202612.2.1",
                                               U + "202612.10.0"]
    windows = ["AKSWindows-2022-containerd-20348.4529.251212", "AKSWindows-2022-containerd-20348.2762.241009"]
    assert sorted(windows, key=release_key) == windows[::-1]  # monthly: OS build, then the date


def pools(*images: tuple[str | None, str | None]) -> list[PoolImage]:
    return [PoolImage(f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c{i}",
                      "nodepool1", current, latest) for i, (current, latest) in enumerate(images)]


@pytest.mark.parametrize(("given", "pinned"), [
    # every pool behind, all offered the same latest: that one
    ([(OLD, NEW), (OLD, NEW), (MID, NEW)], NEW),
    # a pool already on it counts as offering it
    ([(OLD, NEW), (NEW, NEW)], NEW),
    # a pool on it whose latest moved on still offers it (it needs no upgrade); the others go to it
    ([(OLD, NEW), (NEW, NEWER)], NEW),
    # a region that has not received the newest image yet: the highest every pool offers is where they are
    ([(OLD, NEW), (OLD, OLD)], OLD),
    # a pool whose profile reports no latest offers only what it runs
    ([(NEW, None), (OLD, NEW)], NEW),
])
def test_the_pin_is_the_highest_image_every_pool_of_the_family_offers(given, pinned):
    assert resolve_node_images(pools(*given)) == {"AKSUbuntu-2204gen2containerd": pinned}


def test_each_family_gets_its_own_pin():
    given = [*pools((OLD, NEW)), PoolImage("c9", "azl", AZL_OLD, AZL_NEW), PoolImage("c9", "win", WIN, WIN)]
    assert resolve_node_images(given) == {"AKSUbuntu-2204gen2containerd": NEW, "AKSAzureLinux-V2gen2": AZL_NEW,
                                          "AKSWindows-2022-containerd": WIN}


@pytest.mark.parametrize(("given", "words"), [
    # the regions' latest images differ and neither pool runs the other's: no common image
    ([(OLD, NEW), (MID, NEWER)], ["no AKSUbuntu-2204gen2containerd node image is offered by every pool",
                                 f"latest images seen: {NEW}, {NEWER}", f"c0 pool nodepool1 (on {OLD}, latest {NEW})",
                                 f"c1 pool nodepool1 (on {MID}, latest {NEWER})"]),
    # a pool already past what another can reach
    ([(NEWER, NEWER), (OLD, NEW)], ["no AKSUbuntu-2204gen2containerd node image", f"on {NEWER}"]),
    ([(None, None)], ["c0 pool nodepool1 reports no node image version"]),
])
def test_no_common_image_is_refused_on_the_target_naming_the_pools(given, words):
    with pytest.raises(InvalidInput) as caught:
        resolve_node_images(pools(*given))
    assert caught.value.field == "targetVersion"
    assert all(w in str(caught.value) for w in words), str(caught.value)


PIN = {"AKSUbuntu-2204gen2containerd": NEW}


@pytest.mark.parametrize(("current", "latest", "upgrade_to"), [(OLD, NEW, NEW), (NEW, NEW, None), (NEW, NEWER, None)])
def test_a_pool_that_can_reach_the_pin_is_upgraded_or_left(current, latest, upgrade_to):
    assert pool_image_check(PoolImage("c", "p", current, latest), PIN) == upgrade_to


@pytest.mark.parametrize(("current", "latest", "words"), [
    (OLD, NEWER, f"pool p can no longer reach the pinned node image {NEW}: it runs {OLD} and AKS now offers it {NEWER}"),
    (NEWER, NEWER, f"it runs {NEWER}"),
    (AZL_OLD, AZL_NEW, "pool p runs node image family AKSAzureLinux-V2gen2, not pinned by the rollout"),
])
def test_a_pool_that_cannot_reach_the_pin_says_why(current, latest, words):
    with pytest.raises(ValueError) as caught:
        pool_image_check(PoolImage("c", "p", current, latest), PIN)
    assert words in str(caught.value)


def test_the_nodes_off_the_pin_are_named_with_their_image():
    nodes = [("n1", NEW), ("n2", OLD), ("n3", None), ("n4", AZL_NEW)]
    assert nodes_off_image(nodes, PIN) == [f"n2 ({OLD})", f"n4 ({AZL_NEW})"]
    # past the pin: only a newer release of a pinned family (behind it, or an unpinned family, is not)
    assert nodes_off_image([*nodes, ("n5", NEWER)], PIN, past_only=True) == [f"n5 ({NEWER})"]
