"""The one CSV writer: every CSV the project writes (exports, ``agreement --items-out``, the study's tables) goes
through :func:`csv_bytes` or :func:`write_csv`.

A spreadsheet runs a cell that starts with ``= + - @``, a tab or a CR as a formula (OWASP "CSV injection"), so
such a text cell gets a leading apostrophe, by one rule: :func:`is_formula`. A plain number (``-7``, ``-1.5``,
``+3``, ``1e-5``) is read as a number, never as a formula, so it stays exactly as it is: numeric labels and ids
such as ConvAbuse's ``-1``/``-2``/``-3`` round-trip. Non-text cells (numbers, booleans, missing) are never
altered. :func:`restore_cell` reads a neutralised cell back, so that whatever id a CSV printed is accepted by the
commands that take ids.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from core.errors import SynthloopError

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def is_formula(value: object) -> bool:
    """A text cell a spreadsheet would run as a formula: it starts with a formula prefix and is not a plain number."""
    return isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(value)


def neutralise_cell(value: object) -> object:
    return "'" + value if is_formula(value) else value  # type: ignore[operator]


def neutralise_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every formula cell neutralised (text columns only: numbers are never touched)."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        # A vectorised pre-filter; the exact rule (text only, plain numbers kept) runs on the few candidates.
        candidate = series.astype("string").str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
        if candidate.any():
            text = series.astype(object)
            text[candidate] = text[candidate].map(neutralise_cell)
            out[column] = text
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV without the index, formula cells neutralised.

    CRLF rows (RFC 4180) also make the writer quote any cell holding a bare CR, which would otherwise split a row.
    """
    return neutralise_cells(frame).to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write :func:`csv_bytes` of ``frame`` to ``path``; an unwritable path is a :class:`SynthloopError`."""
    target = Path(path)
    if target.is_dir():
        raise SynthloopError(f"{str(target)!r} is a folder: give the path of a CSV file in it")
    try:
        target.write_bytes(csv_bytes(frame))
    except OSError as exc:
        raise SynthloopError(f"cannot write {str(target)!r} ({exc.strerror}): choose a writable path") from None
    return target


def restore_cell(value: str) -> str:
    """What a neutralised cell stood for (``'=x`` → ``=x``, ``'-7`` → ``-7``); any other value unchanged.

    Lenient on purpose: earlier versions also neutralised plain numbers (``'-7``), and those files still exist.
    """
    if value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def reference_candidates(value: str) -> tuple[str, ...]:
    """The ids a reference read from a CSV may mean, most literal first: the value, then what it stood for."""
    restored = restore_cell(value)
    return (value,) if restored == value else (value, restored)
