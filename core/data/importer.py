"""Importing a table of texts (CSV, TSV, JSONL, Parquet) into a project, with optional raw per-annotator labels.

Three steps, kept apart so that each can be tested and the page can preview before writing:
``read_table`` turns bytes into a DataFrame (whose index is the 1-based data row number), ``plan_import``
validates the frame against the project and decides what to write (pure: no database), and ``import_file``
writes the plan in one transaction, so a bad file changes nothing.

Identity rules (DESIGN.md): rows that share an id are one item (long form repeats the text per annotator);
items with distinct ids are never merged, their duplicate texts are only reported; without an id column a row
whose normalised text duplicates an existing item or an earlier row is skipped and reported. An item already in
the project keeps its labels: only new annotations (and a reference label where it had none) are written, and a
different label in the file is reported as a conflict. Malformed rows (fewer fields than the header, a bare CR
in an unquoted field) and duplicate column names are refused, never read as data.

Work per row is vectorised (pandas/numpy); Python loops run once per item (text hashing) or per distinct value.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlite_utils

from core import projects
from core.config import Config, setting
from core.data.tables import restore_cell
from core.data.text import text_hash
from core.errors import ImportDataError, SynthloopError
from core.vocab import (
    DEFAULT_SPLIT,
    IMPORT_FORMATS,
    IMPORTED_ANNOTATOR_PREFIX,
    REPEATED_RATINGS,
    SOURCES,
    SPLITS,
    ImportFormat,
    RepeatedRatings,
    Source,
    Split,
)
from db import items as items_db
from db import transaction

EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}
# Common spellings of the four splits in public datasets.
SPLIT_SYNONYMS = {
    "train": "train", "training": "train", "dev": "dev", "development": "dev", "valid": "dev",
    "validation": "dev", "val": "dev", "test": "test", "testing": "test", "pool": "pool",
}
EXAMPLES = 5  # how many row numbers or ids a report lists
PARQUET_MAGIC = b"PAR1"
LABEL_MAP_FORMAT = "VALUE=LABEL,VALUE=LABEL (e.g. 0=neg,1=pos)"
# Words in a column name that suggest it names the annotator of a row (long form), most specific first.
ANNOTATOR_COLUMN_HINTS = ("annotator", "worker", "rater", "user")


def imported_annotator(name: str) -> str:
    """The annotator id stored for an imported annotator name.

    A name that already carries the ``import:`` prefix (a raw export of imported labels) is kept as is, so an
    export → import round trip keeps the ids (never ``import:import:x``).
    """
    return name if name.startswith(IMPORTED_ANNOTATOR_PREFIX) else IMPORTED_ANNOTATOR_PREFIX + name


@dataclass(frozen=True)
class ImportSpec(Config):
    """How to read a file and which columns mean what. Validated at construction.

    ``split`` is a fixed split for every row (default ``train``); ``split_col`` reads it per row instead.
    Raw labels come either in long form (``annotator_col`` + ``annotation_col``: a row per item and annotator;
    needs ``id_col``) or in wide form (``annotator_cols``: a column per annotator, empty = not labelled).
    ``repeated_ratings`` says which rating is kept when an annotator rates an item again (every repeat is kept
    as a pair either way); ``label_map`` turns file codes (0/1, pos/neg) into project labels.
    """

    KIND = "import option"

    format: ImportFormat = setting("auto", "file format; auto guesses it from the file name and content")
    text_col: str = setting("text", "the column with the text to classify")
    id_col: str | None = setting(None, "the column with the item's id (default: the row number)")
    label_col: str | None = setting(None, "the column with the reference (gold) label")
    split: Split | None = setting(None, "put every row in this split (default: train)")
    split_col: str | None = setting(None, "the column with each row's split")
    source: Source = setting("real", "whether the items are real or synthetic")
    agreement_col: str | None = setting(None, "the column with a published instance agreement (0 to 1)")
    encoding: str = setting("utf-8", "the file's text encoding")
    sep: str | None = setting(None, "the field separator of a delimited file (default: from the format)")
    no_header: bool = setting(False, "the file has no header row; name its columns in columns")
    columns: tuple[str, ...] = setting((), "column names of a file without a header row")
    annotator_col: str | None = setting(None, "long-form raw labels: the column naming the annotator")
    annotation_col: str | None = setting(None, "long-form raw labels: the column with that annotator's label")
    annotator_cols: tuple[str, ...] = setting((), "wide-form raw labels: one column per annotator")
    repeated_ratings: RepeatedRatings = setting(
        "last",
        "what to keep when the file has an annotator rate the same item more than once: last (the default: the"
        " later rating, just as relabelling an item in the app replaces the label), first, or error (refuse the"
        " file); every repeat is also kept as a pair for intra-annotator consistency",
    )
    label_map: dict[str, str] = setting(
        help="file label values mapped to project labels, VALUE=LABEL,VALUE=LABEL (e.g. 0=not_offensive,"
             "1=offensive), for the reference and the raw labels; a value left out must be a project label",
        factory=dict,
    )

    def __post_init__(self) -> None:
        # Blank strings from forms and CLIs mean "not given".
        for name in ("id_col", "label_col", "split_col", "agreement_col", "annotator_col", "annotation_col", "sep"):
            value = getattr(self, name)
            if isinstance(value, str) and value == "":
                object.__setattr__(self, name, None)
        object.__setattr__(self, "columns", split_names(self.columns))
        object.__setattr__(self, "annotator_cols", split_names(self.annotator_cols))
        if self.format not in IMPORT_FORMATS:
            raise SynthloopError(f"format {self.format!r} is not one of {', '.join(IMPORT_FORMATS)}")
        if not self.text_col or not self.text_col.strip():
            raise SynthloopError("name the text column: set {text_col}", fields=("text_col",))
        if self.source not in SOURCES:
            raise SynthloopError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.split is not None and self.split not in SPLITS:
            raise SynthloopError(f"split {self.split!r} is not one of {', '.join(SPLITS)}")
        if self.split is not None and self.split_col is not None:
            raise SynthloopError("give either a fixed split ({split}) or a split column ({split_col}), not both",
                                 fields=("split", "split_col"))
        try:
            # Decoding, not only a lookup: Python knows codecs such as rot13 that are not text encodings.
            b"a".decode(self.encoding)
        except UnicodeError:
            pass  # a real encoding that cannot decode this one byte (utf-16)
        except (LookupError, TypeError):
            raise SynthloopError(f"unknown encoding {self.encoding!r}: set {{encoding}} to e.g. utf-8, latin-1 or"
                                 " cp1252", fields=("encoding",)) from None
        if self.repeated_ratings not in REPEATED_RATINGS:
            raise SynthloopError(
                f"repeated ratings policy {self.repeated_ratings!r} is not one of {', '.join(REPEATED_RATINGS)}:"
                " set {repeated_ratings} to one of them", fields=("repeated_ratings",)
            )
        object.__setattr__(self, "label_map", parse_label_map(self.label_map))
        if self.sep is not None:
            sep = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(self.sep, self.sep)
            if len(sep) != 1 or sep in "\r\n\"":
                raise SynthloopError(f"separator {self.sep!r} is not usable: give one character, e.g. ',' ';' or '\\t'")
            object.__setattr__(self, "sep", sep)
        if self.no_header and not self.columns:
            raise SynthloopError("a file without a header row needs its column names: set {columns} to NAME,NAME,...",
                                 fields=("columns",))
        if self.columns and not self.no_header:
            raise SynthloopError("{columns} names the columns of a headerless file: set {no_header} too",
                                 fields=("columns", "no_header"))
        if self.no_header and self.format in ("jsonl", "parquet"):
            raise SynthloopError(f"{self.format} files name their columns themselves: leave out {{no_header}} and {{columns}}",
                                 fields=("no_header", "columns"))
        duplicated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if duplicated:
            raise SynthloopError(f"column name {duplicated[0]!r} is given twice in {{columns}}: make the names unique",
                                 fields=("columns",))
        if (self.annotator_col is None) != (self.annotation_col is None):
            raise SynthloopError(
                "long-form raw labels need both {annotator_col} (who) and {annotation_col} (their label)",
                fields=("annotator_col", "annotation_col")
            )
        if self.annotator_col is not None and self.annotator_cols:
            raise SynthloopError(
                "use either long form ({annotator_col} and {annotation_col}) or wide form ({annotator_cols}), not both",
                fields=("annotator_col", "annotation_col", "annotator_cols")
            )
        if self.annotator_col is not None and self.id_col is None:
            raise SynthloopError(
                "long-form raw labels repeat each item on several rows: set {id_col} to say which rows are one item",
                fields=("id_col",)
            )

    @property
    def effective_split(self) -> Split:
        return self.split or DEFAULT_SPLIT



def parse_label_map(value: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``{file value: project label}`` from ``"0=neg,1=pos"`` or a mapping; values and labels are stripped."""
    if not value:
        return {}
    if isinstance(value, Mapping):
        entries = [f"{key}={label}" for key, label in value.items()]
    else:
        entries = [entry for entry in str(value).split(",") if entry.strip()]
    mapping: dict[str, str] = {}
    for entry in entries:
        if "=" not in entry:
            raise SynthloopError(f"label map entry {entry.strip()!r} has no '=': write {{label_map}} as"
                                 f" {LABEL_MAP_FORMAT}", fields=("label_map",))
        file_value, label = (part.strip() for part in entry.split("=", 1))
        if not file_value or not label:
            raise SynthloopError(f"label map entry {entry.strip()!r} has an empty value or label: write {{label_map}}"
                                 f" as {LABEL_MAP_FORMAT}", fields=("label_map",))
        if file_value in mapping:
            raise SynthloopError(f"file value {file_value!r} is mapped twice in {{label_map}}: map each value once",
                                 fields=("label_map",))
        mapping[file_value] = label
    return mapping


