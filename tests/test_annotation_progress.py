""""n of N labelled by you" from counters (migration 0581): exact after every kind of write, and read without
touching the annotations, so it costs the same at a million annotations as at ten."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter

from core import projects, users
from core.annotation.assignment import progress, skip_item, submit_label
from core.annotation.pool import set_pool
from core.data.text import text_hash
from db import annotation as annotation_db
from db import connection, transaction
from db import items as items_db

ANNOTATORS = ("ann", "bea", "cy", "llm:tiny")
# (target, max_target, threshold): fixed overlap 2, and dynamic overlap up to 4 below agreement 0.7.
SETTINGS = ((2, None, None), (2, 4, 0.7), (1, 3, 0.9))


def _brute_force(db, project_id: int, annotator: str, target: int, max_target: int | None,
                 threshold: float | None) -> tuple[int, int]:
    """(done, remaining) recomputed from the annotation rows themselves (not from any counter or trigger)."""
    pool = {row[0] for row in db.execute(
        "SELECT id FROM item WHERE project_id = ? AND in_pool = 1 AND review_status = 'accepted'", [project_id])}
    labels_by_item: dict[int, list[str]] = {item_id: [] for item_id in pool}
    mine: set[int] = set()
    for item_id, who, label in db.execute("SELECT item_id, annotator, label FROM annotation"):
        if item_id in pool:
            if not who.startswith("llm:"):
                labels_by_item[item_id].append(label)
            if who == annotator:
                mine.add(item_id)

    def needs_labels(labels: list[str]) -> bool:
        count = len(labels)
        if count < target:
            return True
        if max_target is None or count >= max_target or count < 2:
            return False
        return max(Counter(labels).values()) / count < threshold

    still_open = {item_id for item_id, labels in labels_by_item.items() if needs_labels(labels)}
    return len(mine), len(still_open - mine)


def _check(db, project_id: int, step: str) -> None:
    for annotator in ANNOTATORS:
        for target, max_target, threshold in SETTINGS:
            counted = annotation_db.progress_counts(db, project_id=project_id, annotator=annotator, target=target,
                                                    max_target=max_target, threshold=threshold)
            expected = _brute_force(db, project_id, annotator, target, max_target, threshold)
            assert counted == expected, f"after {step}: {annotator} {target, max_target, threshold}"


def test_progress_counters_are_exact_after_inserts_edits_skips_deletes_and_pool_changes(fresh_db) -> None:
    db = fresh_db
    project = projects.create_project(db, "demo", projects.parse_labels("pos,neg,neu"), overlap=2)
    other = projects.create_project(db, "other", projects.parse_labels("pos,neg"), overlap=2)
    with transaction(db):
        ids = items_db.insert_items(db, project.id, [
            {"text": f"text {i}", "text_hash": text_hash(f"text {i}"), "source": "real", "split": "train"}
            for i in range(12)])
        other_ids = items_db.insert_items(db, other.id, [
            {"text": "elsewhere", "text_hash": text_hash("elsewhere"), "source": "real", "split": "train"}])
    # Labels given while the items were outside the pool count once the items enter it.
    with transaction(db):
        items_db.insert_annotations(db, [{"item_id": ids[0], "annotator": "ann", "label": "pos"},
                                         {"item_id": ids[0], "annotator": "bea", "label": "neg"}])
    set_pool(db, project.id)
    set_pool(db, other.id)
    submit_label(db, other, "ann", other_ids[0], "pos")  # another project's label never counts here
    _check(db, project.id, "the pool was filled")

    rng = random.Random(7)
    humans = [a for a in ANNOTATORS if not a.startswith("llm:")]
    for step in range(150):
        item_id, annotator, label = rng.choice(ids), rng.choice(ANNOTATORS), rng.choice(project.label_names)
        action = rng.choice(["label"] * 6 + ["skip", "delete", "pool", "review", "import"])
        if action == "label":  # a new label or an edit of mine
            try:
                submit_label(db, project, annotator, item_id, label)
            except Exception as exc:  # an item outside the pool takes no new label
                assert "no longer in the annotation pool" in str(exc)
        elif action == "skip":
            skip_item(db, project, rng.choice(humans), item_id)
        elif action == "delete":
            db.execute("DELETE FROM annotation WHERE id = (SELECT id FROM annotation WHERE item_id = ?"
                       " ORDER BY id LIMIT 1)", [item_id])
        elif action == "pool":
            set_pool(db, project.id, add=rng.random() < 0.5, item_ids=[item_id])
        elif action == "review":
            db.execute("UPDATE item SET review_status = ? WHERE id = ?",
                       [rng.choice(["accepted", "rejected"]), item_id])
        else:  # an import's labels, an edit of an existing one included
            db.execute("INSERT INTO annotation (item_id, annotator, label, created_at, updated_at)"
                       " VALUES (?, ?, ?, 'x', 'x') ON CONFLICT (item_id, annotator) DO UPDATE SET label ="
                       " excluded.label", [item_id, annotator, label])
        _check(db, project.id, f"step {step} ({action})")

    # A deleted user's labels move to their tombstone name; a new user of the same name starts at 0.
    user = users.add_user(db, "bea", role="annotator", password="a long password")
    users.delete_user(db, "bea")
    assert annotation_db.progress_counts(db, project_id=project.id, annotator="bea", target=2) == (0, _brute_force(
        db, project.id, "bea", 2, None, None)[1])
    tombstone = users.tombstone_name(user)
    assert annotation_db.progress_counts(db, project_id=project.id, annotator=tombstone, target=2) == _brute_force(
        db, project.id, tombstone, 2, None, None)
    _check(db, project.id, "the user was deleted")
    # Deleting items (their labels go with them by cascade).
    db.execute("DELETE FROM item WHERE id IN (?, ?)", [ids[0], ids[1]])
    _check(db, project.id, "two items were deleted")


def test_progress_reads_only_the_counters(fresh_db) -> None:
    """No read of ``item`` or ``annotation``: the cost does not grow with the pool or the labels."""
    project = projects.create_project(fresh_db, "demo", projects.parse_labels("pos,neg"), overlap=2)
    with transaction(fresh_db):
        ids = items_db.insert_items(fresh_db, project.id, [
            {"text": f"t{i}", "text_hash": text_hash(f"t{i}"), "source": "real", "split": "train"} for i in range(3)])
    set_pool(fresh_db, project.id)
    submit_label(fresh_db, project, "ann", ids[0], "pos")
    tables: set[str] = set()

    def record(action, table, *_):
        if action == sqlite3.SQLITE_READ:
            tables.add(table)
        return sqlite3.SQLITE_OK

    fresh_db.conn.set_authorizer(record)
    try:
        counts = annotation_db.progress_counts(fresh_db, project_id=project.id, annotator="ann", target=2,
                                               max_target=4, threshold=0.7)
    finally:
        fresh_db.conn.set_authorizer(None)
    assert counts == (1, 2)
    assert tables == {"pool_fill", "annotator_fill"}


def test_the_migration_counts_labels_that_existed_before_it(tmp_path) -> None:
    from db.migrations import MIGRATIONS, migrate

    path = tmp_path / "old.db"
    with connection.open_db(path) as db:
        project = projects.create_project(db, "demo", projects.parse_labels("pos,neg"), overlap=2)
        with transaction(db):
            ids = items_db.insert_items(db, project.id, [
                {"text": f"t{i}", "text_hash": text_hash(f"t{i}"), "source": "real", "split": "train"}
                for i in range(3)])
        set_pool(db, project.id)
        submit_label(db, project, "ann", ids[0], "pos")
        submit_label(db, project, "bea", ids[0], "pos")
        submit_label(db, project, "ann", ids[1], "neg")
        expected = _brute_force(db, project.id, "ann", 2, None, None)
        # Back to the schema before 0581, as a database written by the previous release has it.
        for trigger in [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                                  " AND name LIKE '%progress%'")]:
            db.execute(f"DROP TRIGGER {trigger}")
        db.execute("DROP TABLE pool_fill")
        db.execute("DROP TABLE annotator_fill")
        db.execute("DELETE FROM schema_migration WHERE name = '0581_progress_counters'")
        assert "0581_progress_counters" in [name for name, _ in MIGRATIONS]
        assert migrate(db) == ["0581_progress_counters"]
        assert annotation_db.progress_counts(db, project_id=project.id, annotator="ann", target=2) == expected == (2, 1)


def _vm_steps(db, fn) -> int:
    """SQLite virtual-machine steps ``fn`` makes: a measure of work that does not depend on the machine's load."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.conn.set_progress_handler(count, 1)
    try:
        fn()
    finally:
        db.conn.set_progress_handler(None, 1)
    return steps[0]


def test_progress_costs_the_same_whatever_the_size_of_the_pool(tmp_path) -> None:
    """The whole of ``progress`` (my labels, the items left, my recent skips): as many steps for 2,000 pool items
    with 2,000 labels as for 20 with 20."""
    steps = []
    for n_items in (20, 2000):
        with connection.open_db(tmp_path / f"{n_items}.db") as db:
            project = projects.create_project(db, "demo", projects.parse_labels("pos,neg"), overlap=2)
            with transaction(db):
                ids = items_db.insert_items(db, project.id, [
                    {"text": f"t{i}", "text_hash": text_hash(f"t{i}"), "source": "real", "split": "train"}
                    for i in range(n_items)])
                items_db.insert_annotations(db, [{"item_id": i, "annotator": "other", "label": "pos"} for i in ids])
            set_pool(db, project.id)
            submit_label(db, project, "ann", ids[0], "pos")
            skip_item(db, project, "ann", ids[1])
            result = progress(db, project, "ann")
            assert (result.done, result.remaining, result.skipped) == (1, n_items - 1, 1)
            steps.append(_vm_steps(db, lambda db=db, project=project: progress(db, project, "ann")))
    assert steps[0] == steps[1], steps
