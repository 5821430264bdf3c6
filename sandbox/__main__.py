"""``python -m sandbox up [--scenario NAME] [--time-scale X] [--policy FILE|JSON]`` (see sandbox.up)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "up":
        print("usage: python -m sandbox up [--scenario NAME] [--time-scale X] [--policy FILE|JSON]", file=sys.stderr)
        return 2
    from sandbox.up import main as up

    return up(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