def split_names(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Column names from ``"a,b,c"`` or a sequence; blanks dropped."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


# ---------------------------------------------------------------------------------------------------------
# Reading


def resolve_format(fmt: str, name: str) -> str:
    """The file format: the given one, or from the file's extension when ``auto``."""
    if fmt != "auto":
        return fmt
    suffix = Path(name).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise ImportDataError(
        f"cannot tell the format of {name!r} from its extension: set {{format}} to csv, tsv, jsonl or parquet",
        fields=("format",)
    )


def read_table(
    source: str | os.PathLike[str] | bytes, spec: ImportSpec, *, name: str | None = None
) -> pd.DataFrame:
    """Read a file (a path, or its bytes with ``name`` for the format and messages) into a DataFrame.

    The index is the 1-based data row number (the header is not counted; for JSONL it is the line number),
    which every error message uses. CSV/TSV cells are read as strings, so ids like ``007`` survive.
    """
    if isinstance(source, bytes | bytearray):
        raw, name = bytes(source), name or "upload"
    else:
        path = Path(source)
        name = name or path.name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ImportDataError(f"file {str(path)!r} not found: check the path") from None
        except IsADirectoryError:
            raise ImportDataError(f"{str(path)!r} is a folder, not a file: give the path of one file") from None
    fmt = resolve_format(spec.format, name)
    if not raw.strip():
        raise ImportDataError(f"{name!r} is empty: there is nothing to import")
    if fmt == "parquet":
        frame = _read_parquet(raw, name)
    else:
        text = _decode(raw, spec.encoding, name, fmt)
        frame = _read_jsonl(text, name) if fmt == "jsonl" else _read_delimited(text, spec, fmt, name)
    if frame.empty:
        raise ImportDataError(f"{name!r} has no data rows: there is nothing to import")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _read_parquet(raw: bytes, name: str) -> pd.DataFrame:
    if not raw.startswith(PARQUET_MAGIC):
        raise ImportDataError(
            f"{name!r} is not a Parquet file (it lacks the Parquet signature): set the right {{format}} (csv, tsv, jsonl)",
            fields=("format",)
        )
    import pyarrow.parquet as pq  # lazily, like pandas does

    try:
        _check_unique_columns(pq.read_schema(io.BytesIO(raw)).names, name, where="")
        frame = pd.read_parquet(io.BytesIO(raw))
    except ImportDataError:
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ImportDataError(f"{name!r} is not a readable Parquet file ({_first_line(exc)}): re-export it") from None
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame


def _check_unique_columns(names: list[str], name: str, *, where: str) -> None:
    """Two columns of one name would be renamed (``x.1``) or fail later: refuse them by name."""
    seen: dict[str, int] = {}
    for position, column in enumerate(names, start=1):
        if column in seen and column.strip():  # blank header cells are unnamed columns, never looked up
            raise ImportDataError(f"{name!r} has two columns named {column!r} (columns {seen[column]} and"
                                  f" {position}): rename one of them{where}")
        seen.setdefault(column, position)


def _decode(raw: bytes, encoding: str, name: str, fmt: str) -> str:
    if raw.startswith(PARQUET_MAGIC):
        raise ImportDataError(f"{name!r} is a Parquet file, not {fmt.upper()}: set {{format}} to parquet", fields=("format",))
    wide_encoding = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    nul = -1 if wide_encoding else raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise ImportDataError(
            f"{name!r} is not a {fmt.upper()} text file: it holds binary data (a NUL byte on line {line});"
            " check that it is the right file and set the right {format}", fields=("format",)
        )
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        other = "utf-8" if codecs.lookup(encoding).name != "utf-8" else "latin-1"
        raise ImportDataError(
            f"{name!r} is not valid {encoding}: byte 0x{raw[exc.start]:02x} on line {line} cannot be decoded;"
            f" set {{encoding}} to {other} (or the file's real encoding, e.g. cp1252)", fields=("encoding",)
        ) from None
    except UnicodeError as exc:  # codecs such as punycode fail without a byte position
        raise ImportDataError(f"{name!r} cannot be decoded as {encoding} ({_first_line(exc)}): set {{encoding}} to"
                              " the file's real encoding, e.g. utf-8", fields=("encoding",)) from None
    return text.removeprefix("\ufeff")


_BARE_CR = re.compile(r"\r(?!\n)")


def _bare_cr_line(text: str, sep: str, *, quoted: bool) -> int | None:
    """The line (counted by LF) of the first CR that is neither part of a CRLF nor inside a quoted field.

    pandas ends a row at such a CR, so the rest of the field would become a row of its own. A file whose only
    line ends are CRs (classic Mac) has no LF and is read as it is.
    """
    first = _BARE_CR.search(text)
    if first is None or "\n" not in text:
        return None
    position: int | None = first.start()
    if quoted:
        # A quoted field starts with a quote at the start of a line or after a separator; "" is an escaped quote.
        token = re.compile(r'(?:^|(?<=[\r\n' + re.escape(sep) + r']))"[^"]*(?:""[^"]*)*"|\r(?!\n)')
        position = next((m.start() for m in token.finditer(text) if m.group() == "\r"), None)
    return None if position is None else text.count("\n", 0, position) + 1


def _check_short_rows(text: str, sep: str, quoting: int, *, expected: int, header: bool, name: str) -> None:
    """pandas pads a row with fewer fields than the header with empty cells (its label silently lost): refuse it.

    Rows are counted as pandas counts them: blank lines are skipped, the header is not a data row.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting)
    row = 0
    for record in reader:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if header:
            header = False
            continue
        row += 1
        if len(record) < expected:
            raise ImportDataError(
                f"{name!r} line {reader.line_num} (row {row}): expected {expected} fields, found {len(record)};"
                f" a short row would lose its last cells: add the missing fields (an empty cell still needs its"
                f" {sep!r}), or check the separator ({{sep}} {sep!r})", fields=("sep",)
            )


_FIELDS_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_delimited(text: str, spec: ImportSpec, fmt: str, name: str) -> pd.DataFrame:
    sep = spec.sep or ("\t" if fmt == "tsv" else ",")
    # TSV is one record per line without quoting (IANA); SMS-style texts that begin with a quote must stay intact.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    if "\r" in text:
        line = _bare_cr_line(text, sep, quoted=quoting != csv.QUOTE_NONE)
        if line is not None:
            fix = "quote that field, or remove the CR" if quoting != csv.QUOTE_NONE else "remove the CR"
            raise ImportDataError(f"{name!r} line {line}: a carriage return (CR) inside an unquoted field would split"
                                  f" its row in two: {fix} (CRLF line endings are fine)")
    if not spec.no_header:
        lines = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting)
        header = next((r for r in lines if r and not (len(r) == 1 and not r[0].strip())), [])
        _check_unique_columns(header, name, where=" in the header")
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops cells) when the first data row is longer than the header.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text), sep=sep, header=None if spec.no_header else 0, dtype=object, na_filter=False,
                quoting=quoting, engine="c", index_col=False,
            )
    except pd.errors.ParserWarning:
        raise ImportDataError(
            f"{name!r} line 2: more fields than the header has; check the separator ({{sep}} {sep!r})"
            f" and that cells holding {sep!r} are quoted", fields=("sep",)
        ) from None
    except pd.errors.EmptyDataError:
        raise ImportDataError(f"{name!r} is empty: there is nothing to import") from None
    except pd.errors.ParserError as exc:
        match = _FIELDS_ERROR.search(str(exc))
        if match:
            expected, line, found = match.groups()
            raise ImportDataError(
                f"{name!r} line {line}: expected {expected} fields, found {found}; check the separator"
                f" ({{sep}} {sep!r}) and that cells holding {sep!r} are quoted", fields=("sep",)
            ) from None
        raise ImportDataError(f"{name!r} could not be read as {fmt.upper()} ({_first_line(exc)}): check {{sep}} and"
                              " {format}", fields=("sep", "format")) from None
    if frame.shape[1] > 1 and (frame.iloc[:, -1] == "").any():  # only a row with an empty last cell can be short
        _check_short_rows(text, sep, quoting, expected=frame.shape[1], header=not spec.no_header, name=name)
    if spec.no_header:
        if frame.shape[1] != len(spec.columns):
            raise ImportDataError(
                f"{name!r} has {frame.shape[1]} columns but {{columns}} names {len(spec.columns)}"
                f" ({', '.join(spec.columns)}): name every column, in order", fields=("columns",)
            )
        frame.columns = list(spec.columns)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame


def _read_jsonl(text: str, name: str) -> pd.DataFrame:
    stripped = text.lstrip()
    if stripped.startswith("["):
        # A whole-file JSON array of objects (a ``.json`` export) is accepted too.
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportDataError(f"{name!r} is not valid JSON (line {exc.lineno}: {exc.msg}): fix or re-export it") from None
        numbers = list(range(1, len(records) + 1))
    else:
        lines = text.splitlines()
        numbers = [n for n, line in enumerate(lines, start=1) if line.strip()]
        body = [lines[n - 1] for n in numbers]
        try:
            records = json.loads("[" + ",".join(body) + "]")  # one C-speed parse for the common, valid case
        except json.JSONDecodeError:
            records = None
        if records is None or len(records) != len(body):
            for number, line in zip(numbers, body, strict=True):
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ImportDataError(
                        f"{name!r} line {number} is not valid JSON ({exc.msg}): each line must be one JSON object"
                    ) from None
            raise ImportDataError(f"{name!r} is not JSON Lines: each line must be one JSON object")
    for number, record in zip(numbers, records, strict=True):
        if not isinstance(record, dict):
            raise ImportDataError(
                f"{name!r} line {number} is a JSON {type(record).__name__}, not an object: each line must be"
                ' one object like {"text": "..."}'
            )
    frame = pd.DataFrame.from_records(records)
    frame.index = pd.Index(numbers, name="row")
    return frame


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# ---------------------------------------------------------------------------------------------------------
# Column roles: what the Data page proposes from a preview


MAX_LABEL_VALUES = 50  # more distinct values than this is not a label column


def label_values(frame: pd.DataFrame, columns: list[str | None]) -> list[str]:
    """The distinct non-empty values (as the import reads them) of the given label columns, sorted: what a
    label map maps. Columns that are None or not in the frame are ignored."""
    values: set[str] = set()
    for column in dict.fromkeys(c for c in columns if c is not None and c in frame):
        values.update(pd.unique(_strings(frame[column])))
    values.discard("")
    return sorted(values)


def suggest_long_form(frame: pd.DataFrame, *, id_col: str | None, text_col: str | None) -> str | None:
    """The annotator column when ``frame`` looks like long-form raw labels, else None.

    Long form: ids repeat, and a column whose name suggests annotators (``ANNOTATOR_COLUMN_HINTS``) takes
    different values on rows of one item. Without it, the annotators' label column would be taken for a
    reference label (and rows sharing an id refused for disagreeing).
    """
    if id_col is None or id_col not in frame:
        return None
    ids = _strings(frame[id_col])
    if len(pd.unique(ids)) == len(ids):
        return None
    candidates = [c for c in frame.columns if c not in (id_col, text_col)]
    for hint in ANNOTATOR_COLUMN_HINTS:
        for column in candidates:
            if hint in column.lower() and frame.groupby(ids)[column].nunique().max() > 1:
                return column
    return None


# ---------------------------------------------------------------------------------------------------------
# Planning (pure)


@dataclass(frozen=True)
class ImportPlan:
    """What an import will write, decided without touching the database.

    ``items``: new items (``external_id, text, text_hash, reference_label, split, imported_agreement, row``).
    ``annotations``: ``new_item`` (position in ``items``, or -1), ``existing_item_id`` (0 unless the row's id
    matched an item already in the project), ``annotator``, ``label``. ``repeat_pairs``: the same item columns
    with ``annotator, first_label, second_label`` (consecutive ratings of one item by one annotator).
    ``reference_labels``: ``item id → label`` for items already in the project that had no reference label.
    """

    items: pd.DataFrame
    annotations: pd.DataFrame
    repeat_pairs: pd.DataFrame
    reference_labels: dict[int, str]
    labels_to_add: tuple[str, ...]
    rows_read: int
    items_matched: int
    duplicate_texts_skipped: int
    duplicate_rows: tuple[int, ...]
    duplicate_text_ids: int
    duplicate_text_id_examples: tuple[str, ...]
    annotators: tuple[str, ...]
    repeated_ratings: int
    repeated_rating_rows: tuple[int, ...]
    conflicts: int
    conflict_ids: tuple[str, ...]


def _strings(series: pd.Series) -> np.ndarray:
    """A column as an object array of stripped strings, ``""`` where missing; whole floats print as ints."""
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=False) == "string":
        # CSV/TSV columns are all Python strings already: strip them in one pass, no conversions.
        return np.array([value.strip() for value in series.to_numpy()], dtype=object)
    if pd.api.types.is_float_dtype(series):
        values = series.dropna()
        if len(values) and bool((values == np.floor(values)).all()) and bool(np.isfinite(values).all()):
            series = series.astype("Int64")
    if pd.api.types.is_bool_dtype(series) or series.dtype == object:
        series = series.map(lambda v: v if v is None or isinstance(v, str) else _scalar_text(v), na_action="ignore")
    return series.astype("string").fillna("").str.strip().to_numpy(dtype=object)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _first_index(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Row position of each group's first row (codes from ``pd.factorize``, so groups appear in order)."""
    _, first = np.unique(codes, return_index=True)
    assert len(first) == n_groups
    return first


def _check_columns(frame: pd.DataFrame, spec: ImportSpec) -> None:
    wanted = [
        (spec.text_col, "text_col"), (spec.id_col, "id_col"), (spec.label_col, "label_col"),
        (spec.split_col, "split_col"), (spec.agreement_col, "agreement_col"),
        (spec.annotator_col, "annotator_col"), (spec.annotation_col, "annotation_col"),
        *((column, "annotator_cols") for column in spec.annotator_cols),
    ]
    missing = [(column, name) for column, name in wanted if column is not None and column not in frame]
    if not missing:
        for column, name in wanted:
            if column is not None and _holds_bytes(frame[column]):
                raise ImportDataError(
                    f"column {column!r} ({{{name}}}) holds bytes (binary data), not text: convert it to text"
                    " (e.g. decode it as UTF-8) and save the file again", fields=(name,)
                )
        return
    available = ", ".join(repr(c) for c in frame.columns[:40])
    hint = ""
    if frame.shape[1] == 1:
        hint = "; only one column was found: check the separator ({sep}) or {format}"
    named = [f"{column!r} ({{{name}}})" for column, name in missing]
    raise ImportDataError(
        f"column {' and '.join(named)} not in the file; its columns are: {available}{hint}"
        if len(missing) == 1
        else f"columns {', '.join(named)} not in the file; its columns are: {available}{hint}",
        fields=tuple(dict.fromkeys([name for _, name in missing] + (["sep", "format"] if hint else []))),
    )


def _holds_bytes(series: pd.Series) -> bool:
    """Parquet binary columns arrive as ``bytes``, which would otherwise be imported as the text ``b'...'``."""
    kind = pd.api.types.infer_dtype(series, skipna=True)
    return kind == "bytes" or (kind.startswith("mixed") and bool(series.map(lambda v: isinstance(v, bytes)).any()))


def _agreement(values: np.ndarray, rows: np.ndarray, column: str) -> np.ndarray:
    """Fractions 0-1 (``0.66``) or percentages 0-100 (``66`` or ``66%``) as fractions; NaN where empty.

    Decided per column: if any value is above 1 (or has ``%``) the whole column is read as percentages.
    """
    present = values != ""
    text = pd.Series(values[present], dtype=object).astype(str)
    percent_sign = text.str.endswith("%").to_numpy()
    numbers = pd.to_numeric(text.str.rstrip("%").str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(numbers) | ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ImportDataError(
            f"row {rows[present][i]}: agreement {text.iloc[i]!r} in column {column!r} is not a number:"
            " give a fraction 0-1 (0.66) or a percentage 0-100 (66)"
        )
    percentages = bool(percent_sign.any()) or bool((numbers > 1).any())
    out_of_range = (numbers < 0) | (numbers > (100 if percentages else 1))
    if out_of_range.any():
        i = int(np.flatnonzero(out_of_range)[0])
        raise ImportDataError(
            f"row {rows[present][i]}: agreement {text.iloc[i]!r} in column {column!r} is out of range:"
            " give a fraction 0-1 (0.66) or a percentage 0-100 (66)"
        )
    result = np.full(len(values), np.nan)
    result[present] = numbers / 100 if percentages else numbers
    return result


def _splits(values: np.ndarray, rows: np.ndarray, column: str) -> np.ndarray:
    mapping = {value: SPLIT_SYNONYMS.get(value.lower()) for value in pd.unique(values)}
    unknown = [value for value, split in mapping.items() if split is None]
    if unknown:
        i = int(np.flatnonzero(pd.Series(values).isin(unknown).to_numpy())[0])
        shown = "an empty split" if values[i] == "" else f"split {values[i]!r}"
        raise ImportDataError(
            f"row {rows[i]}: {shown} in column {column!r} is not one of train, dev, test, pool"
            " (validation/valid/val count as dev): fix the value, or use a fixed {split}", fields=("split",)
        )
    return pd.Series(values, dtype=object).map(mapping).to_numpy(dtype=object)


def plan_import(
    frame: pd.DataFrame,
    spec: ImportSpec,
    project: projects.Project,
    existing: pd.DataFrame,
    *,
    add_missing_labels: bool = False,
    existing_annotations: Callable[[], pd.DataFrame] | None = None,
) -> ImportPlan:
    """Validate ``frame`` (from :func:`read_table`) against the project and decide what to write.

    ``existing``: the project's items (columns ``id, external_id, text, text_hash`` and, to compare reference
    labels of items the file names again, ``reference_label``). ``existing_annotations``: returns the project's
    annotations (``item_id, annotator, label``); called only when the file names items already in the project.
    Raises :class:`ImportDataError` naming the row (the frame's index) or column and the fix.
    """
    _check_columns(frame, spec)
    n_rows = len(frame)
    rows = np.asarray(frame.index)
    text = _strings(frame[spec.text_col])
    empty = text == ""
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise ImportDataError(
            f"row {rows[i]}: the text in column {spec.text_col!r} is empty ({_rows(int(empty.sum()))} in all):"
            " fill it in or remove those rows"
        )

    # Group rows into items: by id when there is one, else one item per row.
    if spec.id_col is not None:
        ids = _strings(frame[spec.id_col])
        if (ids == "").any():
            i = int(np.flatnonzero(ids == "")[0])
            raise ImportDataError(
                f"row {rows[i]}: the id in column {spec.id_col!r} is empty: give every row an id, or leave out {{id_col}}",
                fields=("id_col",)
            )
        codes, _ = pd.factorize(ids)
        first = _first_index(codes, int(codes.max()) + 1)
    else:
        ids = None
        codes = np.arange(n_rows)
        first = codes
    per_item = {"text": (text, spec.text_col)}
    for key, column in (("label", spec.label_col), ("split", spec.split_col), ("agreement", spec.agreement_col)):
        if column is not None:
            per_item[key] = (_strings(frame[column]), column)
    if ids is not None and len(first) < n_rows:
        for key, (values, column) in per_item.items():
            differs = values != values[first[codes]]
            if differs.any():
                i = int(np.flatnonzero(differs)[0])
                j = int(first[codes[i]])
                if key == "text":
                    raise ImportDataError(
                        f"row {rows[i]}: id {ids[i]!r} already appeared on row {rows[j]} with a different text;"
                        " rows sharing an id are one item: give each distinct text its own id"
                    )
                raise ImportDataError(
                    f"row {rows[i]}: id {ids[i]!r} has {values[i]!r} in column {column!r} but {values[j]!r} on"
                    f" row {rows[j]}; rows sharing an id are one item: make the values equal"
                )

    item_rows = rows[first]
    item_text = text[first]
    item_hash = np.array([text_hash(t) for t in item_text], dtype=object)
    n_items = len(first)
    item_labels = per_item["label"][0][first] if "label" in per_item else np.full(n_items, "", dtype=object)
    if "split" in per_item:
        item_split = _splits(per_item["split"][0][first], item_rows, spec.split_col or "")
    else:
        item_split = np.full(n_items, spec.effective_split, dtype=object)
    if "agreement" in per_item:
        item_agreement = _agreement(per_item["agreement"][0][first], item_rows, spec.agreement_col or "")
    else:
        item_agreement = np.full(n_items, np.nan)

    # Identity against the project and within the file.
    keep = np.ones(n_items, dtype=bool)
    existing_item_id = np.zeros(n_items, dtype=np.int64)
    existing_reference = np.full(n_items, None, dtype=object)  # the reference label of a matched item
    duplicate_rows: np.ndarray = np.array([], dtype=np.int64)
    duplicate_text_ids = 0
    duplicate_text_examples: tuple[str, ...] = ()
    hash_series = pd.Series(item_hash, dtype=object)
    in_project = hash_series.isin(set(existing["text_hash"])).to_numpy() if len(existing) else np.zeros(n_items, bool)
    if ids is None:
        skipped = hash_series.duplicated().to_numpy() | in_project
        keep = ~skipped
        duplicate_rows = item_rows[skipped]
    else:
        item_ids = ids[first]
        known = existing.dropna(subset=["external_id"])
        if len(known):
            known_id = dict(zip(known["external_id"].astype(str), known["id"].astype(int), strict=True))
            known_text = dict(zip(known["external_id"].astype(str), known["text"], strict=True))
            known_reference = dict(zip(known["external_id"].astype(str), known["reference_label"], strict=True)) \
                if "reference_label" in known else {}
            matched = pd.Series(item_ids, dtype=object).isin(known_id.keys()).to_numpy()
            for position in np.flatnonzero(matched):
                external = item_ids[position]
                if known_text[external] != item_text[position]:
                    raise ImportDataError(
                        f"row {item_rows[position]}: id {external!r} is already in project {project.name!r} with"
                        " a different text: use a new id, or fix the text"
                    )
                existing_item_id[position] = known_id[external]
                existing_reference[position] = known_reference.get(external)
            keep = ~matched
        # Distinct ids are never merged, but a text that another item already has is reported.
        repeated = (hash_series.duplicated().to_numpy() | in_project) & keep
        duplicate_text_ids = int(repeated.sum())
        duplicate_text_examples = tuple(str(v) for v in item_ids[repeated][:EXAMPLES])

    # Raw labels: one entry per (row, annotator) with a non-empty label.
    annotation_item = np.array([], dtype=np.int64)
    annotation_annotator = np.array([], dtype=object)
    annotation_label = np.array([], dtype=object)
    annotation_row = np.array([], dtype=np.int64)
    annotation_column = np.array([], dtype=object)  # the file column each label came from, for messages
    if spec.annotator_col is not None and spec.annotation_col is not None:
        annotators = _strings(frame[spec.annotator_col])
        labels = _strings(frame[spec.annotation_col])
        labelled = labels != ""
        nameless = labelled & (annotators == "")
        if nameless.any():
            i = int(np.flatnonzero(nameless)[0])
            raise ImportDataError(
                f"row {rows[i]}: label {labels[i]!r} has no annotator in column {spec.annotator_col!r}:"
                " fill in who gave it, or remove the row"
            )
        annotator_codes, annotator_names = pd.factorize(annotators[labelled])
        annotation_item = codes[labelled]
        annotation_annotator = np.array([imported_annotator(n) for n in annotator_names], dtype=object)[
            annotator_codes
        ]
        annotation_label = labels[labelled]
        annotation_row = rows[labelled]
        annotation_column = np.full(len(annotation_row), spec.annotation_col, dtype=object)
    elif spec.annotator_cols:
        parts = []
        for column in spec.annotator_cols:
            labels = _strings(frame[column])
            labelled = labels != ""
            parts.append((codes[labelled], column, labels[labelled], rows[labelled]))
        annotation_item = np.concatenate([p[0] for p in parts])
        annotation_annotator = np.concatenate(
            [np.full(len(p[0]), imported_annotator(p[1]), dtype=object) for p in parts]
        )
        annotation_label = np.concatenate([p[2] for p in parts])
        annotation_row = np.concatenate([p[3] for p in parts])
        annotation_column = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts])
    # Annotations of skipped duplicate rows go with them (they are reported as skipped).
    kept_annotation = keep[annotation_item] | (existing_item_id[annotation_item] > 0)
    annotation_item = annotation_item[kept_annotation]
    annotation_annotator = annotation_annotator[kept_annotation]
    annotation_label = annotation_label[kept_annotation]
    annotation_row = annotation_row[kept_annotation]
    annotation_column = annotation_column[kept_annotation]
    matched = existing_item_id > 0

    # File values become label names: the label map first, then labels that a CSV export neutralised ('-ve).
    project_labels = set(project.label_names)
    item_labels = _replace(item_labels, spec.label_map)
    annotation_label = _replace(annotation_label, spec.label_map)
    restored = _restore_neutralised([*pd.unique(item_labels), *pd.unique(annotation_label)], project_labels)
    item_labels = _replace(item_labels, restored)
    annotation_label = _replace(annotation_label, restored)

    # Labels must be the project's (or be added on request).
    labelled_items = (item_labels != "") & (keep | matched)
    sources = [(item_labels[labelled_items], item_rows[labelled_items],
                np.full(int(labelled_items.sum()), spec.label_col, dtype=object))]
    if len(annotation_label):
        sources.append((annotation_label, annotation_row, annotation_column))
    labels_to_add: list[str] = []
    for values, value_rows, value_columns in sources:
        unknown_values = [v for v in pd.unique(values) if v not in project_labels and v not in labels_to_add]
        if not unknown_values:
            continue
        if not add_missing_labels:
            i = int(np.flatnonzero(values == unknown_values[0])[0])
            raise ImportDataError(
                f"row {value_rows[i]}: label {unknown_values[0]!r} in column {value_columns[i]!r} is not a label of project"
                f" {project.name!r} ({', '.join(project.label_names)}): add it to the project, or import with"
                " {add_labels}", fields=("add_labels",)
            )
        labels_to_add.extend(unknown_values)

    # Repeated ratings: one label per (item, annotator) by the policy; every repeat kept as a pair with the
    # rating before it. One integer per pair: hashing 1M ints is far cheaper than 1M (int, str) rows.
    annotator_code, annotator_values = pd.factorize(annotation_annotator)
    pair_key = annotation_item.astype(np.int64) * max(len(annotator_values), 1) + annotator_code
    kept, repeat, previous = _split_repeats(pair_key, annotation_row, spec.repeated_ratings)
    if len(repeat) and spec.repeated_ratings == "error":
        i = int(repeat[np.argmin(annotation_row[repeat])])
        first_row = int(annotation_row[pair_key == pair_key[i]].min())
        shown_item = repr(ids[first[annotation_item[i]]]) if ids is not None else f"on row {annotation_row[i]}"
        raise ImportDataError(
            f"row {annotation_row[i]}: annotator {annotation_annotator[i]!r} rates item {shown_item} a second time"
            f" (first on row {first_row}): set {{repeated_ratings}} to last or first to keep one rating and count"
            " the repeats, or keep one row per annotator and item", fields=("repeated_ratings",)
        )
    repeated_rating_rows = np.sort(annotation_row[repeat])

    # Items already in the project keep what they have: a different label in the file is a conflict, and
    # only what is new is written (annotations of new annotators, a reference label where there was none).
    conflict = np.zeros(n_items, dtype=bool)
    reference_labels: dict[int, str] = {}
    already_annotated = np.zeros(len(annotation_item), dtype=bool)
    if matched.any():
        has_label = matched & (item_labels != "")
        unset = has_label & pd.isna(existing_reference)
        conflict |= has_label & ~unset & (item_labels != existing_reference)
        reference_labels = dict(zip(existing_item_id[unset].tolist(), item_labels[unset].tolist(), strict=True))
        on_known = np.flatnonzero(existing_item_id[annotation_item[kept]] > 0)
        if len(on_known) and existing_annotations is not None:
            probe = pd.DataFrame({"item_id": existing_item_id[annotation_item[kept[on_known]]],
                                  "annotator": annotation_annotator[kept[on_known]]})
            current = probe.merge(existing_annotations()[["item_id", "annotator", "label"]],
                                  on=["item_id", "annotator"], how="left")["label"].to_numpy(dtype=object)
            present = pd.notna(current)
            already_annotated[kept[on_known[present]]] = True
            clash = on_known[present & (current != annotation_label[kept[on_known]])]
            conflict[annotation_item[kept[clash]]] = True
    known_pair = np.isin(pair_key, pair_key[already_annotated])
    kept = kept[~known_pair[kept]]
    repeat_is_new = ~known_pair[repeat]
    repeat, previous = repeat[repeat_is_new], previous[repeat_is_new]

    kept_items = np.flatnonzero(keep)
    new_position = np.full(n_items, -1, dtype=np.int64)
    new_position[kept_items] = np.arange(len(kept_items))
    items = pd.DataFrame(
        {
            "external_id": ids[first][kept_items] if ids is not None else np.full(len(kept_items), None, dtype=object),
            "text": item_text[kept_items],
            "text_hash": item_hash[kept_items],
            "reference_label": np.where(item_labels[kept_items] == "", None, item_labels[kept_items]),
            "split": item_split[kept_items],
            "imported_agreement": item_agreement[kept_items],
            "row": item_rows[kept_items],
        }
    )
    annotations = pd.DataFrame(
        {
            "new_item": new_position[annotation_item[kept]],
            "existing_item_id": existing_item_id[annotation_item[kept]],
            "annotator": annotation_annotator[kept],
            "label": annotation_label[kept],
        }
    )
    repeat_pairs = pd.DataFrame(
        {
            "new_item": new_position[annotation_item[repeat]],
            "existing_item_id": existing_item_id[annotation_item[repeat]],
            "annotator": annotation_annotator[repeat],
            "first_label": annotation_label[previous],
            "second_label": annotation_label[repeat],
        }
    )
    return ImportPlan(
        items=items,
        annotations=annotations,
        repeat_pairs=repeat_pairs,
        reference_labels=reference_labels,
        labels_to_add=tuple(labels_to_add),
        rows_read=n_rows,
        items_matched=int(matched.sum()),
        duplicate_texts_skipped=len(duplicate_rows),
        duplicate_rows=tuple(int(r) for r in duplicate_rows[:EXAMPLES]),
        duplicate_text_ids=duplicate_text_ids,
        duplicate_text_id_examples=duplicate_text_examples,
        annotators=tuple(sorted(pd.unique(annotation_annotator))),
        repeated_ratings=len(repeated_rating_rows),
        repeated_rating_rows=tuple(int(r) for r in repeated_rating_rows[:EXAMPLES]),
        conflicts=int(conflict.sum()),
        conflict_ids=tuple(str(v) for v in ids[first][conflict][:EXAMPLES]) if ids is not None else (),
    )


