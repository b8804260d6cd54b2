"""The loop on one page: per round of generation and per label, what the round produced and how good it is, and
per round whether a model trained on the synthetic data up to it closes the gap to a model trained on real data.

A round is a generation job (``generation_job.round``: 1, 2, 3… per project). Per round × label:

- ``calls``, ``generated`` (texts parsed out of the calls' outputs) and ``accepted`` (the round's synthetic items
  that are accepted now, after screening and review);
- ``fidelity`` over ``n_judged`` accepted items with a human label (:func:`core.agreement.metrics.label_fidelity`:
  the human majority equals the intended label, a tie counts as not equal);
- ``panel_agreement``: the mean over the ``n_panel`` accepted items the LLM panel labelled of the share of
  ``llm:`` annotators who gave the intended label (:func:`core.agreement.panel.panel_agreement`).

Per round, all labels together, the same figures plus Remote-Clique and Chamfer distance of the round's
accepted items and the mean top-5 similarity of the real test items to them (test items: no generation call is
grounded in them). Both diversity metrics and the similarity move with the set size, so every round and the
real training items are compared at one size, ``n_subsample`` (the smallest of them, at most
``AnalysisConfig.subsample`` or 2,000; seeded subsamples, as the analysis does); a round with fewer than
``min_size`` items is left out of that comparison and named in ``excluded``.

``macro_f1`` of a round is the latest finished *loop run* of that round: a training run with ``max_round`` equal
to it, synthetic sources only (no real or seed items) and evaluated on the real test split. The real reference
is the latest finished run on real training items only, evaluated on the same split. :func:`train_rounds`
starts a loop run for every round that has none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlite_utils

from core import jobs as core_jobs
from core.agreement.metrics import label_fidelity
from core.agreement.panel import panel_agreement
from core.analysis import diversity, service
from core.analysis.embeddings import Embedder, embed_texts
from core.errors import SynthloopError
from core.projects import get_project
from core.training import run as training_runs
from core.training import service as training_service
from core.training.config import TrainConfig
from core.vocab import ACTIVE_STATUSES, MODES
from db import generation as generation_db
from db import items as items_db

LOOP_EVAL_SPLIT = "test"
COUNT_COLUMNS = ["calls", "generated", "accepted", "fidelity", "n_judged", "panel_agreement", "n_panel"]
PER_LABEL_COLUMNS = ["round", "generation_job_id", "label", *COUNT_COLUMNS]
PER_ROUND_COLUMNS = ["round", "generation_job_id", *COUNT_COLUMNS, "remote_clique", "chamfer", "similarity_to_real",
                     "run_id", "model", "macro_f1"]


@dataclass(frozen=True)
class LoopView:
    """The project's loop: ``per_label`` (round × label) and ``per_round`` tables (columns above), the common
    diversity size ``n_subsample`` (None when nothing was compared), the ``real`` reference (``n``,
    ``remote_clique``, ``chamfer`` at the same size, ``run_id`` and ``macro_f1`` of the latest real-only run)
    and the sources left out of the diversity comparison (name → ``{n, reason}``)."""

    project: str
    per_label: pd.DataFrame
    per_round: pd.DataFrame
    n_subsample: int | None
    real: dict[str, Any]
    excluded: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "n_subsample": self.n_subsample, "real": self.real,
                "excluded": self.excluded, "per_round": _records(self.per_round),
                "per_label": _records(self.per_label)}


def _plain(value: Any) -> Any:
    """A table cell as JSON takes it: numpy numbers as Python numbers, NaN and NA as None."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.astype(object).to_dict(orient="records")]


# --- what each round produced and how good it is --------------------------------------------------------------

def _quality(annotations: pd.DataFrame, intended: pd.Series) -> dict[str, Any]:
    """Human label fidelity and mean panel agreement of items (``intended``: item id → intended label), overall
    and per label."""
    fidelity = label_fidelity(annotations, intended)
    panel = panel_agreement(annotations, intended).dropna()
    panel_by_label = panel.groupby(intended.reindex(panel.index).to_numpy()).agg(["mean", "size"])
    per_label = {label: {"fidelity": None, "n_judged": 0} for label in set(intended)}
    for entry in fidelity["per_label"]:
        per_label[entry["label"]] = {"fidelity": entry["fidelity"], "n_judged": entry["n"]}
    for label, row in panel_by_label.iterrows():
        per_label[label].update(panel_agreement=float(row["mean"]), n_panel=int(row["size"]))
    overall = {"fidelity": fidelity["fidelity"], "n_judged": fidelity["n_items"],
               "panel_agreement": float(panel.mean()) if len(panel) else None, "n_panel": len(panel)}
    return {"overall": overall, "per_label": per_label}


