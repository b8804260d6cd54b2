"""Users, password hashes and invite tokens (hashes only: no secret is stored in clear).

A deleted user is a tombstone row (``deleted_at`` set, migration 0560); every read here sees live users only.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from db.connection import now

PUBLIC_COLUMNS = "id, username, display_name, role, created_at, invite_expires_at, (password_hash IS NOT NULL) AS has_password"
LIVE = "deleted_at IS NULL"

# Per-annotator queue state that is not data: a deleted user's rows are dropped (their reserved items go back to
# the others) instead of following the identity.
QUEUE_TABLES = ("reservation", "skip", "assignment_draw")


def count_users(db: sqlite_utils.Database) -> int:
    return db.execute(f"SELECT COUNT(*) FROM user WHERE {LIVE}").fetchone()[0]


def create_user(
    db: sqlite_utils.Database,
    *,
    username: str,
    role: str,
    display_name: str = "",
    password_hash: str | None = None,
    invite_token_hash: str | None = None,
    invite_expires_at: str | None = None,
) -> int:
    cursor = db.execute(
        "INSERT INTO user (username, display_name, role, password_hash, invite_token_hash, invite_expires_at,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [username, display_name or username, role, password_hash, invite_token_hash, invite_expires_at, now()],
    )
    return int(cursor.lastrowid)


def get_user(db: sqlite_utils.Database, user_id: int) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {PUBLIC_COLUMNS} FROM user WHERE id = ? AND {LIVE}", [user_id]))
    return rows[0] if rows else None


def get_user_by_name(db: sqlite_utils.Database, username: str) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {PUBLIC_COLUMNS} FROM user WHERE username = ? AND {LIVE}", [username]))
    return rows[0] if rows else None


def get_credentials(db: sqlite_utils.Database, username: str) -> dict[str, Any] | None:
    """The row with its password hash and lockout state, for checking a login."""
    rows = list(
        db.query(
            "SELECT id, username, role, password_hash, failed_logins, locked_until FROM user"
            f" WHERE username = ? AND {LIVE}",
            [username],
        )
    )
    return rows[0] if rows else None


def get_by_invite_hash(db: sqlite_utils.Database, token_hash: str) -> dict[str, Any] | None:
    rows = list(
        db.query(f"SELECT {PUBLIC_COLUMNS} FROM user WHERE invite_token_hash = ? AND {LIVE}", [token_hash])
    )
    return rows[0] if rows else None


def list_users(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query(f"SELECT {PUBLIC_COLUMNS} FROM user WHERE {LIVE} ORDER BY username"))


def set_password_hash(db: sqlite_utils.Database, user_id: int, password_hash: str) -> None:
    db.execute("UPDATE user SET password_hash = ? WHERE id = ?", [password_hash, user_id])


def set_invite(db: sqlite_utils.Database, user_id: int, token_hash: str | None, expires_at: str | None) -> None:
    db.execute(
        "UPDATE user SET invite_token_hash = ?, invite_expires_at = ? WHERE id = ?", [token_hash, expires_at, user_id]
    )


def set_role(db: sqlite_utils.Database, user_id: int, role: str) -> None:
    db.execute("UPDATE user SET role = ? WHERE id = ?", [role, user_id])


def record_login_attempt(db: sqlite_utils.Database, user_id: int, locked_until: str | None) -> None:
    """Count a login attempt as a failure (reset by :func:`record_login_success` when the password was right)."""
    db.execute(
        "UPDATE user SET failed_logins = failed_logins + 1, locked_until = ? WHERE id = ?", [locked_until, user_id]
    )


def record_login_success(db: sqlite_utils.Database, user_id: int) -> None:
    db.execute("UPDATE user SET failed_logins = 0, locked_until = NULL WHERE id = ?", [user_id])


def annotator_columns(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    """Every (table, column) that names a person by username: each table with an ``annotator`` column (found in
    the schema, so a table added later is covered too) except the queue state, and who added a seed."""
    tables = [row[0] for row in db.execute(
        "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p"
        " WHERE m.type = 'table' AND p.name = 'annotator' ORDER BY m.name")]
    return [(table, "annotator") for table in tables if table not in QUEUE_TABLES] + [("seed", "added_by")]


def mark_deleted(db: sqlite_utils.Database, user_id: int, username: str, tombstone: str) -> None:
    """Turn the user into a tombstone named ``tombstone`` and move everything recorded under ``username`` to
    that name (run inside a transaction). A user added later under ``username`` then starts with nothing."""
    db.execute(
        "UPDATE user SET username = ?, deleted_at = ?, password_hash = NULL, invite_token_hash = NULL,"
        " invite_expires_at = NULL WHERE id = ?",
        [tombstone, now(), user_id],
    )
    for table in QUEUE_TABLES:
        db.execute(f"DELETE FROM {table} WHERE annotator = ?", [username])
    for table, column in annotator_columns(db):
        db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [tombstone, username])
