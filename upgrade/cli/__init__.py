"""The ``python -m upgrade`` command line: one subcommand per module of this package.

A module becomes a subcommand by exposing ``register(subparsers)``, which adds its parser and sets
``handler`` (``def handler(args) -> int``, the exit code) with ``parser.set_defaults``. Modules are
discovered, so a new command is a new file and nobody edits a shared list. Modules whose name
starts with an underscore, and ``common`` and ``output``, are helpers, not commands.

Exit codes: 0 success; 1 an operation failed (UpgradeError); 2 bad input (InvalidInput, or a
usage error from argparse). Errors are one line on stderr; a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from upgrade.errors import InvalidInput, UpgradeError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
HELPER_MODULES = frozenset({"common", "output"})


def command_modules() -> list[str]:
    """The names of the modules in this package that provide subcommands, sorted."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and info.name not in HELPER_MODULES
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m upgrade", description="Automate and inspect AKS node upgrades."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show info logs on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            # One broken or half-installed command must not take every other command down.
            print(f"warning: command {name!r} unavailable: {exc}", file=sys.stderr)
            continue
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.error(f"command {args.command!r} has no handler")
    try:
        return int(handler(args))
    except InvalidInput as exc:
        return _fail(exc, EXIT_BAD_INPUT, debug)
    except UpgradeError as exc:
        return _fail(exc, EXIT_FAILED, debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _fail(exc, EXIT_FAILED, debug, unexpected=True)


def _fail(exc: BaseException, code: int, debug: bool, *, unexpected: bool = False) -> int:
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    text = " ".join(str(exc).split()) or type(exc).__name__
    prefix = f"error: unexpected {type(exc).__name__}: " if unexpected else "error: "
    print(prefix + text, file=sys.stderr)
    return code
