"""The HTTP API's upgrade requests: ``POST /api/upgrades`` (start a blue-green or rolling run) and
``POST /api/upgrades/{id}/{decision}``, with their bodies validated. The actor is always the signed-in caller the HTTP trigger passes in."""

from __future__ import annotations

from collections.abc import Mapping

from upgrade.domain.runs import RunRecord
from upgrade.errors import InvalidInput
from upgrade.ports import Platform

START_FIELDS = frozenset({"cluster", "pool", "targetVersion", "strategy", "options", "actor"})
STRATEGIES = ("blue-green", "rolling")


def bound_node_image(run: RunRecord) -> str | None:
    """The one node image an upgrade run cannot go past (None: not a node image run, or not bound
    yet): a rolling run's ``target_node_image`` (given at its start or recorded at its upgrade call,
    then never overshot), a blue-green run's ``nodeImage.to`` when pinned at its start (unpinned,
    green is created on whatever image AKS offers by then)."""
    image = run.facts.get("nodeImage") or {}
    return run.facts.get("target_node_image") or (image.get("to") if image.get("pinned") else None)


def start_upgrade(platform: Platform, body: object, *, actor: str, node_image: str | None = None) -> RunRecord:
    """``POST /api/upgrades``: validate the body and start a blue-green or rolling run. ``actor``
    is the signed-in caller; a body ``actor`` (older clients send one) is ignored, never recorded.
    ``node_image`` (not from the body: a rollout's pin) the one image a node image run may reach."""
    if not isinstance(body, Mapping):
        raise InvalidInput("upgrade request", "(body)", "must be a JSON object")
    unknown = sorted(set(body) - START_FIELDS)
    if unknown:
        raise InvalidInput("upgrade request", unknown[0], f"unknown field (allowed: {', '.join(sorted(START_FIELDS))})")
    for required in ("cluster", "pool", "targetVersion", "strategy"):
        if not isinstance(body.get(required), str) or not body[required].strip():
            raise InvalidInput("upgrade request", required, "is required (a non-empty string)")
    strategy = body["strategy"]
    if strategy not in STRATEGIES:
        raise InvalidInput("upgrade request", "strategy", f"{strategy!r} is not one of {', '.join(STRATEGIES)}")
    options = body.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidInput("upgrade request", "options", "must be a JSON object")
    if "actor" in body and not isinstance(body["actor"], str):
        raise InvalidInput("upgrade request", "actor", "must be a string")
    arguments = {"cluster": body["cluster"].strip(), "pool": body["pool"].strip(),
                 "target_version": body["targetVersion"].strip(), "options": dict(options),
                 "actor": actor, "node_image": node_image}
    if strategy == "rolling":
        from upgrade.services.rolling import start_rolling_run

        return start_rolling_run(platform, **arguments)
    from upgrade.services.bluegreen.start import start_bluegreen_run

    return start_bluegreen_run(platform, **arguments)


def decide_from_request(platform: Platform, run_id: str, decision: str, body: object, *, actor: str) -> RunRecord:
    """``POST /api/upgrades/{id}/{decision}`` with body ``{reason?, override?, whilePaused?}``;
    ``actor`` is the signed-in caller (a body ``actor`` is ignored, never recorded); ``override``
    and ``whilePaused`` (approve only) say the operator means it (see bluegreen.decisions)."""
    body = body if body is not None else {}
    if not isinstance(body, Mapping):
        raise InvalidInput("decision request", "(body)", "must be a JSON object")
    unknown = sorted(set(body) - {"actor", "reason", "override", "whilePaused"})
    if unknown:
        raise InvalidInput("decision request", unknown[0],
                           "unknown field (allowed: actor, reason, override, whilePaused)")
    for key in ("actor", "reason"):
        if key in body and not isinstance(body[key], str):
            raise InvalidInput("decision request", key, "must be a string")
    for key in ("override", "whilePaused"):
        if key in body and not isinstance(body[key], bool):
            raise InvalidInput("decision request", key, "must be true or false")
    from upgrade.services.windows import OVERRIDE_DECISION, override_window

    if decision == OVERRIDE_DECISION:
        return override_window(platform, run_id, actor, body.get("reason") or "")
    from upgrade.services.decisions import decide

    return decide(platform, run_id, decision, actor, body.get("reason") or "",
                  override=bool(body.get("override")), while_paused=bool(body.get("whilePaused")))
