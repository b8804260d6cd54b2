"""The embedding cache: float32 sentence vectors stored as BLOBs, keyed by (model, text hash).

Reads and writes go in chunks so that neither a 50,000-item lookup nor its parameters list grows without bound
(SQLite limits the number of ``?`` in one statement).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlite_utils

from db.connection import now

LOOKUP_CHUNK = 500


def get_vectors(db: sqlite_utils.Database, model: str, text_hashes: Iterable[str]) -> dict[str, tuple[int, bytes]]:
    """``text_hash → (dim, raw float32 bytes)`` for the hashes that are cached for ``model``."""
    hashes = list(dict.fromkeys(text_hashes))
    found: dict[str, tuple[int, bytes]] = {}
    for start in range(0, len(hashes), LOOKUP_CHUNK):
        chunk = hashes[start:start + LOOKUP_CHUNK]
        rows = db.execute(
            f"SELECT text_hash, dim, vector FROM embedding WHERE model = ? AND text_hash IN"
            f" ({', '.join('?' for _ in chunk)})",
            [model, *chunk],
        ).fetchall()
        found.update({text_hash: (dim, bytes(vector)) for text_hash, dim, vector in rows})
    return found


def put_vectors(db: sqlite_utils.Database, model: str, rows: Sequence[tuple[str, int, bytes]]) -> None:
    """Store ``(text_hash, dim, raw float32 bytes)`` rows; an already cached hash keeps its vector.

    Runs inside the caller's transaction.
    """
    stamp = now()
    db.conn.executemany(
        "INSERT INTO embedding (model, text_hash, dim, vector, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (model, text_hash) DO NOTHING",
        [(model, text_hash, dim, vector, stamp) for text_hash, dim, vector in rows],
    )


def count_vectors(db: sqlite_utils.Database, model: str | None = None) -> int:
    if model is None:
        return db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0]
    return db.execute("SELECT COUNT(*) FROM embedding WHERE model = ?", [model]).fetchone()[0]


def delete_vectors(db: sqlite_utils.Database, model: str | None = None) -> int:
    """Empty the cache (for one model or all); returns how many vectors were removed."""
    if model is None:
        return db.execute("DELETE FROM embedding").rowcount
    return db.execute("DELETE FROM embedding WHERE model = ?", [model]).rowcount
