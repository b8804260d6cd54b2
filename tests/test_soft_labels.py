"""Learning with disagreement (issue 13, items 1, 2 and 6): soft-label training and the disagreement-aware
metrics, checked on tiny hand-computed inputs, plus one tiny soft-label run of the embedded model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import projects
from core.agreement.dawid_skene import dawid_skene
from core.agreement.metrics import encode
from core.errors import SynthloopError
from core.training import service as training
from core.training.classifier import soft_cross_entropy
from core.training.config import TrainConfig
from core.training.data import select_items, soft_targets
from core.training.metrics import soft_metrics
from db import connection
from db import items as items_db
from db import runs as runs_db
from tests.page_helpers import researcher_app
from tests.training_helpers import add_items

ROOT = Path(__file__).resolve().parent.parent


# -- the metrics -----------------------------------------------------------------------------------------------

def test_soft_metrics_on_a_hand_computed_example() -> None:
    # Labels (a, b). Votes and predictions q:
    #   item 1: votes (2, 1) → p = (2/3, 1/3), q = (0.6, 0.4)   majority a, predicted a (right), confidence 0.6
    #   item 2: votes (0, 3) → p = (0, 1),     q = (0.8, 0.2)   majority b, predicted a (wrong), confidence 0.8
    #   item 3: votes (1, 0) → one label only: not scored
    #   item 4: votes (1, 1) → p = (.5, .5),   q = (0.9, 0.1)   tied majority: scored, but not in the ECE
    votes = np.array([[2, 1], [0, 3], [1, 0], [1, 1]])
    proba = np.array([[0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]])
    result = soft_metrics(votes, proba)
    # cross-entropy per item: −(2/3 ln .6 + 1/3 ln .4) = 0.64598; −ln .2 = 1.60944; −(.5 ln .9 + .5 ln .1) = 1.20397
    cross_entropy = (-(2 / 3 * math.log(0.6) + 1 / 3 * math.log(0.4)) - math.log(0.2)
                     - (0.5 * math.log(0.9) + 0.5 * math.log(0.1))) / 3
    assert result["cross_entropy"] == pytest.approx(cross_entropy)
    assert result["cross_entropy"] == pytest.approx(1.1531304, abs=1e-6)
    # Manhattan per item: |2/3 − .6| + |1/3 − .4| = 2/15; .8 + .8 = 1.6; .4 + .4 = .8 → mean 2.5333 / 3
    assert result["manhattan"] == pytest.approx((2 / 15 + 1.6 + 0.8) / 3)
    # ECE over items 1 and 2 (item 4 is tied): 0.6 lies in bin (8/15, 9/15], 0.8 in (11/15, 12/15]:
    # ½·|1 − 0.6| + ½·|0 − 0.8| = 0.2 + 0.4 = 0.6 (one common bin would have given |0.5 − 0.7| = 0.2)
    assert result["ece"] == pytest.approx(0.6)
    assert result["n_ece_items"] == 2
    # Entropy of q: item 1 0.673, item 2 0.500, item 4 0.325 → ranks 3, 2, 1; agreement max p: 2/3, 1, 1/2 →
    # ranks 2, 3, 1; Σd² = 1 + 1 + 0 = 2, ρ = 1 − 6·2 / (3·(9 − 1)) = 0.5
    assert result["entropy_agreement_spearman"] == pytest.approx(0.5)
    assert result["n_items"] == 3


def test_soft_metrics_clip_q_and_need_two_labels() -> None:
    # One scored item, p = (.5, .5), q = (1, 0): −(.5 ln 1 + .5 ln 1e-12) = 0.5 · 27.631 = 13.8155; Manhattan 1;
    # tied majority, so no ECE; fewer than 3 items, so no ρ.
    result = soft_metrics(np.array([[1, 1], [0, 1]]), np.array([[1.0, 0.0], [0.5, 0.5]]))
    assert result == {"cross_entropy": pytest.approx(0.5 * 12 * math.log(10)), "manhattan": pytest.approx(1.0),
                      "ece": None, "n_ece_items": 0, "entropy_agreement_spearman": None, "n_items": 1}
    assert soft_metrics(np.array([[1, 0], [0, 0]]), np.array([[0.5, 0.5], [0.5, 0.5]])) is None


def test_soft_metrics_rho_is_none_for_a_constant_agreement() -> None:
    votes = np.array([[2, 1], [1, 2], [2, 1]])  # every a_i = 2/3
    result = soft_metrics(votes, np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1]]))
    assert result["entropy_agreement_spearman"] is None
    assert result["n_items"] == 3


def test_soft_cross_entropy_equals_the_hand_computed_loss() -> None:
    import torch

    # Row 1: logits (0, ln 3) → softmax (1/4, 3/4), target (½, ½): −(½ ln ¼ + ½ ln ¾) = 0.83699
    # Row 2: logits (ln 4, 0) → softmax (4/5, 1/5), target (1, 0): −ln ⅘ = 0.22314; mean 0.53007
    logits = torch.tensor([[0.0, math.log(3)], [math.log(4), 0.0]])
    targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    expected = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) - math.log(0.8)) / 2
    assert float(soft_cross_entropy(logits, targets)) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.5300659, abs=1e-6)


# -- the targets -------------------------------------------------------------------------------------------------

@pytest.fixture
def voted(fresh_db, project):
    """Training items: one with 3 human votes and an LLM vote, one with one vote, one without votes."""
    ids = add_items(fresh_db, project.id, [
        {"text": "fine", "label": "pos", "votes": ["pos", "pos", "neg"]},
        {"text": "bad", "label": "neg", "votes": ["neu"]},
        {"text": "good", "label": "pos"},
        {"text": "awful", "split": "test", "label": "neg", "votes": ["neg", "neg", "pos", "neg"]},
    ])
    items_db.insert_annotations(fresh_db, [{"item_id": ids[0], "annotator": "llm:gpt", "label": "neu"}])
    return project


def test_soft_targets_are_human_vote_shares_else_one_hot(fresh_db, voted) -> None:
    selection = select_items(fresh_db, voted.id, TrainConfig(objective="soft"))
    assert selection.labels == ["pos", "neg", "neu"]
    assert selection.train.votes == [{"pos": 2, "neg": 1}, {"neu": 1}, {}]  # the llm: vote does not count
    assert selection.train_targets.tolist() == [[2 / 3, 1 / 3, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    assert selection.test.votes == [{"neg": 3, "pos": 1}]
    assert select_items(fresh_db, voted.id, TrainConfig()).train_targets is None  # hard: nothing changes


def test_dawid_skene_targets_are_the_posteriors(fresh_db, voted) -> None:
    selection = select_items(fresh_db, voted.id, TrainConfig(objective="soft", soft_source="dawid-skene"))
    human = items_db.annotation_labels_frame(fresh_db, voted.id)
    human = human[~human["annotator"].str.startswith("llm:")]
    fit = dawid_skene(encode(human, labels=["pos", "neg", "neu"]))
    posterior = dict(zip(fit.coded.item_ids, fit.probabilities, strict=True))
    ids = selection.train.item_ids
    np.testing.assert_allclose(selection.train_targets[0], posterior[ids[0]] / posterior[ids[0]].sum())
    np.testing.assert_allclose(selection.train_targets[1], posterior[ids[1]] / posterior[ids[1]].sum())
    assert selection.train_targets[2].tolist() == [1.0, 0.0, 0.0]  # no human votes: its one label
    np.testing.assert_allclose(selection.train_targets.sum(axis=1), 1.0)


def test_soft_targets_fall_back_per_item() -> None:
    from core.training.data import LabelledItems

    items = LabelledItems(item_ids=[1, 2], texts=["x", "y"], labels=["a", "b"], agreement=[None, None],
                          votes=[{"a": 1, "b": 3}, {}])
    assert soft_targets(items, ["a", "b"]).tolist() == [[0.25, 0.75], [0.0, 1.0]]
    posteriors = {1: np.array([1.0, 1.0])}  # normalised: (0.5, 0.5); item 2 has none, so its one label
    assert soft_targets(items, ["a", "b"], posteriors).tolist() == [[0.5, 0.5], [0.0, 1.0]]


def test_a_soft_run_hands_the_vote_shares_to_the_classifier(db_path, fresh_db, voted, monkeypatch) -> None:
    from core.training import classifier as classifier_module
    from core.training import run as runs

    seen: list = []

    def fit(self, texts, labels, **kwargs):
        seen.append((list(labels), kwargs))
        raise MemoryError()  # stops the run here: what reached fit is all this test needs

    monkeypatch.setattr(classifier_module.TransformerClassifier, "fit", fit)
    for objective in ("hard", "soft"):
        with pytest.raises(SynthloopError, match="out of memory"):
            runs.run_training(db_path, voted.id, TrainConfig(objective=objective))
    (hard_labels, hard_kwargs), (soft_labels, soft_kwargs) = seen
    assert hard_labels == soft_labels == ["pos", "neg", "pos"]
    assert hard_kwargs == {}  # the hard objective calls fit as before
    assert soft_kwargs["soft_targets"].tolist() == [[2 / 3, 1 / 3, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]


def test_cli_refuses_an_unknown_objective(db_path) -> None:
    done = subprocess.run([sys.executable, "-m", "core", "train", "demo", "--objective", "fuzzy", "--db",
                           str(db_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: python -m core train: argument --objective: invalid choice: 'fuzzy'"
                                   " (choose from 'hard', 'soft') (see --help)")


def test_unknown_objective_and_soft_source_are_refused() -> None:
    with pytest.raises(SynthloopError) as error:
        TrainConfig(objective="fuzzy")
    assert str(error.value) == "training setting objective='fuzzy' is not valid: use one of hard, soft"
    with pytest.raises(SynthloopError) as error:
        TrainConfig(soft_source="mace")
    assert str(error.value) == "training setting soft_source='mace' is not valid: use one of votes, dawid-skene"
    assert TrainConfig.from_dict({"epochs": 2}).objective == "hard"  # runs stored before the setting train hard


# -- Table 1 and the Runs page ---------------------------------------------------------------------------------

SOFT = {"cross_entropy": 0.5, "manhattan": 0.4, "ece": 0.1, "n_ece_items": 2, "entropy_agreement_spearman": -0.5,
        "n_items": 3}


def _finished_run(fresh_db, project_id: int, objective: str, macro_f1: float) -> int:
    config = TrainConfig(objective=objective)
    run_id = runs_db.create_run(fresh_db, project_id=project_id, config=config.to_dict(),
                                data_source=config.data_source, status="running")
    metrics = {"accuracy": macro_f1 + 0.1, "macro_f1": macro_f1, "labels": ["pos", "neg", "neu"], "per_class": {},
               "confusion_matrix": [], "sweep": [], "soft_metrics": SOFT if objective == "soft" else None}
    runs_db.update_run(fresh_db, run_id, metrics=metrics, history={}, n_train=4, n_test=2, seconds=3.0)
    runs_db.finish_run(fresh_db, run_id, status="done")
    return run_id


def test_table1_keeps_objectives_apart_and_runs_show_soft_metrics(fresh_db, project) -> None:
    hard = _finished_run(fresh_db, project.id, "hard", 0.6)
    soft = _finished_run(fresh_db, project.id, "soft", 0.5)
    frame = training.runs_frame(fresh_db).set_index("run")
    assert frame.loc[soft, ["objective", "soft_cross_entropy", "soft_manhattan", "soft_ece",
                            "soft_entropy_agreement_rho", "soft_n_items"]].tolist() == ["soft", 0.5, 0.4, 0.1, -0.5, 3]
    assert frame.loc[hard, "objective"] == "hard" and math.isnan(frame.loc[hard, "soft_cross_entropy"])
    table = training.table1(training.runs_frame(fresh_db))
    assert table[["objective", "real · macro-F1", "runs"]].values.tolist() == [["hard", 0.6, 1], ["soft", 0.5, 1]]


def test_runs_page_shows_soft_metrics(db_path, fresh_db, project, monkeypatch) -> None:
    _finished_run(fresh_db, project.id, "soft", 0.5)
    at = researcher_app("runs.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    assert at.dataframe[0].value["objective"].tolist() == ["soft"]
    metrics = {m.label: m.value for m in at.metric}
    assert {k: metrics[k] for k in ("Cross-entropy", "Manhattan", "ECE", "Entropy–agreement ρ")} == {
        "Cross-entropy": "0.500", "Manhattan": "0.400", "ECE": "0.100", "Entropy–agreement ρ": "-0.500"}


def test_train_page_starts_a_soft_run(db_path, fresh_db, voted, monkeypatch, launched) -> None:
    at = researcher_app("train.py", db_path, fresh_db, voted.id, monkeypatch)
    at.run()
    at.radio(key="train_objective").set_value("soft")
    at.radio(key="train_soft_source").set_value("dawid-skene")
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    [run] = runs_db.list_runs(fresh_db)
    assert (run["config"]["objective"], run["config"]["soft_source"]) == ("soft", "dawid-skene")


# -- a real soft-label run -------------------------------------------------------------------------------------

POSITIVE = ["great movie", "loved it", "wonderful acting", "brilliant film", "so much fun", "a delight", "superb",
            "really enjoyable", "fantastic story", "excellent cast", "a joy to watch"]
NEGATIVE = ["awful movie", "hated it", "terrible acting", "boring film", "waste of time", "a mess", "dreadful",
            "really dull", "stupid story", "poor cast", "a pain to watch"]


@pytest.mark.slow
def test_cli_soft_training_records_the_objective_and_soft_metrics(db_path, fresh_db) -> None:
    project = projects.create_project(fresh_db, "tiny", projects.parse_labels("pos,neg"))
    rows = [{"text": t, "label": "pos", "votes": ["pos", "pos", "neg"] if k % 2 else []}
            for k, t in enumerate(POSITIVE[:8])]
    rows += [{"text": t, "label": "neg", "votes": ["neg", "neg", "neg"] if k % 2 else []}
             for k, t in enumerate(NEGATIVE[:8])]
    rows += [{"text": t, "split": "test", "label": "pos", "votes": ["pos", "pos", "neg"]} for t in POSITIVE[8:]]
    rows += [{"text": t, "split": "test", "label": "neg", "votes": ["neg", "neg"]} for t in NEGATIVE[8:]]
    add_items(fresh_db, project.id, rows)
    done = subprocess.run([sys.executable, "-m", "core", "train", "tiny", "--objective", "soft", "--epochs", "1",
                           "--batch-size", "8", "--max-length", "32", "--seed", "7", "--json", "--db", str(db_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["status"], result["config"]["objective"], result["config"]["soft_source"]) == ("done", "soft",
                                                                                                  "votes")
    soft = result["soft_metrics"]
    assert set(soft) == {"cross_entropy", "manhattan", "ece", "n_ece_items", "entropy_agreement_spearman", "n_items"}
    assert (soft["n_items"], soft["n_ece_items"]) == (6, 6)
    assert 0 < soft["cross_entropy"] < 5 and 0 <= soft["manhattan"] <= 2 and 0 <= soft["ece"] <= 1
    # The stored predictions give the same numbers again.
    predictions = runs_db.predictions_frame(fresh_db, result["run_id"])
    proba = np.array([[p["pos"], p["neg"]] for p in map(json.loads, predictions["probabilities"])])
    votes = np.array([[2, 1]] * 3 + [[0, 2]] * 3)  # the test items in id order, as the predictions are
    assert soft_metrics(votes, proba)["manhattan"] == pytest.approx(soft["manhattan"], abs=1e-5)
    assert "against the human votes of 6 test items: cross-entropy" in result["message"]


# -- the study (item 6) ------------------------------------------------------------------------------------------

def _fake_training(trained: list[tuple[tuple[str, ...], str]]):
    """Stands in for ``run_training``: selects the run's items like a real run, scores a fixed result."""

    def run_training(db_path, project_id, config, *, job_id=None):
        trained.append((config.sources, config.objective))
        with connection.open_db(db_path) as db:
            selection = select_items(db, project_id, config)
        soft = {**SOFT, "cross_entropy": 0.4 if config.objective == "soft" else 0.6}
        return {"run_id": len(trained), "accuracy": 0.75, "macro_f1": 0.7, "n_train": len(selection.train),
                "n_test": len(selection.test), "sweep": [], "sweep_r2": None, "sweep_spearman_rho": None,
                "history": {}, "config": config.to_dict(), "soft_metrics": soft}

    return run_training


