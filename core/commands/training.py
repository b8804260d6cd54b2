"""``train``, ``evaluate``, ``runs list|delete|cancel``: train and evaluate classifiers (contract in DESIGN.md)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from core import projects
from core.errors import SynthloopError
from core.store import db_file
from core.training import distributed
from core.training.config import TrainConfig
from core.vocab import DATA_SOURCES, HELD_OUT_SPLITS, LABEL_SOURCES, OBJECTIVES, SOFT_SOURCES


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    train = subparsers.add_parser("train", parents=[common], help="train and evaluate a classifier (foreground)")
    train.add_argument("project", help="project name or id")
    train.add_argument("--sources", default="real",
                       help=f"comma-separated training data: {', '.join(DATA_SOURCES)} (default: real)")
    train.add_argument("--generation-jobs", default="", help="comma-separated generation job ids to train on too")
    train.add_argument("--label-source", choices=LABEL_SOURCES, default=defaults.label_source)
    train.add_argument("--min-agreement", type=float, default=defaults.min_agreement,
                       help="keep training items with instance agreement ≥ G (default 0: all)")
    train.add_argument("--min-panel-agreement", type=float, default=None, metavar="G",
                       help="keep synthetic training items whose LLM-panel agreement with their intended label is"
                            " ≥ G (items the panel did not label are left out; default: off)")
    train.add_argument("--model", default=defaults.model,
                       help="'embedded' (MiniLM, offline), bert-base-uncased, roberta-base, a local folder or hub id")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.learning_rate, help="learning rate")
    train.add_argument("--max-length", type=int, default=defaults.max_length, help="maximum tokens per text")
    train.add_argument("--cap-per-label", type=int, default=None, help="at most N training items per label")
    train.add_argument("--max-round", type=int, default=None, metavar="R",
                       help="train on the synthetic items of the loop's rounds 1..R only (real items are not"
                            " affected; default: every round)")
    train.add_argument("--eval-split", choices=HELD_OUT_SPLITS, default=defaults.eval_split)
    train.add_argument("--objective", choices=OBJECTIVES, default=defaults.objective,
                       help="hard: one label per item; soft: each item's human vote distribution (default: hard)")
    train.add_argument("--soft-source", choices=SOFT_SOURCES, default=defaults.soft_source,
                       help="soft targets: the vote shares or the Dawid-Skene posterior (default: votes)")
    train.add_argument("--annotator-heads", action="store_true",
                       help="one output head per annotator (multi-task); the item prediction is the heads' majority")
    train.add_argument("--min-annotator-labels", type=int, default=defaults.min_annotator_labels,
                       help=f"training labels an annotator needs to get a head (default: {defaults.min_annotator_labels})")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser("evaluate", parents=[common],
                                     help="evaluate a finished run's model on the current test items")
    evaluate.add_argument("run_id", type=int)
    evaluate.set_defaults(handler=_evaluate)

    runs = subparsers.add_parser("runs", help="training runs").add_subparsers(dest="runs_command", required=True)
    lst = runs.add_parser("list", parents=[common], help="list runs")
    lst.add_argument("--project", default=None, help="only this project (name or id)")
    lst.set_defaults(handler=_list)
    delete = runs.add_parser("delete", parents=[common], help="delete a run, its predictions and its model")
    delete.add_argument("run_id", type=int)
    delete.set_defaults(handler=_delete)
    cancel = runs.add_parser("cancel", parents=[common], help="ask a queued or running run to stop")
    cancel.add_argument("run_id", type=int)
    cancel.set_defaults(handler=_cancel)



def _ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SynthloopError(f"--generation-jobs {text!r} is not a list of job ids: use e.g. 3,4") from None


def _summary(result: dict[str, Any], verb: str) -> str:
    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (f"run {result['run_id']} {verb} in {result['seconds'] or 0:.1f}s: accuracy {fmt(result['accuracy'])},"
            f" macro-F1 {fmt(result['macro_f1'])} on {result['n_test']} test items ({result['n_train']} training"
            f" items); sweep over {len(result['sweep'] or [])} thresholds: R² {fmt(result['sweep_r2'])},"
            f" Spearman ρ {fmt(result['sweep_spearman_rho'])}"
            + _soft_summary(result.get("soft_metrics"))
            + (f"\nmodel bundle: {result['zip_path']}" if result.get("zip_path") else ""))


def _soft_summary(soft: dict[str, Any] | None) -> str:
    if not soft:
        return ""
    fmt = {key: "n/a" if soft.get(key) is None else f"{soft[key]:.3f}"
           for key in ("cross_entropy", "manhattan", "ece", "entropy_agreement_spearman")}
    return (f"; against the human votes of {soft['n_items']} test items: cross-entropy {fmt['cross_entropy']},"
            f" Manhattan {fmt['manhattan']}, ECE {fmt['ece']}, entropy–agreement ρ"
            f" {fmt['entropy_agreement_spearman']}")


def _train(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.training import service  # imports scipy/sklearn: only when needed
    project = projects.get_project(db, args.project)
    config = TrainConfig(
        sources=tuple(s for s in args.sources.split(",") if s.strip()), generation_job_ids=_ids(args.generation_jobs),
        label_source=args.label_source, min_agreement=args.min_agreement,
        min_panel_agreement=args.min_panel_agreement, model=args.model, epochs=args.epochs,
        seed=args.seed, batch_size=args.batch_size, learning_rate=args.lr, max_length=args.max_length,
        cap_per_label=args.cap_per_label, max_round=args.max_round, eval_split=args.eval_split, objective=args.objective,
        soft_source=args.soft_source, annotator_heads=args.annotator_heads,
        min_annotator_labels=args.min_annotator_labels,
    )
    result = service.train_foreground(db_file(db), project.id, config)
    if distributed.launcher_rank() != 0:
        # Under torchrun only rank 0 prints the run: the others' lines would interleave with its on the shared
        # stdout (all ranks hold the same result; the process ends right after printing).
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    return {**result, "message": _summary(result, "trained")}


def _evaluate(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.training.run import evaluate_run  # imports scipy/sklearn: only when needed

    result = evaluate_run(db_file(db), args.run_id)
    return {**result, "message": _summary(result, "evaluated")}


def _list(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.training import service  # imports scipy/sklearn: only when needed
    project_ids = [projects.get_project(db, args.project).id] if args.project else None
    frame = service.runs_frame(db, project_ids=project_ids)
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [f"{r['run']}\t{r['project']}\t{r['data_source']}\t{r['label_source']}\t{r['model']}\t{r['status']}"
             f"\tmacro-F1 {fmt(r['macro_f1'])}\taccuracy {fmt(r['accuracy'])}" for r in rows]
    return {"runs": rows, "message": "\n".join(lines) or "no runs"}


def _delete(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.training import service  # imports scipy/sklearn: only when needed
    service.delete(db, db_file(db), args.run_id)
    return {"run_id": args.run_id, "message": f"deleted run {args.run_id}"}


def _cancel(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.training import service  # imports scipy/sklearn: only when needed
    service.cancel(db, args.run_id)
    return {"run_id": args.run_id, "message": f"cancel requested for run {args.run_id}"}
