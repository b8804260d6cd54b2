"""``agreement``, ``pool`` and ``adjudicate``: agreement figures, the annotation pool, final labels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core import projects, vocab
from core.agreement.project import exclusion_effect, items_agreement, project_agreement
from core.agreement.report import ReportConfig
from core.annotation.adjudication import adjudicate
from core.annotation.pool import (
    STRATEGY_TEXT,
    AssignmentSettings,
    assignment_settings,
    pool_status,
    save_assignment_settings,
    set_pool,
)
from core.data.tables import write_csv
from core.errors import SynthloopError
from core.vocab import STRATEGIES


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    agr = subparsers.add_parser("agreement", parents=[common], help="instance- and task-level agreement")
    agr.add_argument("project", help="project name or id")
    agr.add_argument("--items-out", help="write per-item agreement as CSV to this file")
    agr.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for alpha's interval (1000)")
    agr.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval (0.95)")
    agr.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    agr.add_argument("--no-model", action="store_true", help="skip Dawid–Skene annotator quality")
    agr.set_defaults(handler=_agreement)

    pool = subparsers.add_parser("pool", help="the annotation pool").add_subparsers(dest="pool_command",
                                                                                      required=True)
    for name, text in (("add", "put items into the annotation pool"), ("remove", "take items out of the pool")):
        cmd = pool.add_parser(name, parents=[common], help=text)
        cmd.add_argument("project", help="project name or id")
        cmd.add_argument("--source", choices=vocab.SOURCES)
        cmd.add_argument("--split", choices=vocab.SPLITS)
        cmd.add_argument("--job", type=int, help="only the synthetic items of this generation job")
        cmd.add_argument("--all", action="store_true", help="every item of the project (no filter)")
        cmd.set_defaults(handler=_pool_change, add=name == "add")
    show = pool.add_parser("show", parents=[common], help="pool size and progress")
    show.add_argument("project", help="project name or id")
    show.set_defaults(handler=_pool_show)
    strategy = pool.add_parser("strategy", parents=[common], help="how items are handed out")
    strategy.add_argument("project", help="project name or id")
    strategy.add_argument("strategy", choices=STRATEGIES)
    strategy.add_argument("--max-overlap", type=int, help="disagreement: at most this many labels per item")
    strategy.add_argument("--threshold", type=float, help="disagreement: more labels while a_i is below this")
    strategy.add_argument("--reservation-seconds", type=int)
    strategy.add_argument("--skip-minutes", type=float)
    strategy.set_defaults(handler=_pool_strategy)

    adj = subparsers.add_parser("adjudicate", parents=[common], help="set an item's final label")
    adj.add_argument("project", help="project name or id")
    adj.add_argument("item_id", help="the item's imported id (as in --items-out), else its database id")
    adj.add_argument("label", nargs="?", help="the final label (omit with --clear)")
    adj.add_argument("--clear", action="store_true", help="remove the final label")
    adj.set_defaults(handler=_adjudicate)


def _agreement(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    config = ReportConfig(n_boot=args.n_boot, confidence=args.confidence, seed=args.seed,
                                    model=not args.no_model)
    report = project_agreement(db, project, config=config)
    result = {"project": project.name, **report.to_dict()}
    exclusion = exclusion_effect(db, project)  # annotators excluded by `crowd exclude` (None: nobody)
    result["exclusion"] = exclusion.to_dict() if exclusion else None
    if args.items_out:
        path = Path(args.items_out)
        if path.parent and not path.parent.exists():
            raise SynthloopError(f"folder {str(path.parent)!r} does not exist: create it or choose another path")
        table = items_agreement(db, project)
        write_csv(table, path)
        result["items_out"] = str(path)
        result["items_out_rows"] = len(table)
    alpha = report.krippendorff_alpha
    low, high = report.alpha_ci
    lines = [
        f"{project.name}: {report.n_items} items with ≥ 2 labels ({report.n_items_excluded} excluded with fewer),"
        f" {report.n_annotations} annotations by {report.n_annotators} annotators",
        "Krippendorff's alpha: " + ("undefined" if alpha is None else
                                    f"{alpha:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{alpha:.3f}")
        + f" — {report.band_text}",
        "mean instance agreement: " + ("—" if report.mean_instance_agreement is None
                                       else f"{report.mean_instance_agreement:.3f}"),
    ]
    if exclusion:
        lines.append(f"excluded annotators left out: {', '.join(exclusion.excluded)}; with them alpha would be "
                     + ("undefined" if exclusion.alpha_with is None else f"{exclusion.alpha_with:.3f}"))
    for row in report.per_annotator:
        value = row["agreement_with_others"]
        lines.append(f"  {row['annotator']}: {row['n']} compared, agreement with others "
                     + ("—" if value is None else f"{value:.3f}"))
    if report.label_fidelity and report.label_fidelity["fidelity"] is not None:
        fid = report.label_fidelity
        lines.append(f"label fidelity (synthetic): {fid['fidelity']:.3f} ({fid['n_match']} of {fid['n_items']};"
                     " ties count as not equal)")
    intra = report.intra_annotator
    if intra:
        lines.append(f"intra-annotator consistency: {intra['n_pairs']} repeat pairs by {intra['n_annotators']}"
                     f" annotators, same label {intra['same_label_share']:.3f}, alpha "
                     + ("undefined" if intra["alpha"] is None else f"{intra['alpha']:.3f}"))
    if args.items_out:
        lines.append(f"wrote {result['items_out_rows']} items to {result['items_out']}")
    result["message"] = "\n".join(lines)
    return result


def _pool_change(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    if not (args.all or args.source or args.split or args.job is not None):
        raise SynthloopError("say which items: --source, --split, --job (they combine) or --all")
    changed = set_pool(db, project.id, add=args.add, source=args.source, split=args.split,
                                  generation_job_id=args.job)
    status = pool_status(db, project)
    verb = "added to" if args.add else "removed from"
    return {"changed": changed, **status.to_dict(),
            "message": f"{changed} items {verb} the pool of {project.name!r}; the pool now has {status.n_items}"}


def _pool_show(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    status = pool_status(db, project)
    settings = assignment_settings(project)
    return {**status.to_dict(), "settings": settings.to_dict(),
            "message": f"{status.n_items} items in the pool, {status.n_complete} with ≥ {status.overlap} labels;"
                       f" {status.n_slots_filled} of {status.n_slots} labels given; strategy {settings.strategy}"}


def _pool_strategy(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    current = assignment_settings(project).to_dict()
    changes = {"strategy": args.strategy, "max_overlap": args.max_overlap, "agreement_threshold": args.threshold,
               "reservation_seconds": args.reservation_seconds, "skip_minutes": args.skip_minutes}
    settings = AssignmentSettings.from_dict({**current, **{k: v for k, v in changes.items()
                                                                       if v is not None}})
    save_assignment_settings(db, project.id, settings)
    return {"settings": settings.to_dict(), "message": f"{project.name!r}: {STRATEGY_TEXT[settings.strategy]}"}


def _adjudicate(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    if args.clear == (args.label is not None):
        raise SynthloopError("give the final LABEL, or --clear to remove it (not both)")
    item_id = adjudicate(db, project, args.item_id, None if args.clear else args.label)
    label = None if args.clear else args.label
    return {"item": item_id, "adjudicated_label": label,
            "message": f"item {args.item_id}: final label {'cleared' if label is None else repr(label)}"}