def _study_project(db, project_id: int, train_votes: list[str]) -> None:
    add_items(db, project_id, [{"text": t, "label": "pos", "votes": train_votes} for t in POSITIVE[:3]]
              + [{"text": t, "label": "neg", "votes": ["neg"] * 3} for t in NEGATIVE[:3]]
              + [{"text": t, "split": "test", "label": "pos", "votes": ["pos", "pos", "neg"]} for t in POSITIVE[8:]]
              + [{"text": t, "split": "test", "label": "neg", "votes": ["neg"] * 3} for t in NEGATIVE[8:]])


def test_study_adds_a_soft_label_run_and_the_disagreement_table(db_path, fresh_db, tmp_path, monkeypatch) -> None:
    from core.analysis import report, study
    from tests.test_analysis import FakeEmbedder

    project = projects.create_project(fresh_db, "demo", projects.parse_labels("pos,neg"))
    _study_project(fresh_db, project.id, ["pos", "pos", "neg"])
    trained: list = []
    monkeypatch.setattr("core.training.run.run_training", _fake_training(trained))
    monkeypatch.setattr("core.analysis.service.load_embedder", lambda model, batch_size: FakeEmbedder())
    out = tmp_path / "study"
    result = study.run_study(str(db_path), project.id, study.StudyConfig(out_dir=str(out), arms=("real",)))
    assert trained == [(("real",), "hard"), (("real",), "soft")]
    assert list(result["runs"]) == ["real", "real (soft labels)"]
    assert result["runs"]["real (soft labels)"]["config"]["objective"] == "soft"
    table1 = (out / "table1.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table1[1:]] == ["real", "real (soft labels)"]
    assert (out / "disagreement.csv").read_text().splitlines() == [
        "training data,objective,accuracy,macro_f1,cross_entropy,manhattan,ece,entropy_agreement_spearman,n_items,"
        "run_id",
        "real,hard,0.75,0.7,0.6,0.4,0.1,-0.5,3,1",
        "real (soft labels),soft,0.75,0.7,0.4,0.4,0.1,-0.5,3,2"]
    index = (out / "index.html").read_text()
    assert "Beside Table 1: each run&#x27;s predicted distribution" in index
    assert "<tr><td>real (soft labels)</td><td>soft</td><td>0.750</td>" in index
    assert "real (soft labels) accuracy 0.750" in result["message"]
    shown = report.read_tables(out)
    assert shown["tables"]["disagreement"]["objective"].tolist() == ["hard", "soft"]


def test_study_skips_a_soft_run_that_would_repeat_the_hard_one(db_path, fresh_db, tmp_path, monkeypatch) -> None:
    from core.analysis import report, study
    from tests.test_analysis import FakeEmbedder

    project = projects.create_project(fresh_db, "demo", projects.parse_labels("pos,neg"))
    _study_project(fresh_db, project.id, ["pos", "pos", "pos"])  # every training vote unanimous
    trained: list = []
    monkeypatch.setattr("core.training.run.run_training", _fake_training(trained))
    monkeypatch.setattr("core.analysis.service.load_embedder", lambda model, batch_size: FakeEmbedder())
    result = study.run_study(str(db_path), project.id, study.StudyConfig(out_dir=str(tmp_path / "s"), arms=("real",)))
    assert trained == [(("real",), "hard")]
    why = ("no real training item has disagreeing human votes, so its soft labels equal its hard labels and the"
           " soft-label run would repeat the run 'real'")
    assert result["soft_skipped"] == why
    assert f"No soft-label run: {why}." in report.study_notes(result)
    off = study.run_study(str(db_path), project.id, study.StudyConfig(out_dir=str(tmp_path / "t"), arms=("real",),
                                                                      soft_label_run=False))
    assert "soft_skipped" not in off and len(trained) == 2
