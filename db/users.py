"""Users, password hashes and invite tokens (hashes only: no secret is stored in clear)."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from db.connection import now

PUBLIC_COLUMNS = "id, username, display_name, role, created_at, invite_expires_at, (password_hash IS NOT NULL) AS has_password"


def count_users(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT COUNT(*) FROM user").fetchone()[0]


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
    rows = list(db.query(f"SELECT {PUBLIC_COLUMNS} FROM user WHERE id = ?", [user_id]))
    return rows[0] if rows else None


def get_user_by_name(db: sqlite_utils.Database, username: str) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {PUBLIC_COLUMNS} FROM user WHERE username = ?", [username]))
    return rows[0] if rows else None


def get_credentials(db: sqlite_utils.Database, username: str) -> dict[str, Any] | None:
    """The row with its password hash and lockout state, for checking a login."""
    rows = list(
        db.query(
            "SELECT id, username, role, password_hash, failed_logins, locked_until FROM user WHERE username = ?",
            [username],
        )
    )
    return rows[0] if rows else None


def get_by_invite_hash(db: sqlite_utils.Database, token_hash: str) -> dict[str, Any] | None:
    rows = list(
        db.query(f"SELECT {PUBLIC_COLUMNS} FROM user WHERE invite_token_hash = ?", [token_hash])
    )
    return rows[0] if rows else None


def list_users(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query(f"SELECT {PUBLIC_COLUMNS} FROM user ORDER BY username"))


def set_password_hash(db: sqlite_utils.Database, user_id: int, password_hash: str) -> None:
    db.execute("UPDATE user SET password_hash = ? WHERE id = ?", [password_hash, user_id])


def set_invite(db: sqlite_utils.Database, user_id: int, token_hash: str | None, expires_at: str | None) -> None:
    db.execute(
        "UPDATE user SET invite_token_hash = ?, invite_expires_at = ? WHERE id = ?", [token_hash, expires_at, user_id]
    )


def set_role(db: sqlite_utils.Database, user_id: int, role: str) -> None:
    db.execute("UPDATE user SET role = ? WHERE id = ?", [role, user_id])


def record_login_failure(db: sqlite_utils.Database, user_id: int, locked_until: str | None) -> None:
    db.execute(
        "UPDATE user SET failed_logins = failed_logins + 1, locked_until = ? WHERE id = ?", [locked_until, user_id]
    )


def record_login_success(db: sqlite_utils.Database, user_id: int) -> None:
    db.execute("UPDATE user SET failed_logins = 0, locked_until = NULL WHERE id = ?", [user_id])


def delete_user(db: sqlite_utils.Database, user_id: int) -> None:
    db.execute("DELETE FROM user WHERE id = ?", [user_id])
