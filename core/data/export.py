"""The project's labelled data as tables for people and scripts: an aggregated view (a row per item) and a
raw view (a row per annotation), written as CSV, JSONL or Parquet.

Both views are built from :func:`core.items.item_table`, the one place that decides majority, agreement and
ties. ``item_id`` is the imported id when the item has one, else its internal id (as text, so the column has
one type). CSV goes through the one CSV writer (:mod:`core.data.tables`), which neutralises cells that a
spreadsheet would run as a formula; JSONL and Parquet keep the values exactly (use them for lossless round
trips). Only these columns are exported: nothing secret is kept in the tables they come from.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlite_utils

from core import projects
from core.data.items import item_table
from core.data.tables import csv_bytes
from core.errors import SynthloopError
from core.vocab import EXPORT_FORMATS, EXPORT_VIEWS, ExportFormat, ExportView
from db import items as items_db

MIME_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet"}

AGGREGATED_COLUMNS = (
    "item_id", "text", "source", "split", "reference_label", "adjudicated_label", "majority_label", "n_labels",
    "instance_agreement", "tie", "votes", "agreement_source", "generation_job_id", "generation_mode",
    "generation_model", "generation_call_id",
)
RAW_COLUMNS = ("item_id", "text", "annotator", "label", "created_at", "updated_at", "seconds", "unsure", "comment")


def public_item_ids(items: pd.DataFrame) -> pd.Series:
    """``external_id`` where present, else the internal ``id``, as text."""
    return items["external_id"].astype(object).where(items["external_id"].notna(), items["id"]).astype(str)


def _provenance(items: pd.DataFrame) -> pd.DataFrame:
    models = [json.loads(value).get("model") if isinstance(value, str) and value not in ("", "{}") else None
              for value in items["meta"]]
    return pd.DataFrame(
        {
            "generation_job_id": [int(j) if pd.notna(j) else None for j in items["generation_job_id"]],
            "generation_mode": items["generation_mode"].astype(object).where(items["generation_mode"].notna(), None),
            "generation_model": models,
        },
        index=items.index,
        dtype=object,
    )


def item_view(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    source: str | None = None,
    split: str | None = None,
    label: str | None = None,
    search: str = "",
) -> pd.DataFrame:
    """The aggregated view: one row per item (``AGGREGATED_COLUMNS``), optionally filtered.

    ``label`` keeps items whose reference, adjudicated or majority label is that label; ``search`` keeps
    items whose text contains it (case-insensitive, plain text, not a pattern).
    """
    table = item_table(db, project_id, source=source, split=split)
    if label:
        table = table[
            (table["reference_label"] == label) | (table["adjudicated_label"] == label)
            | (table["majority_label"] == label)
        ]
    if search.strip():
        table = table[table["text"].str.contains(search.strip(), case=False, regex=False)]
    view = pd.DataFrame(
        {
            "item_id": public_item_ids(table),
            "text": table["text"],
            "source": table["source"],
            "split": table["split"],
            "reference_label": table["reference_label"],
            "adjudicated_label": table["adjudicated_label"],
            "majority_label": table["majority_label"],
            "n_labels": table["n_labels"].astype(int),
            "instance_agreement": table["instance_agreement"].astype(float),
            "tie": table["tie"].astype(bool),
            "votes": table["votes"],
            "agreement_source": table["agreement_source"],
        }
    )
    view = pd.concat([view, _provenance(table)], axis=1)
    view["generation_call_id"] = table["generation_call_id"].astype("Int64")
    return view.reset_index(drop=True)[list(AGGREGATED_COLUMNS)]


@dataclass(frozen=True)
class ItemBrowse:
    """A filtered aggregated view with counts: how many items it shows, of how many, per source/split."""

    frame: pd.DataFrame
    shown: int
    total: int
    by_source_split: dict[str, int]


def browse_items(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    source: str | None = None,
    split: str | None = None,
    label: str | None = None,
    search: str = "",
) -> ItemBrowse:
    """What the Data page shows: :func:`item_view` filtered, with the project's counts."""
    frame = item_view(db, project_id, source=source, split=split, label=label, search=search)
    counts = items_db.count_items(db, project_id)
    return ItemBrowse(
        frame=frame,
        shown=len(frame),
        total=sum(counts.values()),
        by_source_split={f"{src}/{spl}": n for (src, spl), n in sorted(counts.items())},
    )


