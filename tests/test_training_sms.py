"""A real-data check of the training pipeline: SMS spam (an objective task), trained on a training split with the
default settings (fewer epochs and a shorter maximum length to keep CI fast), macro-F1 ≥ 0.90 on held-out items."""

from __future__ import annotations

import numpy as np
import pytest

from core import projects
from core.training import run as runs
from core.training.config import TrainConfig
from db import runs as runs_db
from tests.training_helpers import add_items

N_TRAIN = 800
N_TEST = 300


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a sample of size ``n`` with the label proportions of ``labels``."""
    chosen = []
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        chosen.extend(rng.choice(where, size=round(n * len(where) / len(labels)), replace=False).tolist())
    return np.array(sorted(chosen))


@pytest.mark.slow
def test_sms_spam_macro_f1_at_least_0_90(shared_data, db_path, fresh_db):
    lines = (shared_data / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("\t", 1) for line in lines if "\t" in line]
    labels = np.array([label for label, _ in pairs])
    texts = [text for _, text in pairs]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pairs))
    half = len(order) // 2
    train_pool, test_pool = order[:half], order[half:]  # disjoint halves, then stratified samples of each
    train = train_pool[_stratified(labels[train_pool], N_TRAIN, rng)]
    test = test_pool[_stratified(labels[test_pool], N_TEST, rng)]

    project = projects.create_project(fresh_db, "sms", projects.parse_labels("ham,spam"))
    seen: set[str] = set()
    rows = []
    for split, indices in (("train", train), ("test", test)):
        for i in indices:
            if texts[i].casefold() not in seen:  # the collection repeats some messages verbatim
                seen.add(texts[i].casefold())
                rows.append({"text": texts[i], "label": labels[i], "split": split})
    add_items(fresh_db, project.id, rows)

    result = runs.run_training(db_path, project.id, TrainConfig(epochs=2, max_length=64))
    print(f"SMS spam: macro-F1 {result['macro_f1']:.4f}, accuracy {result['accuracy']:.4f},"
          f" n_train {result['n_train']}, n_test {result['n_test']}, {result['seconds']:.0f}s")
    assert result["n_test"] > 0.9 * N_TEST and result["n_train"] > 0.9 * N_TRAIN
    assert result["macro_f1"] >= 0.90
    assert result["per_class"]["spam"]["support"] > 30
    assert len(runs_db.predictions_frame(fresh_db, result["run_id"])) == result["n_test"]
