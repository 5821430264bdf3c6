"""upgradeSettings arithmetic and ARM's validation rules (upgrade.domain.surge)."""

from __future__ import annotations

import pytest

from upgrade.domain.model import UpgradeSettings
from upgrade.domain.surge import (
    max_blocked_nodes_count,
    max_unavailable_count,
    parse_count_or_percent,
    resolve_count,
    surge_node_count,
    upgrade_batch_size,
    validate_upgrade_settings,
)
from upgrade.errors import InvalidInput


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", (5, False)), (" 3 ", (3, False)), ("0", (0, False)), (2, (2, False)), ("50%", (50, True)),
     ("1%", (1, True)), ("100%", (100, True))],
)
def test_parse_count_or_percent_accepts(value, expected):
    # GIVEN a setting value WHEN parsed THEN the number and whether it is a percent come back
    assert parse_count_or_percent(value, field="maxSurge") == expected


@pytest.mark.parametrize("value", ["0%", "abc", "-1", "101%", "1.5", "%", "", None, True, 2.0, "5 %"])
def test_parse_count_or_percent_refuses_naming_the_field(value):
    # GIVEN a malformed value WHEN parsed THEN InvalidInput names the field
    with pytest.raises(InvalidInput) as error:
        parse_count_or_percent(value, field="maxSurge")
    assert error.value.field == "maxSurge"
    assert "maxSurge" in str(error.value)


@pytest.mark.parametrize(
    ("value", "pool_size", "default", "expected"),
    [
        ("33%", 10, "10%", 4),  # 3.3 rounds up
        ("10%", 30, "10%", 3),  # exact: no float error pushing it to 4
        ("10%", 2, "10%", 1),
        ("100%", 7, "10%", 7),
        ("3", 100, "10%", 3),
        (None, 25, "10%", 3),  # the default applies
        (None, 25, "0", 0),
        ("1%", 0, "10%", 0),
    ],
)
def test_resolve_count_rounds_percent_of_pool_up(value, pool_size, default, expected):
    assert resolve_count(value, pool_size, field="maxSurge", default=default) == expected


@pytest.mark.parametrize(
    ("pool_size", "max_surge", "to_upgrade", "expected"),
    [
        (2, None, None, 1),  # default 10% of 2 rounds up to 1
        (40, None, None, 4),
        (2, "2", None, 2),
        (3, "5", None, 3),  # capped at the pool
        (10, "50%", 2, 2),  # capped at the nodes still to upgrade
        (10, "50%", 0, 0),
        (4, "0", None, 0),
    ],
)
def test_surge_node_count(pool_size, max_surge, to_upgrade, expected):
    assert surge_node_count(pool_size, max_surge, to_upgrade) == expected


@pytest.mark.parametrize(
    ("pool_size", "max_unavailable", "expected"), [(10, None, 0), (10, "2", 2), (10, "25%", 3), (3, "100%", 3)]
)
def test_max_unavailable_count(pool_size, max_unavailable, expected):
    assert max_unavailable_count(pool_size, max_unavailable) == expected


@pytest.mark.parametrize(
    ("pool_size", "max_blocked", "max_surge", "expected"),
    [(10, None, "2", 2), (10, None, None, 1), (10, "5", "2", 5), (10, "50%", "2", 5)],
)
def test_max_blocked_nodes_defaults_to_surge(pool_size, max_blocked, max_surge, expected):
    assert max_blocked_nodes_count(pool_size, max_blocked, max_surge) == expected


@pytest.mark.parametrize(
    ("settings", "pool_size", "to_upgrade", "expected"),
    [
        (UpgradeSettings(max_surge="2"), 2, None, 2),
        (UpgradeSettings(max_surge="0", max_unavailable="1"), 5, None, 1),
        (UpgradeSettings(max_surge="1", max_unavailable="1"), 5, None, 2),
        (UpgradeSettings(max_surge="5"), 5, 1, 1),
    ],
)
def test_upgrade_batch_size(settings, pool_size, to_upgrade, expected):
    assert upgrade_batch_size(pool_size, settings, to_upgrade) == expected


