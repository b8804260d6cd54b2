"""The research pages' caches (issue 11 item 17): the data versions that triggers bump on every write, from any
connection; warm reruns that recompute nothing; and figures that change on the first rerun after a write."""

from __future__ import annotations

import pandas as pd
import pytest
import streamlit as st

import core.agreement.project as agreement_project
from core import projects
from core.agreement.charts import agreement_bins
from core.agreement.project import project_agreement
from core.annotation.adjudication import adjudicate
from core.annotation.assignment import submit_label
from core.annotation.pool import set_pool
from core.data import export as exporter
from core.generation import seeds
from core.training import service
from core.training.config import TrainConfig
from db import connection
from db import items as items_db
from db import runs as runs_db
from pages._common import DATA_TAB
from tests.page_helpers import researcher_app
from tests.training_helpers import add_items

ROWS = [
    {"text": "good", "label": "pos", "votes": ["pos", "pos", "pos"]},
    {"text": "bad", "label": "neg", "votes": ["neg", "neg", "pos"]},
    {"text": "meh", "label": "neu", "votes": ["neu", "pos"]},
    {"text": "fine", "split": "test", "label": "pos", "votes": ["pos", "neg", "neu"]},
]


@pytest.fixture(autouse=True)
def _empty_caches():
    st.cache_data.clear()  # st.cache_data lives as long as the process: no test sees another's entries
    yield
    st.cache_data.clear()


@pytest.fixture
def labelled(fresh_db, project):
    ids = add_items(fresh_db, project.id, ROWS)
    set_pool(fresh_db, project.id)  # so that annotators may label them
    return project, ids


