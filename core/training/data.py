"""Which items a run trains on and which it is tested on, with which labels.

Training items come from the chosen sources (real training split, synthetic items by generation mode or job,
seed items), labelled by the chosen label source, filtered by instance agreement ≥ γ and capped per label.
Test items are the real items of the evaluation split (``test`` by default), labelled by their reference label
or, where there is none, by the human majority. An item of the evaluation or dev set never trains.
Everything goes through :func:`core.items.item_table`, the one place that decides majority and agreement.

Every item also carries its human votes (``LabelledItems.votes``: label → count over the project's labels;
annotators named ``llm:…`` do not count, imported ``import:…`` annotators do): the soft objective trains on
their shares (:func:`soft_targets`) and the disagreement metrics score against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlite_utils

from core.agreement.dawid_skene import dawid_skene, model_aggregate
from core.agreement.metrics import encode, reaches
from core.agreement.panel import panel_agreement
from core.data.items import item_table
from core.errors import SynthloopError
from core.projects import get_project
from core.training.config import TrainConfig
from core.vocab import LLM_ANNOTATOR_PREFIX
from db import generation as generation_db
from db import items as items_db
from db import seeds as seeds_db


@dataclass(frozen=True)
class LabelledItems:
    """Parallel lists, one entry per item, ordered by item id."""

    item_ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    agreement: list[float | None] = field(default_factory=list)
    votes: list[dict[str, int]] = field(default_factory=list)  # human votes per label ({} without any)

    def __len__(self) -> int:
        return len(self.item_ids)

    def label_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in pd.Series(self.labels, dtype=object).value_counts().sort_index().items()}


@dataclass(frozen=True)
class Selection:
    labels: list[str]
    train: LabelledItems
    test: LabelledItems
    dev: LabelledItems
    report: dict[str, Any]
    train_targets: np.ndarray | None = None  # soft objective: one distribution over ``labels`` per training item


def _agreement(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _to_items(frame: pd.DataFrame, label_column: str, votes: dict[int, dict[str, int]]) -> LabelledItems:
    frame = frame.sort_values("id")
    return LabelledItems(
        item_ids=[int(i) for i in frame["id"]],
        texts=[str(t) for t in frame["text"]],
        labels=[str(lb) for lb in frame[label_column]],
        agreement=[_agreement(a) for a in frame["instance_agreement"]],
        votes=[votes.get(int(i), {}) for i in frame["id"]],
    )


def human_annotations(annotations: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The labels of people (not ``llm:…`` annotators) that are labels of the project."""
    person = ~annotations["annotator"].astype(str).str.startswith(LLM_ANNOTATOR_PREFIX)
    return annotations[person & annotations["label"].isin(labels)]


def human_votes(annotations: pd.DataFrame, labels: list[str]) -> dict[int, dict[str, int]]:
    """Per item id: how many people gave each label (labels nobody gave are left out)."""
    counts = human_annotations(annotations, labels).groupby(["item_id", "label"]).size()
    votes: dict[int, dict[str, int]] = {}
    for (item_id, label), n in counts.items():
        votes.setdefault(int(item_id), {})[str(label)] = int(n)
    return votes


def vote_matrix(votes: list[dict[str, int]], labels: list[str]) -> np.ndarray:
    """(items, labels) vote counts, columns in ``labels`` order."""
    return np.array([[item.get(label, 0) for label in labels] for item in votes], dtype=float).reshape(
        len(votes), len(labels))


def dawid_skene_posteriors(annotations: pd.DataFrame, labels: list[str]) -> dict[int, np.ndarray]:
    """Per item id with a human label: the Dawid–Skene posterior of its true label, in ``labels`` order."""
    human = human_annotations(annotations, labels)
    if human.empty:
        return {}
    fit = dawid_skene(encode(human, labels=labels))
    return {int(item_id): row for item_id, row in zip(fit.coded.item_ids, fit.probabilities, strict=True)}


