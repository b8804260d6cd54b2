"""Projects and their labels."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from db.connection import now

PROJECT_FIELDS = ("name", "description", "context_prompt", "guidelines", "overlap")


def _project_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["settings"] = json.loads(row.get("settings") or "{}")
    return row


def create_project(
    db: sqlite_utils.Database,
    *,
    name: str,
    description: str = "",
    context_prompt: str = "",
    guidelines: str = "",
    overlap: int = 3,
    settings: dict[str, Any] | None = None,
) -> int:
    stamp = now()
    cursor = db.execute(
        "INSERT INTO project (name, description, context_prompt, guidelines, overlap, settings, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [name, description, context_prompt, guidelines, overlap, json.dumps(settings or {}), stamp, stamp],
    )
    return int(cursor.lastrowid)


def get_project(db: sqlite_utils.Database, project_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM project WHERE id = ?", [project_id]))
    return _project_row(rows[0]) if rows else None


def get_project_by_name(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM project WHERE name = ?", [name]))
    return _project_row(rows[0]) if rows else None


def list_projects(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [
        _project_row(r)
        for r in db.query(
            "SELECT p.*, (SELECT COUNT(*) FROM item i WHERE i.project_id = p.id) AS n_items,"
            " (SELECT COUNT(*) FROM label l WHERE l.project_id = p.id) AS n_labels"
            " FROM project p ORDER BY p.name"
        )
    ]


def update_project(db: sqlite_utils.Database, project_id: int, **fields: Any) -> None:
    """Update the named columns (``PROJECT_FIELDS`` or ``settings``) and ``updated_at``."""
    allowed = set(PROJECT_FIELDS) | {"settings"}
    unknown = set(fields) - allowed
    if unknown:
        raise KeyError(f"not project fields: {sorted(unknown)}")
    if "settings" in fields:
        fields["settings"] = json.dumps(fields["settings"])
    fields["updated_at"] = now()
    assignments = ", ".join(f"{column} = ?" for column in fields)
    db.execute(f"UPDATE project SET {assignments} WHERE id = ?", [*fields.values(), project_id])


def delete_project(db: sqlite_utils.Database, project_id: int) -> None:
    db.execute("DELETE FROM project WHERE id = ?", [project_id])


def list_labels(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT id, name, description, key, position FROM label WHERE project_id = ? ORDER BY position",
                 [project_id])
    )


def replace_labels(db: sqlite_utils.Database, project_id: int, labels: list[dict[str, Any]]) -> None:
    """Make the project's labels exactly ``labels`` (dicts with name, description, key), in that order.

    Labels are matched by name, so renaming keeps no history: the caller checks that no annotation uses a
    removed label before calling this.
    """
    names = [label["name"] for label in labels]
    placeholders = ", ".join("?" for _ in names) or "''"
    db.execute(f"DELETE FROM label WHERE project_id = ? AND name NOT IN ({placeholders})", [project_id, *names])
    for position, label in enumerate(labels):
        db.execute(
            "INSERT INTO label (project_id, name, description, key, position) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (project_id, name) DO UPDATE SET description = excluded.description,"
            " key = excluded.key, position = excluded.position",
            [project_id, label["name"], label.get("description", ""), label.get("key", ""), position],
        )


def add_labels(db: sqlite_utils.Database, project_id: int, names: list[str]) -> None:
    """Append labels that do not exist yet, after the existing ones."""
    row = db.execute("SELECT COALESCE(MAX(position), -1) FROM label WHERE project_id = ?", [project_id]).fetchone()
    position = row[0] + 1
    for name in names:
        cursor = db.execute(
            "INSERT INTO label (project_id, name, position) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [project_id, name, position],
        )
        position += cursor.rowcount


def label_usage(db: sqlite_utils.Database, project_id: int) -> dict[str, int]:
    """How many annotations and reference labels use each label name."""
    rows = db.execute(
        "SELECT label, COUNT(*) FROM (SELECT a.label FROM annotation a JOIN item i ON i.id = a.item_id"
        " WHERE i.project_id = ? UNION ALL SELECT reference_label FROM item WHERE project_id = ?"
        " AND reference_label IS NOT NULL) GROUP BY label",
        [project_id, project_id],
    ).fetchall()
    return {label: count for label, count in rows}


# ------------------------------------------------------------------------------------------- members


def add_member(db: sqlite_utils.Database, project_id: int, user_id: int) -> bool:
    """Make the user a member of the project; False when they were one already."""
    cursor = db.execute(
        "INSERT INTO project_member (project_id, user_id, added_at) VALUES (?, ?, ?)"
        " ON CONFLICT (project_id, user_id) DO NOTHING",
        [project_id, user_id, now()],
    )
    return cursor.rowcount == 1


def remove_member(db: sqlite_utils.Database, project_id: int, user_id: int) -> bool:
    cursor = db.execute("DELETE FROM project_member WHERE project_id = ? AND user_id = ?", [project_id, user_id])
    return cursor.rowcount == 1


def is_member(db: sqlite_utils.Database, project_id: int, user_id: int) -> bool:
    return db.execute(
        "SELECT 1 FROM project_member WHERE project_id = ? AND user_id = ?", [project_id, user_id]
    ).fetchone() is not None


def member_projects(db: sqlite_utils.Database, user_id: int) -> set[int]:
    return {row[0] for row in db.execute("SELECT project_id FROM project_member WHERE user_id = ?", [user_id])}


def members(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """The project's live members (a deleted user's membership stays with their tombstone and is not listed)."""
    return list(db.query(
        "SELECT u.id, u.username, u.role, m.added_at FROM project_member m JOIN user u ON u.id = m.user_id"
        " WHERE m.project_id = ? AND u.deleted_at IS NULL ORDER BY u.username",
        [project_id],
    ))
