"""Unit-test fixtures shared by the workflow tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from upgrade.services import registry


@pytest.fixture
def production_steps() -> Iterator[None]:
    """The app's own step registry, built afresh: other tests install registries of their own."""
    registry.step_registry.cache_clear()
    yield
    registry.step_registry.cache_clear()