def raw_view(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """The raw view: one row per annotation (``RAW_COLUMNS``), in item then annotation order.

    Like the aggregated view it covers accepted items only (rejected synthetic items are not data)."""
    items = items_db.items_frame(db, project_id)
    annotations = items_db.annotations_frame(db, project_id, include_excluded=True)  # raw: every label kept
    lookup = pd.DataFrame({"item_id": items["id"], "public_id": public_item_ids(items), "text": items["text"]})
    table = annotations.merge(lookup, on="item_id", how="inner", sort=False)
    table["item_id"] = table["public_id"]
    table["unsure"] = table["unsure"].astype(bool)
    table["seconds"] = table["seconds"].astype(float)
    table["comment"] = table["comment"].fillna("")
    return table.reset_index(drop=True)[list(RAW_COLUMNS)]


def to_bytes(frame: pd.DataFrame, fmt: ExportFormat) -> bytes:
    """``frame`` as a file's bytes in the format (CSV through the one CSV writer, :mod:`core.data.tables`)."""
    if fmt == "csv":
        return csv_bytes(frame)
    if fmt == "jsonl":
        if frame.empty:
            return b""
        return frame.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise SynthloopError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")


@dataclass(frozen=True)
class Export:
    """An export ready to download or write: the table, its bytes and a suggested file name."""

    frame: pd.DataFrame
    data: bytes
    view: ExportView
    format: ExportFormat
    filename: str

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def rows(self) -> int:
        return len(self.frame)


def export_data(
    db: sqlite_utils.Database, project_id: int, *, view: ExportView = "aggregated", fmt: ExportFormat = "csv"
) -> Export:
    """Build the view and encode it: what the Export page offers for download."""
    if view not in EXPORT_VIEWS:
        raise SynthloopError(f"export view {view!r} is not one of {', '.join(EXPORT_VIEWS)}")
    if fmt not in EXPORT_FORMATS:
        raise SynthloopError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    project = projects.get_project(db, project_id)
    frame = item_view(db, project_id) if view == "aggregated" else raw_view(db, project_id)
    slug = file_slug(project)
    suffix = "" if view == "aggregated" else "-raw"
    return Export(frame=frame, data=to_bytes(frame, fmt), view=view, format=fmt, filename=f"{slug}{suffix}.{fmt}")


def file_slug(project: projects.Project) -> str:
    """The project's name made safe for a file name (download names start with it)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", project.name).strip("-") or f"project-{project.id}"


def format_for_path(path: str | os.PathLike[str], fmt: str | None = None) -> ExportFormat:
    """The given format, else the one the file extension names, else CSV."""
    if fmt:
        if fmt not in EXPORT_FORMATS:
            raise SynthloopError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
        return fmt  # type: ignore[return-value]
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "parquet": "parquet", "pq": "parquet"}.get(
        suffix, "csv"
    )  # type: ignore[return-value]


def export_file(
    db: sqlite_utils.Database,
    project_id: int,
    path: str | os.PathLike[str],
    *,
    view: ExportView = "aggregated",
    fmt: ExportFormat | None = None,
) -> dict[str, Any]:
    """Write the export to ``path`` (the CLI); returns a summary (rows, path, format, view, bytes)."""
    resolved = format_for_path(path, fmt)
    export = export_data(db, project_id, view=view, fmt=resolved)
    target = Path(path)
    if target.is_dir():
        raise SynthloopError(f"{str(target)!r} is a folder: give a file name, e.g. {target / export.filename}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(export.data)
    except OSError as exc:
        raise SynthloopError(f"cannot write {str(target)!r} ({exc.strerror}): choose a writable path") from None
    return {"rows": export.rows, "path": str(target), "format": resolved, "view": view, "bytes": len(export.data)}
