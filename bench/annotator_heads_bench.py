"""Benchmark: one consensus head vs one head per annotator (``annotator_heads``) on ConvAbuse, embedded MiniLM.

ConvAbuse (../shared/data/convabuse, 2_splits) publishes every annotator's severity rating per conversational turn.
Each rating becomes a binary label (``abusive`` when the severity is below 0, as in bench/soft_labels_bench.py),
imported as raw per-annotator labels (``Annotator<k>``) of the train and test splits; turns whose text occurs twice
are left out. Both runs use label source ``majority`` (tied items are left out) and the same settings. Printed per
run: macro-F1 and accuracy of the item predictions, and per annotator the error rate on the test items that
annotator labelled: of the run's item predictions, and (heads run) of that annotator's own head.

Usage: ``.venv/bin/python bench/annotator_heads_bench.py [--epochs 3] [--seed 1]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import projects
from core.data import importer
from core.training.config import TrainConfig
from core.training.run import run_training
from db import connection

DATA = ROOT.parent / "shared" / "data" / "convabuse" / "2_splits"
SEVERITIES = ["1", "0", "-1", "-2", "-3"]


def wide_form() -> pd.DataFrame:
    """One row per turn of the train and test splits, one column per annotator (empty: not rated)."""
    frames = []
    for split, name in (("train", "ConvAbuseEMNLPtrain.csv"), ("test", "ConvAbuseEMNLPtest.csv")):
        frame = pd.read_csv(DATA / name, dtype=str, keep_default_na=False)
        frame["split"] = split
        frames.append(frame)
    wide = pd.concat(frames, ignore_index=True).drop_duplicates("user", keep=False)
    out = wide[["example_id", "user", "split"]].copy()
    for k in range(1, 9):
        # A cell is empty, "0"/"1", or "1, 0" for a repeated rating: the last rating counts.
        ratings = wide[[f"Annotator{k}_is_abuse.{s}" for s in SEVERITIES]].apply(
            lambda column: column.str.split(",").str[-1].str.strip().replace("", "0").astype(int))
        severity = np.array(SEVERITIES)[ratings.to_numpy().argmax(axis=1)].astype(int)
        out[f"Annotator{k}"] = np.where(ratings.sum(axis=1) == 1,
                                        np.where(severity < 0, "abusive", "not_abusive"), "")
    return out


def consensus_error_rates(db_path: Path, run_id: int) -> dict[str, float]:
    """Per annotator: how often the run's item prediction differs from that annotator's test label."""
    with connection.open_db(db_path) as db:
        rows = db.execute("SELECT a.annotator, AVG(p.predicted_label != a.label) FROM prediction p JOIN annotation a"
                          " ON a.item_id = p.item_id WHERE p.run_id = ? GROUP BY a.annotator", [run_id]).fetchall()
    return {annotator: rate for annotator, rate in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "bench.db"
        with connection.open_db(db_path) as db:
            project = projects.create_project(db, "convabuse", projects.parse_labels("abusive,not_abusive"))
            importer.import_frame(db, project.id, wide_form(), importer.ImportSpec(
                text_col="user", id_col="example_id", split_col="split",
                annotator_cols=tuple(f"Annotator{k}" for k in range(1, 9))))
        common = {"label_source": "majority", "epochs": args.epochs, "max_length": 64, "batch_size": 32,
                  "seed": args.seed}
        for name, extra in (("one head", {}), ("annotator heads", {"annotator_heads": True})):
            result = run_training(db_path, project.id, TrainConfig(**common, **extra))
            print(f"{name}: macro-F1 {result['macro_f1']:.3f}, accuracy {result['accuracy']:.3f}"
                  f" ({result['n_train']} training, {result['n_test']} test items, {result['seconds']:.0f} s)")
            items = consensus_error_rates(db_path, result["run_id"])
            heads = {h["annotator"]: h for h in result["annotator_heads"] or []}
            for annotator in sorted(items):
                own = f", own head {heads[annotator]['error_rate']:.3f}" if annotator in heads else ""
                print(f"  {annotator}: item prediction error {items[annotator]:.3f}{own}")


if __name__ == "__main__":
    main()
