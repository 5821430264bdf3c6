"""Blue-green node pool upgrades as queue steps, and the use cases that start and steer them.

Every state of ``upgrade.domain.bluegreen.TRANSITIONS`` that does work is a step handler in this
package; a newcomer reads it in this order:

- ``flow``: what every step shares (``advance`` through the transition table, pools and nodes,
  a drain pass, soaks, the run's alerts);
- ``prepare``: preflight, create green, wait until green is ready;
- ``cutover``: cordon blue, drain it in batches, validate, soak, await a decision, commit;
- ``rollback``: uncordon blue, drain green, delete green;
- ``steps``: the registry of handlers, their args, and what an error or a poisoned step leads to;
- ``checks``: validation of green (workloads, HTTP probes, custom checks registered in code);
- ``start`` and ``decisions``: the use cases that start a run and apply an operator's decision.

Ownership is an invariant: the run records the green pool's name in its facts (preflight, before
any create call) and creates green with its ownership tags (``upgrade.domain.pool_names``); every
cordon, drain or delete first asks ``flow.require_owned``: green only when its tag names the run,
blue (the pool the run was started on) for cordon and drain, and for delete only after a
validated commit. Anything else is refused (``NotOwned``) with an alert, and the run stops.
"""

from upgrade.services.bluegreen.checks import CUSTOM_CHECKS, CheckContext, register_check
from upgrade.services.bluegreen.decisions import decide
from upgrade.services.bluegreen.flow import STEP_PREFIX
from upgrade.services.bluegreen.start import start_bluegreen_run
from upgrade.services.bluegreen.steps import STEPS

__all__ = ["CUSTOM_CHECKS", "STEPS", "STEP_PREFIX", "CheckContext", "decide", "register_check",
           "start_bluegreen_run"]
