"""``analyse`` and ``study``: diversity and similarity per source, and the paper's comparison as a report."""

from __future__ import annotations

import argparse
from typing import Any

from core.analysis.service import AnalysisConfig
from core.analysis.study import StudyConfig
from core.projects import get_project
from core.store import db_file
from core.vocab import LABEL_SOURCES, PROJECTIONS


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    analyse = subparsers.add_parser("analyse", parents=[common],
                                    help="diversity and similarity to real data, per source")
    analyse.add_argument("project", help="project name or id")
    analyse.add_argument("--subsample", type=int, default=None,
                         help="compare sources at this many items (default: the smallest source, at most 2000)")
    analyse.add_argument("--subsamples", type=int, default=5, help="subsamples per source for the spread (default 5)")
    analyse.add_argument("--min-size", type=int, default=AnalysisConfig.min_size,
                         help="leave out (and name) sources with fewer items than this"
                              f" (default {AnalysisConfig.min_size})")
    analyse.add_argument("--seed", type=int, default=0, help="seed of the subsamples (default 0)")
    analyse.add_argument("--projection", choices=PROJECTIONS, default=None,
                         help="2-D map for the page (default pca: instant; tsne takes ~10-20 s for 1,000 points)")
    analyse.add_argument("--embedding-model", default=None,
                         help="sentence-embedding model (default: the embedded all-MiniLM-L6-v2)")
    analyse.set_defaults(handler=_analyse)

    study = subparsers.add_parser("study", parents=[common], help="the paper's comparison as a report folder")
    study.add_argument("project", help="project name or id")
    study.add_argument("--out", required=True, help="report folder (created; files in it are replaced)")
    study.add_argument("--epochs", type=int, default=3, help="training epochs per run (default 3)")
    study.add_argument("--model", default="embedded", help="classifier (default: the embedded MiniLM)")
    study.add_argument("--seed", type=int, default=42)
    study.add_argument("--label-source", choices=LABEL_SOURCES, default=StudyConfig.label_source,
                       help="the labels every run trains with: 'majority' for data imported as raw per-annotator"
                            f" labels only (default {StudyConfig.label_source})")
    study.add_argument("--runs", default=None,
                       help="comma-separated subset of: real,zero-shot,few-shot,seeds,seeds + few-shot")
    study.add_argument("--check", action="store_true", help="only check the ingredients; train nothing")
    study.set_defaults(handler=_study)



def _analyse(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.analysis import service as analysis

    project = get_project(db, args.project)
    settings: dict[str, Any] = {"subsample": args.subsample, "n_subsamples": args.subsamples, "seed": args.seed,
                                "min_size": args.min_size}
    if args.projection:  # else the config's default, which the page uses too
        settings["projection"] = args.projection
    if args.embedding_model:
        settings["embedding_model"] = args.embedding_model
    config = analysis.AnalysisConfig(**settings)
    result = analysis.run_analysis_foreground(db_file(db), project.id, config)
    # The map's thousands of coordinates are for the page, not for a terminal or a script.
    result.pop("map", None)
    return result


def _study(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.analysis import study

    project = get_project(db, args.project)
    settings: dict[str, Any] = {"out_dir": args.out, "epochs": args.epochs, "model": args.model, "seed": args.seed,
                                "label_source": args.label_source}
    if args.runs:
        settings["arms"] = args.runs
    config = study.StudyConfig(**settings)
    ingredients = study.check_ingredients(db, project.id, config)
    if args.check or not ingredients.ok:
        lines = [f"{'can' if ingredients.ok else 'cannot'} run the study of {project.name!r};"
                 f" runs: {', '.join(ingredients.runnable) or 'none'}"]
        lines.extend(f"  - {p.message}" for p in ingredients.problems)
        if not ingredients.ok:
            from core.errors import SynthloopError

            raise SynthloopError(" ".join(lines))
        return {**ingredients.to_dict(), "message": "\n".join(lines)}
    result = study.run_study_foreground(db_file(db), project.id, config)
    for run in result.get("runs", {}).values():
        run.pop("history", None)
    return result
