"""``import`` and ``export``: a project's data in and out (the same core functions as the Data and Export pages)."""

from __future__ import annotations

import argparse
from typing import Any

from core import projects, vocab
from core.config import field_help
from core.data import export as exporter
from core.data import importer
from core.errors import SynthloopError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    imp = subparsers.add_parser("import", parents=[common], help="import texts (and labels) from a file")
    imp.add_argument("project", help="project name or id")
    imp.add_argument("file", help="a file, or a Hugging Face dataset folder (written by export --format hf)")
    imp.add_argument("--format", default="auto", choices=(*vocab.IMPORT_FORMATS, *vocab.FOLDER_FORMATS),
                     help="default: from the file's extension; hf: a dataset folder (its columns are fixed)")
    imp.add_argument("--text-col", default="text", help="column holding the text (default: text)")
    imp.add_argument("--id-col", help="column holding each item's id (rows sharing an id are one item)")
    imp.add_argument("--label-col", help="column holding the reference (gold) label")
    split = imp.add_mutually_exclusive_group()
    split.add_argument("--split", choices=vocab.SPLITS, help="put every row in this split (default: train)")
    split.add_argument("--split-col", help="column holding each row's split (train/dev/test/pool)")
    imp.add_argument("--source", default="real", choices=vocab.SOURCES)
    imp.add_argument("--agreement-col", help="column with each item's published agreement (0-1 or 0-100)")
    imp.add_argument("--encoding", default="utf-8")
    imp.add_argument("--sep", help="field separator (default: ',' for csv, tab for tsv); '\\t' for tab")
    imp.add_argument("--no-header", action="store_true", help="the file has no header row (name them: --columns)")
    imp.add_argument("--columns", help="column names of a headerless file, comma-separated")
    imp.add_argument("--annotator-col", help="long form: column naming the annotator of each row")
    imp.add_argument("--annotation-col", help="long form: column holding that annotator's label")
    imp.add_argument("--annotator-cols", help="wide form: comma-separated columns, one per annotator")
    imp.add_argument("--repeated-ratings", default="last", choices=vocab.REPEATED_RATINGS,
                     help=field_help(importer.ImportSpec)["repeated_ratings"])
    imp.add_argument("--label-map", help=field_help(importer.ImportSpec)["label_map"])
    imp.add_argument("--add-labels", action="store_true", help="add labels the project lacks instead of failing")
    imp.set_defaults(handler=_import)

    exp = subparsers.add_parser("export", parents=[common], help="export items (aggregated) or annotations (--raw)")
    exp.add_argument("project", help="project name or id")
    exp.add_argument("--out", required=True, help="file to write (a new folder with --format hf)")
    exp.add_argument("--format", choices=(*vocab.EXPORT_FORMATS, *vocab.FOLDER_FORMATS),
                     help="default: from --out's extension, else csv; hf: a Hugging Face datasets folder")
    exp.add_argument("--raw", action="store_true", help="a row per annotation instead of a row per item")
    exp.add_argument("--push-to-hub", metavar="REPO",
                     help="with --format hf: also upload the dataset to this Hugging Face Hub repo (needs a token)")
    exp.set_defaults(handler=_export)


def _import(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    spec = importer.ImportSpec(
        format="auto" if args.format in vocab.FOLDER_FORMATS else args.format, text_col=args.text_col, id_col=args.id_col, label_col=args.label_col, split=args.split,
        split_col=args.split_col, source=args.source, agreement_col=args.agreement_col, encoding=args.encoding,
        sep=args.sep, no_header=args.no_header, columns=importer.split_names(args.columns),
        annotator_col=args.annotator_col, annotation_col=args.annotation_col,
        annotator_cols=importer.split_names(args.annotator_cols), repeated_ratings=args.repeated_ratings,
        label_map=args.label_map,
    )
    project = projects.get_project(db, args.project)
    if args.format in vocab.FOLDER_FORMATS:
        report = importer.import_folder(db, project.id, args.file, spec, add_missing_labels=args.add_labels)
        return {**report.to_dict(), "message": report.message}
    report = importer.import_file(db, project.id, args.file, spec, add_missing_labels=args.add_labels)
    return {**report.to_dict(), "message": report.message}


def _export(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    if args.format in vocab.FOLDER_FORMATS or args.push_to_hub:
        return _export_hf(args, db, project)
    view = "raw" if args.raw else "aggregated"
    result = exporter.export_file(db, project.id, args.out, view=view, fmt=args.format)
    return {**result, "project": project.name,
            "message": f"wrote {result['rows']} {'annotations' if args.raw else 'items'} of {project.name!r}"
                       f" to {result['path']} ({result['format']})"}


def _export_hf(args: argparse.Namespace, db: Any, project: projects.Project) -> dict[str, Any]:
    from core.data import hf  # imports datasets: only when needed

    if args.format not in vocab.FOLDER_FORMATS:
        raise SynthloopError("--push-to-hub uploads a Hugging Face dataset: add --format hf")
    if args.raw:
        raise SynthloopError("--format hf writes one row per item with its raw labels inside: leave out --raw")
    result = hf.export_hf(db, project.id, args.out, push_to_hub=args.push_to_hub)
    pushed = f", uploaded to {result['pushed_to']}" if result.get("pushed_to") else ""
    return {**result, "project": project.name,
            "message": f"wrote {result['rows']} items of {project.name!r} to {result['path']} (hf: "
                       + ", ".join(f"{k} {v}" for k, v in result["splits"].items()) + f"){pushed}"}
