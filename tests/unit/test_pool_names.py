"""Green pool names (collision-free, within AKS's name rules), alternating naming, and ownership."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upgrade.domain.pool_names import (
    LOGICAL_TAG,
    RUN_TAG,
    choose_green_name,
    green_name_candidates,
    green_tags,
    is_valid_pool_name,
    logical_name,
    ownership_refusal,
    twin_name,
)
from upgrade.errors import InvalidInput

CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1"
OTHER_CLUSTER = CLUSTER.replace("aks1", "aks2")


# ---- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("blue", "os_type", "max_length"), [
    ("userpool1", "Linux", 12),
    ("nodepool1", "Linux", 12),
    ("np", "Linux", 12),
    ("averylongpoo", "Linux", 12),
    ("win1", "Windows", 6),
    ("npwin", "Windows", 6),
    ("w", "Windows", 6),
])
def test_green_names_follow_aks_rules_for_the_pool_os(blue, os_type, max_length):
    # AKS: lowercase alphanumeric, starts with a letter; Linux pools 1-12 characters, Windows 1-6
    for name in green_name_candidates(CLUSTER, blue, "1.31.2", os_type):
        assert is_valid_pool_name(name, os_type) and len(name) <= max_length and name != blue
        assert name[0].isalpha() and name == name.lower() and name.isalnum()


@pytest.mark.parametrize(("a", "b"), [
    (("userpool1", "1.31.2", CLUSTER), ("userpool2", "1.31.2", CLUSTER)),  # siblings sharing a prefix
    (("userpool1", "1.31.2", CLUSTER), ("userpool1", "1.31.3", CLUSTER)),  # another target
    (("userpool1", "1.31.2", CLUSTER), ("userpool1", "1.31.2", OTHER_CLUSTER)),  # another cluster
    (("win1", "1.31.2", CLUSTER), ("win2", "1.31.2", CLUSTER)),
])
def test_green_names_differ_per_cluster_pool_and_target(a, b):
    assert green_name_candidates(a[2], a[0], a[1])[0] != green_name_candidates(b[2], b[0], b[1])[0]


def test_green_names_are_stable_across_retries():
    assert green_name_candidates(CLUSTER, "userpool1", "1.31.2") == green_name_candidates(CLUSTER, "userpool1",
                                                                                            "1.31.2")


@given(blue=st.from_regex(r"[a-z][a-z0-9]{0,11}", fullmatch=True),
       version=st.tuples(st.integers(1, 2), st.integers(0, 40), st.integers(0, 30)).map(
           lambda v: ".".join(map(str, v))),
       windows=st.booleans())
def test_every_green_candidate_is_a_valid_aks_name_unlike_blue(blue, version, windows):
    os_type = "Windows" if windows else "Linux"
    blue = blue[:6] if windows else blue
    names = green_name_candidates(CLUSTER, blue, version, os_type)
    assert names and len(set(names)) == len(names)
    assert all(is_valid_pool_name(n, os_type) and n != blue for n in names)


def test_the_first_free_candidate_is_chosen():
    first, second = green_name_candidates(CLUSTER, "userpool1", "1.31.2")[:2]
    choose = dict(os_type="Linux", naming="hashed", logical="userpool1")
    assert choose_green_name(CLUSTER, "userpool1", "1.31.2", taken={"system"}, **choose) == first
    assert choose_green_name(CLUSTER, "userpool1", "1.31.2", taken={first}, **choose) == second


# ---- alternating names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("logical", "os_type"), [("blue", "Linux"), ("userpool1", "Linux"), ("win1", "Windows")])
def test_alternating_names_come_back_every_second_upgrade(logical, os_type):
    twin = twin_name(CLUSTER, logical, os_type)
    assert is_valid_pool_name(twin, os_type) and twin != logical
    choose = dict(os_type=os_type, naming="alternate", logical=logical, taken=set())
    first = choose_green_name(CLUSTER, logical, "1.31.2", **choose)
    second = choose_green_name(CLUSTER, first, "1.32.0", **choose)
    third = choose_green_name(CLUSTER, second, "1.33.0", **choose)
    assert (first, second, third) == (twin, logical, twin)


def test_alternating_refuses_when_the_other_name_is_held():
    twin = twin_name(CLUSTER, "blue")
    with pytest.raises(InvalidInput, match=f"pool named {twin} exists"):
        choose_green_name(CLUSTER, "blue", "1.31.2", os_type="Linux", naming="alternate", logical="blue",
                          taken={twin})


@pytest.mark.parametrize(("pool", "tags", "logical"), [
    ("blue", {}, "blue"),
    ("bluetwin", {LOGICAL_TAG: "blue"}, "blue"),
    ("blue", {"team": "shop"}, "blue"),
])
def test_logical_name_travels_in_the_tag(pool, tags, logical):
    assert logical_name(pool, tags) == logical


def test_green_tags_keep_blues_tags_and_replace_its_ownership():
    blue_tags = {"costCenter": "42", RUN_TAG: "bg-old", LOGICAL_TAG: "blue"}
    assert green_tags(blue_tags, "bg-new", "blue") == {"costCenter": "42", RUN_TAG: "bg-new", LOGICAL_TAG: "blue"}


# ---- ownership -----------------------------------------------------------------------------------------

OURS = {RUN_TAG: "bg-1"}
THEIRS = {RUN_TAG: "bg-2"}
ROW = dict(run_id="bg-1", blue="blue", green="bluegreen1")


@pytest.mark.parametrize(("action", "pool", "tags", "validated", "allowed", "text"), [
    # the run's green pool: only with the run's tag
    ("drain", "bluegreen1", OURS, False, True, ""),
    ("delete", "bluegreen1", OURS, False, True, ""),
    ("cordon", "bluegreen1", OURS, False, True, ""),
    ("drain", "bluegreen1", {}, False, False, "tag is absent"),
    ("drain", "bluegreen1", THEIRS, False, False, "tag is bg-2"),
    ("delete", "bluegreen1", THEIRS, True, False, "not created by it"),
    ("cordon", "bluegreen1", None, False, False, "not created by it"),
    # the blue pool: cordon and drain (the pool the run was started on); delete only after a validated commit
    ("cordon", "blue", None, False, True, ""),
    ("drain", "blue", None, False, True, ""),
    ("delete", "blue", None, False, False, "only after a validated commit"),
    ("delete", "blue", None, True, True, ""),
    ("scale", "blue", None, True, False, "only after a validated commit"),
    # anything else, never: a sibling, the system pool, even one carrying the run's tag
    ("cordon", "userpool2", None, True, False, "neither this run's blue pool"),
    ("delete", "system", OURS, True, False, "neither this run's blue pool"),
    ("drain", "blueg1312", OURS, True, False, "neither this run's blue pool"),
])
def test_ownership_table(action, pool, tags, validated, allowed, text):
    refusal = ownership_refusal(action, pool, tags, validated_commit=validated, **ROW)
    assert (refusal == "") is allowed
    assert text in refusal


def test_unknown_actions_are_a_programming_error():
    with pytest.raises(ValueError):
        ownership_refusal("reboot", "blue", None, validated_commit=True, **ROW)
