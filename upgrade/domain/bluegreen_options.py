"""The options of a blue-green run (``POST /api/upgrades`` ``options``, a policy's ``blueGreen``):
camelCase on the wire, validated once, with errors that name the field (``options.<path>``).

Defaults follow AKS's native blue-green preview: drain batch 10%, batch soak 15 minutes, final
soak 60 minutes, drain timeout 30 minutes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from upgrade.domain.drain import DrainOptions
from upgrade.domain.selectors import LabelSelector
from upgrade.domain.steps import describe_validation_error
from upgrade.domain.surge import parse_count_or_percent
from upgrade.errors import InvalidInput

CHECK_NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"


class _Options(BaseModel):
    # camelCase on the wire (HTTP bodies, stored run options), snake_case in code.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, alias_generator=to_camel)


class HttpProbe(_Options):
    """GET ``url`` must answer ``expected_status``."""

    url: str = Field(pattern=r"^https?://[^\s/]+.*$", max_length=2000)
    expected_status: int = Field(200, ge=100, le=599)


class ValidationChecks(_Options):
    """What "the workloads are fine on green" means for this run."""

    restart_threshold: int = Field(5, ge=0, le=10_000, description="Container restarts on green above this fail.")
    http_probes: tuple[HttpProbe, ...] = Field((), max_length=20)
    custom_checks: tuple[str, ...] = Field((), max_length=20, description="Names of checks registered in code.")
    ready_timeout_minutes: float = Field(
        10.0, ge=0, le=1440, description="How long validate waits for moved pods to become Ready."
    )

    @field_validator("custom_checks")
    @classmethod
    def _check_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not re.match(CHECK_NAME_PATTERN, name):
                raise ValueError(f"{name!r} is not a check name (lowercase letters, digits, _ . -)")
        return names


class Approval(_Options):
    required: bool = False
    timeout_minutes: float = Field(24 * 60.0, gt=0, le=7 * 24 * 60)
    on_timeout: Literal["commit", "rollback"] = "rollback"


class BlueGreenDrain(_Options):
    """The drain engine's options as a run takes them; like the operator's
    ``kubectl drain --ignore-daemonsets --delete-emptydir-data`` by default."""

    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = True
    force: bool = False
    grace_period_seconds: int = Field(-1, ge=-1, le=24 * 3600)
    pod_selector: str | None = Field(None, max_length=1000)

    @field_validator("pod_selector")
    @classmethod
    def _selector_parses(cls, selector: str | None) -> str | None:
        if selector:
            try:
                LabelSelector.parse(selector)
            except InvalidInput as exc:
                raise ValueError(exc.problem) from exc
        return selector


class BlueGreenOptions(_Options):
    drain_batch_size: str = Field("10%", description='Nodes per drain batch: a count ("2") or a percent ("10%").')
    batch_soak_minutes: float = Field(15.0, ge=0, le=1440)
    final_soak_minutes: float = Field(60.0, ge=0, le=1440)
    drain_timeout_minutes: float = Field(30.0, gt=0, le=1440, description="Per batch, as AKS's drainTimeout.")
    drain: BlueGreenDrain = Field(default_factory=BlueGreenDrain)
    validation: ValidationChecks = Field(default_factory=ValidationChecks)
    approval: Approval = Field(default_factory=Approval)
    auto_rollback_on_failed_validation: bool = True
    rollback_on_drain_timeout: bool = False
    green_ready_timeout_minutes: float = Field(60.0, gt=0, le=1440)
    naming: Literal["hashed", "alternate"] = Field(
        "hashed", description="hashed: a new green name per target; alternate: the original name and its twin.")
    poll_interval_seconds: float = Field(10.0, ge=1, le=600, description="How often progress is checked.")

    @field_validator("drain_batch_size", mode="before")
    @classmethod
    def _count_or_percent(cls, value: object) -> str:
        try:
            number, is_percent = parse_count_or_percent(value, field="drainBatchSize")
        except InvalidInput as exc:
            raise ValueError(exc.problem) from exc
        if number == 0:
            raise ValueError("must be at least 1 node or 1%")
        return f"{number}%" if is_percent else str(number)

    @classmethod
    def parse(cls, raw: object) -> BlueGreenOptions:
        """Options from a request body or a stored run; InvalidInput names the field (options.<path>)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InvalidInput("options", "options", "must be a JSON object")
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            problem = describe_validation_error("options", exc)
            raise InvalidInput(
                "options", f"options.{_camel_path(problem.field)}", problem.problem.removeprefix("Value error, ")
            ) from exc

    def for_storage(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def drain_options(self) -> DrainOptions:
        return DrainOptions(
            ignore_daemonsets=self.drain.ignore_daemonsets,
            delete_emptydir_data=self.drain.delete_emptydir_data,
            force=self.drain.force,
            grace_seconds=self.drain.grace_period_seconds,
            pod_selector=self.drain.pod_selector,
        )

    @property
    def batch_soak_seconds(self) -> float:
        return self.batch_soak_minutes * 60

    @property
    def final_soak_seconds(self) -> float:
        return self.final_soak_minutes * 60

    @property
    def drain_timeout_seconds(self) -> float:
        return self.drain_timeout_minutes * 60


def _camel_path(path: str) -> str:
    return ".".join(p if p.isdigit() else to_camel(p) for p in path.split("."))


