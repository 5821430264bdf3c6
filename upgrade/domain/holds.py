"""Application holds: "not now" for a node, said by the application or its operator.

A hold is the annotation ``aksupgrade.io/hold`` on a node, or on a pod running on it; its value
says why. ``aksupgrade.io/hold-by`` (optional) says who holds (else the object that carries it is
named). The pool policy may add kured-style blocking-pod selectors: a pod on the node that one
selects holds the node too. While a node is held, every drain of it the product runs waits; the
wait lasts at most the policy's ``maxHoldMinutes`` from when the run first found the node held, then
the policy decides: keep waiting, with an alert whose severity rises (``wait``), or drain
(``proceed``), recorded and alerted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from upgrade.domain.model import PRODUCT_PREFIX, Node, Pod
from upgrade.domain.selectors import LabelSelector

HOLD_ANNOTATION = PRODUCT_PREFIX + "hold"
HOLD_BY_ANNOTATION = PRODUCT_PREFIX + "hold-by"
OnExpiry = Literal["wait", "proceed"]


@dataclass(frozen=True)
class Hold:
    node: str
    source: str  # "node", "pod <ns>/<name>" or "pod <ns>/<name> (selector <sel>)"
    by: str
    reason: str

    def describe(self) -> str:
        return f"node {self.node} held by {self.by} ({self.source}): {self.reason}"

    def to_public(self) -> dict[str, Any]:
        return {"node": self.node, "source": self.source, "by": self.by, "reason": self.reason}


def _annotation_hold(node: str, source: str, annotations: Iterable[tuple[str, str]]) -> Hold | None:
    values = dict(annotations)
    if HOLD_ANNOTATION not in values:
        return None
    return Hold(node, source, values.get(HOLD_BY_ANNOTATION) or source, values[HOLD_ANNOTATION] or "(no reason given)")


def holds_on(node: Node, pods: Sequence[Pod], selectors: Sequence[LabelSelector] = ()) -> list[Hold]:
    """Every hold on ``node``: its own annotation, its pods' annotations, and its pods a blocking
    selector selects (a pod that is terminating or finished holds nothing)."""
    found = []
    own = _annotation_hold(node.name, "node", node.annotations)
    if own is not None:
        found.append(own)
    for pod in sorted(pods, key=lambda p: p.key):
        if pod.node != node.name or pod.deleting or pod.phase in ("Succeeded", "Failed"):
            continue
        held = _annotation_hold(node.name, f"pod {pod.key}", pod.annotations)
        if held is not None:
            found.append(held)
            continue
        for selector in selectors:
            if selector.matches(pod.label_map()):
                source = f"pod {pod.key} (blocking selector {selector})"
                found.append(Hold(node.name, source, source, "matches a blocking-pod selector of the policy"))
                break
    return found


@dataclass(frozen=True)
class HoldDecision:
    wait: bool
    reason: str
    expired: bool = False
    severity: str = "info"  # of the alert the decision calls for ("info" at first, rising once expired)


def decide(holds: Sequence[Hold], held_since: datetime, now: datetime, *, max_minutes: int,
           on_expiry: OnExpiry) -> HoldDecision:
    """Wait while held, up to ``max_minutes`` from ``held_since``; then as ``on_expiry`` says. The
    alert severity rises with the time past the maximum: warning, then error at twice, critical at
    four times the maximum."""
    if not holds:
        return HoldDecision(False, "no hold")
    held_for = now - held_since
    limit = timedelta(minutes=max_minutes)
    what = "; ".join(h.describe() for h in holds)
    if held_for < limit:
        until = (held_since + limit).strftime("%Y-%m-%dT%H:%M:%SZ")
        return HoldDecision(True, f"held: {what}; waiting up to {until}")
    if on_expiry == "proceed":
        return HoldDecision(False, f"hold ignored after {max_minutes} min as the policy says (proceed): {what}",
                            expired=True, severity="warning")
    severity = "critical" if held_for >= 4 * limit else "error" if held_for >= 2 * limit else "warning"
    return HoldDecision(True, f"held past the maximum of {max_minutes} min, still waiting as the policy says: {what}",
                        expired=True, severity=severity)
