"""Offline checks of the infrastructure code, for tests/integration/test_infra.py.

Owns how the tests reach checkov: its Bicep parser (pycep) and its policy scan both run in the
separate ``.venv-checkov`` virtualenv at the repo root, because checkov pins dependency versions
that clash with the app's. Also owns reading values out of parsed Bicep templates and the
``#checkov:skip`` comments in infra files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA_DIR = REPO_ROOT / "infra"
CHECKOV_VENV = REPO_ROOT / ".venv-checkov"

# Parses each file named on the command line with pycep (checkov's Bicep parser) and prints
# {"templates": {path: template}, "errors": {path: message}}; runs inside the checkov venv.
_PARSE_SCRIPT = """
import json, sys
from pycep import BicepParser
parser = BicepParser(add_line_numbers=True)
templates, errors = {}, {}
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as source:
            templates[path] = parser.parse(text=source.read())
    except Exception as exc:
        errors[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"templates": templates, "errors": errors}, default=str))
"""

_SKIP_COMMENT = re.compile(r"checkov:skip=(?P<check_id>[A-Z0-9_]+)(?P<rest>.*)")


class CheckovUnavailable(RuntimeError):
    """The checkov virtualenv is missing or checkov produced no readable report."""


def _venv_executable(name: str) -> Path:
    scripts = "Scripts" if sys.platform == "win32" else "bin"
    suffix = ".exe" if sys.platform == "win32" else ""
    executable = CHECKOV_VENV / scripts / f"{name}{suffix}"
    if not executable.exists():
        raise CheckovUnavailable(
            f"{executable} not found: create the checkov venv at the repo root "
            "(python -m venv .venv-checkov && .venv-checkov/bin/pip install -r requirements-checkov.txt)"
        )
    return executable


def bicep_files() -> list[Path]:
    return sorted(INFRA_DIR.rglob("*.bicep"))


@dataclass(frozen=True)
class BicepParse:
    templates: dict[Path, dict[str, Any]]
    errors: dict[Path, str]


def parse_bicep(paths: list[Path]) -> BicepParse:
    """Parse every file with checkov's Bicep parser, in one subprocess."""
    completed = subprocess.run(
        [str(_venv_executable("python")), "-c", _PARSE_SCRIPT, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise CheckovUnavailable(f"Bicep parser crashed: {completed.stderr.strip()}")
    report = json.loads(completed.stdout)
    return BicepParse(
        templates={Path(p): t for p, t in report["templates"].items()},
        errors={Path(p): e for p, e in report["errors"].items()},
    )


def variable_value(template: dict[str, Any], name: str) -> Any:
    """The literal value of a Bicep ``var`` as pycep parsed it."""
    try:
        return template["variables"][name]["value"]
    except KeyError:
        raise KeyError(f"Bicep variable {name!r} not found") from None


@dataclass(frozen=True)
class CheckovFinding:
    check_id: str
    check_name: str
    file: Path
    resource: str
    first_line: int
    last_line: int

    def describe(self) -> str:
        return f"{self.check_id} {self.check_name} — {self.resource} ({self.file}:{self.first_line})"


@dataclass(frozen=True)
class CheckovReport:
    summaries: dict[str, dict[str, Any]]  # framework -> checkov's summary
    passed: list[CheckovFinding]
    failed: list[CheckovFinding]
    skipped: list[CheckovFinding]
    parsing_errors: list[str]

    def counts(self) -> str:
        return ", ".join(
            f"{framework}: passed {s['passed']}, failed {s['failed']}, skipped {s['skipped']}, "
            f"parsing errors {s['parsing_errors']}"
            for framework, s in sorted(self.summaries.items())
        )


def _findings(results: list[dict[str, Any]], directory: Path) -> list[CheckovFinding]:
    findings = []
    for result in results:
        first_line, last_line = result.get("file_line_range") or (0, 0)
        findings.append(
            CheckovFinding(
                check_id=result["check_id"],
                check_name=result.get("check_name", ""),
                # checkov reports paths relative to the scanned directory, with a leading slash.
                file=directory / result["file_path"].lstrip("/"),
                resource=result.get("resource", ""),
                first_line=first_line,
                last_line=last_line,
            )
        )
    return findings


def run_checkov(directory: Path, frameworks: tuple[str, ...]) -> CheckovReport:
    """One checkov scan of ``directory``; offline (--skip-download: no guideline download)."""
    completed = subprocess.run(
        [
            str(_venv_executable("checkov")),
            "--directory",
            str(directory),
            "--framework",
            *frameworks,
            "--skip-download",
            "--output",
            "json",
            "--compact",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=directory,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    try:
        raw = json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        raise CheckovUnavailable(
            f"checkov exited {completed.returncode} without a JSON report: {completed.stderr.strip()[-2000:]}"
        ) from exc
    # One framework gives an object, several give a list; an empty scan gives a bare summary.
    reports = raw if isinstance(raw, list) else [raw]
    summaries: dict[str, dict[str, Any]] = {}
    passed: list[CheckovFinding] = []
    failed: list[CheckovFinding] = []
    skipped: list[CheckovFinding] = []
    parsing_errors: list[str] = []
    for report in reports:
        if "check_type" not in report:
            continue
        summaries[report["check_type"]] = report["summary"]
        results = report["results"]
        passed += _findings(results.get("passed_checks", []), directory)
        failed += _findings(results.get("failed_checks", []), directory)
        skipped += _findings(results.get("skipped_checks", []), directory)
        parsing_errors += results.get("parsing_errors", [])
    return CheckovReport(summaries, passed, failed, skipped, parsing_errors)


@dataclass(frozen=True)
class SkipComment:
    check_id: str
    reason: str
    file: Path
    line: int


def skip_comments(paths: list[Path]) -> list[SkipComment]:
    """Every ``checkov:skip=ID: reason`` comment in the given files."""
    comments = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = _SKIP_COMMENT.search(line)
            if match:
                rest = match.group("rest")
                reason = rest[1:].strip() if rest.startswith(":") else ""
                comments.append(SkipComment(match.group("check_id"), reason, path, number))
    return comments
