"""Green pool names and pool ownership tags.

AKS names an agent pool with lowercase letters and digits, starting with a letter, at most 12
characters for Linux pools and 6 for Windows pools (AKS docs, "Use system node pools",
limitations). A green name is a stem of blue's name plus a short hash of the cluster, blue's
name and the target version, so sibling pools (``userpool1``, ``userpool2``) never share a green
name, and the same run always derives the same candidates. The first candidate no existing pool
holds is chosen at start and recorded at preflight, before anything changes.

Stable naming (``naming: alternate``): a pool keeps two names, its *logical* name (the original)
and its twin; each upgrade moves to the other one, so the original name comes back every second
upgrade. The logical name travels on the pool as a tag, so runs and the API can address the pool
by it whatever generation is live.

Ownership: every pool the app creates carries ``RUN_TAG`` (the run id) and ``LOGICAL_TAG``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping

from upgrade.errors import InvalidInput

RUN_TAG = "aks-upgrade-run"  # the run that created the pool
LOGICAL_TAG = "aks-upgrade-logical-pool"  # the pool's name across blue-green generations
OWNERSHIP_TAGS = (RUN_TAG, LOGICAL_TAG)

NAMING_MODES = ("hashed", "alternate")
POOL_NAME_RULE = re.compile(r"^[a-z][a-z0-9]*$")
MAX_NAME = {"linux": 12, "windows": 6}
_HASH_CHARS = {"linux": 5, "windows": 3}
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_CANDIDATES = 20


def max_pool_name(os_type: str | None) -> int:
    return MAX_NAME["windows" if (os_type or "").lower() == "windows" else "linux"]


def is_valid_pool_name(name: str, os_type: str | None = "Linux") -> bool:
    return bool(POOL_NAME_RULE.match(name)) and 1 <= len(name) <= max_pool_name(os_type)


def _short_hash(text: str, length: int) -> str:
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def _named(stem_of: str, seed: str, os_type: str | None) -> str:
    kind = "windows" if (os_type or "").lower() == "windows" else "linux"
    stem = re.sub(r"[^a-z0-9]", "", stem_of.lower()) or "np"
    if not stem[0].isalpha():
        stem = "np" + stem
    size = _HASH_CHARS[kind]
    return stem[: MAX_NAME[kind] - size] + _short_hash(seed, size)


def green_name_candidates(cluster: str, blue: str, target_version: str, os_type: str | None = "Linux") -> list[str]:
    """Valid green names for blue at the target, best first; never blue's own name."""
    names = []
    for attempt in range(MAX_CANDIDATES):
        name = _named(blue, f"{cluster.strip().lower()}|{blue}|{target_version}|{attempt}", os_type)
        if name != blue and name not in names:
            names.append(name)
    return names


def twin_name(cluster: str, logical: str, os_type: str | None = "Linux") -> str:
    """The other name of a pool in alternating mode (fixed per cluster and logical name)."""
    name = _named(logical, f"{cluster.strip().lower()}|{logical}|twin", os_type)
    return name if name != logical else _named(logical, f"{cluster.strip().lower()}|{logical}|twin2", os_type)


def logical_name(pool: str, tags: Mapping[str, str]) -> str:
    """The pool's name across generations: its logical tag, else its own name."""
    return tags.get(LOGICAL_TAG) or pool


def choose_green_name(cluster: str, blue: str, target_version: str, *, os_type: str | None, naming: str,
                      logical: str, taken: Collection[str]) -> str:
    """The green name for this run; InvalidInput when no valid free name exists (alternating mode
    has one name only: a pool holding it blocks the run)."""
    if naming == "alternate":
        name = logical if blue != logical else twin_name(cluster, logical, os_type)
        if name in taken:
            raise InvalidInput("upgrade request", "pool",
                               f"alternating naming wants green pool {name}, but a pool named {name} exists; "
                               "this run did not create it (delete or rename it, or use naming: hashed)")
        candidates = [name]
    else:
        candidates = [n for n in green_name_candidates(cluster, blue, target_version, os_type) if n not in taken]
    if not candidates or not is_valid_pool_name(candidates[0], os_type):
        raise InvalidInput("upgrade request", "pool", f"cannot derive a free, valid green pool name from {blue!r}")
    return candidates[0]


def ownership_tags(run_id: str, logical: str) -> dict[str, str]:
    return {RUN_TAG: run_id, LOGICAL_TAG: logical}


def green_tags(blue_tags: Mapping[str, str], run_id: str, logical: str) -> dict[str, str]:
    """Blue's tags (its ownership tags replaced) plus this run's."""
    tags = {k: v for k, v in blue_tags.items() if k not in OWNERSHIP_TAGS}
    return {**tags, **ownership_tags(run_id, logical)}


# ---- ownership --------------------------------------------------------------------------------

POOL_ACTIONS = ("cordon", "drain", "scale", "delete")


def ownership_refusal(action: str, pool: str, tags: Mapping[str, str] | None, *, run_id: str, blue: str,
                      green: str | None, validated_commit: bool) -> str:
    """Why this run may not ``action`` ``pool`` ("" when it may). A run may act on its green pool
    only when the pool carries its RUN_TAG; on its blue pool (the pool it was started on) it may
    cordon and drain, and delete it only after a validated (or explicitly overridden) commit.
    Nothing else, ever."""
    if action not in POOL_ACTIONS:
        raise ValueError(f"unknown pool action {action!r}")
    if green and pool == green:
        owner = (tags or {}).get(RUN_TAG)
        if owner == run_id:
            return ""
        return (f"refused to {action} pool {pool}: it has the green name of run {run_id} but was not created by "
                f"it ({RUN_TAG} tag is {owner or 'absent'})")
    if pool == blue:
        if action in ("cordon", "drain"):
            return ""
        if action == "delete" and validated_commit:
            return ""
        return f"refused to {action} blue pool {pool}: only after a validated commit"
    return f"refused to {action} pool {pool}: it is neither this run's blue pool {blue} nor its green pool {green}"