def soft_targets(items: LabelledItems, labels: list[str],
                 posteriors: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """One training distribution over ``labels`` per item: its Dawid–Skene posterior when ``posteriors`` are
    given and hold the item, else its human vote shares; an item without human votes gets its one label
    (one-hot)."""
    targets = np.zeros((len(items), len(labels)), dtype=float)
    column = {label: j for j, label in enumerate(labels)}
    counts = vote_matrix(items.votes, labels)
    for i, (item_id, label) in enumerate(zip(items.item_ids, items.labels, strict=True)):
        if posteriors is not None and item_id in posteriors:
            targets[i] = posteriors[item_id] / posteriors[item_id].sum()
        elif counts[i].sum() > 0:
            targets[i] = counts[i] / counts[i].sum()
        else:
            targets[i, column[label]] = 1.0
    return targets


def _label_or_majority(frame: pd.DataFrame) -> pd.Series:
    """Reference label where there is one, else the untied human majority (None when neither)."""
    reference = frame["reference_label"].astype(object)
    return reference.where(reference.notna(), frame["majority_label"].astype(object))


def _eval_items(table: pd.DataFrame, split: str) -> tuple[pd.DataFrame, int]:
    rows = table[(table["source"] == "real") & (table["split"] == split)].copy()
    rows["eval_label"] = _label_or_majority(rows)
    unlabelled = int(rows["eval_label"].isna().sum())
    return rows[rows["eval_label"].notna()], unlabelled


def _training_labels(db: sqlite_utils.Database, project_id: int, rows: pd.DataFrame, label_source: str) -> pd.Series:
    if label_source == "reference":
        return rows["reference_label"].astype(object)
    if label_source == "majority":
        return rows["majority_label"].astype(object)
    if label_source == "adjudicated":
        adjudicated = rows["adjudicated_label"].astype(object)
        return adjudicated.where(adjudicated.notna(), rows["majority_label"].astype(object))
    annotations = items_db.annotations_frame(db, project_id)
    if annotations.empty:
        raise SynthloopError("label source 'aggregate' needs annotations and the project has none: collect labels"
                             " first, or use label source 'reference'")
    aggregate = model_aggregate(annotations)
    return rows["id"].map(aggregate["aggregate_label"]).astype(object)


def select_items(db: sqlite_utils.Database, project_id: int, config: TrainConfig) -> Selection:
    """Pick the training, dev and evaluation items for ``config``; raises when either set ends up empty."""
    project = get_project(db, project_id)
    labels = project.label_names
    annotations = items_db.annotation_labels_frame(db, project_id)
    table = item_table(db, project_id, annotations=annotations)
    votes = human_votes(annotations, labels)
    report: dict[str, Any] = {}

    test_rows, report["test_unlabelled"] = _eval_items(table, config.eval_split)
    _require_eval_items(test_rows, project.name, config)
    dev_rows = pd.DataFrame(columns=test_rows.columns)
    if config.eval_split == "test":
        dev_rows, _ = _eval_items(table, "dev")
    held_out = set(test_rows["id"]) | set(dev_rows["id"])

    synthetic = table["source"] == "synthetic"
    chosen = pd.Series(False, index=table.index)
    per_source: dict[str, int] = {}
    for source in config.sources:
        if source == "real":
            mask = (table["source"] == "real") & (table["split"] == "train")
        elif source == "seeds":
            mask = table["id"].isin(seeds_db.seed_item_ids(db, project_id))
        else:
            mask = synthetic & (table["generation_mode"] == source)
        per_source[source] = int(mask.sum())
        chosen |= mask
    for job_id in config.generation_job_ids:
        mask = synthetic & (table["generation_job_id"] == job_id)
        per_source[f"job {job_id}"] = int(mask.sum())
        chosen |= mask
    report["candidates_per_source"] = per_source
    overlap = chosen & table["id"].isin(held_out)
    report["dropped_held_out"] = int(overlap.sum())
    rows = table[chosen & ~overlap].copy()
    report["candidates"] = len(rows)
    rows, report["dropped_round"] = _round_filter(rows, generation_db.job_rounds(db, project_id), config.max_round)

    rows["train_label"] = _training_labels(db, project_id, rows, config.label_source)
    no_label = rows["train_label"].isna()
    report["dropped_no_label"] = int(no_label.sum())
    rows = rows[~no_label]
    unknown = ~rows["train_label"].isin(labels)
    report["dropped_unknown_label"] = int(unknown.sum())
    rows = rows[~unknown]
    if config.min_agreement > 0:
        # An item whose agreement is unknown cannot be shown to pass the threshold, so it is left out.
        passes = reaches(rows["instance_agreement"], config.min_agreement)
        report["dropped_agreement"] = int((~passes).sum())
        rows = rows[passes]
    else:
        report["dropped_agreement"] = 0
    rows, report["dropped_panel"] = _panel_filter(rows, annotations, config.min_panel_agreement)
    if config.cap_per_label is not None:
        rng = np.random.default_rng(config.seed)
        kept = []
        for _, group in rows.sort_values("id").groupby("train_label", sort=True):
            ids = group["id"].to_numpy()
            if len(ids) > config.cap_per_label:
                ids = np.sort(rng.choice(ids, size=config.cap_per_label, replace=False))
            kept.extend(ids.tolist())
        report["dropped_cap"] = len(rows) - len(kept)
        rows = rows[rows["id"].isin(kept)]
    else:
        report["dropped_cap"] = 0
    if rows.empty:
        raise SynthloopError(
            f"no training items left for sources {config.data_source!r} with label source {config.label_source!r}"
            f" and min agreement {config.min_agreement:g} ({_describe_drops(report)}): choose other sources,"
            " another label source or a lower threshold"
        )
    train = _to_items(rows, "train_label", votes)
    if len(set(train.labels)) < 2:
        raise SynthloopError(
            f"the training items all have the label {train.labels[0]!r}: a classifier needs at least two labels;"
            " add data of other labels or choose other sources"
        )
    test = _to_items(test_rows, "eval_label", votes)
    dev = _to_items(dev_rows, "eval_label", votes) if not dev_rows.empty else LabelledItems()
    report.update(n_train=len(train), n_test=len(test), n_dev=len(dev), train_label_counts=train.label_counts(),
                  test_label_counts=test.label_counts())
    targets = None
    if config.objective == "soft":
        posteriors = dawid_skene_posteriors(annotations, labels) if config.soft_source == "dawid-skene" else None
        targets = soft_targets(train, labels, posteriors)
        report["n_train_soft"] = int(sum(1 for v in train.votes if sum(v.values()) >= 2))
    return Selection(labels=labels, train=train, test=test, dev=dev, report=report, train_targets=targets)


def _round_filter(rows: pd.DataFrame, rounds: dict[int, int], max_round: int | None) -> tuple[pd.DataFrame, int]:
    """Leave out synthetic rows that are not of a round ≤ ``max_round`` (``rounds``: generation job id → round;
    a synthetic item of no generation job is of no round); real rows stay. Returns the kept rows and how many
    were left out."""
    if max_round is None:
        return rows, 0
    round_of = rows["generation_job_id"].map(lambda job: rounds.get(int(job)) if pd.notna(job) else None)
    in_rounds = round_of.map(lambda r: r is not None and r <= max_round).astype(bool)
    keep = (rows["source"] != "synthetic") | in_rounds
    return rows[keep], int((~keep).sum())


def _panel_filter(rows: pd.DataFrame, annotations: pd.DataFrame,
                  threshold: float | None) -> tuple[pd.DataFrame, int]:
    """Leave out synthetic rows whose LLM-panel agreement with their intended label is below ``threshold`` or
    unknown (no panel label); real rows stay. Returns the kept rows and how many were left out."""
    if threshold is None:
        return rows, 0
    synthetic = rows["source"] == "synthetic"
    intended = pd.Series(rows.loc[synthetic, "reference_label"].to_numpy(object),
                         index=rows.loc[synthetic, "id"].to_numpy())
    agreement = panel_agreement(annotations, intended)
    passing = set(agreement[reaches(agreement, threshold)].index)
    keep = ~synthetic | rows["id"].isin(passing)
    return rows[keep], int((~keep).sum())


def _require_eval_items(test_rows: pd.DataFrame, project_name: str, config: TrainConfig) -> None:
    if test_rows.empty:
        raise SynthloopError(
            f"project {project_name!r} has no labelled real {config.eval_split} items to evaluate on: import real"
            f" items into split {config.eval_split!r} with a label column, or have them annotated"
        )


def select_eval_items(db: sqlite_utils.Database, project_id: int, config: TrainConfig) -> tuple[list[str],
                                                                                               LabelledItems]:
    """The project's labels and its current evaluation items (as :func:`select_items` picks them)."""
    project = get_project(db, project_id)
    annotations = items_db.annotation_labels_frame(db, project_id)
    table = item_table(db, project_id, split=config.eval_split, annotations=annotations)
    test_rows, _ = _eval_items(table, config.eval_split)
    _require_eval_items(test_rows, project.name, config)
    votes = human_votes(annotations, project.label_names)
    return project.label_names, _to_items(test_rows, "eval_label", votes)


def _describe_drops(report: dict[str, Any]) -> str:
    parts = [f"{report['candidates'] + report['dropped_held_out']} candidates"]
    for key, what in (("dropped_held_out", "in the evaluation set"), ("dropped_no_label", "without a label"),
                      ("dropped_unknown_label", "with a label not in the project"),
                      ("dropped_round", "synthetic items of later rounds or of no round"),
                      ("dropped_agreement", "below the agreement threshold or unrated"),
                      ("dropped_panel", "synthetic items below the panel agreement threshold or without panel labels")):
        if report.get(key):
            parts.append(f"{report[key]} {what}")
    return ", ".join(parts)


def annotator_labels(db: sqlite_utils.Database, project_id: int, item_ids: list[int]) -> pd.DataFrame:
    """The raw labels of ``item_ids``, one row per (item, annotator): columns ``item_id``, ``annotator``,
    ``label`` (annotators the project excluded are left out). Per-annotator modelling trains and scores on them."""
    annotations = items_db.annotations_frame(db, project_id)
    return annotations.loc[annotations["item_id"].isin(set(item_ids)), ["item_id", "annotator", "label"]] \
        .reset_index(drop=True)
