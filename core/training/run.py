"""A training run's life: queue it as a job, train, evaluate, store predictions and artifacts, or fail visibly.

The app starts a run with :func:`start_training`, which creates the ``run`` row and a ``training`` job, then
launches the job in a detached process (a crash or out-of-memory there cannot take the server down). That
process calls :func:`run_job`, which calls :func:`run_training` — the blocking function the CLI and the study
also call. A run stores its frozen config, seed, training item ids, per-step losses, per-epoch dev metrics, final
metrics with the agreement sweep, the predictions per test item, and the model under
``<db file>.files/artifacts/run-<id>/`` (the database's own folder, ``db.connection.files_dir``) with a zip
(config, metrics, model) for download. A run reads its files from the ``artifact_path`` it recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from core import jobs
from core.errors import NotFoundError, SynthloopError
from core.training import distributed
from core.training.config import TrainConfig
from core.training.data import (
    LabelledItems,
    Selection,
    annotator_labels,
    select_eval_items,
    select_items,
    vote_matrix,
)
from core.training.metrics import agreement_sweep, classification_metrics, soft_metrics, sweep_fit_note
from core.vocab import ACTIVE_STATUSES, FINISHED_STATUSES
from db import connection
from db import jobs as jobs_db
from db import runs as runs_db

JOB_KIND = "training"
ARTIFACTS_DIR = "artifacts"
PROGRESS_INTERVAL_S = 1.0

RESULT_KEYS = ("run_id", "status", "project", "data_source", "accuracy", "macro_f1", "n_train", "n_test", "labels",
               "per_class", "confusion_matrix", "sweep", "sweep_r2", "sweep_spearman_rho", "sweep_spearman_p",
               "sweep_slope", "sweep_intercept", "sweep_fit_meaningful", "sweep_fit_note", "soft_metrics", "config",
               "seconds", "device", "artifact_path", "zip_path", "annotator_heads")


# Where run_job prints progress lines: stderr, which is the job's log file in a detached job process. The CLI
# in the foreground silences it unless stderr is a terminal, so a failing command prints one line only.
_progress_stream: list[Any] = [sys.stderr]


@contextmanager
def progress_to(stream: Any) -> Iterator[None]:
    """Send run progress lines to ``stream`` (None: nowhere) inside the block."""
    _progress_stream.append(stream)
    try:
        yield
    finally:
        _progress_stream.pop()


class RunCancelled(Exception):
    """Raised inside a run when its job was asked to stop."""


def artifact_dir(db_path: str | os.PathLike[str], run_id: int) -> Path:
    """Where a new run saves its model and bundle: ``<db file>.files/artifacts/run-<id>/`` (its database's own)."""
    return connection.files_dir(db_path, ARTIFACTS_DIR, f"run-{run_id}")


def run_dir(db_path: str | os.PathLike[str], run: dict[str, Any]) -> Path:
    """The folder of a run's files: the one it recorded, as recorded (runs of older versions kept theirs beside
    the database), else where it saves them."""
    recorded = run.get("artifact_path")
    return Path(recorded) if recorded else artifact_dir(db_path, run["id"])


def zip_path(db_path: str | os.PathLike[str], run: dict[str, Any]) -> Path:
    """The run's download bundle, beside its folder (``run-<id>.zip``)."""
    folder = run_dir(db_path, run)
    return folder.with_name(f"{folder.name}.zip")


def _as_config(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)


# -- starting, cancelling, deleting ---------------------------------------------------------------------------

def start_training(
    db: sqlite_utils.Database,
    db_path: str | os.PathLike[str],
    project_id: int,
    config: TrainConfig | dict[str, Any],
    *,
    launch: bool = True,
) -> dict[str, int]:
    """Check the data, create the run and its ``training`` job, and (unless ``launch=False``) start the job's
    detached process. Returns ``{"run_id", "job_id"}``. Raises at once when there is nothing to train or test on,
    so the user sees the problem before any process starts."""
    config = _as_config(config)
    selection = select_items(db, project_id, config)
    if config.annotator_heads:
        _annotator_triples(db_path, project_id, config, selection)
    with connection.transaction(db):
        run_id = runs_db.create_run(db, project_id=project_id, config=config.to_dict(),
                                    data_source=config.data_source)
        job_id = jobs.create(db, kind=JOB_KIND, project_id=project_id,
                             config={"run_id": run_id, "config": config.to_dict()}, message="queued")
        runs_db.update_run(db, run_id, job_id=job_id)
    if launch:
        jobs.launch(db_path, job_id)
    return {"run_id": run_id, "job_id": job_id}


def run_job(db_path: str, job_id: int) -> dict[str, Any]:
    """The ``training`` job runner (registered in ``core.jobs.JOB_RUNNERS``)."""
    with connection.open_db(db_path) as db:
        job = jobs.get(db, job_id)
    run_id = int(job["config"]["run_id"])
    return run_training(db_path, job["project_id"], job["config"]["config"], job_id=job_id, run_id=run_id,
                        log=_progress_stream[-1])


def reconcile(db: sqlite_utils.Database, run: dict[str, Any]) -> dict[str, Any]:
    """A run whose job ended (killed, orphaned, cancelled before it started) without the run noticing takes
    the job's status and error; the fix is written back so every reader sees it."""
    if run["status"] in ACTIVE_STATUSES and run.get("job_status") in FINISHED_STATUSES:
        status = run["job_status"] if run["job_status"] != "done" else "failed"
        error = run.get("job_error") or ("cancelled before it finished" if status == "cancelled"
                                         else "the training process stopped without finishing")
        runs_db.finish_run(db, run["id"], status=status, error=error)
        run = {**run, "status": status, "error": error}
    return run


def get_run(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    """The run as it is: a run whose job's process died reads as failed (so it can be deleted)."""
    jobs.fail_orphaned_jobs(db)
    run = runs_db.get_run(db, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}: see `python -m core runs list`")
    return reconcile(db, run)


def list_runs(db: sqlite_utils.Database, *, project_id: int | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, as ``get_run`` sees them (the Train and Runs pages poll this)."""
    jobs.fail_orphaned_jobs(db)
    return [reconcile(db, run) for run in runs_db.list_runs(db, project_id=project_id)]


def cancel_run(db: sqlite_utils.Database, run_id: int) -> None:
    run = get_run(db, run_id)
    if run["status"] not in ACTIVE_STATUSES:
        raise SynthloopError(f"run {run_id} is already {run['status']}: only a queued or running run can be cancelled")
    if run["job_id"] is None:
        raise SynthloopError(f"run {run_id} runs in the foreground of another program: stop it there (Ctrl-C)")
    jobs.cancel(db, run["job_id"])
    if jobs.get(db, run["job_id"])["status"] == "cancelled":
        runs_db.finish_run(db, run_id, status="cancelled", error="cancelled before it started")


def delete_run(db: sqlite_utils.Database, db_path: str | os.PathLike[str], run_id: int) -> None:
    """Delete a finished run, its predictions and its artifacts (model folder and zip)."""
    run = get_run(db, run_id)
    if run["status"] in ACTIVE_STATUSES:
        raise SynthloopError(f"run {run_id} is {run['status']}: cancel it first, then delete it")
    runs_db.delete_run(db, run_id)
    shutil.rmtree(run_dir(db_path, run), ignore_errors=True)
    zip_path(db_path, run).unlink(missing_ok=True)


# -- the blocking run ---------------------------------------------------------------------------------------

class _Progress:
    """Writes step/epoch/loss/ETA to the job row at most once a second and tells when a cancel was asked."""

    def __init__(self, db_path: str, job_id: int | None, run_id: int, log: Any) -> None:
        self.db = connection.connect(db_path) if job_id is not None else None
        self.job_id = job_id
        self.run_id = run_id
        self.log = log
        self.last = 0.0

    def phase(self, phase: str, **extra: Any) -> None:
        self.write(message=phase, result={"run_id": self.run_id, "phase": phase, **extra}, force=True)

    def write(self, *, message: str, result: dict[str, Any] | None, done: int | None = None,
              total: int | None = None, force: bool = False) -> None:
        """``result=None`` keeps the job's last structured progress (step, loss, …) and only moves the message."""
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_INTERVAL_S:
            return
        self.last = now
        if self.log is not None:
            print(f"[run {self.run_id}] {message}", file=self.log, flush=True)
        if self.db is not None and jobs_db.update_progress(self.db, self.job_id, done=done, total=total,
                                                            message=message, result=result):
            raise RunCancelled()

    def close(self) -> None:
        if self.db is not None:
            self.db.conn.close()


def _format_seconds(seconds: float) -> str:
    if seconds != seconds:  # NaN before the first step
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def run_training(
    db_path: str | os.PathLike[str],
    project_id: int,
    config: TrainConfig | dict[str, Any],
    *,
    job_id: int | None = None,
    run_id: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Train, evaluate and store one run, blocking until it ends; returns the result dict (``RESULT_KEYS``).

    Without ``run_id`` a new run row is created (the CLI and the study call it so). With ``job_id`` progress
    and cancellation go through that job. Any failure marks the run failed with a readable error and is raised
    again; a cancelled run returns ``{"run_id", "status": "cancelled"}``.

    Under torchrun (:mod:`core.training.distributed`) every rank calls this with rank 0's ``run_id``; all of them
    train and evaluate, and only rank 0 writes the run (the others return what it wrote).
    """
    db_path = str(db_path)
    config = _as_config(config)
    started = time.perf_counter()
    main = distributed.is_main()
    if main:
        with connection.open_db(db_path) as db:
            if run_id is None:
                run_id = runs_db.create_run(db, project_id=project_id, config=config.to_dict(),
                                            data_source=config.data_source, job_id=job_id, status="running")
            elif runs_db.get_run(db, run_id) is None:
                raise NotFoundError(f"no run {run_id}")
            runs_db.start_run(db, run_id)
    assert run_id is not None, "a distributed worker trains rank 0's run"
    progress = _Progress(db_path, job_id if main else None, run_id, log if main else None)
    try:
        progress.phase("selecting data")
        with connection.open_db(db_path) as db:
            selection = select_items(db, project_id, config)
            if main:
                runs_db.update_run(db, run_id, train_item_ids=selection.train.item_ids,
                                   n_train=len(selection.train), n_test=len(selection.test))
        result = _train_and_evaluate(db_path, project_id, run_id, config, selection, progress, started)
    except RunCancelled:
        if main:
            with connection.open_db(db_path) as db:
                runs_db.finish_run(db, run_id, status="cancelled", error="cancelled by the user")
        return {"run_id": run_id, "status": "cancelled"}
    except BaseException as exc:
        if main:
            with connection.open_db(db_path) as db:
                runs_db.finish_run(db, run_id, status="failed", error=_readable_error(exc))
        if _is_memory_error(exc):
            raise _as_user_error(exc) from exc
        raise
    finally:
        progress.close()
    distributed.barrier()  # the other ranks wait until rank 0 has written the run, then report it
    if not main:
        with connection.open_db(db_path) as db:
            result = result_dict(get_run(db, run_id), db_path)
    return result


def _is_memory_error(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def _as_user_error(exc: BaseException) -> SynthloopError:
    return SynthloopError(_readable_error(exc))


def _readable_error(exc: BaseException) -> str:
    if isinstance(exc, SynthloopError):
        return str(exc)
    if _is_memory_error(exc):
        return ("out of memory while training: lower the batch size or the maximum length, or use a smaller model"
                f" ({type(exc).__name__})")
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"{type(exc).__name__}: {exc}"


def _train_and_evaluate(db_path: str, project_id: int, run_id: int, config: TrainConfig, selection: Selection,
                        progress: _Progress, started: float) -> dict[str, Any]:
    from core.training.classifier import TransformerClassifier

    curve_items = selection.dev if len(selection.dev) else selection.test
    curve_set = "dev" if len(selection.dev) else config.eval_split
    last_test_proba: dict[str, Any] = {}
    main = distributed.is_main()
    cancelled: list[bool] = []

    def on_step(info: Any) -> bool:
        # A cancel request surfaces as RunCancelled from the progress writer: training stops (on every rank).
        message = (f"epoch {info.epoch}/{info.epochs} · step {info.step}/{info.total_steps} · loss {info.loss:.4f}"
                   f" · ETA {_format_seconds(info.eta_seconds)}")
        eta = info.eta_seconds
        try:
            progress.write(message=message, done=info.step, total=info.total_steps,
                           force=info.step == info.total_steps,
                           result={"run_id": run_id, "phase": "training", "step": info.step,
                                   "total_steps": info.total_steps, "epoch": info.epoch, "epochs": info.epochs,
                                   "loss": info.loss, "eta_seconds": None if eta != eta else eta,
                                   "elapsed_seconds": info.elapsed})
        except RunCancelled:
            cancelled.append(True)
        return bool(cancelled)

    def on_batch(done: int, total: int) -> None:
        progress.write(message=f"evaluating {done}/{total} {curve_set} items", result=None)

    def on_epoch(epoch: int, clf: TransformerClassifier) -> dict[str, Any]:
        proba = _predict(clf, curve_items.texts, on_batch)
        predicted = [clf.classes_[i] for i in proba.argmax(axis=1)]
        scores = classification_metrics(curve_items.labels, predicted, labels=selection.labels)
        if curve_set == config.eval_split and epoch == config.epochs:
            last_test_proba["proba"] = proba  # the final evaluation needs exactly these predictions
        entry = {"dev_set": curve_set, "dev_accuracy": scores["accuracy"], "dev_macro_f1": scores["macro_f1"]}
        if not main:
            return entry
        with connection.open_db(db_path) as db:
            runs_db.update_run(db, run_id, history={"steps": clf.history_["steps"],
                                                     "epochs": [*clf.history_["epochs"], {"epoch": epoch, **entry}]})
        return entry

    progress.phase("loading model")
    triples = _annotator_triples(db_path, project_id, config, selection) if config.annotator_heads else None
    clf = _classifier_class(config)(
        config.model, epochs=config.epochs, learning_rate=config.learning_rate, batch_size=config.batch_size,
        max_length=config.max_length, warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
        seed=config.seed, labels=selection.labels, on_step=on_step, on_epoch=on_epoch,
        **({"annotators": triples.annotators} if triples else {}),
    )
    if triples:  # one head per annotator, trained on the (item, annotator, label) triples of the training items
        text_of = dict(zip(selection.train.item_ids, selection.train.texts, strict=True))
        clf.fit([text_of[i] for i in triples.item_ids], triples.label_matrix(selection.labels))
    else:
        # The hard objective calls fit exactly as before; the soft one adds each item's target distribution.
        soft = {} if selection.train_targets is None else {"soft_targets": selection.train_targets}
        clf.fit(selection.train.texts, selection.train.labels, **soft)
    if cancelled or clf.stopped_:
        raise RunCancelled()
    progress.phase("evaluating")
    proba = last_test_proba.get("proba")
    if proba is None:
        proba = _predict(clf, selection.test.texts, on_batch)
    if not main:
        return {"run_id": run_id}  # rank 0 scores, saves and records the run
    metrics = _evaluate(clf.classes_, selection.labels, selection.test, proba)
    metrics["data"] = selection.report
    if triples:
        metrics["data"].update(annotator_head_items=len(triples.item_ids), annotator_head_labels=len(triples.triples))
        metrics["annotator_heads"] = _annotator_error_rates(db_path, project_id, clf, selection.test)
    progress.phase("saving model")
    folder = artifact_dir(db_path, run_id)
    shutil.rmtree(folder, ignore_errors=True)
    clf.save(folder / "model")
    seconds = time.perf_counter() - started
    history = {**clf.history_, "curve_set": curve_set}
    with connection.open_db(db_path) as db:
        with connection.transaction(db):
            runs_db.replace_predictions(db, run_id, _prediction_rows(clf.classes_, selection.test, proba))
            runs_db.update_run(db, run_id, history=history, metrics=metrics, artifact_path=str(folder),
                               device=clf.device_, seconds=seconds)
            runs_db.finish_run(db, run_id, status="done")
        run = get_run(db, run_id)
    _write_bundle(db_path, run)
    return result_dict(run, db_path)


def _classifier_class(config: TrainConfig) -> Any:
    if config.annotator_heads:
        from core.training.annotator_heads import AnnotatorHeadsClassifier

        return AnnotatorHeadsClassifier
    from core.training.classifier import TransformerClassifier

    return TransformerClassifier


def _annotator_triples(db_path: str, project_id: int, config: TrainConfig, selection: Selection) -> Any:
    """The (item, annotator, label) triples of the training items (raises when no annotator gets a head)."""
    from core.training.annotator_heads import build_triples

    with connection.open_db(db_path) as db:
        labels = annotator_labels(db, project_id, selection.train.item_ids)
    return build_triples(labels, selection.train.item_ids, selection.labels, min_labels=config.min_annotator_labels)


def _annotator_error_rates(db_path: str, project_id: int, clf: Any, test: LabelledItems) -> list[dict[str, Any]]:
    """Each head's error rate on the test items its annotator labelled."""
    from core.training.annotator_heads import annotator_error_rates

    with connection.open_db(db_path) as db:
        labels = annotator_labels(db, project_id, test.item_ids)
    return annotator_error_rates(labels, test.item_ids, clf.head_proba(test.texts), clf.annotators_, clf.classes_)


def _predict(clf: Any, texts: list[str], on_batch: Any) -> Any:
    """Class probabilities for ``texts``; under torchrun each rank predicts a share and all receive all rows."""
    return distributed.gather_rows(lambda rows: clf.predict_proba([texts[i] for i in rows], on_batch=on_batch),
                                   len(texts))


def _evaluate(classes: list[str], labels: list[str], test: LabelledItems, proba: Any) -> dict[str, Any]:
    predicted = [classes[i] for i in proba.argmax(axis=1)]
    metrics = classification_metrics(test.labels, predicted, labels=labels)
    metrics.update(agreement_sweep(test.labels, predicted, test.agreement).to_dict())
    metrics["n_sweep_items"] = sum(a is not None for a in test.agreement)
    metrics["soft_metrics"] = soft_metrics(vote_matrix(test.votes, classes), proba)
    return metrics


def _prediction_rows(classes: list[str], test: LabelledItems, proba: Any) -> list[dict[str, Any]]:
    return [
        {"item_id": item_id, "true_label": label, "predicted_label": classes[int(row.argmax())],
         "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)}, "agreement": agreement}
        for item_id, label, agreement, row in zip(test.item_ids, test.labels, test.agreement, proba, strict=True)
    ]


def _write_bundle(db_path: str, run: dict[str, Any]) -> Path:
    """``config.json`` and ``metrics.json`` beside the model, and one zip of all of it for download."""
    folder = run_dir(db_path, run)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(run["config"], indent=2))
    (folder / "metrics.json").write_text(json.dumps(result_dict(run, db_path), indent=2, default=str))
    (folder / "history.json").write_text(json.dumps(run["history"]))
    target = zip_path(db_path, run)
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w") as bundle:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                # Weights barely compress; storing them keeps the zip fast to write.
                compress = zipfile.ZIP_STORED if file.suffix in {".safetensors", ".bin"} else zipfile.ZIP_DEFLATED
                bundle.write(file, Path(f"run-{run['id']}") / file.relative_to(folder), compress_type=compress)
    partial.replace(target)
    return target


def result_dict(run: dict[str, Any], db_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The run as the CLI's JSON and the study see it (keys ``RESULT_KEYS``)."""
    metrics = run.get("metrics") or {}
    bundle = zip_path(db_path, run) if db_path is not None else None
    # From the stored points, so that runs scored before the flag existed are flagged too.
    sweep_note = sweep_fit_note(metrics.get("sweep") or [])
    return {
        "run_id": run["id"],
        "status": run["status"],
        "project": run.get("project_name"),
        "data_source": run.get("data_source"),
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "n_train": run.get("n_train"),
        "n_test": run.get("n_test"),
        "labels": metrics.get("labels"),
        "per_class": metrics.get("per_class"),
        "confusion_matrix": metrics.get("confusion_matrix"),
        "sweep": metrics.get("sweep"),
        "sweep_r2": metrics.get("sweep_r2"),
        "sweep_spearman_rho": metrics.get("sweep_spearman_rho"),
        "sweep_spearman_p": metrics.get("sweep_spearman_p"),
        "sweep_slope": metrics.get("sweep_slope"),
        "sweep_intercept": metrics.get("sweep_intercept"),
        "sweep_fit_meaningful": sweep_note is None,
        "sweep_fit_note": sweep_note,
        "soft_metrics": metrics.get("soft_metrics"),
        "config": run.get("config"),
        "seconds": run.get("seconds"),
        "device": run.get("device"),
        "artifact_path": run.get("artifact_path"),
        "zip_path": str(bundle) if bundle is not None and bundle.is_file() else None,
        "annotator_heads": metrics.get("annotator_heads"),
    }


# -- re-evaluation ------------------------------------------------------------------------------------------

def evaluate_run(db_path: str | os.PathLike[str], run_id: int) -> dict[str, Any]:
    """Evaluate a finished run's saved model on the project's current evaluation items (labels and agreement as
    they are now), store the new predictions and metrics, and return the result dict."""
    db_path = str(db_path)
    started = time.perf_counter()
    with connection.open_db(db_path) as db:
        run = get_run(db, run_id)
        if run["status"] != "done":
            raise SynthloopError(f"run {run_id} is {run['status']}: only a finished run can be evaluated")
        config = TrainConfig.from_dict(run["config"])
        labels, test = select_eval_items(db, run["project_id"], config)
    model_folder = run_dir(db_path, run) / "model"
    if not model_folder.is_dir():
        raise SynthloopError(f"the model files of run {run_id} are gone ({model_folder}): train the run again")
    clf = _classifier_class(config).load(model_folder)
    proba = clf.predict_proba(test.texts)
    metrics = {**run["metrics"], **_evaluate(clf.classes_, labels, test, proba),
               "evaluated_seconds": time.perf_counter() - started}
    if config.annotator_heads:
        metrics["annotator_heads"] = _annotator_error_rates(db_path, run["project_id"], clf, test)
    with connection.open_db(db_path) as db:
        with connection.transaction(db):
            runs_db.replace_predictions(db, run_id, _prediction_rows(clf.classes_, test, proba))
            runs_db.update_run(db, run_id, metrics=metrics, n_test=len(test))
        run = get_run(db, run_id)
    _write_bundle(db_path, run)
    return result_dict(run, db_path)
