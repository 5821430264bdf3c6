"""Agent pool ``upgradeSettings`` arithmetic and validation, as AKS applies them.

maxSurge, maxUnavailable and maxBlockedNodes are each an integer ("5") or a percent of the pool
size at upgrade time ("33%", fractions round up). AKS's defaults: maxSurge 10%, maxUnavailable 0,
maxBlockedNodes = maxSurge. The rules in ``validate_upgrade_settings`` are the ones ARM enforces
on a PUT, so a service can refuse a bad plan before AKS does.
"""

from __future__ import annotations

from upgrade.domain.int_or_percent import ceil_percent, split_int_or_percent
from upgrade.domain.model import UpgradeSettings
from upgrade.errors import InvalidInput

DEFAULT_MAX_SURGE = "10%"
DEFAULT_MAX_UNAVAILABLE = "0"
DEFAULT_DRAIN_TIMEOUT_MINUTES = 30
DRAIN_TIMEOUT_RANGE = (1, 1440)
NODE_SOAK_RANGE = (0, 30)
UNDRAINABLE_BEHAVIORS = ("Schedule", "Cordon")
# ARM error codes that mean the region's vCPU quota cannot hold the surge (or green) nodes.
QUOTA_ERROR_CODES = frozenset({"QuotaExceeded", "InsufficientVCPUQuota", "OperationNotAllowedQuota",
                               "OperationNotAllowed:Quota"})

def aks_defaults_applied(settings: UpgradeSettings) -> dict[str, object]:
    """The ``upgradeSettings`` fields ``settings`` leaves unset, with the value AKS uses for each
    (ARM names): what a prediction takes for granted about them."""
    defaults: dict[str, object] = {
        "maxSurge": DEFAULT_MAX_SURGE,
        "maxUnavailable": DEFAULT_MAX_UNAVAILABLE,
        "drainTimeoutInMinutes": DEFAULT_DRAIN_TIMEOUT_MINUTES,
        "nodeSoakDurationInMinutes": 0,
        "undrainableNodeBehavior": "Schedule",
        "maxBlockedNodes": f"maxSurge ({settings.max_surge or DEFAULT_MAX_SURGE})",
    }
    return {name: defaults[name] for name, value in settings.to_arm().items() if value is None}


