"""What the Train and Runs pages and the CLI call: start, follow, compare, evaluate, cancel and delete runs.

Tables come back as DataFrames ready to show; the runs table also comes in the paper's Table 1 layout (rows:
projects × label source; columns: training data source × macro-F1 / accuracy).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlite_utils

from core import jobs
from core.data.items import item_table
from core.errors import SynthloopError
from core.training import distributed
from core.training import run as runs
from core.training.config import TrainConfig
from core.training.metrics import sweep_fit_note
from core.vocab import ACTIVE_STATUSES, DATA_SOURCES, FINISHED_STATUSES, HELD_OUT_SPLITS
from db import connection, versions
from db import runs as runs_db
from db import seeds as seeds_db

SOURCE_ORDER = DATA_SOURCES
METRIC_NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy"}
# The disagreement-aware metrics of a run (``metrics["soft_metrics"]``) as runs-table columns.
SOFT_METRIC_COLUMNS = {"cross_entropy": "soft_cross_entropy", "manhattan": "soft_manhattan", "ece": "soft_ece",
                       "entropy_agreement_spearman": "soft_entropy_agreement_rho", "n_items": "soft_n_items"}


@dataclass(frozen=True)
class TrainingOptions:
    """What a project can train on and be tested on. ``counts``: candidate training items per training source;
    ``generation_jobs``: accepted items per generation job; ``eval_items``: labelled real items per held-out
    split; ``rated_items``: items with a known instance agreement (what γ can filter)."""

    counts: dict[str, int]
    generation_jobs: dict[int, int]
    eval_items: dict[str, int]
    rated_items: int


def training_options(db: sqlite_utils.Database, project_id: int) -> TrainingOptions:
    table = item_table(db, project_id)
    real = table[table["source"] == "real"]
    synthetic = table[table["source"] == "synthetic"]
    modes = synthetic["generation_mode"]
    per_job = {int(j): int(n) for j, n in synthetic["generation_job_id"].dropna().value_counts().sort_index().items()}
    labelled_eval = {
        split: int(((real["split"] == split) & (real["reference_label"].notna() | real["majority_label"].notna()))
                   .sum())
        for split in HELD_OUT_SPLITS
    }
    return TrainingOptions(
        counts={"real": int((real["split"] == "train").sum()), "zero-shot": int((modes == "zero-shot").sum()),
                "few-shot": int((modes == "few-shot").sum()), "seeds": len(seeds_db.seed_item_ids(db, project_id))},
        generation_jobs=per_job, eval_items=labelled_eval, rated_items=int(table["instance_agreement"].notna().sum()),
    )


def train_foreground(db_path: str | os.PathLike[str], project_id: int, config: TrainConfig) -> dict[str, Any]:
    """Train in this process through the same job as the app (so the app shows its progress and can cancel it);
    returns the result dict, raises ``SynthloopError`` when the run fails or is cancelled.

    Under torchrun (``WORLD_SIZE > 1``) rank 0 creates the run and runs its job; the other ranks train the same
    run (its id broadcast from rank 0) and return what rank 0 recorded: one run, however many processes."""
    with distributed.process_group():
        started: dict[str, Any] | str = ""
        if distributed.is_main():
            try:
                with connection.open_db(db_path) as db:
                    started = runs.start_training(db, db_path, project_id, config, launch=False)
            except SynthloopError as exc:
                distributed.broadcast(str(exc))  # the other ranks fail with the same message
                raise
        started = distributed.broadcast(started)
        if isinstance(started, str):
            raise SynthloopError(started)
        if not distributed.is_main():
            return runs.run_training(db_path, project_id, config, run_id=started["run_id"])
        with runs.progress_to(sys.stderr if sys.stderr.isatty() else None):
            job = jobs.run(db_path, started["job_id"])
    if job["status"] == "failed":
        raise SynthloopError(f"run {started['run_id']} failed: {job['error'].strip()}")
    if job["status"] == "cancelled":
        raise SynthloopError(f"run {started['run_id']} was cancelled")
    return job["result"]


def cancel(db: sqlite_utils.Database, run_id: int) -> None:
    runs.cancel_run(db, run_id)


def delete(db: sqlite_utils.Database, db_path: str | os.PathLike[str], run_id: int) -> None:
    runs.delete_run(db, db_path, run_id)


def progress(run: dict[str, Any]) -> dict[str, Any]:
    """A run's live state for the progress panel: status, phase, step, epoch, loss, ETA, message, error."""
    live = json.loads(run.get("job_result") or "{}") if isinstance(run.get("job_result"), str) else {}
    if run["status"] not in ACTIVE_STATUSES:
        live = {}
    total = live.get("total_steps") or run.get("job_total") or 0
    step = live.get("step") or 0
    return {
        "run_id": run["id"], "status": run["status"], "data_source": run["data_source"], "model": run["model"],
        "phase": live.get("phase") or run["status"], "step": step, "total_steps": total,
        "fraction": min(1.0, step / total) if total else 0.0, "epoch": live.get("epoch"),
        "epochs": live.get("epochs") or run["config"].get("epochs"), "loss": live.get("loss"),
        "eta_seconds": live.get("eta_seconds"), "message": run.get("job_message") or run["status"],
        "error": run.get("error") or "", "accuracy": (run.get("metrics") or {}).get("accuracy"),
        "macro_f1": (run.get("metrics") or {}).get("macro_f1"),
    }


