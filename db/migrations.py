"""Recorded schema migrations.

Each migration is a function registered in :data:`MIGRATIONS` under a unique, never-reused name. ``migrate``
applies those not yet recorded in ``schema_migration``, each inside one transaction, in list order. To change
the schema, append a new migration; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from db.connection import now, transaction

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        if any(existing == name for existing, _ in MIGRATIONS):
            raise RuntimeError(f"duplicate migration name {name!r}")
        MIGRATIONS.append((name, fn))
        return fn

    return register


def run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run ``;``-separated DDL inside the current transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def applied_migrations(db: sqlite_utils.Database) -> list[str]:
    if "schema_migration" not in db.table_names():
        return []
    return [row[0] for row in db.execute("SELECT name FROM schema_migration ORDER BY id")]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations; returns the names applied now (empty when up to date)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migration ("
        " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
    )
    done = set(applied_migrations(db))
    if len(done) == len(MIGRATIONS) and all(name in done for name, _ in MIGRATIONS):
        return []
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        with transaction(db):
            # Another process may have applied it while we waited for the write lock.
            if db.execute("SELECT 1 FROM schema_migration WHERE name = ?", [name]).fetchone():
                continue
            fn(db)
            db.execute("INSERT INTO schema_migration (name, applied_at) VALUES (?, ?)", [name, now()])
        applied.append(name)
    return applied


@migration("0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE user (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL DEFAULT '',
            role TEXT NOT NULL CHECK (role IN ('admin', 'researcher', 'annotator')),
            password_hash TEXT,
            invite_token_hash TEXT UNIQUE,
            invite_expires_at TEXT,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE project (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            context_prompt TEXT NOT NULL DEFAULT '',
            guidelines TEXT NOT NULL DEFAULT '',
            overlap INTEGER NOT NULL DEFAULT 3 CHECK (overlap >= 1),
            settings TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE label (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            key TEXT NOT NULL DEFAULT '',
            position INTEGER NOT NULL,
            UNIQUE (project_id, name)
        );

        CREATE TABLE item (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            external_id TEXT,
            text TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('real', 'synthetic')),
            split TEXT NOT NULL CHECK (split IN ('train', 'dev', 'test', 'pool')),
            reference_label TEXT,
            imported_agreement REAL,
            adjudicated_label TEXT,
            generation_call_id INTEGER,
            review_status TEXT NOT NULL DEFAULT 'accepted' CHECK (review_status IN ('accepted', 'rejected')),
            in_pool INTEGER NOT NULL DEFAULT 0,
            text_hash TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            UNIQUE (project_id, external_id)
        );
        CREATE INDEX item_project_hash ON item (project_id, text_hash);
        CREATE INDEX item_project_source_split ON item (project_id, source, split);
        CREATE INDEX item_generation_call ON item (generation_call_id);

        CREATE TABLE annotation (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES item(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            label TEXT NOT NULL,
            seconds REAL,
            unsure INTEGER NOT NULL DEFAULT 0,
            comment TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (item_id, annotator)
        );
        CREATE INDEX annotation_annotator ON annotation (annotator, item_id);

        CREATE TABLE seed (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES item(id) ON DELETE CASCADE,
            added_by TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            UNIQUE (project_id, item_id)
        );

        CREATE TABLE job (
            id INTEGER PRIMARY KEY,
            project_id INTEGER REFERENCES project(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            progress_done INTEGER NOT NULL DEFAULT 0,
            progress_total INTEGER NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            result TEXT NOT NULL DEFAULT '{}',
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            pid INTEGER,
            heartbeat_at TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX job_project_kind ON job (project_id, kind, status);
        """
    )
