"""The Train and Runs pages, each run on its own with AppTest on a temporary database (no model is loaded:
job launches are recorded instead of started, and finished runs are written through the db layer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.training import run as runs
from core.training.config import TrainConfig
from db import jobs as jobs_db
from db import runs as runs_db
from pages._common import RUNS_DETAIL_TAB
from tests.page_helpers import researcher_app as _app
from tests.training_helpers import add_items

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def labelled(fresh_db, project):
    add_items(fresh_db, project.id, [
        {"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}, {"text": "meh", "label": "neu"},
        {"text": "great", "label": "pos"},
        {"text": "fine", "split": "test", "label": "pos", "votes": ["pos", "pos", "neg"]},
        {"text": "awful", "split": "test", "label": "neg", "votes": ["neg", "neg", "neg"]},
    ])
    return project






def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_one_click_starts_a_queued_run_with_defaults(db_path, fresh_db, labelled, monkeypatch, launched):
    at = _app("train.py", db_path, fresh_db, labelled.id, monkeypatch)
    at.run()
    assert not at.exception
    assert [c.label for c in at.checkbox] == ["Real training split (4)", "Zero-shot synthetic (0)",
                                              "Few-shot synthetic (0)", "Seed examples (0)", "Annotator heads"]
    assert at.checkbox[0].value is True
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    [run] = runs_db.list_runs(fresh_db)
    assert run["config"] == TrainConfig().to_dict()
    assert (run["status"], run["data_source"], run["model"]) == ("queued", "real", "embedded")
    job = jobs_db.get_job(fresh_db, run["job_id"])
    assert (job["kind"], job["config"]["run_id"]) == ("training", run["id"])
    assert launched == [(str(db_path), run["job_id"])]
    assert "Run 1 started" in at.success[0].value
    assert "Run 1 · real · embedded — queued" in _markdown(at)


def test_round_and_panel_filters_reach_the_run(db_path, fresh_db, labelled, monkeypatch, launched):
    at = _app("train.py", db_path, fresh_db, labelled.id, monkeypatch)
    at.run()
    at.number_input(key="train_max_round").set_value(2)
    at.slider(key="train_min_panel").set_value(0.75)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    [run] = runs_db.list_runs(fresh_db)
    assert (run["config"]["max_round"], run["config"]["min_panel_agreement"]) == (2, 0.75)


def test_invalid_choice_shows_the_error_and_starts_nothing(db_path, fresh_db, labelled, monkeypatch, launched):
    at = _app("train.py", db_path, fresh_db, labelled.id, monkeypatch)
    at.run()
    at.checkbox(key="train_source_real").uncheck()
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    assert "no training data chosen" in at.error[0].value
    assert runs_db.list_runs(fresh_db) == [] and launched == []


def test_progress_panel_shows_step_epoch_loss_eta_and_cancels(db_path, fresh_db, labelled, monkeypatch, launched):
    started = runs.start_training(fresh_db, db_path, labelled.id, TrainConfig(epochs=2), launch=False)
    jobs_db.start_job(fresh_db, started["job_id"])
    jobs_db.update_progress(fresh_db, started["job_id"], done=3, total=10,
                            message="epoch 1/2 · step 3/10 · loss 0.5000 · ETA 7s",
                            result={"run_id": started["run_id"], "phase": "training", "step": 3, "total_steps": 10,
                                    "epoch": 1, "epochs": 2, "loss": 0.5, "eta_seconds": 7.2})
    runs_db.start_run(fresh_db, started["run_id"])
    at = _app("train.py", db_path, fresh_db, labelled.id, monkeypatch)
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Step": "3/10", "Epoch": "1/2", "Loss": "0.5000", "ETA": "7s"}
    at.button(key=f"cancel_run_{started['run_id']}").click().run()
    assert jobs_db.get_job(fresh_db, started["job_id"])["cancel_requested"] is True


def test_failed_run_shows_its_error(db_path, fresh_db, labelled, monkeypatch, launched):
    started = runs.start_training(fresh_db, db_path, labelled.id, TrainConfig(), launch=False)
    jobs_db.mark_failed(fresh_db, started["job_id"], "cannot load model 'nope': the model hub is unreachable")
    at = _app("train.py", db_path, fresh_db, labelled.id, monkeypatch)
    at.run()
    assert not at.exception
    assert at.error[0].value == "cannot load model 'nope': the model hub is unreachable"
    assert runs_db.get_run(fresh_db, started["run_id"])["status"] == "failed"  # the run follows its job


def _finished_run(fresh_db, project_id: int, sources: tuple[str, ...], accuracy: float) -> int:
    config = TrainConfig(sources=sources)
    run_id = runs_db.create_run(fresh_db, project_id=project_id, config=config.to_dict(),
                                data_source=config.data_source, status="running")
    metrics = {"accuracy": accuracy, "macro_f1": accuracy - 0.1, "labels": ["pos", "neg", "neu"],
               "per_class": {lb: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1} for lb in ("pos", "neg",
                                                                                                      "neu")},
               "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 0]],
               "sweep": [{"gamma": 2 / 3, "n_items": 2, "accuracy": 0.5, "macro_f1": 0.4},
                         {"gamma": 1.0, "n_items": 1, "accuracy": 1.0, "macro_f1": 1.0}],
               "sweep_slope": 1.5, "sweep_intercept": -0.5, "sweep_r2": 1.0, "sweep_spearman_rho": 1.0}
    history = {"steps": [{"step": 1, "epoch": 1, "loss": 0.7}, {"step": 2, "epoch": 1, "loss": 0.6}],
               "epochs": [{"epoch": 1, "train_loss": 0.65, "dev_accuracy": 0.5, "dev_macro_f1": 0.4}],
               "curve_set": "test"}
    runs_db.update_run(fresh_db, run_id, metrics=metrics, history=history, n_train=4, n_test=2, seconds=3.0)
    runs_db.finish_run(fresh_db, run_id, status="done")
    return run_id


def test_runs_page_table1_details_and_delete(db_path, fresh_db, labelled, monkeypatch):
    real = _finished_run(fresh_db, labelled.id, ("real",), 0.9)
    few = _finished_run(fresh_db, labelled.id, ("few-shot",), 0.7)
    at = _app("runs.py", db_path, fresh_db, labelled.id, monkeypatch)
    at.run()
    assert not at.exception
    table1 = at.dataframe[0].value
    assert list(table1.columns) == ["project", "label source", "objective", "real · macro-F1", "real · accuracy",
                                    "few-shot · macro-F1", "few-shot · accuracy", "runs"]
    assert table1.iloc[0].tolist()[:3] == ["demo", "reference", "hard"]
    assert table1.iloc[0].tolist()[3:] == pytest.approx([0.8, 0.9, 0.6, 0.7, 2])
    assert at.dataframe[1].value["run"].tolist() == [few, real]
    assert {m.label: m.value for m in at.metric}["Accuracy"] == "0.700"
    assert len(at.get("vega_lite_chart")) == 1  # the sweep: only the open tab draws
    at.session_state[RUNS_DETAIL_TAB] = "Per class"
    at.run()
    assert len(at.get("vega_lite_chart")) == 1  # the confusion matrix
    at.session_state[RUNS_DETAIL_TAB] = "Training curves"
    at.run()
    assert len(at.get("vega_lite_chart")) == 2  # loss per step, dev per epoch
    at.checkbox(key="runs_delete_confirm").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert [r["id"] for r in runs_db.list_runs(fresh_db)] == [real]


def test_runs_page_without_runs_says_how_to_start(db_path, fresh_db, labelled, monkeypatch):
    at = _app("runs.py", db_path, fresh_db, labelled.id, monkeypatch)
    at.run()
    assert not at.exception
    assert "No training runs yet" in at.info[0].value
