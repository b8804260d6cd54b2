"""Session records of logged-in browsers (hashes of their tokens only; the cookie's token is never stored).

Times are ISO 8601 UTC strings in the format of :func:`db.connection.now`, so they compare as text.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

# A session counts while it is not revoked, not expired, and its user is not deleted.
_VALID = "s.revoked_at IS NULL AND s.expires_at > ? AND u.deleted_at IS NULL"
_USER_COLUMNS = "s.id AS session_id, u.id, u.username, u.role, u.display_name"


def create(
    db: sqlite_utils.Database, *, user_id: int, handoff_hash: str, handoff_expires_at: str, created_at: str,
    expires_at: str,
) -> int:
    cursor = db.execute(
        "INSERT INTO session (user_id, handoff_hash, handoff_expires_at, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [user_id, handoff_hash, handoff_expires_at, created_at, expires_at],
    )
    return int(cursor.lastrowid)


def claim_handoff(db: sqlite_utils.Database, *, handoff_hash: str, token_hash: str, at: str) -> bool:
    """Give the session behind a live handoff its cookie token, once: one conditional UPDATE, so two requests
    with the same handoff cannot both get a cookie."""
    cursor = db.execute(
        "UPDATE session SET token_hash = ?, handoff_hash = NULL, handoff_expires_at = NULL"
        " WHERE handoff_hash = ? AND handoff_expires_at > ? AND revoked_at IS NULL AND expires_at > ?",
        [token_hash, handoff_hash, at, at],
    )
    return cursor.rowcount == 1


def user_by_token(db: sqlite_utils.Database, token_hash: str, at: str) -> dict[str, Any] | None:
    rows = list(db.query(
        f"SELECT {_USER_COLUMNS} FROM session s JOIN user u ON u.id = s.user_id WHERE s.token_hash = ? AND {_VALID}",
        [token_hash, at],
    ))
    return rows[0] if rows else None


def user_by_session(db: sqlite_utils.Database, session_id: int, at: str) -> dict[str, Any] | None:
    rows = list(db.query(
        f"SELECT {_USER_COLUMNS} FROM session s JOIN user u ON u.id = s.user_id WHERE s.id = ? AND {_VALID}",
        [session_id, at],
    ))
    return rows[0] if rows else None


def revoke_all(db: sqlite_utils.Database, user_id: int, at: str) -> int:
    cursor = db.execute(
        "UPDATE session SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", [at, user_id]
    )
    return cursor.rowcount
