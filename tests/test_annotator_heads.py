"""Per-annotator modelling (``train --annotator-heads``): the triples, the masked loss, the majority of the heads,
the per-annotator error rates, and one tiny real run with the embedded model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import projects
from core.errors import SynthloopError
from core.training import run as runs
from core.training import service
from core.training.annotator_heads import (
    AnnotatorHeadsClassifier,
    annotator_error_rates,
    build_triples,
    item_probabilities,
    masked_head_loss,
)
from core.training.classifier import import_torch
from core.training.config import TrainConfig
from db import items as items_db
from db import runs as runs_db
from db import transaction
from tests.page_helpers import researcher_app, shown
from tests.training_helpers import add_items

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["neg", "pos"]


def _annotations(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["item_id", "annotator", "label"])


def test_triples_keep_annotators_with_enough_labels_and_never_llms():
    annotations = _annotations([
        (1, "ann", "pos"), (1, "bob", "neg"), (1, "cy", "pos"), (1, "llm:gpt", "pos"),
        (2, "ann", "neg"), (2, "bob", "neg"), (2, "llm:gpt", "neg"),
        (3, "ann", "pos"), (3, "llm:gpt", "pos"), (3, "bob", "maybe"),  # 'maybe' is not a class
        (4, "cy", "pos"), (4, "bob", "pos"),  # item 4 is not a training item
        (5, "cy", "neg"),
    ])
    triples = build_triples(annotations, [1, 2, 3, 5], CLASSES, min_labels=2)
    # cy has 2 labels on training items (1, 5), bob 2 (1, 2: 'maybe' does not count), ann 3; llm:gpt never.
    assert triples.annotators == ["ann", "bob", "cy"]
    assert triples.item_ids == [1, 2, 3, 5]
    assert triples.triples == [(1, "ann", "pos"), (1, "bob", "neg"), (1, "cy", "pos"), (2, "ann", "neg"),
                               (2, "bob", "neg"), (3, "ann", "pos"), (5, "cy", "neg")]
    assert triples.label_matrix(CLASSES).tolist() == [[1, 0, 1], [0, 0, -1], [1, -1, -1], [-1, -1, 0]]

    fewer = build_triples(annotations, [1, 2, 3, 5], CLASSES, min_labels=3)
    assert (fewer.annotators, fewer.item_ids) == (["ann"], [1, 2, 3])  # item 5 has no label of a head left


def test_triples_without_any_head_say_what_to_change():
    annotations = _annotations([(1, "ann", "pos"), (2, "ann", "neg"), (1, "llm:gpt", "pos"), (2, "llm:gpt", "pos"),
                                (3, "llm:gpt", "neg")])
    with pytest.raises(SynthloopError) as caught:
        build_triples(annotations, [1, 2, 3], CLASSES, min_labels=3)
    assert str(caught.value) == ("no annotator has at least 'min_annotator_labels'=3 labels on the training items"
                                 " (most: 2 by 'ann'): lower 'min_annotator_labels', collect more labels, or turn"
                                 " 'annotator_heads' off")


def test_masked_loss_counts_only_the_labelled_heads():
    torch = import_torch()
    # 2 items × 2 annotators × 2 classes; item 0 is labelled by annotator 0 only, item 1 by annotator 1 only.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]],
                           [[50.0, -50.0], [0.0, math.log(3)]]], requires_grad=True)
    targets = torch.tensor([[0, -1], [-1, 1]])
    loss = masked_head_loss(logits, targets)
    # -log(1/2) for item 0's head 0, -log(3/4) for item 1's head 1; the two masked heads add nothing.
    assert float(loss.detach()) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, abs=1e-6)
    loss.backward()
    assert logits.grad[0, 1].tolist() == [0.0, 0.0] and logits.grad[1, 0].tolist() == [0.0, 0.0]
    assert logits.grad[0, 0].tolist() == pytest.approx([-0.25, 0.25])  # (softmax - one-hot) / 2 labelled cells


def test_item_prediction_is_the_majority_of_heads_ties_broken_by_mean_probability():
    # Three heads: two say 'a' by a little, one says 'b' with certainty. The mean probability favours 'b'
    # (0.6 against 1/3), the majority 'a', and the majority wins.
    three_heads = np.array([[[0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.0, 1.0, 0.0]]])
    proba = item_probabilities(three_heads)
    assert proba == pytest.approx(np.array([[(2 + 1 / 3) / 4, (1 + 0.6) / 4, (0 + 0.2 / 3) / 4]]))
    assert proba.argmax(axis=1).tolist() == [0]
    # Two heads, one vote each for 'a' and 'c': the tie goes to the higher mean probability ('a': 0.55, 'c': 0.25).
    # A third item has all heads on 'b'.
    two_heads = np.array([[[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]],
                          [[0.1, 0.8, 0.1], [0.3, 0.4, 0.3]]])
    proba = item_probabilities(two_heads)
    assert proba == pytest.approx(np.array([[(1 + 0.55) / 3, (0 + 0.2) / 3, (1 + 0.25) / 3],
                                            [(0 + 0.2) / 3, (2 + 0.6) / 3, (0 + 0.2) / 3]]))
    assert proba.argmax(axis=1).tolist() == [0, 1]
    assert proba.sum(axis=1).tolist() == pytest.approx([1.0, 1.0])


def test_error_rate_per_annotator_on_the_test_items_it_labelled():
    # Heads: 0 = ann, 1 = bob, 2 = cy. Items 10, 11, 12 in that row order.
    head_proba = np.array([[[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]],
                           [[0.7, 0.3], [0.4, 0.6], [0.1, 0.9]],
                           [[0.3, 0.7], [0.6, 0.4], [0.2, 0.8]]])
    annotations = _annotations([(10, "ann", "pos"), (11, "ann", "pos"), (12, "ann", "pos"),
                                (10, "bob", "pos"), (12, "bob", "neg"), (99, "cy", "pos"), (10, "dee", "pos")])
    rates = annotator_error_rates(annotations, [10, 11, 12], head_proba, ["ann", "bob", "cy"], CLASSES)
    assert rates == [{"annotator": "ann", "n_test_labels": 3, "error_rate": pytest.approx(1 / 3)},
                     {"annotator": "bob", "n_test_labels": 2, "error_rate": 0.5},
                     {"annotator": "cy", "n_test_labels": 0, "error_rate": None}]


def test_annotator_heads_take_the_hard_objective():
    with pytest.raises(SynthloopError, match="^'annotator_heads' trains on each annotator's own labels, so it takes"
                                             " 'objective' 'hard', not 'soft': turn one of them off$"):
        TrainConfig(annotator_heads=True, objective="soft")
    with pytest.raises(SynthloopError, match="min_annotator_labels=0"):
        TrainConfig(annotator_heads=True, min_annotator_labels=0)


# -- a tiny real run ----------------------------------------------------------------------------------------

POSITIVE = ["great movie", "loved it", "wonderful acting", "brilliant film", "so much fun", "a delight", "superb",
            "really enjoyable", "fantastic story", "excellent cast", "a joy to watch"]
NEGATIVE = ["awful movie", "hated it", "terrible acting", "boring film", "waste of time", "a mess", "dreadful",
            "really dull", "stupid story", "poor cast", "a pain to watch"]
TINY = {"epochs": 2, "batch_size": 8, "max_length": 32, "seed": 7}


@pytest.fixture
def annotated(fresh_db):
    """8 + 8 training and 3 + 3 test items, each labelled by annotator0..2 (annotator2 dissents on some) and by
    an LLM annotator; annotator3 labels only two training items."""
    project = projects.create_project(fresh_db, "heads", projects.parse_labels("pos,neg"))
    rows = []
    for split, (pos, neg) in (("train", (POSITIVE[:8], NEGATIVE[:8])), ("test", (POSITIVE[8:], NEGATIVE[8:]))):
        for texts, label, other in ((pos, "pos", "neg"), (neg, "neg", "pos")):
            rows += [{"text": t, "split": split, "label": label, "votes": [label, label, other if j % 3 == 0 else label]}
                     for j, t in enumerate(texts)]
    ids = add_items(fresh_db, project.id, rows)
    with transaction(fresh_db):
        items_db.insert_annotations(fresh_db, [{"item_id": i, "annotator": "llm:fake", "label": "pos"} for i in ids]
                                    + [{"item_id": i, "annotator": "annotator3", "label": "pos"} for i in ids[:2]])
    return project


def _cli(db_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args, "--db", str(db_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_refuses_heads_without_enough_labels(db_path, annotated):
    done = _cli(db_path, "train", "heads", "--annotator-heads", "--min-annotator-labels", "17")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: no annotator has at least --min-annotator-labels=17 labels on the training items (most: 16 by"
        " 'annotator0'): lower --min-annotator-labels, collect more labels, or turn --annotator-heads off")


@pytest.mark.slow
def test_tiny_run_with_annotator_heads_reports_each_annotator(db_path, annotated):
    config = TrainConfig(annotator_heads=True, min_annotator_labels=3, **TINY)
    result = runs.run_training(db_path, annotated.id, config)
    assert result["status"] == "done" and result["config"]["annotator_heads"] is True
    heads = result["annotator_heads"]
    assert [(h["annotator"], h["n_test_labels"]) for h in heads] == [("annotator0", 6), ("annotator1", 6),
                                                                      ("annotator2", 6)]
    assert all(h["error_rate"] in {k / 6 for k in range(7)} for h in heads)

    # The saved model has three heads, and the stored item predictions are their majority.
    clf = AnnotatorHeadsClassifier.load(Path(result["artifact_path"]) / "model")
    assert clf.annotators_ == ["annotator0", "annotator1", "annotator2"]
    with runs.connection.open_db(db_path) as db:
        stored = db.execute("SELECT p.predicted_label FROM prediction p JOIN item i ON i.id = p.item_id"
                            " WHERE p.run_id = ? ORDER BY i.id", [result["run_id"]]).fetchall()
        texts = [r[0] for r in db.execute("SELECT text FROM item WHERE split = 'test' ORDER BY id").fetchall()]
    head_proba = clf.head_proba(texts)
    assert head_proba.shape == (6, 3, 2)
    votes = head_proba.argmax(axis=2)
    for row, (label,) in zip(votes, stored, strict=True):
        counts = np.bincount(row, minlength=2)
        if counts[0] != counts[1]:  # three heads over two classes never tie
            assert label == clf.classes_[int(counts.argmax())]
    assert [h["error_rate"] for h in heads] == pytest.approx([
        float(np.mean([clf.classes_[v] != lb for v, lb in zip(votes[:, j], labels, strict=True)]))
        for j, labels in enumerate(_test_labels(db_path))])

    again = runs.evaluate_run(db_path, result["run_id"])  # reloads the heads model
    assert again["annotator_heads"] == heads and again["accuracy"] == result["accuracy"]
    assert json.loads((Path(result["artifact_path"]) / "metrics.json").read_text())["annotator_heads"] == heads


def _test_labels(db_path: Path) -> list[list[str]]:
    """annotator0..2's labels of the test items, in item order."""
    with runs.connection.open_db(db_path) as db:
        return [[r[0] for r in db.execute("SELECT a.label FROM annotation a JOIN item i ON i.id = a.item_id"
                                          " WHERE i.split = 'test' AND a.annotator = ? ORDER BY i.id", [name])]
                for name in ("annotator0", "annotator1", "annotator2")]


