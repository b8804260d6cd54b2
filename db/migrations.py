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


@migration("0400_analysis_embedding_cache")
def _analysis_embedding_cache(db: sqlite_utils.Database) -> None:
    # Vectors are keyed by (model, exact-text hash), not by item, so a text shared by several items or
    # projects is embedded once, and a second analysis reads every vector back instead of running the model.
    run_script(
        db,
        """
        CREATE TABLE embedding (
            model TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (model, text_hash)
        ) WITHOUT ROWID
        """,
    )


@migration("0100_generation_job_call")
def _generation_job_call(db: sqlite_utils.Database) -> None:
    # One generation_job per background job (its frozen config and running totals) and one generation_call
    # per LLM request, kept whole (messages, seeds, raw output, per-text outcome) so every synthetic item can
    # be traced to the exact prompt that produced it and every rejection to its reason.
    run_script(
        db,
        """
        CREATE TABLE generation_job (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            job_id INTEGER UNIQUE REFERENCES job(id) ON DELETE SET NULL,
            config TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            n_calls INTEGER NOT NULL DEFAULT 0,
            n_failed_calls INTEGER NOT NULL DEFAULT 0,
            n_accepted INTEGER NOT NULL DEFAULT 0,
            n_rejected INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX generation_job_project ON generation_job (project_id);

        CREATE TABLE generation_call (
            id INTEGER PRIMARY KEY,
            generation_job_id INTEGER NOT NULL REFERENCES generation_job(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            messages TEXT NOT NULL DEFAULT '[]',
            seed_item_ids TEXT NOT NULL DEFAULT '[]',
            raw_output TEXT,
            parsed TEXT NOT NULL DEFAULT '[]',
            outcomes TEXT NOT NULL DEFAULT '[]',
            n_accepted INTEGER NOT NULL DEFAULT 0,
            n_rejected INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            latency_s REAL,
            error TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        CREATE INDEX generation_call_job_label ON generation_call (generation_job_id, label)
        """,
    )


