"""Where ``make k8s`` puts the control-plane binaries, derived from the Go pins.

The versions come from the two Go modules' ``go.mod`` files (``go/controlplane/`` pins
``k8s.io/kubernetes``, ``go/kwok/`` pins ``sigs.k8s.io/kwok``), so the cache folder changes, and the
Makefile rebuilds, exactly when a pin changes. The Makefile computes the same folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
CACHE_ROOT = REPO_ROOT / ".cache" / "k8s"


def _pinned(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if not match:
        raise ValueError(f"{go_mod}: no require line for {module}")
    return match.group(1)


def kubernetes_version() -> str:
    return _pinned(HERE / "go" / "controlplane" / "go.mod", "k8s.io/kubernetes")


def kwok_version() -> str:
    return _pinned(HERE / "go" / "kwok" / "go.mod", "sigs.k8s.io/kwok")


@dataclass(frozen=True)
class Binaries:
    controlplane: Path  # etcd, kube-apiserver, kube-controller-manager, kube-scheduler by first argument
    kwok: Path

    @property
    def directory(self) -> Path:
        return self.controlplane.parent.parent

    def missing(self) -> list[str]:
        """What is not built yet (empty when the stamp and both binaries are there)."""
        wanted = [self.controlplane, self.kwok, self.directory / ".built"]
        return [str(path) for path in wanted if not path.exists()]


def binaries() -> Binaries:
    folder = CACHE_ROOT / f"{kubernetes_version()}-kwok-{kwok_version()}" / "bin"
    return Binaries(controlplane=folder / "controlplane", kwok=folder / "kwok")
