"""The ``ping`` step: a harmless step that proves the queue loop end to end.

``args.hops`` > 0 chains ``ping`` again (after ``args.delay`` seconds) so delays and chaining are
exercised too; a run with ``args.fail`` set ends Failed, to exercise that path.
"""

from __future__ import annotations

from upgrade.domain.steps import Done, Failed, Next, Outcome
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
