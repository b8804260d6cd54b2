"""``loop``: the project's rounds of generation on one screen, and a training run per round (``--train``)."""

from __future__ import annotations

import argparse
from typing import Any

from core.analysis.service import AnalysisConfig
from core.store import db_file
from core.training.config import TrainConfig


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    loop = subparsers.add_parser("loop", parents=[common],
                                 help="per round: items generated and accepted, label fidelity, panel agreement,"
                                      " diversity, similarity to real data and macro-F1")
    loop.add_argument("project", help="project name or id")
    loop.add_argument("--train", action="store_true",
                      help="first train a model on the synthetic data up to each round that has no such run"
                           " (foreground, one round after the other)")
    loop.add_argument("--model", default=defaults.model, help="classifier of the runs --train starts")
    loop.add_argument("--epochs", type=int, default=defaults.epochs)
    loop.add_argument("--seed", type=int, default=defaults.seed)
    loop.add_argument("--cap-per-label", type=int, default=None, help="at most N training items per label")
    loop.add_argument("--no-diversity", action="store_true",
                      help="skip the embeddings (no diversity or similarity columns)")
    loop.add_argument("--subsample", type=int, default=None,
                      help="compare rounds and real data at this many items (default: the smallest, at most 2000)")
    loop.add_argument("--min-size", type=int, default=AnalysisConfig.min_size,
                      help="leave out (and name) rounds with fewer items than this"
                           f" (default {AnalysisConfig.min_size})")
    loop.set_defaults(handler=_loop)


def _loop(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core.analysis import loop  # imports the analysis and training stacks: only when needed

    trained: list[dict[str, Any]] = []
    if args.train:
        settings = TrainConfig(model=args.model, epochs=args.epochs, seed=args.seed, cap_per_label=args.cap_per_label)
        trained = loop.train_rounds(db, db_file(db), args.project, settings, foreground=True)
    config = AnalysisConfig(subsample=args.subsample, min_size=args.min_size)
    view = loop.loop_view(db, args.project, config=config, with_diversity=not args.no_diversity)
    lines = [f"round {t['round']}: " + (f"not trained: {t['error']}" if "error" in t else f"run {t['run_id']}")
             for t in trained]
    return {**view.to_dict(), "trained": trained, "message": "\n".join([*lines, loop.loop_lines(view)])}
