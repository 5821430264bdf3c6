"""How ``make test`` shares the test files out between pytest-xdist workers (``-n N --dist loadfile``).

Most of the suite's wall time is waiting: the dev host polling queues, real queue delays, a real
control plane's controllers, minute-granular maintenance windows. Running files side by side
overlaps those waits; each worker starts the sandbox pieces its tests ask for (Azurite, the
emulator, dev hosts, a control plane) on free ports and in its own temporary folders, and stops
them at its end.

- A work unit is one test file (its module fixtures, such as a dev host, start once), except the
  real-Kubernetes lane: its files share one control plane, so they are one unit, on one worker.
- Units go out in collection order, which ``start_order`` sets on every worker: tests marked
  ``waits`` first, then the lanes that mostly wait (realk8s, e2e) before the ones that mostly
  compute (integration, unit), so the long waits overlap everything else and the short unit
  files fill the gaps at the end (and the slot behind a long single test, ``_assign_work_unit``).
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

REALK8S_LANE = "tests/realk8s"
LANE_ORDER = (REALK8S_LANE, "tests/e2e", "tests/integration", "tests/unit")


class LaneScheduling(LoadScopeScheduling):
    """One unit per test file, except the realk8s lane: one unit (one shared control plane)."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return REALK8S_LANE if path.startswith(f"{REALK8S_LANE}/") else path

    def _assign_work_unit(self, node: WorkerController) -> None:
        # xdist sends a worker its next unit while the last tests of its current one still run (a
        # worker runs a test only once it knows the next). Behind a long test that is its file's
        # only one, such as the windows test's minutes, the next unit would wait all that time:
        # that worker gets the queue's last unit instead, a short unit-test file.
        unfinished = [unit for unit in self.assigned_work.get(node, {}).values() if not all(unit.values())]
        if unfinished and all(len(unit) <= 2 for unit in unfinished) and len(self.workqueue) > 1:
            self.workqueue.move_to_end(next(reversed(self.workqueue)), last=False)
        super()._assign_work_unit(node)


def start_order(item: pytest.Item) -> tuple[bool, int]:
    """Sort key: ``waits`` first, then by lane (see ``LANE_ORDER``); a stable sort keeps files whole."""
    path = item.nodeid.split("::", 1)[0]
    lane = next((i for i, prefix in enumerate(LANE_ORDER) if path.startswith(f"{prefix}/")), len(LANE_ORDER))
    return item.get_closest_marker("waits") is None, lane
