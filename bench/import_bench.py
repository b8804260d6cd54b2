"""Import benchmark: 100,000 items with 1,000,000 long-form annotations (a CSV row per item and annotator).

Measures, in the same run and on the same file, ``core.importer.import_file`` (validation, identity rules, dedup
hashing, one transaction) against a plain baseline: ``pandas.read_csv`` + ``sqlite3.executemany`` into the same
schema (same pragmas, indexes and triggers). Prints rows/s for both and the ratio core/baseline; a ratio far
below 1 would mean the importer does needless work per row.

Both wall-clock and CPU time (``time.process_time``: this process only, so other jobs on a shared machine
do not count) are reported; with ``--rounds R`` the two imports alternate R times and the best of each is kept.

    .venv/bin/python bench/import_bench.py [--items N] [--annotators K] [--rounds R]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import projects
from core.data import importer
from db import connection

WORDS = np.array(
    ["the", "a", "data", "model", "label", "text", "item", "annotator", "agree", "subjective", "news", "review", "movie", "great", "terrible", "okay", "spam", "offer", "free", "call", "now", "win", "prize", "price", "market", "stock", "rise", "fall", "report", "company", "quarter", "profit", "loss"]
)
LABELS = np.array(["pos", "neg", "neu"])


def make_csv(path: Path, n_items: int, n_annotators: int, seed: int = 0) -> int:
    """Write the long-form CSV; returns the number of rows (items × annotators)."""
    rng = np.random.default_rng(seed)
    words = WORDS[rng.integers(0, len(WORDS), size=(n_items, 8))]
    texts = pd.Series([" ".join(row) for row in words]) + " #" + pd.Series(np.arange(n_items)).astype(str)
    item = np.repeat(np.arange(n_items), n_annotators)
    frame = pd.DataFrame(
        {
            "item_id": item,
            "text": texts.to_numpy()[item],
            "annotator": np.tile(np.array([f"a{k}" for k in range(n_annotators)]), n_items),
            "label": LABELS[rng.integers(0, len(LABELS), size=len(item))],
        }
    )
    frame.to_csv(path, index=False)
    return len(frame)


Timing = tuple[float, float]  # (wall seconds, CPU seconds)


def run_core(csv_path: Path, db_path: Path) -> Timing:
    db = connection.connect(db_path)
    try:
        project = projects.create_project(db, "bench", projects.parse_labels("pos,neg,neu"))
        spec = importer.ImportSpec(id_col="item_id", text_col="text", annotator_col="annotator",
                                   annotation_col="label")
        start, cpu = time.perf_counter(), time.process_time()
        report = importer.import_file(db, project.id, csv_path, spec)
        timing = (time.perf_counter() - start, time.process_time() - cpu)
    finally:
        db.conn.close()
    print(f"  core:     {report.items_added:,} items, {report.annotations_added:,} annotations"
          f" in {timing[0]:.1f} s ({timing[1]:.1f} s CPU)")
    return timing


def run_baseline(csv_path: Path, db_path: Path) -> Timing:
    connection.connect(db_path).conn.close()  # the same schema, through the same migrations
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")  # as db.connection sets it: statement journals of the triggers
    stamp = connection.now()
    conn.execute("INSERT INTO project (name, created_at, updated_at) VALUES ('bench', ?, ?)", [stamp, stamp])
    start, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_csv(csv_path)
    items = frame.drop_duplicates("item_id")
    item_ids = pd.Series(np.arange(1, len(items) + 1), index=items["item_id"].to_numpy())
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO item (id, project_id, external_id, text, source, split, text_hash, created_at)"
        " VALUES (?, 1, ?, ?, 'real', 'train', '', ?)",
        zip(item_ids.tolist(), items["item_id"].astype(str).tolist(), items["text"].tolist(),
            [stamp] * len(items), strict=True),
    )
    conn.executemany(
        "INSERT INTO annotation (item_id, annotator, label, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        zip(item_ids.reindex(frame["item_id"].to_numpy()).tolist(), frame["annotator"].tolist(),
            frame["label"].tolist(), [stamp] * len(frame), [stamp] * len(frame), strict=True),
    )
    conn.execute("COMMIT")
    timing = (time.perf_counter() - start, time.process_time() - cpu)
    n_items, n_annotations = (conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("item", "annotation"))
    conn.close()
    print(f"  baseline: {n_items:,} items, {n_annotations:,} annotations"
          f" in {timing[0]:.1f} s ({timing[1]:.1f} s CPU)")
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two imports R times, keep the best")
    args = parser.parse_args()
    baselines: list[Timing] = []
    cores: list[Timing] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        csv_path = tmp_path / "long.csv"
        start = time.perf_counter()
        rows = make_csv(csv_path, args.items, args.annotators)
        print(f"generated {rows:,} rows ({args.items:,} items × {args.annotators} annotators),"
              f" {csv_path.stat().st_size / 1e6:.0f} MB, in {time.perf_counter() - start:.1f} s")
        for round_ in range(args.rounds):
            baselines.append(run_baseline(csv_path, tmp_path / f"baseline{round_}.db"))
            cores.append(run_core(csv_path, tmp_path / f"core{round_}.db"))
    for name, clock in (("wall", 0), ("CPU", 1)):
        baseline = min(t[clock] for t in baselines)
        core = min(t[clock] for t in cores)
        print(f"{name:>4}: baseline (pandas read_csv + sqlite3.executemany) {rows / baseline:>9,.0f} rows/s ({baseline:.1f} s);"
              f" core.importer.import_file {rows / core:>9,.0f} rows/s ({core:.1f} s); ratio core/baseline"
              f" {baseline / core:.2f}")


if __name__ == "__main__":
    main()
