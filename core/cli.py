"""``python -m core``: the headless CLI over the same core functions as the app (contract in DESIGN.md).

Every command takes ``--db`` and ``--json``, before or after the command's name (``python -m core --db F
--json project list`` as well as ``python -m core project list --db F --json``, as git and kubectl do). A
command handler receives the parsed arguments and an open database and returns a dict: printed as one JSON
object with ``--json``, else as readable lines. A ``SynthloopError`` becomes one line on stderr, with the
settings it names written as this CLI's flags, and exit status 2.
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
    "core.commands.training", "core.commands.analysis", "core.commands.loop", "core.commands.jobs", "core.commands.crowd",
    "core.commands.serve",
)

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (not the usage block) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see --help)\n")


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("--db", default=default, help="database file (default: $SYNTHLOOP_DB or data/synthloop.db)")
    parser.add_argument("--json", action="store_true", default=default, help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    # A sub-command's own --db/--json default to "absent" (SUPPRESS), so that giving them before the command
    # name is not overwritten by the sub-command's defaults.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, default=argparse.SUPPRESS)
    parser = _Parser(prog="python -m core", description="Synthloop: synthetic data and subjectivity, headless.")
    parser.set_defaults(db=None, json=False)
    _add_global_options(parser, default=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers, common)
    for group in _parsers(parser):  # command groups (``seeds``, ``user``, …) take them too
        if not any(action.dest == "db" for action in group._actions):
            _add_global_options(group, default=argparse.SUPPRESS)
    return parser


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and all its sub-command parsers, depth first."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found


def flag_for(parser: argparse.ArgumentParser, field: str) -> str:
    """The CLI flag that sets a config field (``per_label`` → ``--per-label``)."""
    for sub in _parsers(parser):
        for action in sub._actions:
            if action.dest == field and action.option_strings:
                return max(action.option_strings, key=len)
    return "--" + field.replace("_", "-")


def _print_human(result: dict[str, Any]) -> None:
    message = result.get("message")
    if message:
        print(message)
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        db = connection.connect(args.db)
        try:
            result = args.handler(args, db)
        finally:
            db.conn.close()
    except SynthloopError as exc:
        print(f"error: {exc.render(lambda field: flag_for(parser, field))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except connection.DatabasePathError as exc:
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
