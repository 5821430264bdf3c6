"""Step messages and step outcomes: the unit of work on the ``upgrade-steps`` queue.

A step message is small, versioned and idempotent to execute. Fields are only ever added
(with defaults), so an older message stays valid; ``v`` changes only for a breaking change, and
an unknown ``v`` is refused (it goes to poison, never half-executed).

A step returns an Outcome and never raises for expected conditions:
``Next`` (run another step, maybe after a delay), ``Retry`` (this step again later),
``Done`` or ``Failed`` (the run ends).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from upgrade.domain.model import ClusterRef
from upgrade.errors import InvalidInput

STEP_MESSAGE_VERSION = 1
STEP_NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"
# The queue message limit is 64 KiB; base64 costs a third. Refuse early and clearly.
MAX_MESSAGE_BYTES = 48 * 1024


class StepMessage(BaseModel):
    """One step of one run. ``args`` carries step-specific inputs (JSON values only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = Field(description="Message schema version.")
    run_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    step: str = Field(pattern=STEP_NAME_PATTERN, description="Registered step name.")
    cluster: str = Field(description="The AKS cluster's ARM id.")
    pool: str | None = Field(default=None, max_length=12)
    attempt: int = Field(default=1, ge=1, description="1 on first try; Retry outcomes add one.")
    args: dict[str, Any] = Field(default_factory=dict)
    actor: str = Field(default="system", max_length=200, description="Who caused this step.")
    storage_retry: int = Field(
        default=0, ge=0, description="How often the executor has put this same delivery back after a "
        "transient storage error (its backoff grows with it); 0 for every new message.")

    @field_validator("cluster")
    @classmethod
    def _cluster_is_arm_id(cls, value: str) -> str:
        return ClusterRef.parse(value, what="step message").arm_id

    @property
    def cluster_ref(self) -> ClusterRef:
        return ClusterRef.parse(self.cluster)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=False)


def describe_validation_error(what: str, exc: ValidationError) -> InvalidInput:
    """One InvalidInput naming the first offending field of a pydantic error."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(message)"
    problem = first["msg"]
    if first["type"] == "extra_forbidden":
        problem = "unknown field"
    elif first["type"] == "literal_error" and where == "v":
        problem = f"unsupported version {first.get('input')!r} (this worker reads v{STEP_MESSAGE_VERSION})"
    return InvalidInput(what, where, problem)


def parse_step_message(body: str | bytes) -> StepMessage:
    """Parse and validate a queue message body; raises InvalidInput naming the field."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("step message", "(body)", "not UTF-8 text") from exc
    if len(body.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise InvalidInput("step message", "(body)", f"larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        raw = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidInput("step message", "(body)", f"not JSON: {exc.msg} at {exc.pos}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("step message", "(body)", "must be a JSON object")
    try:
        return StepMessage.model_validate(raw)
    except ValidationError as exc:
        raise describe_validation_error("step message", exc) from exc
    except InvalidInput:
        raise


# ---- outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Next:
    """Run ``step`` next, after ``delay_seconds``; ``args`` replace the message's args.

    ``facts`` are merged into the run record in the same conditional write that moves it on;
    ``status`` lets a workflow park a run (e.g. "awaiting-decision") while a timeout step waits.
    """

    step: str
    delay_seconds: float = 0.0
    args: dict[str, Any] | None = None
    reason: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    status: str = "running"


@dataclass(frozen=True)
class Retry:
    """Run this same step again after ``delay_seconds`` (attempt + 1). ``status`` (None: unchanged)
    lets a polling workflow park its run ("paused") until an operator's decision sends it again."""

    delay_seconds: float
    reason: str
    args: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    status: str | None = None


@dataclass(frozen=True)
class Done:
    """The run (or this chain of steps) finished successfully."""

    summary: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    status: str = "succeeded"  # or "rolled-back" when a rollback completed as asked


@dataclass(frozen=True)
class Failed:
    """The run ended in failure; ``reason`` is what an operator reads first."""

    reason: str
    facts: dict[str, Any] = field(default_factory=dict)
    status: str = "failed"  # or "rolled-back" / "aborted" when that is how the run ended
    alerted: bool = False  # the workflow raised its own alert; else the executor raises run.failed


Outcome = Next | Retry | Done | Failed


def outcome_label(outcome: Outcome) -> str:
    return type(outcome).__name__.lower()
