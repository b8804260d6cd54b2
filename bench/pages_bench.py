"""Benchmark: the research pages' rerun time on a large project, warm (cached) against uncached.

Builds a synthetic, seeded database — one project with 50,000 items (80 % real, 20 % synthetic zero-/few-shot;
train/dev/test 70/10/20), 250,000 annotations (about 5 per item, from 40 annotators, 3 labels, annotators of
differing accuracy) and three finished training runs with a prediction per test item — by bulk insert through
``db/`` (the triggers included). Then runs each research page (Agreement, Data/Browse, Export, Train, Runs) with
AppTest as a researcher, the way tests/page_helpers.py does, and prints per page:
- cold: the first run, with every ``st.cache_data`` cache empty;
- warm: the median of a few reruns with unchanged data (what a click or a poll costs);
- uncached: the median of reruns with ``st.cache_data`` cleared before each one — the baseline, measured in the
  same run: what every rerun cost without the caches;
- ratio: uncached / warm. Target: warm reruns under 150 ms.

Usage: ``.venv/bin/python bench/pages_bench.py [--items 50000] [--annotations 250000] [--warm 5] [--uncached 3]
[--pages agreement,data,export,train,runs]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streamlit as st
import streamlit.logger
from streamlit.testing.v1 import AppTest

from core import projects, users
from db import connection, transaction
from db import items as items_db
from db import runs as runs_db
from pages._common import DATA_TAB, PROJECT_ID, USER_ID

LABELS = ("neg", "neu", "pos")
N_ANNOTATORS = 40
WORDS = np.array(["the", "a", "film", "plot", "actor", "scene", "great", "awful", "boring", "fine", "slow", "fast",
                  "story", "music", "ending", "long", "short", "funny", "sad", "dull", "bright", "dark", "quiet"])
PAGES = {"agreement": "Agreement", "data": "Data/Browse", "export": "Export", "train": "Train", "runs": "Runs"}
TARGET_MS = 150


def build_database(path: Path, *, n_items: int, n_annotations: int, n_runs: int = 3, seed: int = 0) -> tuple[int, int]:
    """The synthetic project, its runs and a researcher; returns ``(project_id, researcher_id)``."""
    rng = np.random.default_rng(seed)
    db = connection.connect(path)
    try:
        project = projects.create_project(db, "bench", projects.parse_labels(list(LABELS)), overlap=5)
        researcher = users.add_user(db, "rita", role="researcher")  # no password: bcrypt is slow on purpose
        truth = rng.integers(0, len(LABELS), n_items)
        synthetic = rng.random(n_items) < 0.2
        split = np.where(rng.random(n_items) < 0.7, "train", np.where(rng.random(n_items) < 1 / 3, "dev", "test"))
        modes = np.where(rng.random(n_items) < 0.5, "zero-shot", "few-shot")
        lengths = rng.integers(6, 20, n_items)
        items = []
        for i in range(n_items):
            text = f"{i} " + " ".join(WORDS[rng.integers(0, len(WORDS), lengths[i])])
            item = {"external_id": f"e{i}", "text": text, "text_hash": f"h{i}", "source": "real",
                    "split": str(split[i]), "reference_label": LABELS[truth[i]]}
            if synthetic[i]:
                job = 1 + int(modes[i] == "few-shot")
                item |= {"source": "synthetic", "generation_mode": str(modes[i]), "generation_job_id": job,
                         "meta": json.dumps({"mode": str(modes[i]), "generation_job_id": job, "model": "bench"})}
            items.append(item)
        # about n_annotations / n_items distinct annotators per item, each right with probability 0.6 … 0.95
        per_item = np.full(n_items, n_annotations // n_items)
        per_item[rng.choice(n_items, n_annotations - per_item.sum(), replace=False)] += 1
        accuracy = np.linspace(0.6, 0.95, N_ANNOTATORS)
        with transaction(db):
            ids = np.array(items_db.insert_items(db, project.id, items))
            item_of = np.repeat(np.arange(n_items), per_item)
            annotator = np.concatenate([rng.choice(N_ANNOTATORS, k, replace=False) for k in per_item])
            right = rng.random(len(item_of)) < accuracy[annotator]
            label = np.where(right, truth[item_of], rng.integers(0, len(LABELS), len(item_of)))
            items_db.insert_annotation_columns(
                db, ids[item_of].tolist(), [f"annotator{a:02d}" for a in annotator],
                [LABELS[k] for k in label])
            test_ids = ids[(split == "test") & ~synthetic]
            for run in range(n_runs):
                _finished_run(db, project.id, test_ids, truth[np.searchsorted(ids, test_ids)], rng, run)
        return project.id, researcher.id
    finally:
        db.conn.close()


def _finished_run(db, project_id: int, test_ids, true_labels, rng, run: int) -> None:
    config = {"sources": ["real"], "label_source": "reference", "min_agreement": 0.0, "model": "embedded",
              "epochs": 3, "seed": run}
    run_id = runs_db.create_run(db, project_id=project_id, config=config, data_source="real", status="running")
    predicted = np.where(rng.random(len(test_ids)) < 0.8, true_labels, rng.integers(0, len(LABELS), len(test_ids)))
    runs_db.replace_predictions(db, run_id, [
        {"item_id": int(i), "true_label": LABELS[t], "predicted_label": LABELS[p],
         "probabilities": {lb: round(float(x), 3) for lb, x in zip(LABELS, rng.dirichlet([1, 1, 1]), strict=True)},
         "agreement": None} for i, t, p in zip(test_ids, true_labels, predicted, strict=True)])
    steps = [{"step": s, "epoch": 1 + s // 400, "loss": float(1 / (1 + s))} for s in range(1, 1200)]
    metrics = {"accuracy": 0.8, "macro_f1": 0.79, "labels": list(LABELS),
               "per_class": {lb: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 100} for lb in LABELS},
               "confusion_matrix": [[80, 10, 10], [10, 80, 10], [10, 10, 80]],
               "sweep": [{"gamma": g, "n_items": 1000, "accuracy": 0.7 + g / 5, "macro_f1": 0.6 + g / 5}
                         for g in (0.4, 0.6, 0.8, 1.0)],
               "sweep_slope": 0.2, "sweep_intercept": 0.6, "sweep_r2": 1.0, "sweep_spearman_rho": 1.0}
    history = {"steps": steps, "epochs": [{"epoch": e, "train_loss": 0.5, "dev_accuracy": 0.7, "dev_macro_f1": 0.6}
                                          for e in (1, 2, 3)], "curve_set": "test"}
    runs_db.update_run(db, run_id, metrics=metrics, history=history, n_train=len(test_ids) * 3,
                       n_test=len(test_ids), seconds=100.0, train_item_ids=list(range(1, 30_000)))
    runs_db.finish_run(db, run_id, status="done")


def _app(page: str, project_id: int, user_id: int) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=600)
    at.session_state[USER_ID] = user_id
    at.session_state[PROJECT_ID] = project_id
    if page == "data":
        at.session_state[DATA_TAB] = "Browse items"  # the Browse tab, as a researcher who clicked it
    return at


def _timed_run(at: AppTest) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run (CPU time tells the page's own cost on a machine others share)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    at.run()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception[0].value}")
    return elapsed, cpu


def _clear_caches() -> None:
    # Outside a server every cache call warns; AppTest resets the log level at each run.
    streamlit.logger.set_log_level("error")
    st.cache_data.clear()


def time_page(page: str, project_id: int, user_id: int, *, warm: int, uncached: int) -> dict[str, float]:
    _clear_caches()
    at = _app(page, project_id, user_id)
    cold, _ = _timed_run(at)
    warm_times = [_timed_run(at) for _ in range(warm)]
    uncached_times = []
    for _ in range(uncached):
        _clear_caches()
        uncached_times.append(_timed_run(at))
    return {"cold": cold, "warm": statistics.median(t for t, _ in warm_times),
            "warm_cpu": statistics.median(c for _, c in warm_times),
            "uncached": statistics.median(t for t, _ in uncached_times),
            "uncached_cpu": statistics.median(c for _, c in uncached_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--annotations", type=int, default=250_000)
    parser.add_argument("--warm", type=int, default=5, help="warm reruns per page (the median is shown)")
    parser.add_argument("--uncached", type=int, default=3, help="uncached reruns per page (the median is shown)")
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated, from " + ",".join(PAGES))
    args = parser.parse_args()
    chosen = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PAGES))
    if unknown:
        parser.error(f"unknown page {unknown[0]!r}: choose from {', '.join(PAGES)}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        os.environ["SYNTHLOOP_DB"] = str(path)
        start = time.perf_counter()
        project_id, user_id = build_database(path, n_items=args.items, n_annotations=args.annotations)
        print(f"built {args.items:,} items, {args.annotations:,} annotations, 3 runs in "
              f"{time.perf_counter() - start:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        print(f"wall-clock ms (CPU ms in brackets); target: warm rerun under {TARGET_MS} ms")
        print(f"{'page':<12} {'cold':>7} {'warm':>7} {'(CPU)':>7} {'uncached':>9} {'(CPU)':>7} {'ratio':>7}")
        for page in chosen:
            t = time_page(page, project_id, user_id, warm=args.warm, uncached=args.uncached)
            ok = "ok" if t["warm"] * 1000 < TARGET_MS else "over target"
            print(f"{PAGES[page]:<12} {t['cold'] * 1000:7.0f} {t['warm'] * 1000:7.0f} ({t['warm_cpu'] * 1000:5.0f})"
                  f" {t['uncached'] * 1000:9.0f} ({t['uncached_cpu'] * 1000:5.0f}) {t['uncached'] / t['warm']:6.1f}x"
                  f"  {ok}", flush=True)


if __name__ == "__main__":
    main()
