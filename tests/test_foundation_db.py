"""The database layer: pragmas, recorded idempotent migrations, transactions, repository functions and the
guard against the sqlite-utils upsert pitfall (20 processes × 500 upserts must leave exactly 10,000 rows)."""

from __future__ import annotations

import multiprocessing
import re
import sys
import types
from pathlib import Path

import pytest

from core.data.text import text_hash
from db import connection, migrations
from db import items as items_db
from db import projects as projects_db

ROOT = Path(__file__).resolve().parent.parent


def test_connection_pragmas(fresh_db):
    pragma = fresh_db.conn.execute
    assert pragma("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert pragma("PRAGMA busy_timeout").fetchone()[0] == connection.BUSY_TIMEOUT_MS >= 5000
    assert pragma("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert pragma("PRAGMA foreign_keys").fetchone()[0] == 1


def test_migrations_are_recorded_once_and_idempotent(db_path):
    db = connection.connect(db_path)
    names = [name for name, _ in migrations.MIGRATIONS]
    assert names[0] == "0001_initial" and len(set(names)) == len(names)
    assert migrations.applied_migrations(db) == names
    assert migrations.migrate(db) == []
    db.conn.close()
    again = connection.connect(db_path)
    assert migrations.applied_migrations(again) == names
    assert again["schema_migration"].count == len(names)
    assert {"user", "project", "label", "item", "annotation", "seed", "job"} <= set(again.table_names())
    again.conn.close()


def test_a_pending_migration_is_applied_and_recorded(fresh_db, monkeypatch):
    applied = []
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("9999_test", applied.append)])
    assert migrations.migrate(fresh_db) == ["9999_test"]
    assert migrations.migrate(fresh_db) == []
    assert len(applied) == 1 and migrations.applied_migrations(fresh_db)[-1] == "9999_test"


def test_duplicate_migration_names_are_refused():
    with pytest.raises(RuntimeError, match="duplicate migration name '0001_initial'"):
        migrations.migration("0001_initial")(lambda db: None)


def test_transaction_rolls_back_on_error_and_joins_an_outer_one(fresh_db):
    with pytest.raises(ValueError, match="boom"), connection.transaction(fresh_db):
        projects_db.create_project(fresh_db, name="gone")
        raise ValueError("boom")
    assert fresh_db["project"].count == 0
    with connection.transaction(fresh_db):
        projects_db.create_project(fresh_db, name="outer")
        with connection.transaction(fresh_db):
            projects_db.create_project(fresh_db, name="inner")
    assert sorted(p["name"] for p in projects_db.list_projects(fresh_db)) == ["inner", "outer"]


def _item(text: str, **extra) -> dict:
    return {"text": text, "text_hash": text_hash(text), "source": "real", "split": "train", **extra}


def test_insert_items_returns_ids_in_order_with_defaults(fresh_db, project):
    first = items_db.insert_items(fresh_db, project.id, [_item("one"), _item("two", external_id="x")])
    second = items_db.insert_items(fresh_db, project.id, [_item("three")])
    assert second == [first[1] + 1] and first[1] == first[0] + 1
    rows = items_db.get_items(fresh_db, [*first, *second])
    assert [r["text"] for r in rows] == ["one", "two", "three"]
    assert (rows[0]["review_status"], rows[0]["in_pool"], rows[0]["meta"], rows[0]["external_id"]) == (
        "accepted", 0, "{}", None)
    assert items_db.existing_external_ids(fresh_db, project.id) == {"x": first[1]}
    assert items_db.existing_hashes(fresh_db, project.id)[text_hash("ONE!")] == first[0]
    assert items_db.count_items(fresh_db, project.id) == {("real", "train"): 3}