def _split_repeats(pair_key: np.ndarray, rows: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the rating kept for each (item, annotator) key (``first`` or ``last`` in file order), of
    every repeat (a rating after the first), and of the rating just before each repeat; all as index arrays."""
    order = np.lexsort((rows, pair_key))
    key = pair_key[order]
    again = np.r_[False, key[1:] == key[:-1]][: len(key)]
    is_last = np.r_[key[1:] != key[:-1], True][: len(key)]
    kept = np.sort(order[is_last] if policy == "last" else order[~again])
    return kept, order[again], order[np.flatnonzero(again) - 1]


def _restore_neutralised(values: list[str], project_labels: set[str]) -> dict[str, str]:
    """Labels that a CSV export neutralised (``'-ve``) map back to the project's label (``-ve``)."""
    return {
        value: restore_cell(value) for value in values
        if value not in project_labels and restore_cell(value) in project_labels
    }


def _replace(values: np.ndarray, mapping: dict[str, str]) -> np.ndarray:
    if not len(values) or not mapping:
        return values
    return pd.Series(values, dtype=object).replace(mapping).to_numpy(dtype=object)


# ---------------------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote. Row numbers and ids are the first few examples (``EXAMPLES``)."""

    project: str
    file: str
    rows_read: int
    items_added: int
    items_matched: int
    annotations_added: int
    annotators: tuple[str, ...]
    labels_added: tuple[str, ...]
    duplicate_texts_skipped: int
    duplicate_rows: tuple[int, ...]
    duplicate_text_ids: int
    duplicate_text_id_examples: tuple[str, ...]
    reference_labels_set: int  # items already in the project that had no reference label and got the file's
    repeated_ratings: int  # ratings after an annotator's first of the same item (each one a repeat pair)
    repeated_rating_rows: tuple[int, ...]
    conflicts: int  # items already in the project for which the file gives another label (not written)
    conflict_ids: tuple[str, ...]
    spec: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("annotators", "labels_added", "duplicate_rows", "duplicate_text_id_examples",
                    "repeated_rating_rows", "conflict_ids"):
            data[key] = list(data[key])
        return data

    @property
    def message(self) -> str:
        """The summary and, on a line of its own, the conflicts (if any)."""
        return "\n".join(part for part in (self.summary, self.conflict_line) if part)

    @property
    def conflict_line(self) -> str | None:
        """One line on the labels of known items that the file contradicts, or None."""
        if not self.conflicts:
            return None
        one = self.conflicts == 1
        shown = ", ".join(self.conflict_ids) + (", ..." if self.conflicts > len(self.conflict_ids) else "")
        return (f"{self.conflicts} known {'id has' if one else 'ids have'} another label in the file (conflicts, ids"
                f" {shown}): the project's labels were kept; fix the file, or relabel the"
                f" {'item' if one else 'items'} in the app")

    @property
    def summary(self) -> str:
        parts = [f"imported {self.items_added} items and {self.annotations_added} annotations"
                 f" from {self.rows_read} rows of {self.file!r} into {self.project!r}"]
        if self.items_matched:
            matched = f"{self.items_matched} {'id was' if self.items_matched == 1 else 'ids were'} already in the project"
            parts.append(matched + " (only new annotations were added to them"
                         + (f", and a reference label to {self.reference_labels_set} that had none)"
                            if self.reference_labels_set else ")"))
        if self.repeated_ratings:
            rows = ", ".join(str(r) for r in self.repeated_rating_rows)
            more = ", ..." if self.repeated_ratings > len(self.repeated_rating_rows) else ""
            kept = self.spec.get("repeated_ratings", "last")
            parts.append(f"{self.repeated_ratings} repeated rating{'' if self.repeated_ratings == 1 else 's'} (an"
                         f" annotator rating an item again, rows {rows}{more}): the {kept} of each was kept as the"
                         " annotation, every repeat is kept as a pair for intra-annotator consistency")
        if self.labels_added:
            parts.append(f"labels added: {', '.join(self.labels_added)}")
        if self.duplicate_texts_skipped:
            shown = ", ".join(str(r) for r in self.duplicate_rows)
            parts.append(f"{self.duplicate_texts_skipped} rows skipped as duplicate texts (rows {shown}, ...)")
        if self.duplicate_text_ids:
            shown = ", ".join(self.duplicate_text_id_examples)
            parts.append(f"{self.duplicate_text_ids} items share their text with another id (kept; ids {shown}, ...)")
        return "; ".join(parts)


def import_file(
    db: sqlite_utils.Database,
    project_id: int,
    source: str | os.PathLike[str] | bytes,
    spec: ImportSpec,
    *,
    add_missing_labels: bool = False,
    filename: str | None = None,
) -> ImportReport:
    """Read, validate and write a file into the project in one transaction; nothing is written on an error.

    A Hugging Face dataset folder (written by ``export`` in format hf) goes to :func:`import_folder`."""
    if not isinstance(source, bytes | bytearray) and spec.format == "auto" and Path(source).is_dir():
        from core.data import hf

        if hf.is_dataset_folder(source):
            return import_folder(db, project_id, source, spec, add_missing_labels=add_missing_labels)
    name = filename or (Path(source).name if not isinstance(source, bytes | bytearray) else "upload")
    frame = read_table(source, spec, name=name)
    return import_frame(db, project_id, frame, spec, add_missing_labels=add_missing_labels, filename=name)


def import_folder(
    db: sqlite_utils.Database,
    project_id: int,
    folder: str | os.PathLike[str],
    spec: ImportSpec,
    *,
    add_missing_labels: bool = False,
) -> ImportReport:
    """Import a Hugging Face dataset folder (:mod:`core.data.hf`): items, splits, reference labels, raw labels and
    imported agreement; its columns are fixed, so ``spec``'s column settings are replaced."""
    from core.data import hf

    frame = hf.read_folder(folder)
    return import_frame(db, project_id, frame, hf.import_spec(spec), add_missing_labels=add_missing_labels,
                        filename=Path(folder).name)


def import_frame(
    db: sqlite_utils.Database,
    project_id: int,
    frame: pd.DataFrame,
    spec: ImportSpec,
    *,
    add_missing_labels: bool = False,
    filename: str = "",
) -> ImportReport:
    """Validate and write an already read frame (see :func:`read_table`) in one transaction."""
    with transaction(db):
        project = projects.get_project(db, project_id)
        existing = items_db.items_frame(db, project_id, include_rejected=True)[
            ["id", "external_id", "text", "text_hash", "reference_label"]]
        plan = plan_import(frame, spec, project, existing, add_missing_labels=add_missing_labels,
                           existing_annotations=lambda: items_db.annotations_frame(
                               db, project_id, include_excluded=True))
        if plan.labels_to_add:
            projects.add_labels(db, project_id, list(plan.labels_to_add))
        new_ids = np.asarray(
            items_db.insert_items(db, project_id, _item_records(plan.items, spec.source)), dtype=np.int64
        )
        if plan.reference_labels:
            items_db.set_reference_labels(db, plan.reference_labels)
        annotations = plan.annotations
        if len(annotations):
            items_db.insert_annotation_columns(
                db, _item_ids(annotations, new_ids), annotations["annotator"].tolist(), annotations["label"].tolist()
            )
        pairs = plan.repeat_pairs
        if len(pairs):
            items_db.insert_repeat_pairs(db, _item_ids(pairs, new_ids), pairs["annotator"].tolist(),
                                         pairs["first_label"].tolist(), pairs["second_label"].tolist())
    return ImportReport(
        project=project.name,
        file=filename,
        rows_read=plan.rows_read,
        items_added=len(plan.items),
        items_matched=plan.items_matched,
        annotations_added=len(plan.annotations),
        annotators=plan.annotators,
        labels_added=plan.labels_to_add,
        duplicate_texts_skipped=plan.duplicate_texts_skipped,
        duplicate_rows=plan.duplicate_rows,
        duplicate_text_ids=plan.duplicate_text_ids,
        duplicate_text_id_examples=plan.duplicate_text_id_examples,
        reference_labels_set=len(plan.reference_labels),
        repeated_ratings=plan.repeated_ratings,
        repeated_rating_rows=plan.repeated_rating_rows,
        conflicts=plan.conflicts,
        conflict_ids=plan.conflict_ids,
        spec=spec.to_dict(),
    )


def _item_ids(rows: pd.DataFrame, new_ids: np.ndarray) -> list[int]:
    """The database item id of each planned row: a new item's inserted id, else the matched existing item's."""
    new_item = rows["new_item"].to_numpy()
    inserted = new_ids[np.maximum(new_item, 0)] if len(new_ids) else 0
    return np.where(new_item >= 0, inserted, rows["existing_item_id"].to_numpy()).tolist()


def _item_records(items: pd.DataFrame, source: str) -> list[dict[str, Any]]:
    agreement = [None if np.isnan(v) else float(v) for v in items["imported_agreement"].to_numpy(dtype=float)]
    return [
        {"external_id": external_id, "text": text, "text_hash": hashed, "reference_label": label, "split": split,
         "imported_agreement": agree, "source": source}
        for external_id, text, hashed, label, split, agree in zip(
            items["external_id"].tolist(), items["text"].tolist(), items["text_hash"].tolist(),
            items["reference_label"].tolist(), items["split"].tolist(), agreement, strict=True,
        )
    ]
