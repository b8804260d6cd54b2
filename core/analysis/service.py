"""The per-project analysis: how diverse real and synthetic data are, and how close synthetic data come to real.

Sources are the real items, all synthetic items, the zero-shot and few-shot synthetic items (``item.generation_mode``)
and each generation job (``item.generation_job_id``); only accepted items count. Every source gets
Remote-Clique and Chamfer distance at one common set size (seeded subsamples, mean ± std), every synthetic
source the paper's mean top-5 similarity of real items to it, and a 2-D map of a capped sample of the items.

Both diversity metrics and the top-5 similarity move with the set size, so numbers at different sizes are never
shown side by side: a source with fewer than ``min_size`` items is left out (named, with its n, in
``excluded``), the others are compared at the smallest one's size, and a generation job smaller than that is
left out too.

The analysis runs as a job of kind ``analysis`` (the page launches it in its own process; the CLI runs it in
the foreground); its result, stored with the job, is what the page and ``analyse --json`` show.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlite_utils

from core import jobs as core_jobs
from core.analysis import diversity
from core.analysis.embeddings import DEFAULT_BATCH_SIZE, DEFAULT_EMBEDDING_MODEL, Embedder, embed_texts, load_embedder
from core.config import Config, is_whole_number, setting
from core.data.items import generation_group, item_table
from core.errors import SynthloopError
from core.projects import get_project
from core.vocab import MODES, PROJECTIONS, SOURCES, Projection
from db import connection
from db import items as items_db
from db import jobs as jobs_db

TOP_K = 5
MAIN_SOURCES = (*SOURCES, *MODES)
SYNTHETIC_SOURCES = ("synthetic", *MODES)
# Chamfer distance needs every pair of a subsample: 2,000 items × 384 dims is ~1.5 GFLOP a draw, under a second on
# two cores; 5 draws × 6 sources stay well under a minute, and 2,000 items already give a tight spread.
DEFAULT_MAX_SUBSAMPLE = 2000


@dataclass(frozen=True)
class AnalysisConfig(Config):
    """Settings of one analysis, stored with its result.

    ``subsample`` caps the common set size at which sources are compared (default: the smallest of real,
    synthetic, zero-shot and few-shot, at most 2,000); ``n_subsamples`` draws per source give the spread.
    ``min_size``: a source with fewer items is left out of the comparison (and named in a note) rather than
    dragging every source down to its size.
    ``max_real_queries`` caps the real items whose top-5 similarity is averaged (a seeded sample beyond it).
    """

    KIND = "analysis setting"

    subsample: int | None = setting(None, "compare sources at this common set size (default: the smallest, ≤ 2,000)")
    n_subsamples: int = setting(5, "seeded subsamples per source; their spread is reported")
    min_size: int = setting(10, "sources with fewer items are left out of the comparison (named in a note)")
    seed: int = setting(0, "seed of the subsamples, the map sample and the projection")
    max_real_queries: int = setting(2000, "real items whose top-5 similarity to synthetic data is averaged")
    projection: Projection = setting("pca", "how the 2-D map is drawn (pca: instant; tsne: ~10-20 s for 1,000 points)")
    max_map_points: int = setting(1000, "points on the 2-D map (a seeded sample beyond it)")
    embedding_model: str = setting(DEFAULT_EMBEDDING_MODEL, "sentence encoder: the embedded MiniLM or a folder")
    batch_size: int = setting(DEFAULT_BATCH_SIZE, "texts embedded per batch")

    def __post_init__(self) -> None:
        if self.subsample is not None and (not is_whole_number(self.subsample) or self.subsample < 2):
            raise SynthloopError(f"{{subsample}} {self.subsample!r} is not valid: use a whole number ≥ 2 items",
                                 fields=("subsample",))
        for name, low in (("n_subsamples", 1), ("min_size", 2), ("max_real_queries", 1), ("max_map_points", 10),
                          ("batch_size", 1)):
            value = getattr(self, name)
            if not is_whole_number(value) or value < low:
                raise SynthloopError(f"analysis setting {name}={value!r} is not valid: use a whole number ≥ {low}")
        if not is_whole_number(self.seed) or not 0 <= self.seed < 2**32:
            raise SynthloopError(f"{{seed}} {self.seed!r} is not valid: use a whole number from 0 to 2**32 - 1",
                                 fields=("seed",))
        if self.projection not in PROJECTIONS:
            raise SynthloopError(f"projection {self.projection!r} is not valid: use one of {', '.join(PROJECTIONS)}")
        if not isinstance(self.embedding_model, str) or not self.embedding_model.strip():
            raise SynthloopError(f"embedding model {self.embedding_model!r} is not valid: name a model or folder")



def source_table(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """Accepted items with ``item_id``, ``text``, ``group`` (real | zero-shot | few-shot | synthetic for
    synthetic items of unknown mode), ``generation_job_id`` (or None) and ``label`` (real: adjudicated, else
    reference, else majority; synthetic: the intended label)."""
    table = item_table(db, project_id)
    if table.empty:
        return pd.DataFrame(columns=["item_id", "text", "source", "group", "generation_job_id", "label", "split"])
    job_ids = [int(j) if pd.notna(j) else None for j in table["generation_job_id"]]
    real_label = table["adjudicated_label"].where(table["adjudicated_label"].notna(), table["reference_label"])
    real_label = real_label.where(real_label.notna(), table["majority_label"])
    label = np.where(table["source"] == "real", real_label, table["reference_label"])
    return pd.DataFrame({
        "item_id": table["id"].astype(int), "text": table["text"].astype(str), "source": table["source"],
        "group": generation_group(table), "generation_job_id": pd.array(job_ids, dtype=object),
        "label": [lb if isinstance(lb, str) else None for lb in label], "split": table["split"],
    })


def _members(sources: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions of each source (main sources, then ``job ID`` per generation job)."""
    members: dict[str, np.ndarray] = {
        "real": np.flatnonzero(sources["source"].to_numpy() == "real"),
        "synthetic": np.flatnonzero(sources["source"].to_numpy() == "synthetic"),
        "zero-shot": np.flatnonzero(sources["group"].to_numpy() == "zero-shot"),
        "few-shot": np.flatnonzero(sources["group"].to_numpy() == "few-shot"),
    }
    synthetic = sources["source"].to_numpy() == "synthetic"
    job_ids = sorted({int(j) for j in sources.loc[synthetic, "generation_job_id"] if j is not None})
    for job_id in job_ids:
        members[f"job {job_id}"] = np.flatnonzero(synthetic & (sources["generation_job_id"] == job_id).to_numpy())
    return members


