"""The LLM panel: several LLM annotators (``llm:…``, different models or instruction variants) vote on items.

Pure functions over annotations in long form (``item_id``, ``annotator``, ``label``). Every ``llm:`` annotator
is a panel member; every other annotator is a person.

- ``panel_agreement`` of a synthetic item: the share of the panel members who labelled it whose label equals
  its intended label (None/NaN when no member labelled it). The review page and training selection filter on it.
- Calibration against people (:func:`panel_calibration`), on items with panel labels and an untied human
  majority: accuracy, Cohen's kappa and Krippendorff's alpha (nominal) between the panel majority and the human
  majority, and the expected calibration error of the panel's vote share (DESIGN.md's ECE, 10 equal-width bins).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.agreement.metrics import instance_arrays, krippendorff_alpha, vote_counts
from core.vocab import LLM_ANNOTATOR_PREFIX

PANEL_BINS = 10
PANEL_TIE = "(panel tie)"  # the panel's label on an item where its majority is tied: it matches no human label
CALIBRATION_RULE = (
    "items with panel labels and an untied human majority (human = not llm:, ties among people are skipped); "
    "a tie for the panel majority counts as wrong: it is a label of its own that matches no human majority "
    "(wrong for accuracy, a disagreement for kappa and alpha); confidence = share of the panel voting for its "
    "majority label; ECE = Σ over 10 equal-width bins (b/10, (b+1)/10] of |bin|/n · |accuracy − mean confidence|"
)


def is_panel_member(annotators: pd.Series) -> pd.Series:
    return annotators.astype(str).str.startswith(LLM_ANNOTATOR_PREFIX)


def panel_members(annotations: pd.DataFrame) -> list[str]:
    """The panel's annotators, sorted."""
    return sorted(set(annotations.loc[is_panel_member(annotations["annotator"]), "annotator"].astype(str)))


def panel_votes(annotations: pd.DataFrame) -> pd.DataFrame:
    """The panel's votes: an *items × labels* count matrix (index ``item_id``) over the panel's labels only."""
    return vote_counts(annotations[is_panel_member(annotations["annotator"]) & annotations["label"].notna()])


def panel_agreement(annotations: pd.DataFrame, intended: Mapping[int, str] | pd.Series) -> pd.Series:
    """Per item of ``intended`` (item id → intended label): the share of its panel labels that equal the intended
    label; NaN where no panel member labelled it."""
    intended = pd.Series(intended, dtype=object)
    votes = panel_votes(annotations)
    aligned = votes.reindex(intended.index).fillna(0).to_numpy(float).reshape(len(intended), len(votes.columns))
    column = pd.Index(votes.columns).get_indexer(intended.astype(str))
    matching = np.zeros(len(intended))
    known = column >= 0
    matching[known] = aligned[np.flatnonzero(known), column[known]]
    n_panel = aligned.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_panel > 0, matching / n_panel, np.nan)
    return pd.Series(share, index=pd.Index(intended.index, name="item_id"), name="panel_agreement", dtype=float)


def panel_table(annotations: pd.DataFrame, intended: Mapping[int, str] | pd.Series) -> pd.DataFrame:
    """Per item of ``intended``: ``panel_votes`` (JSON ``{label: count}``, most votes first; ``{}`` without any)
    and ``panel_agreement`` (as :func:`panel_agreement`)."""
    intended = pd.Series(intended, dtype=object)
    votes = panel_votes(annotations)

    def as_json(item: int) -> str:
        if item not in votes.index:
            return "{}"
        row = votes.loc[item]
        return json.dumps({str(k): int(v) for k, v in row[row > 0].sort_values(ascending=False, kind="stable").items()})

    return pd.DataFrame({"panel_votes": [as_json(item) for item in intended.index],
                         "panel_agreement": panel_agreement(annotations, intended)},
                        index=pd.Index(intended.index, name="item_id"))


