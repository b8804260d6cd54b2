"""``python -m core``: the headless CLI over the same core functions as the app (contract in DESIGN.md).

Every command takes ``--db`` and ``--json``. A command handler receives the parsed arguments and an open
database and returns a dict: printed as one JSON object with ``--json``, else as readable lines. A
``SynthloopError`` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import SynthloopError
from db import connection

Handler = Callable[[argparse.Namespace, Any], dict[str, Any]]

# Each module defines ``register(subparsers, common)``; order is the order of ``--help``.
COMMAND_MODULES = (
    "core.commands.foundation", "core.commands.data", "core.commands.generation", "core.commands.agreement",
    "core.commands.training", "core.commands.analysis", "core.commands.jobs",
)

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (not the usage block) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="database file (default: $SYNTHLOOP_DB or data/synthloop.db)")
    common.add_argument("--json", action="store_true", help="print one JSON object")
    parser = _Parser(prog="python -m core", description="Synthloop: synthetic data and subjectivity, headless.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers, common)
    return parser


def _print_human(result: dict[str, Any]) -> None:
    message = result.get("message")
    if message:
        print(message)
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        db = connection.connect(args.db)
        try:
            result = args.handler(args, db)
        finally:
            db.conn.close()
    except SynthloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print_human(result)
    return 0