def test_insert_annotations_keeps_one_label_per_item_and_annotator(fresh_db, project):
    [item_id] = items_db.insert_items(fresh_db, project.id, [_item("text")])
    items_db.insert_annotations(fresh_db, [{"item_id": item_id, "annotator": "ann", "label": "pos"}])
    items_db.insert_annotations(fresh_db, [{"item_id": item_id, "annotator": "ann", "label": "neg", "seconds": 3.0}])
    items_db.insert_annotations(fresh_db, [{"item_id": item_id, "annotator": "bob", "label": "neg"}])
    frame = items_db.annotations_frame(fresh_db, project.id)
    assert frame[["annotator", "label"]].values.tolist() == [["ann", "neg"], ["bob", "neg"]]
    assert frame["seconds"].tolist()[0] == 3.0
    assert items_db.count_annotations(fresh_db, project.id) == 2


def test_projects_and_labels_repository(fresh_db):
    project_id = projects_db.create_project(fresh_db, name="p", overlap=2)
    projects_db.replace_labels(fresh_db, project_id, [{"name": "a", "key": "1"}, {"name": "b"}])
    projects_db.add_labels(fresh_db, project_id, ["b", "c"])
    assert [(lb["name"], lb["position"]) for lb in projects_db.list_labels(fresh_db, project_id)] == [
        ("a", 0), ("b", 1), ("c", 2)]
    projects_db.update_project(fresh_db, project_id, description="d", settings={"k": 1})
    row = projects_db.get_project(fresh_db, project_id)
    assert (row["description"], row["settings"], row["overlap"]) == ("d", {"k": 1}, 2)
    with pytest.raises(KeyError, match="not project fields"):
        projects_db.update_project(fresh_db, project_id, colour="red")
    [item_id] = items_db.insert_items(fresh_db, project_id, [_item("t")])
    items_db.insert_annotations(fresh_db, [{"item_id": item_id, "annotator": "u", "label": "a"}])
    assert projects_db.label_usage(fresh_db, project_id) == {"a": 1}
    projects_db.delete_project(fresh_db, project_id)
    assert fresh_db["item"].count == 0 and fresh_db["annotation"].count == 0 and fresh_db["label"].count == 0


def test_no_code_uses_sqlite_utils_upsert():
    """sqlite-utils' upsert() can silently become a no-op after a lock (STYLE.md): it must never be used."""
    pattern = re.compile(r"\.upsert(_all)?\(")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("db", "core", "pages")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


N_PROCESSES = 20
N_ANNOTATIONS = 500


PER_CONNECTION = 25


def _upsert_worker(db_path: str, worker: int, item_ids: list[int], errors) -> None:
    """One annotator's 500 labels in 20 short connections of 25 upserts each, while 19 other processes do the
    same: every connection's first write is likely to meet another process's lock (the pitfall's trigger)."""
    try:
        for start in range(0, len(item_ids), PER_CONNECTION):
            with connection.open_db(db_path) as db:
                items_db.insert_annotations(
                    db,
                    [{"item_id": item_id, "annotator": f"worker{worker}", "label": "pos"}
                     for item_id in item_ids[start:start + PER_CONNECTION]],
                )
    except Exception as exc:  # reported to the parent, which fails the test
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")


def test_concurrent_upserts_from_20_processes_lose_nothing(db_path, project, fresh_db, monkeypatch):
    item_ids = items_db.insert_items(fresh_db, project.id, [_item(f"item {i}") for i in range(N_ANNOTATIONS)])
    # A spawned process re-runs the parent's __main__ script; after a page test (AppTest) that is a Streamlit
    # page, so the children would start by running it. A bare __main__ leaves them only the worker.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    workers = [
        context.Process(target=_upsert_worker, args=(str(db_path), k, item_ids, errors)) for k in range(N_PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [worker.exitcode for worker in workers] == [0] * N_PROCESSES
    assert items_db.count_annotations(fresh_db, project.id) == N_PROCESSES * N_ANNOTATIONS == 10_000
    per_annotator = items_db.annotations_frame(fresh_db, project.id)["annotator"].value_counts()
    assert per_annotator.to_dict() == {f"worker{k}": N_ANNOTATIONS for k in range(N_PROCESSES)}