@pytest.mark.parametrize(
    ("settings", "mode", "pool_size"),
    [
        (UpgradeSettings(), "System", None),
        (UpgradeSettings(max_surge="0", max_unavailable="1"), "User", None),
        (UpgradeSettings(max_surge="33%", drain_timeout_minutes=1, node_soak_minutes=30), "System", None),
        (UpgradeSettings(drain_timeout_minutes=1440, node_soak_minutes=0), "User", None),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="2", max_surge="2"), "User", None),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="50%", max_surge="1"), "User", 4),
        (UpgradeSettings(max_unavailable="0"), "System", None),
        # ARM compares node counts of the pool: on one node 10% and 20% are both one node.
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="10%", max_surge="20%"), "User", 1),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="1", max_surge="100%"), "User", 0),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="100%", max_surge="2"), "User", 2),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="1"), "User", 10),  # default 10%
    ],
)
def test_validate_accepts_what_arm_accepts(settings, mode, pool_size):
    # GIVEN settings ARM accepts WHEN validated THEN nothing is raised
    validate_upgrade_settings(settings, mode=mode, pool_size=pool_size)


@pytest.mark.parametrize(
    ("settings", "mode", "pool_size", "field"),
    [
        (UpgradeSettings(max_surge="0"), "User", None, "maxSurge"),
        (UpgradeSettings(max_surge="0", max_unavailable="0"), "User", None, "maxSurge"),
        (UpgradeSettings(max_unavailable="1"), "System", None, "maxUnavailable"),
        (UpgradeSettings(max_surge="abc"), "User", None, "maxSurge"),
        (UpgradeSettings(max_unavailable="-1"), "User", None, "maxUnavailable"),
        (UpgradeSettings(drain_timeout_minutes=0), "User", None, "drainTimeoutInMinutes"),
        (UpgradeSettings(drain_timeout_minutes=1441), "User", None, "drainTimeoutInMinutes"),
        (UpgradeSettings(node_soak_minutes=31), "User", None, "nodeSoakDurationInMinutes"),
        (UpgradeSettings(node_soak_minutes=-1), "User", None, "nodeSoakDurationInMinutes"),
        (UpgradeSettings(undrainable_node_behavior="Delete"), "User", None, "undrainableNodeBehavior"),
        (UpgradeSettings(max_blocked_nodes="2", max_surge="1"), "User", None, "maxBlockedNodes"),
        (UpgradeSettings(undrainable_node_behavior="Schedule", max_blocked_nodes="2"), "User", None,
         "maxBlockedNodes"),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="1", max_surge="2"), "User", None,
         "maxBlockedNodes"),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="10%", max_surge="20%"), "User",
         None, "maxBlockedNodes"),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="1", max_surge="50%"), "User", 10,
         "maxBlockedNodes"),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="0%"), "User", None,
         "maxBlockedNodes"),
        # maxSurge is not capped at the pool for this rule: 100% of one node is below 2.
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="100%", max_surge="2"), "User", 1,
         "maxBlockedNodes"),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="10%", max_surge="20%"), "User", 10,
         "maxBlockedNodes"),
        (UpgradeSettings(undrainable_node_behavior="Cordon", max_blocked_nodes="1"), "User", 11,
         "maxBlockedNodes"),  # the default maxSurge 10% of 11 is 2
        (UpgradeSettings(undrainable_node_behavior="Schedule", max_blocked_nodes="abc"), "User", None,
         "maxBlockedNodes"),
    ],
)
def test_validate_refuses_what_arm_refuses_naming_the_field(settings, mode, pool_size, field):
    # GIVEN settings ARM refuses WHEN validated THEN InvalidInput names the offending field
    with pytest.raises(InvalidInput) as error:
        validate_upgrade_settings(settings, mode=mode, pool_size=pool_size)
    assert error.value.field == field
