"""SQL for seeds: the real items a researcher pinned as few-shot examples of a project."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlite_utils

from db.connection import now


def insert_seeds(
    db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int], *, added_by: str = "", note: str = ""
) -> int:
    """Pin items (already pinned ones are left alone); returns how many were new."""
    before = db.conn.total_changes
    db.conn.executemany(
        "INSERT INTO seed (project_id, item_id, added_by, note, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (project_id, item_id) DO NOTHING",
        [(project_id, item_id, added_by, note, now()) for item_id in item_ids],
    )
    return db.conn.total_changes - before


def delete_seeds(db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int]) -> int:
    if not item_ids:
        return 0
    cursor = db.execute(
        f"DELETE FROM seed WHERE project_id = ? AND item_id IN ({', '.join('?' for _ in item_ids)})",
        [project_id, *item_ids],
    )
    return cursor.rowcount


def seed_item_ids(db: sqlite_utils.Database, project_id: int) -> list[int]:
    return [r[0] for r in db.execute("SELECT item_id FROM seed WHERE project_id = ? ORDER BY id", [project_id])]


def list_seeds(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """Seeds with their item's text, id and labels, in pinning order."""
    return list(
        db.query(
            "SELECT s.id AS seed_id, s.item_id, i.external_id, i.text, i.split, i.reference_label,"
            " i.adjudicated_label, s.added_by, s.note, s.created_at FROM seed s JOIN item i ON i.id = s.item_id"
            " WHERE s.project_id = ? ORDER BY s.id",
            [project_id],
        )
    )


def resolve_item_refs(db: sqlite_utils.Database, project_id: int, refs: Sequence[str]) -> dict[str, int]:
    """Map each reference (an imported external id, else an internal id) to an item id of the project."""
    resolved: dict[str, int] = {}
    for ref in refs:
        row = db.execute("SELECT id FROM item WHERE project_id = ? AND external_id = ?", [project_id, ref]).fetchone()
        if row is None and ref.isdigit():
            row = db.execute("SELECT id FROM item WHERE project_id = ? AND id = ?", [project_id, int(ref)]).fetchone()
        if row is not None:
            resolved[ref] = row[0]
    return resolved
