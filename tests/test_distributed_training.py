"""Training under torchrun: two CPU processes (gloo) train one run, recorded once, scoring like one process.

Slow (two model trainings, about a minute on 2 cores): it fine-tunes the embedded MiniLM on the tiny dataset
of test_training once in one process and once under ``torchrun --nproc_per_node 2``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.training import distributed
from db import runs as runs_db
from tests.test_training import ROOT, tiny  # noqa: F401  (the fixture)

# One batch holds the whole training set (16 items), so one process and two (8 items each, gradients
# averaged) take the same optimisation steps on the same data: what differs is the dropout masks and the
# order of float sums. Three steps at a high rate separate the two classes well beyond that noise.
ARGS = ["--epochs", "3", "--batch-size", "16", "--lr", "5e-4", "--max-length", "32", "--seed", "7"]


def _train(db_path: Path, *launcher: str) -> list[dict]:
    done = subprocess.run([*launcher, "-m", "core", "train", "tiny", *ARGS, "--db", str(db_path), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def _p_pos(db, run_id: int) -> np.ndarray:
    frame = runs_db.predictions_frame(db, run_id)
    return np.array([json.loads(p)["pos"] if isinstance(p, str) else p["pos"] for p in frame["probabilities"]])


@pytest.mark.slow
def test_torchrun_two_processes_record_one_run_that_scores_like_one_process(db_path, fresh_db, tiny):  # noqa: F811
    [single] = _train(db_path, sys.executable)
    outputs = _train(db_path, sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")

    # Rank 0 alone prints the run, and it is the only run the two processes created.
    assert len(outputs) == 1
    parallel = outputs[0]
    assert [r["id"] for r in runs_db.list_runs(fresh_db)] == [parallel["run_id"], single["run_id"]]
    run = runs_db.get_run(fresh_db, parallel["run_id"])
    assert (run["status"], run["n_train"], run["n_test"]) == ("done", 16, 6)
    assert run["config"] == runs_db.get_run(fresh_db, single["run_id"])["config"]
    assert (Path(parallel["artifact_path"]) / "model" / "config.json").is_file()
    # Same steps as one process: each rank takes half of each 16-item batch.
    assert [s["step"] for s in run["history"]["steps"]] == [1, 2, 3]
    assert len(runs_db.predictions_frame(fresh_db, parallel["run_id"])) == 6

    # Within one of the six test items, and probabilities within dropout noise (measured: ≤ 0.11 apart).
    for key in ("accuracy", "macro_f1"):
        assert parallel[key] is not None and abs(parallel[key] - single[key]) <= 1 / 6 + 1e-9, (key, parallel,
                                                                                              single)
    gap = np.abs(_p_pos(fresh_db, parallel["run_id"]) - _p_pos(fresh_db, single["run_id"]))
    assert gap.mean() <= 0.15, gap


def test_without_a_launcher_nothing_is_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.requested()
    with distributed.process_group():
        assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
        assert distributed.shard(5, seed=1, epoch=1).tolist() == [0, 1, 2, 3, 4]
        assert distributed.broadcast("x") == "x" and distributed.any_rank(True)
        rows = distributed.gather_rows(lambda idx: np.array([[i] for i in idx], dtype=float), 3)
    assert rows.tolist() == [[0.0], [1.0], [2.0]]