def _counting(monkeypatch, owner, name: str) -> list[int]:
    """Count the calls of ``owner.name`` (the pages look it up at every run, so they call the counter)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


# ------------------------------------------------------------------------------------------ data versions


def test_every_write_to_a_project_bumps_its_data_version_from_another_connection(db_path, fresh_db, labelled):
    project, ids = labelled
    bystander = projects.create_project(fresh_db, "other", projects.parse_labels("a,b"))
    other = connection.connect(db_path)  # a second writer: another page, the CLI, a job process
    versions = [projects.data_version(fresh_db, project.id)]
    untouched = projects.data_version(fresh_db, bystander.id)

    def bumped() -> bool:
        versions.append(projects.data_version(fresh_db, project.id))
        return versions[-1] > versions[-2]

    add_items(other, project.id, [{"text": "new", "label": "pos"}])
    assert bumped()  # an item inserted
    other.execute("INSERT INTO annotation (item_id, annotator, label, created_at, updated_at)"
                  " VALUES (?, 'zed', 'neg', '', '')", [ids[0]])
    assert bumped()  # an annotation inserted, by SQL that no product code path wrote
    other.execute("UPDATE annotation SET label = 'neu' WHERE annotator = 'zed'")
    assert bumped()  # an annotation updated
    other.execute("DELETE FROM annotation WHERE annotator = 'zed'")
    assert bumped()  # an annotation deleted
    items_db.set_splits(other, {ids[1]: "dev"})
    assert bumped()  # an item updated (its split)
    other.execute("UPDATE item SET review_status = 'rejected' WHERE id = ?", [ids[2]])
    assert bumped()  # an item's review status
    adjudicate(other, project, ids[1], "neg")
    assert bumped()  # an adjudication
    seeds.pin(other, project.id, [ids[0]])
    assert bumped()  # a seed
    projects.add_labels(other, project.id, ["mixed"])
    assert bumped()  # a label
    other.execute("DELETE FROM item WHERE id = ?", [ids[3]])
    assert bumped()  # an item deleted, its annotations with it
    other.conn.close()
    assert projects.data_version(fresh_db, bystander.id) == untouched


def test_a_new_project_that_reuses_a_deleted_id_never_meets_an_old_version(fresh_db, labelled):
    project, _ = labelled
    before = projects.data_version(fresh_db, project.id)
    projects.delete_project(fresh_db, project.id)
    again = projects.create_project(fresh_db, "again", projects.parse_labels("pos,neg,neu"))
    assert again.id == project.id  # SQLite reuses the highest deleted id
    assert projects.data_version(fresh_db, again.id) > before


def test_runs_version_is_bumped_by_runs_predictions_and_project_names(db_path, fresh_db, labelled):
    project, ids = labelled
    other = connection.connect(db_path)
    versions = [service.runs_version(fresh_db)]

    def bumped() -> bool:
        versions.append(service.runs_version(fresh_db))
        return versions[-1] > versions[-2]

    run_id = runs_db.create_run(other, project_id=project.id, config=TrainConfig().to_dict(), data_source="real")
    assert bumped()
    runs_db.replace_predictions(other, run_id, [{"item_id": ids[3], "true_label": "pos", "predicted_label": "neg",
                                                 "probabilities": {"pos": 0.4, "neg": 0.6}, "agreement": 1 / 3}])
    assert bumped()
    runs_db.finish_run(other, run_id, status="done")
    assert bumped()
    projects.update_project(other, project.id, name="renamed")
    assert bumped()  # the runs list shows project names
    runs_db.delete_run(other, run_id)
    assert bumped()
    other.conn.close()


def test_run_summaries_carry_what_lists_show_and_no_history(fresh_db, labelled):
    project, _ = labelled
    run_id = runs_db.create_run(fresh_db, project_id=project.id, config=TrainConfig(epochs=4).to_dict(),
                                data_source="real")
    runs_db.update_run(fresh_db, run_id, train_item_ids=[1, 2, 3], history={"steps": [{"step": 1}]},
                       metrics={"accuracy": 0.75, "macro_f1": 0.5, "sweep": [{"gamma": 1.0}], "per_class": {}})
    [summary] = runs_db.list_run_summaries(fresh_db, project_id=project.id)
    [full] = runs_db.list_runs(fresh_db, project_id=project.id)
    # SQLite's json_extract reads a JSON false as 0.
    assert summary["config"] == {"epochs": 4, "min_agreement": 0.0, "objective": "hard", "annotator_heads": 0}
    assert summary["metrics"] == {"accuracy": 0.75, "macro_f1": 0.5, "sweep_r2": None, "sweep_spearman_rho": None,
                                  "sweep": [{"gamma": 1.0}], "soft_metrics": None}
    assert set(full) - set(summary) == {"history", "train_item_ids"}
    assert {k: v for k, v in full.items() if k not in ("config", "metrics", "history", "train_item_ids")} == {
        k: v for k, v in summary.items() if k not in ("config", "metrics")}


def test_agreement_bins_count_items_per_bin_and_source():
    items = pd.DataFrame({"instance_agreement": [0.6, 1.0, 2 / 3, 0.5, None, 0.6, 0.0],
                          "source": ["real", "real", "synthetic", "real", "real", "synthetic", "real"]})
    assert agreement_bins(items).values.tolist() == [
        [0.0, 0.05, "real", 1], [0.5, 0.55, "real", 1], [0.6, 0.65, "real", 1], [0.6, 0.65, "synthetic", 1],
        [0.65, 0.7, "synthetic", 1], [0.95, 1.0, "real", 1]]


# ------------------------------------------------------------------------------------------ the pages


def test_agreement_page_recomputes_only_after_a_write_and_then_shows_the_new_figures(db_path, fresh_db, labelled,
                                                                                     monkeypatch):
    project, ids = labelled
    computed = _counting(monkeypatch, agreement_project, "agreement_view")
    at = researcher_app("agreement.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    before = {m.label: m.value for m in at.metric}
    assert before["Krippendorff's alpha"] == f"{project_agreement(fresh_db, project).krippendorff_alpha:.3f}"
    at.run()
    assert len(computed) == 1  # a warm rerun with unchanged data computes nothing
    assert {m.label: m.value for m in at.metric} == before

    with connection.open_db(db_path) as other:  # a label added through the core function, elsewhere
        submit_label(other, project, "dana", ids[2], "neu")
    at.run()
    after = {m.label: m.value for m in at.metric}
    expected = project_agreement(fresh_db, project)
    assert len(computed) == 2
    assert after["Krippendorff's alpha"] == f"{expected.krippendorff_alpha:.3f}" != before["Krippendorff's alpha"]
    assert after["Items with ≥ 2 labels"] == "4"
    assert any(c.value.startswith(f"{expected.n_annotations} annotations by {expected.n_annotators} annotators")
               for c in at.caption)


def test_data_page_reads_items_only_on_the_browse_tab_and_again_after_a_write(db_path, fresh_db, labelled,
                                                                              monkeypatch):
    project, _ = labelled
    browsed = _counting(monkeypatch, exporter, "browse_items")
    at = researcher_app("data.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    assert browsed == []  # the Import tab is open: the items are not read
    at.session_state[DATA_TAB] = "Browse items"
    at.run()
    at.run()
    assert len(browsed) == 1
    assert at.metric[0].value == "4 of 4"
    add_items(fresh_db, project.id, [{"text": "late arrival", "label": "neg"}])
    at.run()
    assert len(browsed) == 2
    assert at.metric[0].value == "5 of 5"
    assert "late arrival" in at.dataframe[-1].value["text"].tolist()


def test_export_page_serves_its_bytes_until_a_write(db_path, fresh_db, labelled, monkeypatch):
    project, ids = labelled
    exported = _counting(monkeypatch, exporter, "export_data")
    at = researcher_app("export.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    at.radio(key="export_view").set_value("raw").run()
    at.run()
    assert not at.exception
    assert len(exported) == 2  # once per view
    assert at.caption[0].value.startswith("11 rows ·")
    submit_label(fresh_db, project, "dana", ids[0], "pos")
    at.run()
    assert len(exported) == 3
    assert at.caption[0].value.startswith("12 rows ·")


def test_train_page_reads_counts_and_ended_runs_once_per_change(db_path, fresh_db, labelled, monkeypatch):
    project, _ = labelled
    counted = _counting(monkeypatch, service, "training_options")
    ended = _counting(monkeypatch, service, "ended_progress")
    full_rows = _counting(monkeypatch, runs_db, "list_runs")  # every run's history and training ids
    at = researcher_app("train.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    at.run()
    assert not at.exception
    assert (len(counted), len(ended), full_rows) == (1, 1, [])
    assert at.checkbox[0].label == "Real training split (3)"

    run_id = runs_db.create_run(fresh_db, project_id=project.id, config=TrainConfig().to_dict(), data_source="real")
    runs_db.finish_run(fresh_db, run_id, status="failed", error="out of memory")
    at.run()
    assert (len(counted), len(ended), full_rows) == (1, 2, [])
    assert [e.value for e in at.error] == ["out of memory"]
    add_items(fresh_db, project.id, [{"text": "more", "label": "pos"}])
    at.run()
    assert len(counted) == 2
    assert at.checkbox[0].label == "Real training split (4)"


def test_caches_never_share_entries_between_two_databases(tmp_path, monkeypatch):
    """Two databases with the same project id and the same data version show their own rows."""
    shown = []
    for name, text in (("a", "only in a"), ("b", "only in b")):
        path = tmp_path / f"{name}.db"
        db = connection.connect(path)
        project = projects.create_project(db, "demo", projects.parse_labels("pos,neg"))
        add_items(db, project.id, [{"text": text, "label": "pos"}])
        at = researcher_app("export.py", path, db, project.id, monkeypatch)
        at.run()
        assert not at.exception
        shown.append(((project.id, projects.data_version(db, project.id)), at.dataframe[0].value["text"].tolist()))
        db.conn.close()
    assert shown[0][0] == shown[1][0]  # the same project id and version: only the database file tells them apart
    assert [texts for _, texts in shown] == [["only in a"], ["only in b"]]
