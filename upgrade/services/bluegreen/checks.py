"""Validation of green: the workload checks, the HTTP probes a run asks for, and custom checks
(named callables registered in code with ``register_check``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from upgrade.domain.model import ClusterRef
from upgrade.domain.probes import url_refusal
from upgrade.domain.runs import RunRecord
from upgrade.domain.validation import (
    BlueOrigin,
    CheckResult,
    ValidationReport,
    validate_workloads,
)
from upgrade.errors import PermanentError, TemporaryError
from upgrade.ports import Kube, Platform
from upgrade.services.bluegreen.flow import blue_of, green_of, pool_nodes, run_options
from upgrade.services.step_runner import StepContext

HTTP_PROBE_TIMEOUT_SECONDS = 5.0


# ---- custom validation checks -----------------------------------------------------------------


@dataclass(frozen=True)
class CheckContext:
    """What a custom check sees: the platform (ports), the cluster and the run's pools."""

    platform: Platform
    cluster: ClusterRef
    run: RunRecord
    blue_nodes: tuple[str, ...]
    green_nodes: tuple[str, ...]

    def kube(self) -> Kube:
        return self.platform.kube(self.cluster)


CustomCheck = Callable[[CheckContext], CheckResult]
CUSTOM_CHECKS: dict[str, CustomCheck] = {}


def register_check(name: str) -> Callable[[CustomCheck], CustomCheck]:
    """Register a custom validation check under ``name`` (``options.validation.customChecks``).
    The check returns a CheckResult; TemporaryError means "not yet" (pending), any other
    exception fails the check with its message."""

    def register(check: CustomCheck) -> CustomCheck:
        if name in CUSTOM_CHECKS and CUSTOM_CHECKS[name] is not check:
            raise ValueError(f"custom check {name!r} is registered twice")
        CUSTOM_CHECKS[name] = check
        return check

    return register


def run_validation(ctx: StepContext) -> ValidationReport:
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    options = run_options(run)
    kube = ctx.platform.kube(cluster)
    blue_nodes = [n.name for n in pool_nodes(kube, blue_of(ctx))]
    green_nodes = [n.name for n in pool_nodes(kube, green_of(ctx))]
    extra = [_http_probe(ctx, probe.url, probe.expected_status) for probe in options.validation.http_probes]
    check_ctx = CheckContext(ctx.platform, cluster, run, tuple(blue_nodes), tuple(green_nodes))
    extra += [_custom_check(name, check_ctx) for name in options.validation.custom_checks]
    return validate_workloads(
        [BlueOrigin.from_dict(o) for o in run.facts.get("blueOrigin", [])],
        kube.list_workloads(),
        kube.list_pods(),
        blue_nodes=blue_nodes,
        green_nodes=green_nodes,
        restart_threshold=options.validation.restart_threshold,
        extra=extra,
    )


def _http_probe(ctx: StepContext, url: str, expected: int) -> CheckResult:
    """Only the status and the time it took are reported, never what the server sent."""
    name = f"http {url}"
    assert ctx.run is not None
    allowed = ctx.platform.policy.for_pool(ctx.cluster, ctx.run.pool).probe_hosts
    why = url_refusal(url, allowed)
    if why:  # the policy refuses the URL itself: waiting cannot help
        return CheckResult(name, False, f"refused: {why}")
    started = time.monotonic()
    try:
        status = ctx.platform.http_status(url, HTTP_PROBE_TIMEOUT_SECONDS, allowed)
    except OSError as exc:  # refused, timed out, no route: the service may still come up on green
        return CheckResult(name, False, f"unreachable: {exc}", pending=True)
    except PermanentError as exc:  # a redirect or address the probe will not follow: waiting cannot help
        return CheckResult(name, False, f"refused: {exc}")
    took = f"{(time.monotonic() - started) * 1000:.0f} ms"
    if status != expected:
        return CheckResult(name, False, f"answered {status} in {took}, expected {expected}", pending=True)
    return CheckResult(name, True, f"answered {status} in {took}")


def _custom_check(name: str, check_ctx: CheckContext) -> CheckResult:
    check = CUSTOM_CHECKS.get(name)
    if check is None:
        return CheckResult(f"custom {name}", False, "no check registered under this name")
    try:
        result = check(check_ctx)
    except TemporaryError as exc:
        return CheckResult(f"custom {name}", False, str(exc), pending=True)
    except Exception as exc:  # a check's bug must fail the check, not crash the step
        return CheckResult(f"custom {name}", False, f"raised {type(exc).__name__}: {exc}")
    return replace(result, name=f"custom {result.name or name}")