def comparison_plan(sizes: dict[str, int], config: AnalysisConfig) -> tuple[int | None, dict[str, dict[str, Any]]]:
    """The common set size at which sources are compared, and the sources left out (name → ``{n, reason}``).

    ``sizes`` holds the sources that have items. A source below ``min_size`` is left out; the common size is
    the smallest remaining main source (real, synthetic, zero-shot, few-shot), capped by ``subsample`` (default
    2,000); a generation job smaller than that is left out as well. The size is None when no main source is
    left to compare.
    """
    excluded = {name: {"n": n, "reason": f"fewer than the minimum of {config.min_size} items"}
                for name, n in sizes.items() if n < config.min_size}
    compared = [n for name, n in sizes.items() if name in MAIN_SOURCES and name not in excluded]
    if not compared:
        return None, excluded
    size = min(*compared, config.subsample or DEFAULT_MAX_SUBSAMPLE)
    excluded.update({name: {"n": n, "reason": f"fewer than the common size of {size} items"}
                     for name, n in sizes.items() if name not in excluded and n < size})
    return size, excluded


def _diversity_entry(embeddings: np.ndarray, size: int | None, config: AnalysisConfig) -> dict[str, Any]:
    """The source's diversity at ``size`` items, or (``size`` None: left out) its n alone."""
    n = int(embeddings.shape[0])
    if size is None:
        return {"n": n, "n_subsample": None, "n_repeats": 0, "remote_clique": None, "remote_clique_std": None,
                "chamfer": None, "chamfer_std": None, "excluded": True}
    return {**diversity.diversity(embeddings, size=size, n_subsamples=config.n_subsamples,
                                  seed=config.seed).to_dict(), "excluded": False}


def _map_sample(sources: pd.DataFrame, max_points: int, seed: int) -> np.ndarray:
    """Row positions for the map: an equal share per group (real, zero-shot, few-shot, synthetic), so a small
    synthetic set is not drowned by a large real one; leftovers go to the larger groups."""
    rng = np.random.default_rng([seed, 7])
    groups = {g: np.flatnonzero(sources["group"].to_numpy() == g) for g in sources["group"].unique()}
    chosen: list[np.ndarray] = []
    budget = max_points
    for position, (_, members) in enumerate(sorted(groups.items(), key=lambda kv: len(kv[1]))):
        share = budget // (len(groups) - position)
        take = members if len(members) <= share else rng.choice(members, size=share, replace=False)
        chosen.append(np.asarray(take))
        budget -= len(take)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


