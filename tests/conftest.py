"""Project-wide pytest configuration: the sandbox fixtures every test level shares."""

pytest_plugins = ["tests.integration.conftest_emulator", "tests.integration.conftest_storage",
                  "tests.integration.conftest_product"]
