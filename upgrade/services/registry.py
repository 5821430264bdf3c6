"""The explicit step registry: every step name the worker executes, and its handler.

Each workflow module exposes ``STEPS: dict[str, StepSpec]``; they are merged here, in one
visible list, so an unknown step name is a clear error, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upgrade.domain.runs import RunRecord
    from upgrade.domain.steps import Outcome
    from upgrade.ports import Platform
    from upgrade.services.step_runner import StepContext


@dataclass(frozen=True)
class StepSpec:
    name: str
    handler: Callable[[StepContext], Outcome]
    needs_run: bool = True  # False: a stateless step (scan fan-out) with no run record to advance
    lease_seconds: float = 120.0  # how long a worker's claim on the step holds before another may take over
    # Called by the poison handler, after the run is recorded failed, with that run: undoes what a
    # step may have left half-done (a relaxed PDB); returns what it did. Must be idempotent.
    on_poison: Callable[[RunRecord, Platform], str] | None = None


def _workflow_modules() -> list:
    from upgrade.services import bluegreen, quarantine_scan, remediation, rolling, rollouts

    return [bluegreen, rolling, quarantine_scan, remediation, rollouts, *_added_workflows]


# Workflows beyond the app's own, added by a host before it serves: only the sandbox's test step
# (sandbox/ping_step.py). The app itself never adds one.
_added_workflows: list = []


def add_workflow(module: object) -> None:
    """Register a further module's ``STEPS`` in this process (the registry is rebuilt)."""
    if module not in _added_workflows:
        _added_workflows.append(module)
    step_registry.cache_clear()


@cache
def step_registry() -> dict[str, StepSpec]:
    registry: dict[str, StepSpec] = {}
    for module in _workflow_modules():
        for name, spec in module.STEPS.items():
            if name in registry:
                raise RuntimeError(f"step {name!r} registered twice ({module.__name__})")
            registry[name] = spec
    return registry
