"""``crowd``: crowd studies (links, workers, export) and quality control (gold items, attention checks,
the per-annotator report, exclusion) — the same core functions as the Crowd study page."""

from __future__ import annotations

import argparse
import math
from typing import Any

import pandas as pd

from core import projects, vocab
from core.annotation import crowd, quality
from core.config import field_help


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = subparsers.add_parser("crowd", help="crowd studies and quality control").add_subparsers(
        dest="crowd_command", required=True)
    study_help = field_help(crowd.StudySettings)

    link = group.add_parser("link", parents=[common], help="create a crowd study and print its link")
    link.add_argument("project", help="project name or id")
    link.add_argument("--platform", required=True, choices=vocab.CROWD_PLATFORMS)
    link.add_argument("--quota", type=int, help=study_help["quota"])
    link.add_argument("--completion-code", default="", help=study_help["completion_code"])
    link.add_argument("--completion-url", default="", help=study_help["completion_url"])
    link.add_argument("--screened-out-code", default="", help=study_help["screened_out_code"])
    link.add_argument("--gold-rate", type=float, default=0.0, help=study_help["gold_rate"] + " (default 0)")
    link.add_argument("--qualification-threshold", type=float, default=0.8,
                      help=study_help["qualification_threshold"] + " (default 0.8)")
    link.add_argument("--base-url", help=f"the app's public address (default ${crowd.PUBLIC_URL_ENV}, else"
                                         f" {crowd.DEFAULT_BASE_URL})")
    link.set_defaults(handler=_link)

    studies = group.add_parser("studies", parents=[common], help="the project's studies with their links")
    studies.add_argument("project", help="project name or id")
    studies.add_argument("--base-url", help="the app's public address (as for `crowd link`)")
    studies.set_defaults(handler=_studies)

    gold = group.add_parser("gold", help="gold items (quality checks with a known label)").add_subparsers(
        dest="gold_command", required=True)
    add = gold.add_parser("add", parents=[common], help="mark an item as gold with its correct label(s)")
    add.add_argument("project", help="project name or id")
    add.add_argument("item_id", help="the item's imported id, else its database id")
    add.add_argument("labels", nargs="+", metavar="LABEL", help="the correct label(s)")
    add.add_argument("--qualification", action="store_true", help="a qualification item (before real items)")
    add.set_defaults(handler=_gold_add)
    listing = gold.add_parser("list", parents=[common], help="the project's checks (gold and attention)")
    listing.add_argument("project", help="project name or id")
    listing.set_defaults(handler=_checks)
    remove = gold.add_parser("remove", parents=[common], help="delete a check (gold or attention) by its id")
    remove.add_argument("project", help="project name or id")
    remove.add_argument("check_id", type=int, help="the check's id (`crowd gold list`)")
    remove.set_defaults(handler=_check_remove)

    attention = group.add_parser("attention", help="attention checks").add_subparsers(
        dest="attention_command", required=True)
    att = attention.add_parser("add", parents=[common], help="add an attention check (an instruction as text)")
    att.add_argument("project", help="project name or id")
    att.add_argument("label", help="the label the instruction asks for")
    att.add_argument("--text", default="", help="the instruction (default: " + quality.ATTENTION_TEXT + ")")
    att.add_argument("--qualification", action="store_true", help="a qualification item (before real items)")
    att.set_defaults(handler=_attention_add)

    report = group.add_parser("report", parents=[common], help="per-annotator quality")
    report.add_argument("project", help="project name or id")
    report.add_argument("--max-run", type=int, default=quality.DEFAULT_MAX_RUN,
                        help="flag straight-lining when one label runs longer than this"
                             f" (default {quality.DEFAULT_MAX_RUN})")
    report.set_defaults(handler=_report)

    exclude = group.add_parser("exclude", parents=[common],
                               help="leave an annotator out of agreement, aggregation and training")
    exclude.add_argument("project", help="project name or id")
    exclude.add_argument("worker", help="the annotator's name (prolific:ID for a worker) or a platform worker id")
    exclude.add_argument("--reason", default="", help="why (kept with the exclusion)")
    exclude.add_argument("--undo", action="store_true", help="take the annotator back")
    exclude.set_defaults(handler=_exclude)

    export = group.add_parser("export", parents=[common], help="write the workers of the project's studies as CSV")
    export.add_argument("project", help="project name or id")
    export.add_argument("--out", required=True, help="CSV file to write")
    export.set_defaults(handler=_export)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: missing values (NaN, None) as null, numpy scalars as Python ones."""
    out = []
    for record in frame.astype(object).to_dict("records"):
        out.append({key: None if value is None or (isinstance(value, float) and math.isnan(value))
                    else value.item() if hasattr(value, "item") else value for key, value in record.items()})
    return out


def _link(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    settings = crowd.StudySettings(
        quota=args.quota, completion_code=args.completion_code.strip(), completion_url=args.completion_url.strip(),
        screened_out_code=args.screened_out_code.strip(), gold_rate=args.gold_rate,
        qualification_threshold=args.qualification_threshold)
    base = crowd.base_url(args.base_url)  # checked before anything is written
    study = crowd.create_study(db, project, args.platform, settings)
    url = crowd.study_url(study, base)
    return {"study_id": study.id, "project": project.name, "platform": study.platform, "url": url,
            "settings": settings.to_dict(),
            "message": f"{url}\nstudy {study.id} of {project.name!r}: {crowd.PLATFORMS[study.platform].note}"}


def _studies(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    table = crowd.studies_table(db, project, base=args.base_url)
    lines = [f"study {row.study_id} ({row.platform}): {row.workers} workers, {row.completed} completed,"
             f" {row.screened_out} screened out, {row.items_done} items done; {row.url}"
             for row in table.itertuples()]
    return {"studies": _records(table), "message": "\n".join(lines) or f"{project.name!r} has no crowd study yet"}


def _check_line(check: quality.Check) -> str:
    where = f"item {check.item_id}" if check.item_id is not None else repr(check.text)
    phase = "qualification " if check.qualification else ""
    return f"{phase}{check.kind} check {check.id}: {where}, correct: {', '.join(check.labels)}"


def _gold_add(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    check = quality.add_gold(db, project, args.item_id, args.labels, qualification=args.qualification)
    return {"check_id": check.id, "kind": check.kind, "item": check.item_id, "labels": list(check.labels),
            "qualification": check.qualification,
            "message": _check_line(check) + " (the item has left the annotation pool)"}


def _attention_add(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    check = quality.add_attention_check(db, project, args.label, text=args.text, qualification=args.qualification)
    return {"check_id": check.id, "kind": check.kind, "text": check.text, "labels": list(check.labels),
            "qualification": check.qualification, "message": _check_line(check)}


def _checks(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    table = quality.checks_table(db, project)
    lines = [f"{row.check_id} {'qualification ' if row.qualification else ''}{row.kind}"
             f" {row.item_id if row.kind == 'gold' else repr(row.text)}: {row.labels}"
             f" ({row.correct} of {row.answers} answers correct)" for row in table.itertuples()]
    return {"checks": _records(table), "message": "\n".join(lines) or f"{project.name!r} has no checks yet"}


def _check_remove(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    quality.remove_check(db, project, args.check_id)
    return {"removed": args.check_id, "message": f"check {args.check_id} removed with its answers"}


def _report(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    table = quality.quality_report(db, project, max_run=args.max_run)
    shown = table[["annotator", "status", "excluded", "n_labels", "gold_accuracy", "attention_passed",
                   "n_attention", "qualification_score", "median_seconds", "longest_run", "straight_lining"]]
    message = shown.to_string(index=False) if len(table) else f"{project.name!r} has no annotators yet"
    return {"project": project.name, "max_run": args.max_run, "annotators": _records(table), "message": message}


def _exclude(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    annotator = args.worker if args.undo else quality.resolve_annotator(db, project, args.worker)
    changed = quality.set_excluded(db, project, annotator, excluded=not args.undo, reason=args.reason)
    excluded = quality.excluded_annotators(db, project)
    verb = "taken back into" if args.undo else "excluded from"
    state = verb if changed else ("was not excluded from" if args.undo else "was already excluded from")
    return {"annotator": annotator, "changed": changed, "excluded": excluded,
            "message": f"{annotator} {state} the agreement, aggregation and training of {project.name!r}"
                       " (their labels stay in the database and the raw export)"}


def _export(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    result = crowd.export_workers(db, project, args.out)
    return {**result, "message": f"wrote {result['rows']} workers to {result['path']}"}