def parse_count_or_percent(value: object, *, field: str) -> tuple[int, bool]:
    """``"5"`` -> (5, False); ``"50%"`` -> (50, True). A count may be 0; a percent is 1-100."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput("upgrade settings", field, f"{value!r} is not an integer or a percent")
    parsed = split_int_or_percent(value)
    if parsed is None:
        raise InvalidInput(
            "upgrade settings", field, f"{value!r} is not a non-negative integer (\"5\") or a percent (\"33%\")"
        )
    number, is_percent = parsed
    if is_percent and not 1 <= number <= 100:
        raise InvalidInput("upgrade settings", field, f"{value!r}: a percent must be between 1% and 100%")
    return number, is_percent


def resolve_count(value: object, pool_size: int, *, field: str, default: object) -> int:
    """The node count a setting means for a pool of ``pool_size`` nodes (None = ``default``)."""
    number, is_percent = parse_count_or_percent(default if value is None else value, field=field)
    if is_percent:
        return ceil_percent(number, pool_size)
    return number


def surge_node_count(pool_size: int, max_surge: object, nodes_to_upgrade: int | None = None) -> int:
    """Surge nodes AKS creates: maxSurge of the pool (default 10%), capped at the nodes still to upgrade."""
    count = resolve_count(max_surge, pool_size, field="maxSurge", default=DEFAULT_MAX_SURGE)
    cap = pool_size if nodes_to_upgrade is None else nodes_to_upgrade
    return max(0, min(count, cap))


def max_unavailable_count(pool_size: int, max_unavailable: object) -> int:
    """Existing nodes AKS may take out of service at once without a surge replacement (default 0)."""
    return resolve_count(max_unavailable, pool_size, field="maxUnavailable", default=DEFAULT_MAX_UNAVAILABLE)


def max_blocked_nodes_count(
    pool_size: int, max_blocked_nodes: object, max_surge: object, nodes_to_upgrade: int | None = None
) -> int:
    """How many nodes may end quarantined (Cordon) before AKS stops; defaults to the surge count."""
    if max_blocked_nodes is None:
        return surge_node_count(pool_size, max_surge, nodes_to_upgrade)
    return resolve_count(max_blocked_nodes, pool_size, field="maxBlockedNodes", default=None)


def upgrade_batch_size(pool_size: int, settings: UpgradeSettings, nodes_to_upgrade: int | None = None) -> int:
    """Nodes cordoned and drained together: the surge nodes plus maxUnavailable, at least one."""
    surge = surge_node_count(pool_size, settings.max_surge, nodes_to_upgrade)
    return max(1, surge + max_unavailable_count(pool_size, settings.max_unavailable))


def validate_upgrade_settings(settings: UpgradeSettings, *, mode: str, pool_size: int | None = None) -> None:
    """Refuse what ARM refuses. ``mode`` is the pool's "System" or "User"; ``pool_size`` is the
    pool's count, which ARM uses to compare maxBlockedNodes with maxSurge as node counts."""
    surge, surge_percent = parse_count_or_percent(
        DEFAULT_MAX_SURGE if settings.max_surge is None else settings.max_surge, field="maxSurge"
    )
    unavailable, _ = parse_count_or_percent(
        DEFAULT_MAX_UNAVAILABLE if settings.max_unavailable is None else settings.max_unavailable,
        field="maxUnavailable",
    )
    # ARM checks the three formats before any rule.
    blocked = (None if settings.max_blocked_nodes is None
               else parse_count_or_percent(settings.max_blocked_nodes, field="maxBlockedNodes"))
    if unavailable and mode.lower() == "system":
        raise InvalidInput("upgrade settings", "maxUnavailable", "is not allowed on System node pools")
    if unavailable == 0 and surge == 0:
        raise InvalidInput("upgrade settings", "maxSurge", "must be greater than 0 when maxUnavailable is 0")
    _check_range(settings.drain_timeout_minutes, DRAIN_TIMEOUT_RANGE, "drainTimeoutInMinutes")
    _check_range(settings.node_soak_minutes, NODE_SOAK_RANGE, "nodeSoakDurationInMinutes")
    behavior = settings.undrainable_node_behavior
    if behavior is not None and behavior not in UNDRAINABLE_BEHAVIORS:
        raise InvalidInput(
            "upgrade settings", "undrainableNodeBehavior", f"{behavior!r} is not one of {', '.join(UNDRAINABLE_BEHAVIORS)}"
        )
    if blocked is None:
        return
    if behavior != "Cordon":
        raise InvalidInput(
            "upgrade settings", "maxBlockedNodes", "is only allowed with undrainableNodeBehavior Cordon"
        )
    if pool_size is not None:
        # ARM compares node counts of the pool's size (at least one node), maxSurge uncapped: on one
        # node "100%" is 1 and refused against maxSurge "2", while "10%" and "20%" are both 1.
        size = max(pool_size, 1)
        blocked_nodes = resolve_count(settings.max_blocked_nodes, size, field="maxBlockedNodes", default=None)
        surge_nodes = resolve_count(settings.max_surge, size, field="maxSurge", default=DEFAULT_MAX_SURGE)
        too_small = blocked_nodes < surge_nodes
    elif blocked[1] == surge_percent:
        too_small = blocked[0] < surge  # refused on every pool (two integers) or on all but the smallest
    else:
        too_small = False  # an integer against a percent cannot be compared without the pool size
    if too_small:
        raise InvalidInput(
            "upgrade settings",
            "maxBlockedNodes",
            f"{settings.max_blocked_nodes!r} must be greater than or equal to maxSurge "
            f"({settings.max_surge or DEFAULT_MAX_SURGE!r})",
        )


def _check_range(value: int | None, bounds: tuple[int, int], field: str) -> None:
    if value is None:
        return
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput("upgrade settings", field, f"{value!r} must be an integer from {low} to {high}")
