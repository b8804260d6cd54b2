"""Items and their annotations: bulk inserts for imports and generation, frames for analysis."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import sqlite_utils

from db.connection import now, where

ITEM_INSERT_COLUMNS = (
    "project_id", "external_id", "text", "source", "split", "reference_label", "imported_agreement",
    "generation_call_id", "generation_mode", "generation_job_id", "review_status", "in_pool", "text_hash", "meta",
    "created_at",
)


def insert_items(db: sqlite_utils.Database, project_id: int, items: Sequence[dict[str, Any]]) -> list[int]:
    """Insert items (dicts with ``text``, ``text_hash``, ``source``, ``split`` and optional columns).

    Returns the new ids in input order. Runs inside the caller's transaction.
    """
    stamp = now()
    defaults = {"external_id": None, "reference_label": None, "imported_agreement": None,
                "generation_call_id": None, "generation_mode": None, "generation_job_id": None,
                "review_status": "accepted", "in_pool": 0, "meta": "{}"}
    first = db.execute("SELECT COALESCE(MAX(id), 0) FROM item").fetchone()[0] + 1
    rows = [
        tuple({**defaults, **item, "project_id": project_id, "created_at": stamp}[c] for c in ITEM_INSERT_COLUMNS)
        for item in items
    ]
    # Explicit ids let one executemany insert everything and still tell the caller which id each row got.
    db.conn.executemany(
        f"INSERT INTO item (id, {', '.join(ITEM_INSERT_COLUMNS)})"
        f" VALUES (?, {', '.join('?' for _ in ITEM_INSERT_COLUMNS)})",
        [(first + offset, *row) for offset, row in enumerate(rows)],
    )
    return list(range(first, first + len(rows)))


def existing_hashes(db: sqlite_utils.Database, project_id: int) -> dict[str, int]:
    """``text_hash → item id`` for every item of the project."""
    return dict(db.execute("SELECT text_hash, id FROM item WHERE project_id = ?", [project_id]).fetchall())


def existing_external_ids(db: sqlite_utils.Database, project_id: int) -> dict[str, int]:
    return dict(
        db.execute(
            "SELECT external_id, id FROM item WHERE project_id = ? AND external_id IS NOT NULL", [project_id]
        ).fetchall()
    )


def get_item(db: sqlite_utils.Database, item_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM item WHERE id = ?", [item_id]))
    return rows[0] if rows else None


ID_CHUNK = 500  # ids per statement: SQLite limits the number of ``?`` in one


def get_items(db: sqlite_utils.Database, item_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The rows of the given items (each once, in id order within a chunk; unknown ids are left out)."""
    ids = list(dict.fromkeys(int(i) for i in item_ids))
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start:start + ID_CHUNK]
        rows.extend(db.query(f"SELECT * FROM item WHERE id IN ({', '.join('?' for _ in chunk)})", chunk))
    return rows


def items_frame(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    source: str | None = None,
    split: str | None = None,
    include_rejected: bool = False,
) -> pd.DataFrame:
    """All items of a project as a DataFrame (one row per item, every column of ``item``)."""
    conditions = ["project_id = ?"] + ([] if include_rejected else ["review_status = 'accepted'"])
    body, params = where(conditions, [project_id], {"source": source, "split": split})
    return pd.read_sql_query(f"SELECT * FROM item WHERE {body} ORDER BY id", db.conn, params=params)


def count_items(db: sqlite_utils.Database, project_id: int) -> dict[tuple[str, str], int]:
    """``(source, split) → count`` of accepted items."""
    rows = db.execute(
        "SELECT source, split, COUNT(*) FROM item WHERE project_id = ? AND review_status = 'accepted'"
        " GROUP BY source, split",
        [project_id],
    ).fetchall()
    return {(source, split): n for source, split, n in rows}


def insert_annotations(db: sqlite_utils.Database, annotations: Sequence[dict[str, Any]]) -> None:
    """Insert or replace annotations (``item_id``, ``annotator``, ``label`` and optional ``seconds``,
    ``unsure``, ``comment``, ``created_at``); one (item, annotator) pair keeps its latest label."""
    stamp = now()
    db.conn.executemany(
        "INSERT INTO annotation (item_id, annotator, label, seconds, unsure, comment, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (item_id, annotator) DO UPDATE SET label = excluded.label, seconds = excluded.seconds,"
        " unsure = excluded.unsure, comment = excluded.comment, updated_at = excluded.updated_at",
        [
            (a["item_id"], a["annotator"], a["label"], a.get("seconds"), int(bool(a.get("unsure", False))),
             a.get("comment") or "", a.get("created_at") or stamp, stamp)
            for a in annotations
        ],
    )


def insert_annotation_columns(
    db: sqlite_utils.Database, item_ids: Sequence[int], annotators: Sequence[str], labels: Sequence[str]
) -> None:
    """Bulk form of :func:`insert_annotations` for imports: three equal-length columns, no per-row dicts."""
    stamp = now()
    db.conn.executemany(
        "INSERT INTO annotation (item_id, annotator, label, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (item_id, annotator) DO UPDATE SET label = excluded.label, updated_at = excluded.updated_at",
        zip(item_ids, annotators, labels, itertools.repeat(stamp), itertools.repeat(stamp), strict=False),
    )


def annotations_frame(db: sqlite_utils.Database, project_id: int, *, include_excluded: bool = False) -> pd.DataFrame:
    """The data labels of the project's items: one row per (item, annotator). Annotators the project excluded
    are left out unless ``include_excluded`` (the raw export, imports): see :func:`excluded_annotators`."""
    return _annotations(db, project_id, "a.item_id, a.annotator, a.label, a.seconds, a.unsure, a.comment,"
                        " a.created_at, a.updated_at", include_excluded)