def _empty_quality() -> dict[str, Any]:
    return {"fidelity": None, "n_judged": 0, "panel_agreement": None, "n_panel": 0}


def _round_tables(calls: pd.DataFrame, synthetic: pd.DataFrame, annotations: pd.DataFrame,
                  rounds: dict[int, int], labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-label and per-round tables without diversity and runs (``synthetic``: accepted synthetic items
    with ``item_id``, ``label`` and ``round``)."""
    per_label, per_round = [], []
    for job_id, round_ in sorted(rounds.items(), key=lambda kv: kv[1]):
        mine = synthetic[synthetic["round"] == round_]
        intended = pd.Series(mine["label"].to_numpy(object), index=mine["item_id"].to_numpy()).dropna()
        quality = _quality(annotations, intended) if len(intended) else {"overall": _empty_quality(),
                                                                           "per_label": {}}
        round_calls = calls[calls["round"] == round_]
        for label in labels:
            label_calls = round_calls[round_calls["label"] == label]
            per_label.append({"round": round_, "generation_job_id": job_id, "label": label,
                              "calls": int(label_calls["calls"].sum()), "generated": int(label_calls["generated"].sum()),
                              "accepted": int((mine["label"] == label).sum()),
                              **{**_empty_quality(), **quality["per_label"].get(label, {})}})
        per_round.append({"round": round_, "generation_job_id": job_id, "calls": int(round_calls["calls"].sum()),
                          "generated": int(round_calls["generated"].sum()), "accepted": len(mine),
                          **quality["overall"]})
    return (pd.DataFrame(per_label, columns=PER_LABEL_COLUMNS),
            pd.DataFrame(per_round, columns=["round", "generation_job_id", *COUNT_COLUMNS]))


# --- diversity and similarity at one size ----------------------------------------------------------------------

def _common_size(sizes: dict[str, int], config: service.AnalysisConfig) -> tuple[int | None,
                                                                                  dict[str, dict[str, Any]]]:
    """One size for every source with at least ``min_size`` items: the smallest of them, capped."""
    excluded = {name: {"n": n, "reason": f"fewer than the minimum of {config.min_size} items"}
                for name, n in sizes.items() if n < config.min_size}
    compared = {name: n for name, n in sizes.items() if name not in excluded}
    if not set(compared) - {"real"}:  # no round to compare: real data alone is no comparison
        return None, excluded
    return min(*compared.values(), config.subsample or service.DEFAULT_MAX_SUBSAMPLE), excluded


def _diversity(sources: pd.DataFrame, synthetic: pd.DataFrame, rounds: list[int], config: service.AnalysisConfig,
               embedder: Embedder | None, db: sqlite_utils.Database) -> dict[str, Any]:
    """Remote-Clique, Chamfer (each round and the real training items) and top-5 similarity of real items (each
    round) at one common size: ``{"n_subsample", "excluded", "real": {...}, "rounds": {round: {...}}}``."""
    # Only the texts compared are embedded: real items and the rounds' accepted items.
    sources = sources[(sources["source"] == "real") | sources["item_id"].isin(synthetic["item_id"])]
    sources = sources.reset_index(drop=True)
    real_train = np.flatnonzero(((sources["source"] == "real") & (sources["split"] == "train")).to_numpy())
    members = {"real": real_train}
    members.update({f"round {r}": np.flatnonzero(sources["item_id"].isin(
        synthetic.loc[synthetic["round"] == r, "item_id"]).to_numpy()) for r in rounds})
    size, excluded = _common_size({name: len(index) for name, index in members.items()}, config)
    empty: dict[str, Any] = {"n_subsample": size, "excluded": excluded, "real": {"n": len(real_train)},
                             "rounds": {}}
    if size is None:
        return empty
    # service.load_embedder (not the embeddings module's name) so that a test's stand-in reaches here too.
    embedder = embedder or service.load_embedder(config.embedding_model, batch_size=config.batch_size)
    vectors = embed_texts(db, sources["text"].tolist(), embedder=embedder).vectors
    real_queries = _similarity_queries(sources)
    if len(real_queries) > config.max_real_queries:  # the analysis's seeded sample of real queries
        real_queries = np.sort(np.random.default_rng([config.seed, 5]).choice(
            real_queries, size=config.max_real_queries, replace=False))
    result = {**empty, "real": {"n": len(real_train), "remote_clique": None, "chamfer": None}}
    for name, index in members.items():
        if name in excluded:
            continue
        spread = diversity.diversity(vectors[index], size=size, n_subsamples=config.n_subsamples, seed=config.seed)
        entry: dict[str, Any] = {"remote_clique": spread.remote_clique, "chamfer": spread.chamfer}
        if name == "real":
            result["real"].update(entry)
            continue
        if len(real_queries):
            entry["similarity_to_real"] = diversity.similarity_to_real(
                vectors[real_queries], vectors[index], k=service.TOP_K, size=size,
                n_subsamples=config.n_subsamples, seed=config.seed).mean
        result["rounds"][int(name.split(" ")[1])] = entry
    return result


def _similarity_queries(sources: pd.DataFrame) -> np.ndarray:
    """Row positions of the real items whose top-5 similarity is measured: the test items, which a generation
    call is never grounded in (retrieval shows other real texts to the generator, and a copy of one would look
    like closeness); every real item when the project has no test items."""
    real = (sources["source"] == "real").to_numpy()
    test = real & (sources["split"] == LOOP_EVAL_SPLIT).to_numpy()
    return np.flatnonzero(test if test.any() else real)


# --- training runs per round -----------------------------------------------------------------------------------

def is_loop_run(config: dict[str, Any], round_: int) -> bool:
    """Whether a run (its stored config) trained on all the synthetic data up to ``round_`` and nothing else, with
    no filter that would make it other data (agreement, LLM panel), scored on test: what :func:`train_rounds`
    starts. Model and hyper-parameters may differ; the table names each run's model."""
    return (config.get("max_round") == round_ and set(config.get("sources") or ()) == set(MODES)
            and not config.get("generation_job_ids") and not config.get("min_agreement")
            and config.get("min_panel_agreement") is None
            and config.get("eval_split", LOOP_EVAL_SPLIT) == LOOP_EVAL_SPLIT)


def is_real_run(config: dict[str, Any]) -> bool:
    """Whether a run trained on the real training split alone, scored on test."""
    return (list(config.get("sources") or ()) == ["real"] and not config.get("generation_job_ids")
            and config.get("eval_split", LOOP_EVAL_SPLIT) == LOOP_EVAL_SPLIT)


def _latest_done(runs: list[dict[str, Any]], keep: Any) -> dict[str, Any]:
    """``run_id`` and ``macro_f1`` of the newest finished run that ``keep(config)`` accepts (None, None: none)."""
    done = [r for r in runs if r["status"] == "done" and keep(r["config"])]
    latest = max(done, key=lambda r: r["id"], default=None)
    return {"run_id": None if latest is None else int(latest["id"]),
            "model": None if latest is None else latest["config"].get("model"),
            "macro_f1": None if latest is None else (latest.get("metrics") or {}).get("macro_f1")}


# --- the view --------------------------------------------------------------------------------------------------

def loop_view(db: sqlite_utils.Database, project: int | str, *, embedder: Embedder | None = None,
              config: service.AnalysisConfig | None = None, with_diversity: bool = True) -> LoopView:
    """The project's loop, round by round (see the module's docstring). ``with_diversity=False`` skips the
    embeddings (the diversity and similarity columns stay empty)."""
    config = config or service.AnalysisConfig()
    found = get_project(db, project)
    rounds = generation_db.job_rounds(db, found.id)
    sources = service.source_table(db, found.id)
    synthetic = sources[(sources["source"] == "synthetic") & sources["generation_job_id"].notna()].copy()
    synthetic["round"] = [rounds.get(int(job)) for job in synthetic["generation_job_id"]]
    annotations = items_db.annotation_labels_frame(db, found.id)
    per_label, per_round = _round_tables(generation_db.calls_per_round(db, found.id), synthetic, annotations,
                                         rounds, found.label_names)
    spread: dict[str, Any] = {"n_subsample": None, "excluded": {}, "real": {}, "rounds": {}}
    if with_diversity and len(sources) >= 2:
        spread = _diversity(sources, synthetic, sorted(rounds.values()), config, embedder, db)
    runs = training_runs.list_runs(db, project_id=found.id)
    for column in ("remote_clique", "chamfer", "similarity_to_real"):
        per_round[column] = [spread["rounds"].get(r, {}).get(column, np.nan) for r in per_round["round"]]
    loop_runs = [_latest_done(runs, lambda c, r=r: is_loop_run(c, r)) for r in per_round["round"]]
    per_round["run_id"] = pd.array([r["run_id"] for r in loop_runs], dtype="Int64")
    per_round["model"] = [r["model"] for r in loop_runs]
    per_round["macro_f1"] = [np.nan if r["macro_f1"] is None else r["macro_f1"] for r in loop_runs]
    real = {"n": int(((sources["source"] == "real") & (sources["split"] == "train")).sum()),
            "remote_clique": None, "chamfer": None, **spread["real"], **_latest_done(runs, is_real_run)}
    return LoopView(project=found.name, per_label=per_label, per_round=per_round[PER_ROUND_COLUMNS],
                    n_subsample=spread["n_subsample"], real=real, excluded=spread["excluded"])


def loop_lines(view: LoopView) -> str:
    """The view as readable lines for the CLI."""
    def fmt(value: Any, digits: int = 3) -> str:
        return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"

    compared = (f"diversity and similarity at {view.n_subsample} items per round" if view.n_subsample else
                "no round has enough items for the diversity comparison")
    lines = [f"loop of {view.project!r}: {len(view.per_round)} rounds; {compared}"]
    for row in view.per_round.to_dict(orient="records"):
        lines.append(f"  round {row['round']} (job {row['generation_job_id']}): {row['calls']} calls,"
                     f" {row['generated']} generated, {row['accepted']} accepted; fidelity {fmt(row['fidelity'])}"
                     f" (n={row['n_judged']}), panel {fmt(row['panel_agreement'])} (n={row['n_panel']});"
                     f" remote-clique {fmt(row['remote_clique'], 4)}, chamfer {fmt(row['chamfer'], 4)},"
                     f" top-5 similarity to real {fmt(row['similarity_to_real'], 4)}; macro-F1 {fmt(row['macro_f1'])}"
                     + ("" if pd.isna(row["run_id"]) else f" (run {row['run_id']})"))
    real = view.real
    lines.append(f"  real ({real['n']} training items): remote-clique {fmt(real['remote_clique'], 4)},"
                 f" chamfer {fmt(real['chamfer'], 4)}; macro-F1 {fmt(real['macro_f1'])}"
                 + ("" if real["run_id"] is None else f" (run {real['run_id']})"))
    lines.extend(f"  left out of the diversity comparison: {name} (n={entry['n']}, {entry['reason']})"
                 for name, entry in view.excluded.items())
    return "\n".join(lines)


def train_rounds(db: sqlite_utils.Database, db_path: str | os.PathLike[str], project: int | str,
                 settings: TrainConfig | None = None, *, foreground: bool = False) -> list[dict[str, Any]]:
    """One loop run for every round without a finished or active one: the synthetic items of rounds up to it
    (``sources`` = every generation mode, ``max_round`` = the round), with ``settings``' other choices (default:
    :class:`TrainConfig`'s), scored on the real test split. ``foreground`` trains each in this process one after
    the other (the CLI); else each starts as a background job. A round whose generation is still running is
    skipped. Returns per round ``{round, run_id, job_id | macro_f1}`` or ``{round, error}`` (nothing to train)."""
    settings = settings or TrainConfig()
    found = get_project(db, project)
    core_jobs.fail_orphaned_jobs(db)  # a killed generation must not hold its round back for ever
    runs = [r for r in training_runs.list_runs(db, project_id=found.id)
            if r["status"] == "done" or r["status"] in ACTIVE_STATUSES]
    jobs = generation_db.list_generation_jobs(db, found.id, limit=100_000)
    started: list[dict[str, Any]] = []
    for job in sorted(jobs, key=lambda j: j["round"] or 0):
        round_ = job["round"]
        if round_ is None or any(is_loop_run(r["config"], round_) for r in runs):
            continue
        if job["job_status"] in ACTIVE_STATUSES:
            started.append({"round": round_, "error": f"generation job {job['id']} is still {job['job_status']}"})
            continue
        config = settings.replace(sources=MODES, generation_job_ids=(), max_round=round_, eval_split=LOOP_EVAL_SPLIT)
        try:
            if foreground:
                result = training_service.train_foreground(db_path, found.id, config)
                started.append({"round": round_, "run_id": result["run_id"], "macro_f1": result["macro_f1"]})
            else:
                started.append({"round": round_, **training_runs.start_training(db, db_path, found.id, config)})
        except SynthloopError as exc:
            started.append({"round": round_, "error": str(exc)})
    return started
