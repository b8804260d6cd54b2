"""SQL of annotation work: the pool, the next-item query, reservations, skips, labels, adjudication.

The next-item query walks one index of ``item`` in the strategy's order and stops at the first item that I have
not labelled, did not skip recently, and that still has a free slot once other annotators' live reservations
are counted. ``item.annotation_count`` / ``annotation_agreement`` are kept by triggers (migration
``0200_annotation_assignment``), so no annotation is counted at query time. Callers run ``claim`` inside a
``BEGIN IMMEDIATE`` transaction so that finding a free slot and reserving it happen under the write lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
import sqlite_utils

from db.connection import now, where

Order = Literal["closest", "least", "shuffle", "disagreement"]

# A fixed permutation of item ids (Knuth's multiplicative hash mod 2**32): the "random" strategy seeks to a
# seeded point on it, served by the expression index item_pool_shuffle. Must match that index exactly.
SHUFFLE_KEY = "((i.id * 2654435761) % 4294967296)"

_ORDER_BY: dict[str, str] = {
    "closest": "i.annotation_count DESC, i.id DESC",
    "least": "i.annotation_count ASC, i.id ASC",
    "shuffle": f"{SHUFFLE_KEY} ASC",
    "disagreement": "i.annotation_agreement ASC, i.id ASC",
}


# ------------------------------------------------------------------------------------------------ pool


def set_pool(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    in_pool: bool,
    source: str | None = None,
    split: str | None = None,
    generation_job_id: int | None = None,
    item_ids: Sequence[int] | None = None,
) -> int:
    """Put matching accepted items into (or take them out of) the annotation pool; returns rows changed.

    Items entering the pool get their label statistics recounted (the triggers keep only pool items current).
    """
    conditions = ["project_id = ?", "review_status = 'accepted'", "in_pool <> ?"]
    params: list[Any] = [project_id, int(in_pool)]
    if item_ids is not None:
        ids = list(item_ids)
        if not ids:
            return 0
        conditions.append(f"id IN ({', '.join('?' for _ in ids)})")
        params.extend(ids)
    body, params = where(conditions, params, {"source": source, "split": split,
                                              "generation_job_id": generation_job_id})
    # Items entering the pool get their label statistics recounted by the trigger item_pool_recount.
    cursor = db.execute(f"UPDATE item SET in_pool = ? WHERE {body}", [int(in_pool), *params])
    return cursor.rowcount


def pool_summary(db: sqlite_utils.Database, project_id: int, *, target: int) -> dict[str, Any]:
    """Pool size, items with ``target`` labels or more, labels given, and the pool's make-up."""
    row = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(annotation_count >= ?), 0), COALESCE(SUM(MIN(annotation_count, ?)), 0),"
        " COALESCE(SUM(annotation_count), 0) FROM item"
        " WHERE project_id = ? AND in_pool = 1 AND review_status = 'accepted'",
        [target, target, project_id],
    ).fetchone()
    groups = db.execute(
        "SELECT source, split, COUNT(*) FROM item WHERE project_id = ? AND in_pool = 1"
        " AND review_status = 'accepted' GROUP BY source, split ORDER BY source, split",
        [project_id],
    ).fetchall()
    return {
        "n_items": row[0], "n_complete": row[1], "n_slots_filled": row[2], "n_annotations": row[3],
        "groups": [{"source": s, "split": p, "n_items": n} for s, p, n in groups],
    }