ProgressFn = Callable[[int, int, str], bool]


def analyse_project(
    db: sqlite_utils.Database,
    project_id: int,
    config: AnalysisConfig | None = None,
    *,
    embedder: Embedder | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Embed the project's items (cached) and compute diversity, similarity to real and the 2-D map.

    Returns the ``analyse --json`` object (see DESIGN.md) with extras: ``*_std``, ``n_subsample`` (the common
    size, None when nothing is compared), per source ``excluded`` (left out of the comparison), ``excluded``
    (the sources with items that were left out: name → ``{n, reason}``), ``similarity`` (per synthetic source:
    mean, std, k, sizes), ``generation_jobs``, ``map``, ``embedding``.
    ``progress(done, total, message)`` returning True stops the analysis (``cancelled: True``).
    """
    config = config or AnalysisConfig()
    started = time.perf_counter()
    project = get_project(db, project_id)
    sources = source_table(db, project.id)
    if len(sources) < 2:
        raise SynthloopError(f"project {project.name!r} has {len(sources)} accepted items: analysis needs at least"
                             " 2 — import real data or generate synthetic data first")
    members = _members(sources)
    sizes = {name: len(index) for name, index in members.items() if len(index)}
    size, excluded = comparison_plan(sizes, config)
    compared = set() if size is None else set(sizes) - set(excluded)
    similarity_targets = [name for name in members if name != "real" and name in compared]
    total = len(sources) + len(members) + len(similarity_targets) + 1

    def report(done: int, message: str) -> bool:
        print(f"analysis: {message}", file=sys.stderr, flush=True)
        return bool(progress and progress(done, total, message))

    embedder = embedder or load_embedder(config.embedding_model, batch_size=config.batch_size)
    embedded = embed_texts(
        db, sources["text"].tolist(), embedder=embedder,
        progress=lambda done, n_unique: report(done, f"embedding texts: {done}/{n_unique} distinct texts"),
    )
    embedding_info = {"model": embedded.model, "n_items": len(sources), "n_cached": embedded.n_cached,
                      "n_computed": embedded.n_computed, "seconds": round(time.perf_counter() - started, 3)}
    if embedded.cancelled:
        return {"cancelled": True, "embedding": embedding_info, "message": "analysis cancelled while embedding"}
    vectors = embedded.vectors
    done = len(sources)
    result: dict[str, Any] = {"project_id": project.id, "project": project.name, "config": config.to_dict(),
                              "n_subsample": size, "excluded": excluded, "sources": [], "generation_jobs": {}}
    for name, index in members.items():
        if report(done, f"diversity of {name} ({len(index)} items)"):
            return {"cancelled": True, "embedding": embedding_info, "message": "analysis cancelled"}
        entry = _diversity_entry(vectors[index], size if name in compared else None, config)
        if name.startswith("job "):
            job_id = name.split(" ", 1)[1]
            modes = sources["group"].to_numpy()[index]
            result["generation_jobs"][job_id] = {"mode": str(modes[0]) if len(set(modes)) == 1 else "mixed",
                                                 **entry}
        elif name in SOURCES or len(index) > 0:
            result[name] = entry
            result["sources"].append(name)
        done += 1

    real_index = members["real"]
    if len(real_index) > config.max_real_queries:
        real_index = np.sort(np.random.default_rng([config.seed, 5]).choice(
            real_index, size=config.max_real_queries, replace=False))
    similarity: dict[str, dict[str, Any]] = {}
    for name in similarity_targets:
        if len(real_index) == 0:
            break
        if report(done, f"similarity of real items to {name}"):
            return {"cancelled": True, "embedding": embedding_info, "message": "analysis cancelled"}
        value = diversity.similarity_to_real(vectors[real_index], vectors[members[name]], k=TOP_K, size=size,
                                             n_subsamples=config.n_subsamples, seed=config.seed).to_dict()
        if name.startswith("job "):
            result["generation_jobs"][name.split(" ", 1)[1]]["top5_similarity_to_real"] = value["mean"]
            result["generation_jobs"][name.split(" ", 1)[1]]["top5_similarity_to_real_std"] = value["std"]
        else:
            similarity[name] = value
        done += 1
    result["top5_similarity_to_real"] = {name: value["mean"] for name, value in similarity.items()}
    result["similarity"] = similarity

    report(done, f"2-D map ({config.projection})")
    sample = _map_sample(sources, config.max_map_points, config.seed)
    coordinates = diversity.projection_2d(vectors[sample], method=config.projection, seed=config.seed)
    result["map"] = {
        "method": config.projection,
        "item_id": sources["item_id"].to_numpy()[sample].tolist(),
        "group": sources["group"].to_numpy()[sample].tolist(),
        "label": [lb for lb in sources["label"].to_numpy()[sample]],
        "x": [round(float(v), 5) for v in coordinates[:, 0]],
        "y": [round(float(v), 5) for v in coordinates[:, 1]],
    }
    result["embedding"] = embedding_info
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["message"] = summary_message(result)
    return result


def summary_message(result: dict[str, Any]) -> str:
    """Readable lines for the CLI: one per source, then the similarity to real."""
    if result["n_subsample"] is None:
        lines = [f"no source has {result['config']['min_size']} or more items: no diversity to compare"]
    else:
        lines = [f"diversity at {result['n_subsample']} items per source (mean ± std over subsamples):"]
    left_out = result.get("excluded") or {}
    for name in result.get("sources", []):
        entry = result[name]
        if entry["remote_clique"] is None:
            why = left_out.get(name, {}).get("reason", "no items")
            lines.append(f"  {name:<10} n={entry['n']:<6} left out: {why}")
            continue
        lines.append(f"  {name:<10} n={entry['n']:<6} remote-clique {entry['remote_clique']:.4f}"
                     f" ± {entry['remote_clique_std']:.4f}   chamfer {entry['chamfer']:.4f} ± {entry['chamfer_std']:.4f}")
    for job_id, entry in result.get("generation_jobs", {}).items():
        if entry["remote_clique"] is not None:
            lines.append(f"  job {job_id:<6} n={entry['n']:<6} remote-clique {entry['remote_clique']:.4f}"
                         f"   chamfer {entry['chamfer']:.4f}   ({entry['mode']})")
        else:
            lines.append(f"  job {job_id:<6} n={entry['n']:<6} left out: "
                         f"{left_out.get(f'job {job_id}', {}).get('reason', 'too few items')}")
    if result.get("similarity"):
        lines.append("mean top-5 cosine similarity of real items to:")
        lines.extend(f"  {name:<10} {value['mean']:.4f} ± {value['std']:.4f}"
                     for name, value in result["similarity"].items())
    embedding = result.get("embedding", {})
    lines.append(f"embeddings: {embedding.get('n_computed', 0)} computed, {embedding.get('n_cached', 0)} from the"
                 f" cache; {result.get('seconds', 0):.1f} s")
    return "\n".join(lines)


# --- as a job ---------------------------------------------------------------------------------------------

def start_analysis(db: sqlite_utils.Database, project_id: int, config: AnalysisConfig, *,
                   launch_now: bool = True) -> int:
    """Record an analysis job and start it; refuses while another analysis of the project is running."""
    get_project(db, project_id)
    return core_jobs.start(db, kind="analysis", project_id=project_id, config=config.to_dict(), one_at_a_time=True,
                           launch_now=launch_now)

def run_analysis_job(db_path: str, job_id: int) -> dict[str, Any]:
    """Job runner for kind ``analysis`` (registered in ``core.jobs.JOB_RUNNERS``)."""
    with connection.open_db(db_path) as db:
        job = core_jobs.get(db, job_id)
        config = AnalysisConfig.from_dict(job["config"])

        def progress(done: int, total: int, message: str) -> bool:
            return jobs_db.update_progress(db, job_id, done=done, total=total, message=message)

        return analyse_project(db, job["project_id"], config, progress=progress)


def run_analysis_foreground(db_path: str, project_id: int, config: AnalysisConfig) -> dict[str, Any]:
    """The CLI's path: the same job, run in this process, so its result is recorded for the page too."""
    with connection.open_db(db_path) as db:
        job_id = start_analysis(db, project_id, config, launch_now=False)
    return core_jobs.run_foreground(db_path, job_id)


def latest_analysis_job(db: sqlite_utils.Database, project_id: int) -> dict[str, Any] | None:
    return core_jobs.latest(db, project_id, "analysis")


def latest_analysis(db: sqlite_utils.Database, project_id: int) -> dict[str, Any] | None:
    """The result of the project's most recent finished analysis, with its ``job_id``, or None."""
    for job in jobs_db.list_jobs(db, project_id=project_id, kind="analysis", limit=20):
        if job["status"] == "done" and job["result"].get("sources"):
            return {"job_id": job["id"], "finished_at": job["finished_at"], **job["result"]}
    return None


# --- what the page renders ----------------------------------------------------------------------------------

def excluded_note(result: dict[str, Any]) -> str | None:
    """The sources left out of the comparison, each with its n, grouped by why; None when none was."""
    by_reason: dict[str, list[str]] = {}
    for name, entry in (result.get("excluded") or {}).items():
        by_reason.setdefault(entry["reason"], []).append(f"{name} (n={entry['n']})")
    return " ".join(f"Left out of the comparison ({reason}): {', '.join(names)}."
                    for reason, names in by_reason.items()) or None


def diversity_frame(result: dict[str, Any]) -> pd.DataFrame:
    """Long table for Figure 1: ``source, metric, value, std, low, high, n, n_subsample`` (the sources compared
    at the common size; an analysis stored before sizes were made equal may hold others, which are left out)."""
    rows = []
    names = [*result.get("sources", []), *[f"job {j}" for j in result.get("generation_jobs", {})]]
    for name in names:
        entry = result[name] if not name.startswith("job ") else result["generation_jobs"][name[4:]]
        for metric, label in (("remote_clique", "Remote-Clique"), ("chamfer", "Chamfer distance")):
            if entry.get(metric) is None or entry["n_subsample"] != result["n_subsample"]:
                continue
            value, std = float(entry[metric]), float(entry[f"{metric}_std"])
            rows.append({"source": name, "metric": label, "value": value, "std": std, "low": value - std,
                         "high": value + std, "n": entry["n"], "n_subsample": entry["n_subsample"]})
    return pd.DataFrame(rows, columns=["source", "metric", "value", "std", "low", "high", "n", "n_subsample"])


def similarity_frame(result: dict[str, Any]) -> pd.DataFrame:
    """Table for Figure B.2: ``source, similarity, std, low, high, n_synthetic, n_subsample`` per synthetic source."""
    rows = []
    for name, value in result.get("similarity", {}).items():
        if value["n_subsample"] != result["n_subsample"]:
            continue
        rows.append({"source": name, "similarity": value["mean"], "std": value["std"],
                     "low": value["mean"] - value["std"], "high": value["mean"] + value["std"],
                     "n_synthetic": value["n_synthetic"], "n_subsample": value["n_subsample"]})
    for job_id, entry in result.get("generation_jobs", {}).items():
        if entry.get("top5_similarity_to_real") is not None and entry["n_subsample"] == result["n_subsample"]:
            mean, std = entry["top5_similarity_to_real"], entry.get("top5_similarity_to_real_std", 0.0)
            rows.append({"source": f"job {job_id}", "similarity": mean, "std": std, "low": mean - std,
                         "high": mean + std, "n_synthetic": entry["n"], "n_subsample": result["n_subsample"]})
    return pd.DataFrame(rows, columns=["source", "similarity", "std", "low", "high", "n_synthetic", "n_subsample"])


def map_frame(db: sqlite_utils.Database, result: dict[str, Any]) -> pd.DataFrame:
    """The map's points with their text: ``item_id, x, y, source, label, text`` (text is untrusted: show it
    as plain text)."""
    points = result.get("map") or {}
    frame = pd.DataFrame({"item_id": points.get("item_id", []), "x": points.get("x", []), "y": points.get("y", []),
                          "source": points.get("group", []), "label": points.get("label", [])})
    texts = {row["id"]: row["text"] for row in items_db.get_items(db, frame["item_id"].tolist())}
    frame["label"] = frame["label"].fillna("(none)")
    frame["text"] = [texts.get(item_id, "(deleted)") for item_id in frame["item_id"]]
    return frame


def items_in_region(frame: pd.DataFrame, selection: dict[str, Any] | None) -> pd.DataFrame:
    """The rows of a map frame inside an Altair selection: an interval (``{"x": [lo, hi], "y": [lo, hi]}``)
    or picked points (a list of dicts with ``item_id``). No selection gives an empty frame."""
    columns = ["item_id", "source", "label", "text"]
    if not selection:
        return frame.iloc[0:0][columns]
    if isinstance(selection, list):
        ids = {int(point["item_id"]) for point in selection if "item_id" in point}
        return frame[frame["item_id"].isin(ids)][columns].reset_index(drop=True)
    keep = pd.Series(True, index=frame.index)
    for axis in ("x", "y"):
        bounds = selection.get(axis)
        if bounds:
            low, high = sorted(float(b) for b in bounds)
            keep &= frame[axis].between(low, high)
    return frame[keep][columns].reset_index(drop=True)