@migration("0300_training_run_prediction")
def _training_run_prediction(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE run (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            job_id INTEGER REFERENCES job(id) ON DELETE SET NULL,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            config TEXT NOT NULL DEFAULT '{}',
            seed INTEGER NOT NULL,
            model TEXT NOT NULL,
            label_source TEXT NOT NULL,
            data_source TEXT NOT NULL DEFAULT '',
            train_item_ids TEXT NOT NULL DEFAULT '[]',
            n_train INTEGER,
            n_test INTEGER,
            history TEXT NOT NULL DEFAULT '{}',
            metrics TEXT NOT NULL DEFAULT '{}',
            error TEXT NOT NULL DEFAULT '',
            artifact_path TEXT,
            device TEXT,
            seconds REAL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX run_project_status ON run (project_id, status);

        CREATE TABLE prediction (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES item(id) ON DELETE CASCADE,
            true_label TEXT,
            predicted_label TEXT NOT NULL,
            probabilities TEXT NOT NULL DEFAULT '{}',
            agreement REAL,
            UNIQUE (run_id, item_id)
        );
        """
    )


@migration("0200_annotation_assignment")
def _annotation_assignment(db: sqlite_utils.Database) -> None:
    # Per-item label statistics kept up to date by triggers, so that every writer (the Annotate page, imports,
    # the LLM annotator) keeps them right and the next-item query can walk an index instead of counting
    # annotations. Named annotation_* so they never clash with core.items.item_table's computed n_labels.
    # Only human labels count (the LLM annotator, ``llm:<model>``, must not use up the overlap k). Only items in
    # the annotation pool are kept current: a bulk import into items outside the pool then costs ~20 % instead
    # of 3-4× (measured), and an item is recounted when it enters the pool (trigger item_pool_recount).
    run_script(
        db,
        """
        ALTER TABLE item ADD COLUMN annotation_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE item ADD COLUMN annotation_top INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE item ADD COLUMN annotation_agreement REAL;

        UPDATE item SET
            annotation_count = (SELECT COUNT(*) FROM annotation a WHERE a.item_id = item.id
                                AND a.annotator NOT LIKE 'llm:%'),
            annotation_top = COALESCE((SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM annotation a
                                       WHERE a.item_id = item.id AND a.annotator NOT LIKE 'llm:%'
                                       GROUP BY a.label)), 0);
        UPDATE item SET annotation_agreement =
            CASE WHEN annotation_count >= 2 THEN CAST(annotation_top AS REAL) / annotation_count END;

        CREATE INDEX item_pool_fill ON item (project_id, in_pool, annotation_count, id);
        CREATE INDEX item_pool_shuffle ON item (project_id, in_pool, ((id * 2654435761) % 4294967296));
        CREATE INDEX item_pool_progress ON item (project_id, in_pool, review_status, annotation_count,
                                                 annotation_agreement);

        CREATE TABLE reservation (
            item_id INTEGER NOT NULL REFERENCES item(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            PRIMARY KEY (item_id, annotator)
        );
        CREATE INDEX reservation_annotator ON reservation (annotator, expires_at);
        CREATE INDEX reservation_expiry ON reservation (expires_at);

        CREATE TABLE assignment_draw (
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            draws INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (project_id, annotator)
        );

        CREATE TABLE skip (
            item_id INTEGER NOT NULL REFERENCES item(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            skipped_at TEXT NOT NULL,
            PRIMARY KEY (item_id, annotator)
        );
        """,
    )
    recount = """
        UPDATE item SET
            annotation_count = (SELECT COUNT(*) FROM annotation a WHERE a.item_id = {item}
                                AND a.annotator NOT LIKE 'llm:%'),
            annotation_top = COALESCE((SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM annotation a
                                       WHERE a.item_id = {item} AND a.annotator NOT LIKE 'llm:%'
                                       GROUP BY a.label)), 0)
        WHERE id = {item};
        UPDATE item SET annotation_agreement =
            CASE WHEN annotation_count >= 2 THEN CAST(annotation_top AS REAL) / annotation_count END
        WHERE id = {item};
    """
    # Trigger bodies contain ';', so they cannot go through run_script (which splits on it).
    db.execute(
        """
        CREATE TRIGGER annotation_stats_insert AFTER INSERT ON annotation
        WHEN NEW.annotator NOT LIKE 'llm:%' AND (SELECT in_pool FROM item WHERE id = NEW.item_id) = 1 BEGIN
            UPDATE item SET
                annotation_count = annotation_count + 1,
                annotation_top = MAX(annotation_top, (SELECT COUNT(*) FROM annotation a
                                     WHERE a.item_id = NEW.item_id AND a.label = NEW.label
                                     AND a.annotator NOT LIKE 'llm:%'))
            WHERE id = NEW.item_id;
            UPDATE item SET annotation_agreement =
                CASE WHEN annotation_count >= 2 THEN CAST(annotation_top AS REAL) / annotation_count END
            WHERE id = NEW.item_id;
        END
        """
    )
    db.execute(
        "CREATE TRIGGER annotation_stats_update AFTER UPDATE OF label, item_id, annotator ON annotation"
        " WHEN (SELECT MAX(in_pool) FROM item WHERE id IN (OLD.item_id, NEW.item_id)) = 1 BEGIN"
        + recount.format(item="OLD.item_id") + recount.format(item="NEW.item_id") + "END"
    )
    # Whoever puts an item into the pool (the pool page, the generation review), its counts are made current.
    db.execute(
        "CREATE TRIGGER item_pool_recount AFTER UPDATE OF in_pool ON item"
        " WHEN NEW.in_pool = 1 AND OLD.in_pool <> 1 BEGIN" + recount.format(item="NEW.id") + "END"
    )
    db.execute(
        "CREATE TRIGGER annotation_stats_delete AFTER DELETE ON annotation"
        " WHEN (SELECT in_pool FROM item WHERE id = OLD.item_id) = 1 BEGIN"
        + recount.format(item="OLD.item_id") + "END"
    )


@migration("0500_item_generation_provenance")
def _item_generation_provenance(db: sqlite_utils.Database) -> None:
    """A synthetic item's generation mode and job as columns (they were read from ``item.meta`` JSON in several
    places, each with its own fallback); existing rows are back-filled from that JSON."""
    db.execute("ALTER TABLE item ADD COLUMN generation_mode TEXT")
    db.execute("ALTER TABLE item ADD COLUMN generation_job_id INTEGER")
    db.execute(
        "UPDATE item SET generation_mode = json_extract(meta, '$.mode'),"
        " generation_job_id = json_extract(meta, '$.generation_job_id')"
        " WHERE source = 'synthetic' AND json_valid(meta)"
    )
    db.execute("CREATE INDEX item_project_generation_job ON item (project_id, generation_job_id)")


@migration("0540_llm_annotation_call")
def _llm_annotation_call(db: sqlite_utils.Database) -> None:
    # Every request of an LLM-annotation job, kept as generation keeps its calls: which item, the exact prompt,
    # the raw reply and the label parsed from it (NULL when the reply named none), so a job that labelled
    # little can be read back and explained.
    run_script(
        db,
        """
        CREATE TABLE llm_annotation_call (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES job(id) ON DELETE CASCADE,
            item_id INTEGER NOT NULL REFERENCES item(id) ON DELETE CASCADE,
            messages TEXT NOT NULL DEFAULT '[]',
            raw_output TEXT,
            label TEXT,
            latency_s REAL,
            error TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        CREATE INDEX llm_annotation_call_job ON llm_annotation_call (job_id, item_id)
        """,
    )


@migration("0520_data_version")
def _data_version(db: sqlite_utils.Database) -> None:
    # Counters that every write to what the research pages derive from bumps, so that a page can cache its
    # tables per (database file, project, version) and know, from one indexed read, whether they are still
    # true. Triggers, not code, bump them: every writer (other processes, the CLI, future code paths) is
    # counted and none can forget. project_data_version has no foreign key on purpose: a deleted project's
    # count stays, so a new project that reuses its id goes on counting from there and never meets an old
    # cache entry. run_data_version counts every change to runs and predictions (the Train and Runs pages;
    # project renames too, since the runs list shows project names). A table added later whose rows change
    # agreement, browse, export or training counts needs the same three triggers.
    run_script(
        db,
        """
        CREATE TABLE project_data_version (project_id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
        INSERT INTO project_data_version (project_id, version) SELECT id, 1 FROM project;
        CREATE TABLE run_data_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
        INSERT INTO run_data_version (id, version) VALUES (1, 1)
        """,
    )
    upsert = " ON CONFLICT (project_id) DO UPDATE SET version = version + 1;"
    bump_runs = "UPDATE run_data_version SET version = version + 1;"
    project_of = {"project": "{row}.id", "label": "{row}.project_id", "item": "{row}.project_id",
                  "seed": "{row}.project_id"}
    for event in ("INSERT", "UPDATE", "DELETE"):
        row = "OLD" if event == "DELETE" else "NEW"
        bodies = {table: f"INSERT INTO project_data_version (project_id, version) VALUES ({column.format(row=row)}, 1)"
                         + upsert for table, column in project_of.items()}
        # The SELECT form inserts nothing when the item is already gone (an annotation deleted by the cascade
        # of its item's deletion, which bumped the count itself).
        bodies["annotation"] = (f"INSERT INTO project_data_version (project_id, version) SELECT project_id, 1"
                                f" FROM item WHERE id = {row}.item_id" + upsert)
        if event == "UPDATE":
            bodies["project"] += bump_runs
        bodies["run"] = bodies["prediction"] = bump_runs
        for table, body in bodies.items():
            db.execute(f"CREATE TRIGGER {table}_data_version_{event.lower()} AFTER {event} ON {table}"
                       f" BEGIN {body} END")


@migration("0510_repeat_pair")
def _repeat_pair(db: sqlite_utils.Database) -> None:
    # A repeated rating (the same annotator rating the same item again, e.g. for test-retest reliability) is
    # kept apart from ``annotation``, which holds one label per (item, annotator): each row is one pair of
    # consecutive ratings, in the order the file gave them, for intra-annotator consistency.
    run_script(
        db,
        """
        CREATE TABLE repeat_pair (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id INTEGER NOT NULL REFERENCES item(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            first_label TEXT NOT NULL,
            second_label TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX repeat_pair_item ON repeat_pair (item_id, annotator)
        """,
    )
    # Agreement figures derive from these rows: bump the project's data version like annotations do (0520).
    for event in ("INSERT", "UPDATE", "DELETE"):
        row = "OLD" if event == "DELETE" else "NEW"
        db.execute(
            f"CREATE TRIGGER repeat_pair_data_version_{event.lower()} AFTER {event} ON repeat_pair BEGIN"
            f" INSERT INTO project_data_version (project_id, version) SELECT project_id, 1 FROM item"
            f" WHERE id = {row}.item_id ON CONFLICT (project_id) DO UPDATE SET version = version + 1; END"
        )


@migration("0560_sessions_and_kept_identities")
def _sessions_and_kept_identities(db: sqlite_utils.Database) -> None:
    # A deleted user stays as a tombstone row (deleted_at set, renamed ``deleted:<id>:<name>``), and no row of
    # ``user`` is ever deleted, so an id is never given to anyone else: a session, an open tab or a stored id of
    # a deleted user can never resolve to a newer user. (INTEGER PRIMARY KEY without AUTOINCREMENT reuses the
    # highest id once its row is gone; keeping every row makes that impossible without rebuilding the table.)
    db.execute("ALTER TABLE user ADD COLUMN deleted_at TEXT")
    db.execute(
        "CREATE TRIGGER user_rows_are_kept BEFORE DELETE ON user BEGIN"
        " SELECT RAISE(ABORT, 'user rows are never deleted: mark the user deleted (core.users.delete_user)'); END"
    )
    # A logged-in browser. The cookie's token is stored only as a hash (token_hash, set when the browser trades
    # the one-time handoff token for the cookie at the app's /auth/session route).
    run_script(
        db,
        """
        CREATE TABLE session (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES user(id),
            token_hash TEXT UNIQUE,
            handoff_hash TEXT UNIQUE,
            handoff_expires_at TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE INDEX session_user ON session (user_id, revoked_at)
        """,
    )
    # A password change, a role change or a deletion ends every session of the user, whoever writes the row
    # (the Users page, the CLI, later code): a trigger, so no writer can forget. Same timestamp format as now().
    db.execute(
        "CREATE TRIGGER user_change_ends_sessions AFTER UPDATE OF password_hash, role, deleted_at ON user"
        " WHEN OLD.password_hash IS NOT NEW.password_hash OR OLD.role IS NOT NEW.role"
        " OR OLD.deleted_at IS NOT NEW.deleted_at BEGIN"
        " UPDATE session SET revoked_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"
        " WHERE user_id = NEW.id AND revoked_at IS NULL; END"
    )


@migration("0570_crowd_studies_and_quality")
def _crowd_studies_and_quality(db: sqlite_utils.Database) -> None:
    # A crowd study: a link (its unguessable token) that brings a platform's workers to one project, with their
    # quota and the codes they are paid with. A worker is a passwordless annotator (user ``<platform>:<id>``)
    # with a row per study they arrived through; ``annotator`` is the username, so that deleting the user moves
    # it to the tombstone name like every other ``annotator`` column (db/users.annotator_columns).
    # Quality checks (gold items, attention checks; ``qualification`` ones come before real items) and the
    # answers to them are kept apart from ``annotation``: a check's answer is never a data label, so agreement,
    # aggregation, training and exports, which read ``annotation``, cannot count it.
    run_script(
        db,
        """
        CREATE TABLE crowd_study (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            platform TEXT NOT NULL,
            token TEXT NOT NULL UNIQUE,
            settings TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE INDEX crowd_study_project ON crowd_study (project_id);

        CREATE TABLE crowd_check (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            item_id INTEGER REFERENCES item(id) ON DELETE CASCADE,
            text TEXT,
            labels TEXT NOT NULL,
            qualification INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (project_id, item_id)
        );
        CREATE INDEX crowd_check_item ON crowd_check (item_id);

        CREATE TABLE crowd_worker (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            study_id INTEGER NOT NULL REFERENCES crowd_study(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES user(id),
            annotator TEXT NOT NULL,
            worker_id TEXT NOT NULL,
            platform_study_id TEXT NOT NULL DEFAULT '',
            platform_session_id TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'working',
            qualified INTEGER,
            pending_check_id INTEGER REFERENCES crowd_check(id) ON DELETE SET NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            finished_at TEXT,
            UNIQUE (study_id, user_id)
        );
        CREATE INDEX crowd_worker_annotator ON crowd_worker (annotator, last_seen);

        CREATE TABLE crowd_answer (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            check_id INTEGER NOT NULL REFERENCES crowd_check(id) ON DELETE CASCADE,
            study_id INTEGER REFERENCES crowd_study(id) ON DELETE SET NULL,
            annotator TEXT NOT NULL,
            phase TEXT NOT NULL,
            label TEXT,
            correct INTEGER NOT NULL,
            seconds REAL,
            created_at TEXT NOT NULL,
            UNIQUE (check_id, annotator)
        );
        CREATE INDEX crowd_answer_annotator ON crowd_answer (annotator, check_id);

        CREATE TABLE excluded_annotator (
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            annotator TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            excluded_at TEXT NOT NULL,
            PRIMARY KEY (project_id, annotator)
        )
        """,
    )
    # A gold item is shown only as a check, never handed out as data: whoever puts items into the pool (the pool
    # page, the review page, later code), a gold item stays out (RAISE(IGNORE) skips that row's update only).
    db.execute(
        "CREATE TRIGGER gold_item_stays_out_of_pool BEFORE UPDATE OF in_pool ON item"
        " WHEN NEW.in_pool = 1 AND EXISTS (SELECT 1 FROM crowd_check c WHERE c.item_id = NEW.id)"
        " BEGIN SELECT RAISE(IGNORE); END"
    )
    # Excluding an annotator changes agreement, aggregation and training: bump the project's data version (0520).
    for event in ("INSERT", "UPDATE", "DELETE"):
        row = "OLD" if event == "DELETE" else "NEW"
        db.execute(
            f"CREATE TRIGGER excluded_annotator_data_version_{event.lower()} AFTER {event} ON excluded_annotator"
            f" BEGIN INSERT INTO project_data_version (project_id, version) VALUES ({row}.project_id, 1)"
            " ON CONFLICT (project_id) DO UPDATE SET version = version + 1; END"
        )


@migration("0580_project_members")
def _project_members(db: sqlite_utils.Database) -> None:
    # Who may annotate a project: annotators see only the projects they are members of (researchers and admins
    # see every project). Keyed by user id, which is never reused (0560), so a deleted user's memberships can
    # never pass to a newer user.
    run_script(
        db,
        """
        CREATE TABLE project_member (
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES user(id),
            added_at TEXT NOT NULL,
            PRIMARY KEY (project_id, user_id)
        );
        CREATE INDEX project_member_user ON project_member (user_id, project_id)
        """,
    )


@migration("0581_progress_counters")
def _progress_counters(db: sqlite_utils.Database) -> None:
    # "n of N labelled by you" in O(1) at any number of annotations: counters kept by triggers in the same
    # transaction as every write, bucketed by an item's label statistics (annotation_count, annotation_top), so
    # that "still needs labels" — count below the overlap k, or (dynamic overlap) below the maximum with agreement
    # top/count under the threshold — is decided per bucket at read time and a change of k or of the strategy's
    # settings needs no recount. Buckets are few (count ≤ the largest overlap, top ≤ count).
    #   pool_fill:      pool items (in the pool, accepted) per bucket
    #   annotator_fill: an annotator's labels on pool items per bucket of the labelled item. Its column is
    #                   ``labelled_by``, not ``annotator``: db/users.annotator_columns renames every ``annotator``
    #                   column when a user is deleted, and these counters follow the renamed labels by trigger.
    run_script(
        db,
        """
        CREATE TABLE pool_fill (
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            annotation_count INTEGER NOT NULL,
            annotation_top INTEGER NOT NULL,
            items INTEGER NOT NULL,
            PRIMARY KEY (project_id, annotation_count, annotation_top)
        ) WITHOUT ROWID;
        CREATE TABLE annotator_fill (
            project_id INTEGER NOT NULL REFERENCES project(id) ON DELETE CASCADE,
            labelled_by TEXT NOT NULL,
            annotation_count INTEGER NOT NULL,
            annotation_top INTEGER NOT NULL,
            labels INTEGER NOT NULL,
            PRIMARY KEY (project_id, labelled_by, annotation_count, annotation_top)
        ) WITHOUT ROWID;
        INSERT INTO pool_fill (project_id, annotation_count, annotation_top, items)
            SELECT project_id, annotation_count, annotation_top, COUNT(*) FROM item
            WHERE in_pool = 1 AND review_status = 'accepted'
            GROUP BY project_id, annotation_count, annotation_top;
        INSERT INTO annotator_fill (project_id, labelled_by, annotation_count, annotation_top, labels)
            SELECT i.project_id, a.annotator, i.annotation_count, i.annotation_top, COUNT(*)
            FROM annotation a JOIN item i ON i.id = a.item_id
            WHERE i.in_pool = 1 AND i.review_status = 'accepted'
            GROUP BY i.project_id, a.annotator, i.annotation_count, i.annotation_top
        """,
    )
    counted = "{row}.in_pool = 1 AND {row}.review_status = 'accepted'"
    changed = ("(OLD.annotation_count IS NOT NEW.annotation_count OR OLD.annotation_top IS NOT NEW.annotation_top"
               " OR OLD.in_pool IS NOT NEW.in_pool OR OLD.review_status IS NOT NEW.review_status)")

    def add_item(row: str, sign: str) -> str:
        return (f"INSERT INTO pool_fill (project_id, annotation_count, annotation_top, items)"
                f" VALUES ({row}.project_id, {row}.annotation_count, {row}.annotation_top, {sign}1)"
                f" ON CONFLICT DO UPDATE SET items = items {sign} 1;")

    def add_labels_of_item(row: str, sign: str) -> str:
        # Every label on the item, counted in the item's bucket. ``AND true`` tells the parser that ON CONFLICT
        # belongs to the upsert (SQLite's documented way out of that ambiguity).
        return (f"INSERT INTO annotator_fill (project_id, labelled_by, annotation_count, annotation_top, labels)"
                f" SELECT {row}.project_id, a.annotator, {row}.annotation_count, {row}.annotation_top, {sign}1"
                f" FROM annotation a WHERE a.item_id = {row}.id AND true"
                f" ON CONFLICT DO UPDATE SET labels = labels {sign} 1;")

    # An item changes bucket (a label added, changed or removed recounts it) or enters or leaves the pool: move
    # it and every label on it. Each statement applies one row change's difference, so nested and reordered
    # trigger firings (item_pool_recount updates the row again) still add up.
    db.execute(f"CREATE TRIGGER item_progress_leave AFTER UPDATE ON item WHEN {counted.format(row='OLD')}"
               f" AND {changed} BEGIN {add_item('OLD', '-')} {add_labels_of_item('OLD', '-')} END")
    db.execute(f"CREATE TRIGGER item_progress_enter AFTER UPDATE ON item WHEN {counted.format(row='NEW')}"
               f" AND {changed} BEGIN {add_item('NEW', '+')} {add_labels_of_item('NEW', '+')} END")
    db.execute(f"CREATE TRIGGER item_progress_insert AFTER INSERT ON item WHEN {counted.format(row='NEW')}"
               f" BEGIN {add_item('NEW', '+')} END")
    # A deleted item's labels are deleted by ON DELETE CASCADE; the triggers below take them off first. When the
    # whole project is deleted (its counters went with it, by cascade) there is nothing left to count.
    db.execute(f"CREATE TRIGGER item_progress_delete BEFORE DELETE ON item WHEN {counted.format(row='OLD')}"
               " AND EXISTS (SELECT 1 FROM project WHERE id = OLD.project_id)"
               f" BEGIN {add_item('OLD', '-')} {add_labels_of_item('OLD', '-')} END")

    # A label is counted in its item's bucket BEFORE the item's statistics change (the AFTER triggers of 0200),
    # so that the item's move then carries it along with the others. An upsert that turns into an update (an
    # edit) also fires BEFORE INSERT: the NOT EXISTS leaves it out. A cascade from a deleted item finds the item
    # gone (already taken off above) and counts nothing.
    def add_label(sign: str, row: str) -> str:
        return (f"INSERT INTO annotator_fill (project_id, labelled_by, annotation_count, annotation_top, labels)"
                f" SELECT i.project_id, {row}.annotator, i.annotation_count, i.annotation_top, {sign}1 FROM item i"
                f" WHERE i.id = {row}.item_id AND {counted.format(row='i')}"
                f" ON CONFLICT DO UPDATE SET labels = labels {sign} 1;")

    db.execute(
        "CREATE TRIGGER annotation_progress_insert BEFORE INSERT ON annotation"
        " WHEN NOT EXISTS (SELECT 1 FROM annotation WHERE item_id = NEW.item_id AND annotator = NEW.annotator)"
        f" BEGIN {add_label('+', 'NEW')} END"
    )
    db.execute(f"CREATE TRIGGER annotation_progress_delete BEFORE DELETE ON annotation BEGIN {add_label('-', 'OLD')} END")
    # A label moved to another item or annotator (a deleted user's labels move to the tombstone name).
    db.execute(
        "CREATE TRIGGER annotation_progress_move BEFORE UPDATE OF item_id, annotator ON annotation"
        " WHEN OLD.item_id IS NOT NEW.item_id OR OLD.annotator IS NOT NEW.annotator"
        f" BEGIN {add_label('-', 'OLD')} {add_label('+', 'NEW')} END"
    )


@migration("0582_skip_by_annotator")
def _skip_by_annotator(db: sqlite_utils.Database) -> None:
    # "n of N" counts my recently skipped items: walk my skips from this index, not every item of the project
    # (the only index on skip started with the item, so the count grew with the pool).
    db.execute("CREATE INDEX skip_annotator ON skip (annotator, skipped_at)")


@migration("0590_generation_rounds")
def _generation_rounds(db: sqlite_utils.Database) -> None:
    # A generation job is a round of the project's loop: its number, and for every call what steered it beyond the
    # seeds (counter-examples from people's verdicts, retrieved real texts, sampled attributes).
    run_script(
        db,
        """
        ALTER TABLE generation_job ADD COLUMN round INTEGER;
        UPDATE generation_job SET round = (
            SELECT COUNT(*) FROM generation_job earlier
            WHERE earlier.project_id = generation_job.project_id AND earlier.id <= generation_job.id);
        ALTER TABLE generation_call ADD COLUMN counter_example_ids TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE generation_call ADD COLUMN retrieved_ids TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE generation_call ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'
        """,
    )


@migration("0605_generation_batch")
def _generation_batch(db: sqlite_utils.Database) -> None:
    # A generation job sent through a provider's Batch API: each batch, and each of its requests with what a live
    # call keeps (label, messages, seeds, steering), recorded before the provider is polled, so a killed job that
    # is resumed polls its batch instead of paying for it twice. ``finished_at`` is set in the transaction that
    # ingests the batch's answers (or records why it ended without them): it is never ingested twice.
    run_script(
        db,
        """
        CREATE TABLE generation_batch (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            generation_job_id INTEGER NOT NULL REFERENCES generation_job(id) ON DELETE CASCADE,
            provider_batch_id TEXT,
            input_file_id TEXT,
            status TEXT NOT NULL DEFAULT 'preparing',
            n_requests INTEGER NOT NULL,
            n_done INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            submitted_at TEXT,
            updated_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX generation_batch_job ON generation_batch (generation_job_id, finished_at);
        CREATE TABLE generation_batch_request (
            batch_id INTEGER NOT NULL REFERENCES generation_batch(id) ON DELETE CASCADE,
            custom_id TEXT NOT NULL,
            label TEXT NOT NULL,
            call_number INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            PRIMARY KEY (batch_id, custom_id)
        ) WITHOUT ROWID
        """,
    )