# ------------------------------------------------------------------------------------------ calibration


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability table: confidences in ``(start, end]`` (the first bin also holds 0)."""

    start: float
    end: float
    n: int
    confidence: float  # mean confidence of its items
    accuracy: float  # share of its items where the panel majority equals the human majority


@dataclass(frozen=True)
class PanelCalibration:
    """The panel against people (see :data:`CALIBRATION_RULE`); every figure is None when ``n_items`` is 0
    (kappa and alpha also when undefined: a single label in use)."""

    n_items: int  # items with panel labels and an untied human majority
    n_human_ties: int  # items with panel and human labels, skipped because the people tie
    n_panel_ties: int  # of the n_items, those where the panel ties (counted as wrong)
    accuracy: float | None
    cohen_kappa: float | None
    krippendorff_alpha: float | None
    ece: float | None
    reliability: tuple[ReliabilityBin, ...]
    members: tuple[str, ...]
    rule: str = CALIBRATION_RULE

    def reliability_frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(b) for b in self.reliability], columns=["start", "end", "n", "confidence",
                                                                           "accuracy"])


def _majority(counts: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per item: the majority label (None on a tie), whether it ties, and the top label's share of the votes."""
    n_labels, top, tie, majority_code, _ = instance_arrays(counts.to_numpy())
    labels = np.asarray(counts.columns, dtype=object)
    majority = np.where(tie, None, labels[np.maximum(majority_code, 0)]) if len(labels) else np.array([], object)
    share = top / np.maximum(n_labels, 1)
    return (pd.Series(majority, index=counts.index, dtype=object), pd.Series(tie, index=counts.index),
            pd.Series(share, index=counts.index, dtype=float))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, *, bins: int = PANEL_BINS) -> tuple[
        float | None, tuple[ReliabilityBin, ...]]:
    """``(ece, table)``: bin ``b`` holds confidences in ``(b/bins, (b+1)/bins]`` (0 joins the first); ECE =
    Σ_b |b|/n · |accuracy_b − mean confidence_b| over the non-empty bins, which the table lists."""
    if len(confidence) == 0:
        return None, ()
    # Rounded first, so that e.g. 0.6 · 10 = 6.000000000000001 stays in the bin ending at 0.6.
    index = np.clip(np.ceil(np.round(confidence * bins, 9)).astype(int) - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in np.unique(index):
        in_bin = index == b
        conf, acc = float(confidence[in_bin].mean()), float(correct[in_bin].mean())
        ece += in_bin.mean() * abs(acc - conf)
        table.append(ReliabilityBin(start=round(float(b) / bins, 10), end=round(float(b + 1) / bins, 10),
                                    n=int(in_bin.sum()), confidence=conf, accuracy=acc))
    return float(ece), tuple(table)


def _kappa(panel: list[str], human: list[str]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(set(panel) | set(human)) < 2:
        return None  # one label in use on both sides: chance agreement is 1, kappa undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = float(cohen_kappa_score(panel, human))
    return kappa if math.isfinite(kappa) else None


def _alpha(panel: list[str], human: list[str]) -> float | None:
    """Nominal alpha with the panel majority and the human majority as two coders of each item."""
    labels = sorted(set(panel) | set(human))
    column = {label: j for j, label in enumerate(labels)}
    counts = np.zeros((len(panel), len(labels)), dtype=np.int64)
    for i, (a, b) in enumerate(zip(panel, human, strict=True)):
        counts[i, column[a]] += 1
        counts[i, column[b]] += 1
    return krippendorff_alpha(counts)


def panel_calibration(annotations: pd.DataFrame) -> PanelCalibration:
    """The panel majority against the human majority on the items both labelled (see :data:`CALIBRATION_RULE`)."""
    labelled = annotations[annotations["label"].notna()]
    panel_counts = panel_votes(labelled)
    human_counts = vote_counts(labelled[~is_panel_member(labelled["annotator"])])
    both = panel_counts.index.intersection(human_counts.index) if len(human_counts.columns) else pd.Index([])
    human_label, human_tie, _ = _majority(human_counts.loc[both])
    kept = both[~human_tie.to_numpy(bool)] if len(both) else both
    panel_label, panel_tie, confidence = _majority(panel_counts.loc[kept])
    panel = [PANEL_TIE if tie else str(label) for label, tie in zip(panel_label, panel_tie, strict=True)]
    human = [str(label) for label in human_label.loc[kept]]
    correct = np.array([p == h for p, h in zip(panel, human, strict=True)], dtype=float)
    ece, table = reliability_bins(confidence.to_numpy(float), correct)
    return PanelCalibration(
        n_items=len(kept), n_human_ties=int(len(both) - len(kept)), n_panel_ties=int(panel_tie.sum()),
        accuracy=float(correct.mean()) if len(kept) else None,
        cohen_kappa=_kappa(panel, human) if len(kept) else None,
        krippendorff_alpha=_alpha(panel, human) if len(kept) else None,
        ece=ece, reliability=table, members=tuple(panel_members(annotations)),
    )


# ------------------------------------------------------------------------------------------ the report


@dataclass(frozen=True)
class PanelReport:
    """The panel over a project: its members, how it rates the synthetic items, and its calibration."""

    members: tuple[str, ...]
    n_synthetic: int  # synthetic items
    n_synthetic_labelled: int  # of them, those with at least one panel label
    mean_panel_agreement: float | None  # mean over the labelled ones
    n_panel_unanimous: int  # of them, those every member labelled with the intended label
    calibration: PanelCalibration


def panel_report(annotations: pd.DataFrame, items: pd.DataFrame) -> PanelReport:
    """``items``: columns ``id``, ``source``, ``reference_label`` (a synthetic item's intended label)."""
    synthetic = items[items["source"] == "synthetic"]
    intended = pd.Series(synthetic["reference_label"].to_numpy(object), index=synthetic["id"].to_numpy())
    agreement = panel_agreement(annotations, intended.dropna()).dropna()
    members = panel_members(annotations)
    # Unanimous: every member labelled the item, and each gave the intended label.
    n_members = panel_votes(annotations).sum(axis=1).reindex(agreement.index).fillna(0)
    unanimous = (agreement >= 1.0 - 1e-9) & (n_members >= len(members))
    return PanelReport(
        members=tuple(members), n_synthetic=len(synthetic), n_synthetic_labelled=len(agreement),
        mean_panel_agreement=float(agreement.mean()) if len(agreement) else None,
        n_panel_unanimous=int(unanimous.sum()),
        calibration=panel_calibration(annotations),
    )
