"""Project-wide pytest configuration: the sandbox fixtures every test level shares, and how the
files are shared out between pytest-xdist workers under ``-n`` (``tests/scheduling.py``)."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.integration.conftest_emulator", "tests.integration.conftest_storage",
                  "tests.integration.conftest_product"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only on xdist workers: the order there is the order units are handed out; a plain run
    # keeps the order it was given.
    if hasattr(config, "workerinput"):
        from tests.scheduling import start_order

        items.sort(key=start_order)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadfile`` hands out this suite's units (``LaneScheduling``), in collection order."""
    if config.getoption("dist") != "loadfile":
        return None
    from tests.scheduling import LaneScheduling

    config.option.loadscopereorder = False
    return LaneScheduling(config, log)