# -- pages --------------------------------------------------------------------------------------------------

def test_train_page_checkbox_starts_a_run_with_annotator_heads(db_path, fresh_db, annotated, monkeypatch, launched):
    at = researcher_app("train.py", db_path, fresh_db, annotated.id, monkeypatch)
    at.run()
    at.checkbox(key="train_annotator_heads").check()
    at.number_input(key="train_min_annotator_labels").set_value(17)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    assert shown(at.error[0].value) == (
        "no annotator has at least “Min annotator labels”=17 labels on the training items (most: 16 by"
        " 'annotator0'): lower “Min annotator labels”, collect more labels, or turn “Annotator heads” off")
    assert runs_db.list_runs(fresh_db) == [] and launched == []

    at.number_input(key="train_min_annotator_labels").set_value(16)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    [run] = runs_db.list_runs(fresh_db)
    assert run["config"] == TrainConfig(annotator_heads=True, min_annotator_labels=16).to_dict()


def test_runs_page_shows_the_annotator_heads_table(db_path, fresh_db, annotated, monkeypatch):
    config = TrainConfig(annotator_heads=True, min_annotator_labels=3)
    run_id = runs_db.create_run(fresh_db, project_id=annotated.id, config=config.to_dict(),
                                data_source=config.data_source, status="running")
    heads = [{"annotator": "annotator0", "n_test_labels": 6, "error_rate": 0.25},
             {"annotator": "annotator1", "n_test_labels": 0, "error_rate": None}]
    runs_db.update_run(fresh_db, run_id, metrics={"accuracy": 0.5, "macro_f1": 0.4, "labels": ["pos", "neg"],
                                                  "annotator_heads": heads}, n_train=16, n_test=6, seconds=1.0)
    runs_db.finish_run(fresh_db, run_id, status="done")
    at = researcher_app("runs.py", db_path, fresh_db, annotated.id, monkeypatch)
    at.run()
    assert not at.exception
    [table] = [d.value for d in at.dataframe if "annotator" in d.value.columns]
    assert table[["annotator", "n_test_labels"]].values.tolist() == [["annotator0", 6], ["annotator1", 0]]
    assert table["error_rate"].iloc[0] == 0.25 and pd.isna(table["error_rate"].iloc[1])


def test_table1_never_averages_a_heads_run_with_a_one_head_run(fresh_db, annotated):
    for config, f1 in ((TrainConfig(), 0.6), (TrainConfig(annotator_heads=True, min_annotator_labels=3), 0.8)):
        run_id = runs_db.create_run(fresh_db, project_id=annotated.id, config=config.to_dict(),
                                    data_source=config.data_source, status="running")
        runs_db.update_run(fresh_db, run_id, metrics={"accuracy": f1, "macro_f1": f1}, n_train=16, n_test=6)
        runs_db.finish_run(fresh_db, run_id, status="done")
    table = service.table1(service.runs_frame(fresh_db))
    assert table[["objective", "real · macro-F1", "runs"]].values.tolist() == [["hard", 0.6, 1],
                                                                               ["hard · annotator heads", 0.8, 1]]
