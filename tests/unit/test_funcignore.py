"""What `.funcignore` keeps out of the deployment package.

Core Tools and the deployment tooling read `.funcignore` with gitignore rules. The sandbox (emulator,
dev host), the tests, the benchmarks and local settings (which hold connection strings) must never
reach Azure, while the app itself must. The matcher below implements the subset of gitignore rules
the file uses: `dir/` matches a directory anywhere, a leading `/` anchors at the root, globs match one
path segment.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def patterns_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def is_excluded(path: str, patterns: list[str]) -> bool:
    """Whether a repo-relative file path is left out of the package (negations are not used)."""
    segments = path.split("/")
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
        body = pattern.strip("/")
        parts = body.split("/")
        # A match on a leading run of segments excludes everything below it.
        starts = [0] if anchored else range(len(segments))
        for start in starts:
            window = segments[start:start + len(parts)]
            if len(window) < len(parts):
                continue
            if not all(fnmatch.fnmatchcase(s, p) for s, p in zip(window, parts, strict=True)):
                continue
            names_a_directory = start + len(parts) < len(segments)
            if names_a_directory or not directory_only:
                return True
    return False


@pytest.fixture(scope="module")
def funcignore() -> list[str]:
    return patterns_of((REPO_ROOT / ".funcignore").read_text())


@pytest.mark.parametrize(
    "path",
    [
        "sandbox/devhost.py",
        "sandbox/aks_emulator/kube.py",
        "tests/unit/test_funcignore.py",
        "tests/events/eventgrid/ClusterSupportEnded.json",
        "bench/cold_import.py",
        "local.settings.json",
    ],
)
def test_sandbox_tests_bench_and_local_settings_are_not_deployed(funcignore, path):
    # GIVEN the repo's .funcignore WHEN the package is assembled THEN the path is left out
    assert is_excluded(path, funcignore)


@pytest.mark.parametrize(
    "path",
    ["function_app.py", "host.json", "requirements.txt", "upgrade/triggers/steps.py", "upgrade/domain/model.py",
     "upgrade/console/index.html", "upgrade/console/console.js", "upgrade/console/console.css"],
)
def test_the_app_itself_is_deployed(funcignore, path):
    # GIVEN the repo's .funcignore WHEN the package is assembled THEN the app's own files are kept
    assert not is_excluded(path, funcignore)


def test_the_excluded_folders_exist(funcignore):
    # GIVEN the folders the brief names WHEN they are looked up THEN they exist, so the rules above
    # guard real content and not a renamed-away folder
    for folder in ("sandbox", "tests", "bench"):
        assert (REPO_ROOT / folder).is_dir(), folder


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["sandbox/"], "sandbox/up.py", True),
        (["sandbox/"], "upgrade/sandbox.py", False),
        (["sandbox/"], "sandbox", False),  # a file named like the folder is not a directory
        (["local.settings.json"], "local.settings.json", True),
        (["local.settings.json"], "local.settings.json.example", False),
        (["__pycache__/"], "upgrade/__pycache__/model.cpython-311.pyc", True),
        (["/bench/"], "tools/bench/x.py", False),
        ([".git*"], ".gitignore", True),
    ],
)
def test_the_matcher_follows_gitignore_rules(patterns, path, excluded):
    # GIVEN a pattern WHEN a path is checked THEN it matches as gitignore would
    assert is_excluded(path, patterns) is excluded
