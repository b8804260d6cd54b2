"""Training runs end to end: the CLI in a subprocess, the detached job process, reproducibility, failures.

The model tests (``slow``) fine-tune the embedded MiniLM on a tiny dataset for a couple of steps; the others
exercise the run's life (cancel, crash, delete) without loading a model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core import cli, jobs, projects
from core.errors import SynthloopError
from core.training import classifier as classifier_module
from core.training import run as runs
from core.training.config import TrainConfig
from db import connection
from db import jobs as jobs_db
from db import runs as runs_db
from tests.training_helpers import add_items

ROOT = Path(__file__).resolve().parent.parent
POSITIVE = ["great movie", "loved it", "wonderful acting", "brilliant film", "so much fun", "a delight", "superb",
            "really enjoyable", "fantastic story", "excellent cast", "a joy to watch"]
NEGATIVE = ["awful movie", "hated it", "terrible acting", "boring film", "waste of time", "a mess", "dreadful",
            "really dull", "stupid story", "poor cast", "a pain to watch"]
TINY = {"epochs": 2, "batch_size": 8, "max_length": 32, "seed": 7}
RESULT_KEYS = {"run_id", "accuracy", "macro_f1", "n_train", "n_test", "per_class", "confusion_matrix", "sweep",
               "sweep_r2", "sweep_spearman_rho", "config", "seconds"}


@pytest.fixture
def tiny(fresh_db):
    """8 + 8 training items and 3 + 3 test items; test items have 3 votes each, 2 of them a split vote."""
    project = projects.create_project(fresh_db, "tiny", projects.parse_labels("pos,neg"))
    rows = [{"text": t, "label": "pos"} for t in POSITIVE[:8]] + [{"text": t, "label": "neg"} for t in NEGATIVE[:8]]
    for k, (texts, label, other) in enumerate(((POSITIVE[8:], "pos", "neg"), (NEGATIVE[8:], "neg", "pos"))):
        for j, text in enumerate(texts):
            votes = [label, label, other if j == k else label]
            rows.append({"text": text, "split": "test", "label": label, "votes": votes})
    add_items(fresh_db, project.id, rows)
    return project


def _cli(db_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args, "--db", str(db_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _wait(db_path: Path, job_id: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.open_db(db_path) as db:
            job = jobs_db.get_job(db, job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")


@pytest.mark.slow
def test_cli_train_evaluate_and_reproducibility(db_path, fresh_db, tiny):
    args = ["--epochs", "2", "--batch-size", "8", "--max-length", "32", "--seed", "7"]
    done = _cli(db_path, "train", "tiny", *args, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= RESULT_KEYS
    assert (result["status"], result["n_train"], result["n_test"]) == ("done", 16, 6)
    assert result["config"] == TrainConfig(**TINY).to_dict()
    assert set(result["per_class"]) == {"pos", "neg"}
    assert np.array(result["confusion_matrix"]).sum() == 6
    assert [(p["gamma"], p["n_items"]) for p in result["sweep"]] == [(pytest.approx(2 / 3), 6), (1.0, 4)]
    assert set(result["sweep"][0]) == {"gamma", "n_items", "accuracy", "macro_f1"}
    assert Path(result["zip_path"]).is_file() and (Path(result["artifact_path"]) / "model" / "config.json").is_file()
    assert done.stderr == ""  # not a terminal: no progress lines, and the JSON alone on stdout

    run = runs_db.get_run(fresh_db, result["run_id"])
    assert run["status"] == "done" and len(run["train_item_ids"]) == 16
    assert [s["step"] for s in run["history"]["steps"]] == [1, 2, 3, 4]
    assert [e["epoch"] for e in run["history"]["epochs"]] == [1, 2]
    assert run["history"]["curve_set"] == "test" and "dev_accuracy" in run["history"]["epochs"][0]
    first = runs_db.predictions_frame(fresh_db, result["run_id"])
    assert len(first) == 6

    # Same config and seed in another process: the same metrics and the same probabilities.
    again = runs.run_training(db_path, tiny.id, TrainConfig(**TINY))
    assert (again["accuracy"], again["macro_f1"], again["sweep"]) == (result["accuracy"], result["macro_f1"],
                                                                       result["sweep"])
    assert runs_db.predictions_frame(fresh_db, again["run_id"])["probabilities"].tolist() == \
        first["probabilities"].tolist()
    assert runs_db.get_run(fresh_db, again["run_id"])["train_item_ids"] == run["train_item_ids"]

    # Evaluating the saved model on the same test items gives the same numbers.
    evaluated = runs.evaluate_run(db_path, result["run_id"])
    assert (evaluated["accuracy"], evaluated["macro_f1"], evaluated["sweep"]) == \
        (result["accuracy"], result["macro_f1"], result["sweep"])

    listed = _cli_in_process(db_path, "runs", "list", "--json")
    assert [r["run"] for r in listed["runs"]] == [again["run_id"], result["run_id"]]

    runs.delete_run(fresh_db, db_path, result["run_id"])
    assert not Path(result["zip_path"]).exists() and not Path(result["artifact_path"]).exists()
    assert runs_db.predictions_frame(fresh_db, result["run_id"]).empty


def _cli_in_process(db_path: Path, *args: str) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*args, "--db", str(db_path)]) == 0
    return json.loads(out.getvalue())


@pytest.mark.slow
def test_detached_job_trains_and_an_unknown_model_fails_readably(db_path, fresh_db, tiny):
    bad = runs.start_training(fresh_db, db_path, tiny.id, TrainConfig(**TINY, model="no-such-model-xyz"))
    good = runs.start_training(fresh_db, db_path, tiny.id, TrainConfig(**TINY))
    failed = _wait(db_path, bad["job_id"])
    assert failed["status"] == "failed"
    run = runs.get_run(fresh_db, bad["run_id"])
    assert run["status"] == "failed"
    assert "cannot load model 'no-such-model-xyz'" in run["error"]
    assert "model hub is unreachable" in run["error"] and "Pass a local path" in run["error"]
    assert failed["error"] == run["error"]  # one readable line, no traceback

    job = _wait(db_path, good["job_id"])
    assert job["status"] == "done", job["error"]
    assert job["result"]["run_id"] == good["run_id"] and job["result"]["n_test"] == 6
    assert runs.get_run(fresh_db, good["run_id"])["status"] == "done"
    assert (runs.artifact_dir(db_path, good["run_id"]) / "model").is_dir()
    assert "step 4/4" in jobs.log_path(db_path, good["job_id"]).read_text()  # progress lines in the job's log


def test_cli_unknown_model_exits_2_with_one_line(db_path, fresh_db, tiny, capsys, monkeypatch):
    # No model is loaded: resolving a hub id that is not cached fails before any weights are read.
    monkeypatch.setattr(classifier_module, "load_tokenizer_and_model", _raise_hub_error)
    assert cli.main(["train", "tiny", "--model", "nope/nope", "--db", str(db_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run 1 failed: cannot load model 'nope/nope'") and err.count("\n") == 1
    assert runs_db.get_run(fresh_db, 1)["status"] == "failed"


def _raise_hub_error(name, **kwargs):
    raise classifier_module._hub_error(name, OSError("offline"))


def test_cancel_before_training_ends_the_run_cancelled(db_path, fresh_db, tiny):
    started = runs.start_training(fresh_db, db_path, tiny.id, TrainConfig(**TINY), launch=False)
    jobs_db.start_job(fresh_db, started["job_id"])
    runs.cancel_run(fresh_db, started["run_id"])
    result = runs.run_training(db_path, tiny.id, TrainConfig(**TINY), job_id=started["job_id"],
                               run_id=started["run_id"])
    assert result == {"run_id": started["run_id"], "status": "cancelled"}
    assert runs.get_run(fresh_db, started["run_id"])["status"] == "cancelled"
    with pytest.raises(SynthloopError, match=r"run 1 is already cancelled"):
        runs.cancel_run(fresh_db, started["run_id"])


def test_out_of_memory_marks_the_run_failed_with_advice(db_path, fresh_db, tiny, monkeypatch):
    def fit(self, texts, labels):
        raise MemoryError()

    monkeypatch.setattr(classifier_module.TransformerClassifier, "fit", fit)
    with pytest.raises(SynthloopError, match=r"out of memory while training: lower the batch size"):
        runs.run_training(db_path, tiny.id, TrainConfig(**TINY))
    [run] = runs_db.list_runs(fresh_db)
    assert run["status"] == "failed" and run["error"].startswith("out of memory")


def test_a_queued_run_whose_job_died_is_shown_failed_and_can_be_deleted(db_path, fresh_db, tiny):
    started = runs.start_training(fresh_db, db_path, tiny.id, TrainConfig(**TINY), launch=False)
    with pytest.raises(SynthloopError, match=r"run 1 is queued: cancel it first"):
        runs.delete_run(fresh_db, db_path, started["run_id"])
    jobs_db.mark_failed(fresh_db, started["job_id"], "the job's process stopped without finishing")
    assert runs.get_run(fresh_db, started["run_id"])["status"] == "failed"
    runs.delete_run(fresh_db, db_path, started["run_id"])
    assert runs_db.list_runs(fresh_db) == []


def test_local_path_that_does_not_exist_is_named():
    with pytest.raises(SynthloopError, match=r"no model folder at './missing-model'"):
        classifier_module.resolve_model("./missing-model")
