"""The sandbox's ``ping`` step: a harmless step that proves the queue loop end to end.

``args.hops`` > 0 chains ``ping`` again (after ``args.delay`` seconds) so delays and chaining are
exercised too; ``args.fail`` ends the run Failed and ``args.crash`` raises, to exercise those paths.
It is test equipment: the dev host registers it (``register``), the app never does
(tests/unit/test_step_registry.py checks the production registry).
"""

from __future__ import annotations

import sys

from upgrade.domain.steps import Done, Failed, Next, Outcome
from upgrade.services import registry
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import StepContext


def ping(ctx: StepContext) -> Outcome:
    args = ctx.message.args
    if args.get("fail"):
        return Failed(reason=f"ping asked to fail: {args['fail']}")
    if args.get("crash"):
        raise RuntimeError(f"ping asked to crash: {args['crash']}")
    hops = int(args.get("hops", 0))
    if hops > 0:
        return Next(
            "ping",
            delay_seconds=float(args.get("delay", 0)),
            args={**args, "hops": hops - 1},
            reason=f"{hops - 1} hops to go",
            facts={"pings": ctx.run.facts.get("pings", 0) + 1 if ctx.run else 1},
        )
    return Done(summary="pong", facts={"pings": ctx.run.facts.get("pings", 0) + 1 if ctx.run else 1})


STEPS = {"ping": StepSpec("ping", ping)}


def register() -> None:
    """Add ``ping`` to this process's step registry (the dev host does, before serving)."""
    registry.add_workflow(sys.modules[__name__])
