"""Benchmark: hard vs soft-label training of the embedded MiniLM on ConvAbuse, side by side.

ConvAbuse (../shared/data/convabuse, 2_splits) publishes every annotator's severity rating (1, 0, -1, -2, -3) per
conversational turn. Each rating becomes a binary label (``abusive`` when the severity is below 0, the data set's
own binary task), imported as raw per-annotator labels (``import:Annotator<k>``) of the train and test splits.
Both runs train on the same items with label source ``majority`` (items with a tied majority are left out of
training and testing, as for any run); ``hard`` learns the majority label, ``soft`` the vote distribution.
Printed per objective: macro-F1, accuracy and the disagreement metrics (``core.training.metrics.soft_metrics``)
over the test items with ≥ 2 labels.

``--max-items`` caps the training items (a seeded sample; the test split is capped at half of it) so that a run
takes a few minutes on two busy cores.

Usage: ``.venv/bin/python bench/soft_labels_bench.py [--max-items 600] [--epochs 2] [--seed 42]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import projects
from core.data.importer import ImportSpec, import_file
from core.training.config import TrainConfig
from core.training.data import select_items
from core.training.run import run_training
from db import connection

DATA = ROOT.parent / "shared" / "data" / "convabuse" / "2_splits"
SEVERITIES = ["1", "0", "-1", "-2", "-3"]
SPLIT_FILES = {"train": "ConvAbuseEMNLPtrain.csv", "test": "ConvAbuseEMNLPtest.csv"}


def long_form(max_items: int, seed: int) -> pd.DataFrame:
    """One row per (turn, annotator) of the train and test splits: ``example_id, user, split, annotator, label``."""
    rng = np.random.default_rng(seed)
    frames = []
    for split, name in SPLIT_FILES.items():
        wide = pd.read_csv(DATA / name, dtype=str, keep_default_na=False)
        cap = max_items if split == "train" else max(1, max_items // 2)
        if len(wide) > cap:
            wide = wide.iloc[np.sort(rng.choice(len(wide), size=cap, replace=False))]
        annotators = sorted({c.split("_is_abuse")[0] for c in wide.columns if "_is_abuse." in c})
        for annotator in annotators:
            # A cell is empty (not rated), "0"/"1", or "1, 0" when the annotator rated the turn repeatedly: the
            # last rating counts, as the importer's default keeps it.
            ratings = wide[[f"{annotator}_is_abuse.{s}" for s in SEVERITIES]].apply(
                lambda column: column.str.split(",").str[-1].str.strip().replace("", "0").astype(int))
            rated = ratings.sum(axis=1) == 1  # an annotator who rated this turn
            severity = np.array(SEVERITIES)[ratings.to_numpy().argmax(axis=1)]
            label = np.where(severity.astype(int) < 0, "abusive", "not_abusive")
            frames.append(pd.DataFrame({"example_id": wide["example_id"], "user": wide["user"], "split": split,
                                        "annotator": annotator, "label": label})[rated.to_numpy()])
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-items", type=int, default=600, help="training items at most (test: half)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "bench.db"
        csv = Path(folder) / "convabuse_long.csv"
        long = long_form(args.max_items, args.seed)
        long.to_csv(csv, index=False)
        with connection.open_db(db_path) as db:
            project = projects.create_project(db, "convabuse", projects.parse_labels("not_abusive,abusive"))
            report = import_file(db, project.id, csv, ImportSpec(
                text_col="user", id_col="example_id", split_col="split", annotator_col="annotator",
                annotation_col="label"))
            soft_selection = select_items(db, project.id, TrainConfig(label_source="majority", objective="soft"))
        split_votes = int((soft_selection.train_targets.max(axis=1) < 1.0).sum())
        print(f"ConvAbuse: {report.items_added} items, {report.annotations_added} raw labels imported"
              f" (--max-items {args.max_items}); {split_votes} of {len(soft_selection.train)} training items have"
              " split votes (a soft target that is not one-hot)")
        rows = []
        for objective in ("hard", "soft"):
            config = TrainConfig(label_source="majority", objective=objective, epochs=args.epochs, seed=args.seed,
                                 batch_size=args.batch_size, max_length=args.max_length)
            started = time.perf_counter()
            result = run_training(db_path, project.id, config)
            soft = result["soft_metrics"] or {}
            rows.append({"objective": objective, "n_train": result["n_train"], "n_test": result["n_test"],
                         "macro_f1": result["macro_f1"], "accuracy": result["accuracy"],
                         "cross_entropy": soft.get("cross_entropy"), "manhattan": soft.get("manhattan"),
                         "ece": soft.get("ece"), "entropy_agreement_rho": soft.get("entropy_agreement_spearman"),
                         "soft_items": soft.get("n_items"), "seconds": time.perf_counter() - started})
    table = pd.DataFrame(rows).set_index("objective")
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 160):
        print(table.to_string())


if __name__ == "__main__":
    main()