def count_annotations(db: sqlite_utils.Database, project_id: int) -> int:
    return db.execute(
        "SELECT COUNT(*) FROM annotation a JOIN item i ON i.id = a.item_id WHERE i.project_id = ?", [project_id]
    ).fetchone()[0]


def set_splits(db: sqlite_utils.Database, splits: dict[int, str]) -> None:
    """Set ``item.split`` for the given ``item id → split``."""
    db.conn.executemany("UPDATE item SET split = ? WHERE id = ?", [(split, item_id) for item_id, split in splits.items()])


def set_reference_labels(db: sqlite_utils.Database, labels: dict[int, str]) -> None:
    """Set ``item.reference_label`` for the given ``item id → label``."""
    db.conn.executemany("UPDATE item SET reference_label = ? WHERE id = ?", [(v, k) for k, v in labels.items()])


def insert_repeat_pairs(
    db: sqlite_utils.Database, item_ids: Sequence[int], annotators: Sequence[str], first_labels: Sequence[str],
    second_labels: Sequence[str],
) -> None:
    """Store repeat pairs (two consecutive ratings of an item by one annotator); four equal-length columns."""
    db.conn.executemany(
        "INSERT INTO repeat_pair (item_id, annotator, first_label, second_label, created_at) VALUES (?, ?, ?, ?, ?)",
        zip(item_ids, annotators, first_labels, second_labels, itertools.repeat(now()), strict=False),
    )


def repeat_pairs_frame(db: sqlite_utils.Database, project_id: int, *, include_excluded: bool = False) -> pd.DataFrame:
    """The repeat pairs of the project's accepted items: ``item_id, annotator, first_label, second_label``
    (excluded annotators left out unless ``include_excluded``)."""
    skip, names = _without_excluded(db, project_id, include_excluded, column="r.annotator")
    return pd.read_sql_query(
        "SELECT r.item_id, r.annotator, r.first_label, r.second_label FROM repeat_pair r JOIN item i"
        f" ON i.id = r.item_id WHERE i.project_id = ? AND i.review_status = 'accepted'{skip} ORDER BY r.id",
        db.conn,
        params=[project_id, *names],
    )


def annotation_labels_frame(db: sqlite_utils.Database, project_id: int, *,
                            include_excluded: bool = False) -> pd.DataFrame:
    """The slim form of :func:`annotations_frame` for agreement: ``item_id``, ``annotator``, ``label`` only (half
    the read time of every column at 250,000 annotations); excluded annotators left out unless ``include_excluded``."""
    return _annotations(db, project_id, "a.item_id, a.annotator, a.label", include_excluded)


def _annotations(db: sqlite_utils.Database, project_id: int, columns: str, include_excluded: bool) -> pd.DataFrame:
    skip, names = _without_excluded(db, project_id, include_excluded)
    return pd.read_sql_query(
        f"SELECT {columns} FROM annotation a JOIN item i ON i.id = a.item_id"
        f" WHERE i.project_id = ?{skip} ORDER BY a.item_id, a.id",
        db.conn,
        params=[project_id, *names],
    )


# ------------------------------------------------------------------------------------ excluded annotators
# The one rule of which labels are data: every reader above leaves out the annotators a researcher excluded from
# the project (their labels stay in ``annotation``, and in the raw export, which asks for them).


def _without_excluded(db: sqlite_utils.Database, project_id: int, include_excluded: bool, *,
                      column: str = "a.annotator") -> tuple[str, list[str]]:
    """A WHERE fragment (with its parameters) that drops the project's excluded annotators; empty without any
    (the common case costs one indexed read, and the query stays as it was)."""
    names = [] if include_excluded else excluded_annotators(db, project_id)
    if not names:
        return "", []
    return f" AND {column} NOT IN ({', '.join('?' for _ in names)})", names


def excluded_annotators(db: sqlite_utils.Database, project_id: int) -> list[str]:
    return [row[0] for row in db.execute(
        "SELECT annotator FROM excluded_annotator WHERE project_id = ? ORDER BY annotator", [project_id])]


def exclusions_frame(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """``annotator, reason, excluded_at`` of the project's excluded annotators."""
    return pd.read_sql_query(
        "SELECT annotator, reason, excluded_at FROM excluded_annotator WHERE project_id = ? ORDER BY annotator",
        db.conn, params=[project_id])


def set_excluded(db: sqlite_utils.Database, project_id: int, annotator: str, *, excluded: bool,
                 reason: str = "") -> bool:
    """Exclude the annotator from the project's data (or take them back); True when that changed anything."""
    if excluded:
        cursor = db.execute(
            "INSERT INTO excluded_annotator (project_id, annotator, reason, excluded_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (project_id, annotator) DO NOTHING",
            [project_id, annotator, reason, now()],
        )
    else:
        cursor = db.execute("DELETE FROM excluded_annotator WHERE project_id = ? AND annotator = ?",
                            [project_id, annotator])
    return cursor.rowcount == 1


def annotators_of(db: sqlite_utils.Database, project_id: int) -> list[str]:
    """Everyone who labelled an item of the project (excluded annotators included)."""
    return [row[0] for row in db.execute(
        "SELECT DISTINCT a.annotator FROM annotation a JOIN item i ON i.id = a.item_id WHERE i.project_id = ?"
        " ORDER BY a.annotator", [project_id])]
