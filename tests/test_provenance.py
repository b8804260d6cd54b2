"""Synthetic provenance has one rule: the ``generation_mode`` and ``generation_job_id`` columns of ``item``."""

from __future__ import annotations

import json

import sqlite_utils

from core import projects
from core.analysis.service import source_table
from core.data.export import item_view
from core.data.items import generation_group, item_table
from core.training.config import TrainConfig
from core.training.data import select_items
from db import migrations
from db.connection import now


def _migrate_up_to(db: sqlite_utils.Database, last: str) -> None:
    db.execute("CREATE TABLE schema_migration (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
               " applied_at TEXT NOT NULL)")
    for name, fn in migrations.MIGRATIONS:
        fn(db)
        db.execute("INSERT INTO schema_migration (name, applied_at) VALUES (?, ?)", [name, now()])
        if name == last:
            return


def test_the_migration_back_fills_mode_and_job_from_the_old_meta_json(tmp_path):
    db = sqlite_utils.Database(tmp_path / "old.db")
    _migrate_up_to(db, _before("0500_item_generation_provenance"))
    project = projects.create_project(db, "old", projects.parse_labels("pos,neg"))
    rows = [("real one", "real", "{}"),
            ("zero one", "synthetic", json.dumps({"generation_job_id": 3, "mode": "zero-shot", "model": "m"})),
            ("few one", "synthetic", json.dumps({"generation_job_id": 4, "mode": "few-shot"})),
            ("imported synthetic", "synthetic", "{}")]
    for i, (text, source, meta) in enumerate(rows):
        db.execute("INSERT INTO item (project_id, text, source, split, text_hash, meta, created_at)"
                   " VALUES (?, ?, ?, 'train', ?, ?, ?)", [project.id, text, source, f"h{i}", meta, now()])
    assert migrations.migrate(db)[0] == "0500_item_generation_provenance"
    got = [tuple(r) for r in db.execute("SELECT text, generation_mode, generation_job_id FROM item ORDER BY id")]
    assert got == [("real one", None, None), ("zero one", "zero-shot", 3), ("few one", "few-shot", 4),
                   ("imported synthetic", None, None)]
    table = item_table(db, project.id)
    assert generation_group(table).tolist() == ["real", "zero-shot", "few-shot", "synthetic"]
    assert source_table(db, project.id)["group"].tolist() == ["real", "zero-shot", "few-shot", "synthetic"]
    view = item_view(db, project.id)
    assert view["generation_mode"].tolist() == [None, "zero-shot", "few-shot", None]
    assert view["generation_job_id"].tolist() == [None, 3, 4, None]


def test_training_selects_synthetic_items_by_the_mode_and_job_columns(fresh_db):
    project = projects.create_project(fresh_db, "p", projects.parse_labels("pos,neg"))
    rows = [("test a", "real", "test", "pos", None, None), ("test b", "real", "test", "neg", None, None),
            ("zero a", "synthetic", "train", "pos", "zero-shot", 7), ("zero b", "synthetic", "train", "neg", "zero-shot", 7),
            ("few a", "synthetic", "train", "pos", "few-shot", 8), ("few b", "synthetic", "train", "neg", "few-shot", 8),
            # The column, not the JSON, is the rule: stale JSON in meta must not count.
            ("stale meta", "synthetic", "train", "neg", None, None)]
    for i, (text, source, split, label, mode, job) in enumerate(rows):
        fresh_db.execute(
            "INSERT INTO item (project_id, text, source, split, reference_label, generation_mode, generation_job_id,"
            " text_hash, meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [project.id, text, source, split, label, mode, job, f"h{i}",
             json.dumps({"mode": "few-shot", "generation_job_id": 8}) if text == "stale meta" else "{}", now()])
    zero = select_items(fresh_db, project.id, TrainConfig(sources=("zero-shot",)))
    assert sorted(zero.train.texts) == ["zero a", "zero b"]
    few = select_items(fresh_db, project.id, TrainConfig(sources=(), generation_job_ids=(8,)))
    assert few.train.texts == ["few a", "few b"]
    assert sorted(select_items(fresh_db, project.id, TrainConfig(sources=("few-shot",))).train.texts) == ["few a", "few b"]


def _before(name: str) -> str:
    names = [n for n, _ in migrations.MIGRATIONS]
    return names[names.index(name) - 1]