def _run_summaries(db: sqlite_utils.Database, **filters: Any) -> list[dict[str, Any]]:
    """Slim run rows (``db.runs.list_run_summaries``) as ``get_run`` sees them: a run whose job ended unnoticed
    is settled first."""
    jobs.fail_orphaned_jobs(db)
    return [runs.reconcile(db, run) for run in runs_db.list_run_summaries(db, **filters)]


def active_progress(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """Progress of the project's queued and running runs: what the Train page polls (one query on run status,
    slim rows, no run's history)."""
    rows = _run_summaries(db, project_id=project_id, statuses=ACTIVE_STATUSES)
    return [progress(r) for r in rows if r["status"] in ACTIVE_STATUSES]


def ended_progress(db: sqlite_utils.Database, project_id: int, *, finished: int = 3) -> list[dict[str, Any]]:
    """Progress of the project's ``finished`` latest ended runs (they change only with :func:`runs_version`)."""
    return [progress(r) for r in _run_summaries(db, project_id=project_id, statuses=FINISHED_STATUSES,
                                                limit=finished)]


def recent_progress(db: sqlite_utils.Database, project_id: int, *, finished: int = 3) -> list[dict[str, Any]]:
    """Progress of the project's active runs, then of its ``finished`` latest ended runs."""
    return active_progress(db, project_id) + ended_progress(db, project_id, finished=finished)


def runs_version(db: sqlite_utils.Database) -> int:
    """A number that changes with every write to any run or its predictions (or a project's name), bumped by
    triggers; runs whose job ended unnoticed are settled first, so that lists cached under it show every run
    as ``get_run`` does."""
    _run_summaries(db, statuses=ACTIVE_STATUSES)
    return versions.run_data_version(db)


def runs_frame(
    db: sqlite_utils.Database,
    *,
    project_ids: list[int] | None = None,
    project_names: list[str] | None = None,
    models: list[str] | None = None,
    label_sources: list[str] | None = None,
    statuses: list[str] | None = None,
) -> pd.DataFrame:
    """One row per run (newest first), filtered; the columns the runs table shows."""
    rows = _run_summaries(db)
    records = []
    for r in rows:
        if project_ids and r["project_id"] not in project_ids:
            continue
        if project_names and r["project_name"] not in project_names:
            continue
        if models and r["model"] not in models:
            continue
        if label_sources and r["label_source"] not in label_sources:
            continue
        if statuses and r["status"] not in statuses:
            continue
        metrics = r.get("metrics") or {}
        sweep = metrics.get("sweep")
        soft = metrics.get("soft_metrics") or {}
        records.append({
            "run": r["id"], "project": r["project_name"], "data_source": r["data_source"],
            "label_source": r["label_source"], "objective": (r["config"].get("objective") or "hard")
            # A run with a head per annotator is another model: Table 1 never averages it with a one-head run.
            + (" · annotator heads" if r["config"].get("annotator_heads") else ""),
            "min_agreement": r["config"].get("min_agreement"),
            "model": r["model"], "seed": r["seed"], "status": r["status"], "macro_f1": metrics.get("macro_f1"),
            "accuracy": metrics.get("accuracy"),
            **{column: soft.get(key) for key, column in SOFT_METRIC_COLUMNS.items()},
            "sweep_r2": metrics.get("sweep_r2"),
            "sweep_spearman_rho": metrics.get("sweep_spearman_rho"),
            "sweep_note": sweep_fit_note(sweep) if sweep else None, "n_train": r["n_train"], "n_test": r["n_test"],
            "seconds": r["seconds"], "created_at": r["created_at"], "error": r["error"],
        })
    columns = ["run", "project", "data_source", "label_source", "objective", "min_agreement", "model", "seed",
               "status", "macro_f1", "accuracy", *SOFT_METRIC_COLUMNS.values(), "sweep_r2", "sweep_spearman_rho",
               "sweep_note", "n_train", "n_test", "seconds", "created_at", "error"]
    return pd.DataFrame.from_records(records, columns=columns)


def _source_key(source: str) -> tuple[int, str]:
    return (SOURCE_ORDER.index(source) if source in SOURCE_ORDER else len(SOURCE_ORDER), source)


def table1(frame: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 from a runs frame: a row per project, label source and training objective
    (``project``, ``label source``, ``objective``: hard or soft labels), columns ``"<source> · macro-F1"`` and
    ``"<source> · accuracy"`` per training data source (real, zero-shot, few-shot first), each cell the mean over
    the finished runs in ``frame`` (several seeds average), plus ``runs`` (how many were averaged). Runs trained on
    different labels, or with different objectives, are never averaged into one cell."""
    done = frame[(frame["status"] == "done") & frame["macro_f1"].notna()] if not frame.empty else frame
    if done.empty:
        return pd.DataFrame(columns=["project", "label source", "objective", "runs"])
    rows = ["project", "label_source", "objective"]
    means = done.groupby([*rows, "data_source"])[["macro_f1", "accuracy"]].mean()
    table = done.groupby(rows).size().rename("runs").to_frame()
    columns = {}
    for source in sorted(done["data_source"].unique(), key=_source_key):
        for metric, name in METRIC_NAMES.items():
            columns[f"{source} · {name}"] = means[metric].xs(source, level="data_source").reindex(table.index)
    table = pd.DataFrame(columns, index=table.index).assign(runs=table["runs"])
    return table.reset_index().rename(columns={"label_source": "label source"})


def table1_note(table: pd.DataFrame) -> str | None:
    """Says that the rows of :func:`table1` are not comparable when they were trained with different label
    sources, naming each row's; None when they share one."""
    if table.empty:
        return None
    return label_source_note(list(zip(table["project"], table["label source"], strict=True)))


def label_source_note(rows: list[tuple[str, str]]) -> str | None:
    """For the rows of a Table 1 (``(row name, label source)``): a note that they are not comparable when
    their label sources differ, naming each row's; None when they share one."""
    if len({source for _, source in rows}) < 2:
        return None
    named = "; ".join(f"{row}: {source}" for row, source in rows)
    return f"These rows are not comparable: they were trained with different label sources ({named})."


@dataclass(frozen=True)
class RunDetails:
    """What the Runs page's detail view shows of one run. ``result`` is the run's ``train --json`` object
    (DESIGN.md); the tables are DataFrames (the confusion matrix: rows true, columns predicted)."""

    run_id: int
    label: str
    status: str
    error: str | None
    accuracy: float | None
    macro_f1: float | None
    n_train: int | None
    n_test: int | None
    seconds: float | None
    config: dict[str, Any]
    data_report: dict[str, Any]
    history: dict[str, Any]
    created_at: str
    per_class_table: pd.DataFrame
    confusion_table: pd.DataFrame
    predictions: pd.DataFrame
    result: dict[str, Any]


def run_details(db: sqlite_utils.Database, db_path: str | os.PathLike[str], run_id: int) -> RunDetails:
    run = runs.get_run(db, run_id)
    result = runs.result_dict(run, db_path)
    labels = result["labels"] or []
    per_class = pd.DataFrame.from_dict(result["per_class"] or {}, orient="index",
                                       columns=["precision", "recall", "f1", "support"])
    per_class.index.name = "label"
    matrix = pd.DataFrame(result["confusion_matrix"] or [], index=labels[:len(result["confusion_matrix"] or [])],
                          columns=labels if result["confusion_matrix"] else [])
    matrix.index.name, matrix.columns.name = "true", "predicted"
    return RunDetails(
        run_id=run_id, label=f"run {run_id} · {run['project_name']} · {run['data_source']} · {run['model']}",
        status=result["status"], error=run["error"], accuracy=result["accuracy"], macro_f1=result["macro_f1"],
        n_train=result["n_train"], n_test=result["n_test"], seconds=result["seconds"], config=result["config"],
        data_report=(run["metrics"] or {}).get("data", {}), history=run["history"] or {},
        created_at=run["created_at"], per_class_table=per_class, confusion_table=matrix,
        predictions=runs_db.predictions_frame(db, run_id), result=result,
    )


def sweep_results(db: sqlite_utils.Database, db_path: str | os.PathLike[str], run_ids: list[int]) -> list[dict[str, Any]]:
    """The result dicts of several runs, for the overlaid sweep chart."""
    return [runs.result_dict(runs.get_run(db, run_id), db_path) for run_id in run_ids]


def sweep_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: the sweep's size and fits (the numbers printed beside the paper's Figure 2 panels), and
    in ``R² and ρ`` whether the fits mean anything (:func:`core.training.metrics.sweep_fit_note`)."""
    return pd.DataFrame.from_records(
        [{"run": r["run_id"], "data_source": r["data_source"], "thresholds": len(r["sweep"] or []),
          "items at lowest γ": (r["sweep"] or [{}])[0].get("n_items"), "slope": r["sweep_slope"],
          "R²": r["sweep_r2"], "Spearman ρ": r["sweep_spearman_rho"],
          "R² and ρ": r["sweep_fit_note"] or "meaningful"} for r in results],
        columns=["run", "data_source", "thresholds", "items at lowest γ", "slope", "R²", "Spearman ρ", "R² and ρ"])


def zip_file(db_path: str | os.PathLike[str], run_id: int) -> Path | None:
    """The run's download bundle (config, metrics, model) when it exists."""
    with connection.open_db(db_path) as db:
        path = runs.zip_path(db_path, runs.get_run(db, run_id))
    return path if path.is_file() else None