def generation_jobs_with_items(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """Generation job ids that produced items in this project, with item counts (for the pool chooser)."""
    return [
        {"generation_job_id": job_id, "n_items": n, "n_in_pool": n_pool}
        for job_id, n, n_pool in db.execute(
            "SELECT generation_job_id AS job, COUNT(*), SUM(in_pool) FROM item"
            " WHERE project_id = ? AND job IS NOT NULL GROUP BY job ORDER BY job",
            [project_id],
        ).fetchall()
    ]


# ------------------------------------------------------------------------------------- the next item


def _available(target_param: str) -> str:
    """WHERE clauses shared by every strategy: in the pool, accepted, not mine, not skipped, a slot free."""
    return (
        "i.project_id = :project_id AND i.in_pool = 1 AND i.review_status = 'accepted'"
        " AND NOT EXISTS (SELECT 1 FROM annotation a WHERE a.item_id = i.id AND a.annotator = :annotator)"
        " AND (:skip_cutoff IS NULL OR NOT EXISTS (SELECT 1 FROM skip s WHERE s.item_id = i.id"
        "      AND s.annotator = :annotator AND s.skipped_at > :skip_cutoff))"
        " AND i.annotation_count + (SELECT COUNT(*) FROM reservation r WHERE r.item_id = i.id"
        f"      AND r.annotator <> :annotator AND r.expires_at > :now) < {target_param}"
    )


def find_candidate(
    db: sqlite_utils.Database,
    *,
    project_id: int,
    annotator: str,
    order: Order,
    target: int,
    now_at: str,
    skip_cutoff: str | None,
    max_target: int | None = None,
    threshold: float | None = None,
    shuffle_start: int = 0,
) -> int | None:
    """The first item available to ``annotator`` in ``order``, or None.

    ``target`` is the labels an item needs (the project's overlap). With ``order="disagreement"`` only items
    that already have ``target`` labels but agreement below ``threshold`` qualify, up to ``max_target`` labels.
    ``skip_cutoff``: items I skipped after this time are left out (None: skipped items are eligible again).
    ``shuffle_start``: where on the shuffled order to start (wraps around).
    """
    params: dict[str, Any] = {"project_id": project_id, "annotator": annotator, "now": now_at,
                              "skip_cutoff": skip_cutoff, "target": target}
    if order == "disagreement":
        # One index seek per label count from k to the maximum (index item_pool_progress: count, then
        # agreement), keeping the lowest agreement found: the same item as one scan by agreement, without
        # walking past the many low-agreement items that have not reached k labels yet.
        best: tuple[float, int] | None = None
        where = (_available(":max_target") + " AND i.annotation_count = :count"
                 " AND i.annotation_agreement < :threshold")
        for count in range(target, max_target or target):
            row = db.execute(
                f"SELECT i.annotation_agreement, i.id FROM item i WHERE {where}"
                " ORDER BY i.annotation_agreement ASC, i.id ASC LIMIT 1",
                {**params, "max_target": max_target, "threshold": threshold, "count": count},
            ).fetchone()
            if row is not None and (best is None or tuple(row) < best):
                best = (row[0], row[1])
        return None if best is None else int(best[1])
    else:
        where = _available(":target") + " AND i.annotation_count < :target"
    if order == "shuffle":
        for start in (shuffle_start, 0):
            params["start"] = start
            row = db.execute(
                f"SELECT i.id FROM item i WHERE {where} AND {SHUFFLE_KEY} >= :start"
                f" ORDER BY {_ORDER_BY['shuffle']} LIMIT 1",
                params,
            ).fetchone()
            if row:
                return int(row[0])
        return None
    row = db.execute(f"SELECT i.id FROM item i WHERE {where} ORDER BY {_ORDER_BY[order]} LIMIT 1", params).fetchone()
    return int(row[0]) if row else None


def is_available(
    db: sqlite_utils.Database, item_id: int, *, project_id: int, annotator: str, target: int, now_at: str
) -> bool:
    """Whether ``item_id`` still wants a label from ``annotator`` (pool, not mine, a slot free up to ``target``)."""
    row = db.execute(
        f"SELECT 1 FROM item i WHERE i.id = :item_id AND {_available(':target')}",
        {"item_id": item_id, "project_id": project_id, "annotator": annotator, "now": now_at,
         "skip_cutoff": None, "target": target},
    ).fetchone()
    return row is not None


def item_state(db: sqlite_utils.Database, item_id: int) -> dict[str, Any] | None:
    """An item's id, project, text, pool flag and label statistics (no reference label or source)."""
    rows = list(
        db.query(
            "SELECT id, project_id, text, in_pool, review_status, annotation_count, annotation_agreement"
            " FROM item WHERE id = ?",
            [item_id],
        )
    )
    return rows[0] if rows else None


def progress_counts(
    db: sqlite_utils.Database,
    *,
    project_id: int,
    annotator: str,
    target: int,
    max_target: int | None = None,
    threshold: float | None = None,
) -> tuple[int, int]:
    """``(done, remaining)``: my labels on pool items, and pool items that still need labels and that I have
    not labelled (reservations ignored).

    Two reads of a few counter rows (``pool_fill``, ``annotator_fill``: migration 0581), whatever the number of
    items and annotations. An item still needs labels while it has fewer than ``target``; with dynamic overlap
    (``max_target`` and ``threshold``) also while it has fewer than ``max_target`` and its agreement, the same
    ``top / count`` as ``item.annotation_agreement``, is under ``threshold``.
    """
    need = "annotation_count < :target"
    params: dict[str, Any] = {"project_id": project_id, "annotator": annotator, "target": target}
    if max_target is not None and threshold is not None and max_target > target:
        need = (f"({need} OR (annotation_count < :max_target AND annotation_count >= :target"
                " AND annotation_count >= 2 AND CAST(annotation_top AS REAL) / annotation_count < :threshold))")
        params.update(max_target=max_target, threshold=threshold)
    open_items = db.execute(f"SELECT COALESCE(SUM(items), 0) FROM pool_fill WHERE project_id = :project_id"
                            f" AND {need}", params).fetchone()[0]
    done, mine_open = db.execute(
        f"SELECT COALESCE(SUM(labels), 0), COALESCE(SUM(CASE WHEN {need} THEN labels END), 0) FROM annotator_fill"
        " WHERE project_id = :project_id AND labelled_by = :annotator",
        params,
    ).fetchone()
    return int(done), int(open_items - mine_open)


# ------------------------------------------------------------------------------------ reservations


def purge_expired_reservations(db: sqlite_utils.Database, now_at: str) -> int:
    return db.execute("DELETE FROM reservation WHERE expires_at <= ?", [now_at]).rowcount


def current_reservation(db: sqlite_utils.Database, *, project_id: int, annotator: str, now_at: str) -> int | None:
    """The item ``annotator`` holds a live reservation on in this project (the newest), if any."""
    row = db.execute(
        "SELECT r.item_id FROM reservation r JOIN item i ON i.id = r.item_id"
        " WHERE r.annotator = ? AND r.expires_at > ? AND i.project_id = ? ORDER BY r.expires_at DESC LIMIT 1",
        [annotator, now_at, project_id],
    ).fetchone()
    return int(row[0]) if row else None


def reserve(db: sqlite_utils.Database, *, item_id: int, annotator: str, expires_at: str) -> None:
    db.execute(
        "INSERT INTO reservation (item_id, annotator, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (item_id, annotator) DO UPDATE SET expires_at = excluded.expires_at",
        [item_id, annotator, expires_at],
    )


def release(db: sqlite_utils.Database, *, item_id: int, annotator: str) -> None:
    db.execute("DELETE FROM reservation WHERE item_id = ? AND annotator = ?", [item_id, annotator])


def release_all(db: sqlite_utils.Database, *, project_id: int, annotator: str) -> None:
    db.execute(
        "DELETE FROM reservation WHERE annotator = ? AND item_id IN (SELECT id FROM item WHERE project_id = ?)",
        [annotator, project_id],
    )


def count_live_reservations(db: sqlite_utils.Database, item_id: int, now_at: str) -> int:
    return db.execute(
        "SELECT COUNT(*) FROM reservation WHERE item_id = ? AND expires_at > ?", [item_id, now_at]
    ).fetchone()[0]


# -------------------------------------------------------------------------------------------- skips


def add_skip(db: sqlite_utils.Database, *, item_id: int, annotator: str, at: str) -> None:
    db.execute(
        "INSERT INTO skip (item_id, annotator, skipped_at) VALUES (?, ?, ?)"
        " ON CONFLICT (item_id, annotator) DO UPDATE SET skipped_at = excluded.skipped_at",
        [item_id, annotator, at],
    )


def clear_skip(db: sqlite_utils.Database, *, item_id: int, annotator: str) -> None:
    db.execute("DELETE FROM skip WHERE item_id = ? AND annotator = ?", [item_id, annotator])


def count_skipped(db: sqlite_utils.Database, *, project_id: int, annotator: str, since: str) -> int:
    """Items ``annotator`` skipped after ``since`` that are still unlabelled by them.

    CROSS JOIN fixes the join order: my recent skips (index skip_annotator), each item looked up by id; left to
    itself the planner walked every item of the project."""
    return db.execute(
        "SELECT COUNT(*) FROM skip s CROSS JOIN item i ON i.id = s.item_id WHERE s.annotator = ?"
        " AND s.skipped_at > ? AND i.project_id = ? AND NOT EXISTS (SELECT 1 FROM annotation a"
        " WHERE a.item_id = s.item_id AND a.annotator = s.annotator)",
        [annotator, since, project_id],
    ).fetchone()[0]


# ------------------------------------------------------------------------------------------- labels


def save_label(
    db: sqlite_utils.Database,
    *,
    item_id: int,
    annotator: str,
    label: str,
    seconds: float | None,
    unsure: bool,
    comment: str,
) -> bool:
    """Store ``annotator``'s label on the item (a second call edits it). Returns True when it is new."""
    stamp = now()
    existed = db.execute(
        "SELECT 1 FROM annotation WHERE item_id = ? AND annotator = ?", [item_id, annotator]
    ).fetchone()
    db.execute(
        "INSERT INTO annotation (item_id, annotator, label, seconds, unsure, comment, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (item_id, annotator) DO UPDATE SET label = excluded.label,"
        " seconds = COALESCE(annotation.seconds, 0) + COALESCE(excluded.seconds, 0),"
        " unsure = excluded.unsure, comment = excluded.comment, updated_at = excluded.updated_at",
        [item_id, annotator, label, seconds, int(bool(unsure)), comment, stamp, stamp],
    )
    return existed is None


def my_annotation(db: sqlite_utils.Database, *, item_id: int, annotator: str) -> dict[str, Any] | None:
    rows = list(
        db.query(
            "SELECT item_id, label, unsure, comment, created_at, updated_at FROM annotation"
            " WHERE item_id = ? AND annotator = ?",
            [item_id, annotator],
        )
    )
    return rows[0] if rows else None


def my_history(
    db: sqlite_utils.Database, *, project_id: int, annotator: str, offset: int, limit: int = 1
) -> list[dict[str, Any]]:
    """``annotator``'s labels in this project, newest first (by when first given, so edits keep their place)."""
    return list(
        db.query(
            "SELECT a.item_id, a.label, a.unsure, a.comment, a.created_at, a.updated_at, i.text"
            " FROM annotation a JOIN item i ON i.id = a.item_id"
            " WHERE a.annotator = ? AND i.project_id = ? ORDER BY a.id DESC LIMIT ? OFFSET ?",
            [annotator, project_id, limit, offset],
        )
    )


def next_draw(db: sqlite_utils.Database, *, project_id: int, annotator: str) -> int:
    """Count one more draw for ``annotator`` in this project and return it (1, 2, …): the random strategy's
    seed for their n-th item, so that their order is reproducible without counting their labels."""
    return db.execute(
        "INSERT INTO assignment_draw (project_id, annotator, draws) VALUES (?, ?, 1)"
        " ON CONFLICT (project_id, annotator) DO UPDATE SET draws = draws + 1 RETURNING draws",
        [project_id, annotator],
    ).fetchone()[0]


def label_counts(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """Per pool item: ``item_id``, ``annotation_count`` (for checks and the pool page)."""
    return pd.read_sql_query(
        "SELECT id AS item_id, annotation_count FROM item WHERE project_id = ? AND in_pool = 1 ORDER BY id",
        db.conn, params=[project_id],
    )


# ------------------------------------------------------------------------------------- adjudication


def set_adjudicated_label(db: sqlite_utils.Database, item_id: int, label: str | None) -> None:
    db.execute("UPDATE item SET adjudicated_label = ? WHERE id = ?", [label, item_id])


def find_item(db: sqlite_utils.Database, project_id: int, reference: str) -> int | None:
    """An item of the project by its imported id, else by its numeric database id."""
    row = db.execute(
        "SELECT id FROM item WHERE project_id = ? AND external_id = ?", [project_id, reference]
    ).fetchone()
    if row is None and reference.isdigit():
        row = db.execute("SELECT id FROM item WHERE project_id = ? AND id = ?", [project_id, int(reference)]).fetchone()
    return int(row[0]) if row else None
