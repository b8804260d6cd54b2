"""Evaluation maths, pure: accuracy, macro-F1, per-class scores, the confusion matrix, and the agreement sweep.

The sweep (DESIGN.md, the paper's Figure 2): for every threshold γ that changes the set of kept test items —
that is, every distinct instance agreement ``a_i`` among them — score the predictions on the items with
``a_i ≥ γ``; then fit a least-squares line of accuracy on γ (with its R²) and Spearman's ρ between γ and
accuracy. Items with unknown agreement (fewer than two labels and nothing imported) take no part in the sweep.
A sweep of fewer than 5 thresholds, or with fewer than 30 items at some threshold, is flagged: its R² and ρ are
still given, but they say nothing (a line through 3 points, an accuracy over 2 items).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def _labels_in_order(labels: Sequence[str] | None, y_true: Sequence[str], y_pred: Sequence[str]) -> list[str]:
    """The given labels, then any other label seen in the data (sorted), so nothing is silently dropped."""
    given = list(labels or [])
    extra = sorted((set(map(str, y_true)) | set(map(str, y_pred))) - set(given))
    return given + extra


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Macro-F1 over the labels present in ``y_true`` or ``y_pred`` (scikit-learn's default), 0 for empty input.

    Labels absent from both are left out: counting them as F1 = 0 would punish a subset of the test items for a
    class it happens not to contain.
    """
    if len(y_true) == 0:
        return 0.0
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], *, labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """``accuracy``, ``macro_f1``, ``per_class`` ({label: {precision, recall, f1, support}}), ``labels`` and
    ``confusion_matrix`` (rows: true label, columns: predicted label, both in ``labels`` order)."""
    y_true = [str(y) for y in y_true]
    y_pred = [str(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    order = _labels_in_order(labels, y_true, y_pred)
    if not y_true:
        return {"accuracy": 0.0, "macro_f1": 0.0, "n": 0, "labels": order,
                "per_class": {label: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for label in order},
                "confusion_matrix": [[0] * len(order) for _ in order]}
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=order, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1(y_true, y_pred),
        "n": len(y_true),
        "labels": order,
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(order, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=order).tolist(),
    }


@dataclass(frozen=True)
class SweepPoint:
    gamma: float
    n_items: int
    accuracy: float
    macro_f1: float


@dataclass(frozen=True)
class Sweep:
    """The sweep's points (ascending γ) and its fits; a fit is None where it is undefined (fewer than two
    points, or accuracy or γ constant)."""

    points: list[SweepPoint] = field(default_factory=list)
    slope: float | None = None
    intercept: float | None = None
    r2: float | None = None
    spearman_rho: float | None = None
    spearman_p: float | None = None

    def to_dict(self) -> dict[str, Any]:
        points = [asdict(p) for p in self.points]
        note = sweep_fit_note(points)
        return {"sweep": points, "sweep_slope": self.slope,
                "sweep_intercept": self.intercept, "sweep_r2": self.r2, "sweep_spearman_rho": self.spearman_rho,
                "sweep_spearman_p": self.spearman_p, "sweep_fit_meaningful": note is None, "sweep_fit_note": note}


# Below these, a fitted line and a rank correlation describe noise (the paper's panels have many γ levels and
# hundreds of items); the numbers are still shown, flagged with :func:`sweep_fit_note`.
MIN_SWEEP_THRESHOLDS = 5
MIN_SWEEP_ITEMS = 30


def sweep_fit_note(points: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the R² and ρ of a sweep (its points as dicts: ``gamma``, ``n_items``) are not meaningful — fewer than
    ``MIN_SWEEP_THRESHOLDS`` thresholds, or fewer than ``MIN_SWEEP_ITEMS`` items at some γ — or None when they are."""
    reasons = []
    if len(points) < MIN_SWEEP_THRESHOLDS:
        reasons.append(f"only {_count(len(points), 'threshold')} (at least {MIN_SWEEP_THRESHOLDS} are needed)")
    if points:
        smallest = min(points, key=lambda p: int(p["n_items"]))
        if int(smallest["n_items"]) < MIN_SWEEP_ITEMS:
            reasons.append(f"only {_count(int(smallest['n_items']), 'item')} at γ = {float(smallest['gamma']):.2f}"
                           f" (at least {MIN_SWEEP_ITEMS} are needed at every γ)")
    return f"R² and ρ are not meaningful: {' and '.join(reasons)}" if reasons else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def line_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """Least-squares ``y = slope·x + intercept`` and its R² (``1 − SS_res/SS_tot``); Nones when undefined."""
    x_arr = np.asarray(x, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    if len(x_arr) < 2 or np.ptp(x_arr) == 0:
        return None, None, None
    slope, intercept = np.polyfit(x_arr, y_arr, 1)
    ss_tot = float(((y_arr - y_arr.mean()) ** 2).sum())
    if ss_tot == 0:
        return float(slope), float(intercept), None
    ss_res = float(((y_arr - (slope * x_arr + intercept)) ** 2).sum())
    return float(slope), float(intercept), 1.0 - ss_res / ss_tot


def agreement_sweep(
    y_true: Sequence[str], y_pred: Sequence[str], agreement: Sequence[float | None]
) -> Sweep:
    """Accuracy and macro-F1 on the test items with ``a_i ≥ γ``, at every γ that changes the kept set.

    ``agreement`` holds each item's ``a_i`` (None/NaN when unknown; such items are left out). γ runs over the
    distinct known ``a_i`` in ascending order, so the first point keeps every rated item and each later one
    drops the items of the previous agreement level.
    """
    if not len(y_true) == len(y_pred) == len(agreement):
        raise ValueError("y_true, y_pred and agreement must have the same length")
    a = np.array([np.nan if v is None else float(v) for v in agreement], dtype=float)
    known = ~np.isnan(a)
    true_arr = np.array([str(v) for v in y_true], dtype=object)[known]
    pred_arr = np.array([str(v) for v in y_pred], dtype=object)[known]
    a = a[known]
    # Agreement values are ratios like 2/3 computed in floating point (possibly by different code paths);
    # values equal to 9 decimals are one level, reported by its smallest member.
    level = np.round(a, 9)
    points = []
    for key in np.unique(level):
        kept = level >= key
        points.append(SweepPoint(
            gamma=float(a[level == key].min()), n_items=int(kept.sum()),
            accuracy=float(accuracy_score(true_arr[kept], pred_arr[kept])),
            macro_f1=macro_f1(list(true_arr[kept]), list(pred_arr[kept])),
        ))
    gammas = [p.gamma for p in points]
    accuracies = [p.accuracy for p in points]
    slope, intercept, r2 = line_fit(gammas, accuracies)
    rho = p_value = None
    if len(points) >= 2 and np.ptp(accuracies) > 0:
        result = stats.spearmanr(gammas, accuracies)
        rho, p_value = _finite_or_none(result.statistic), _finite_or_none(result.pvalue)
    return Sweep(points=points, slope=slope, intercept=intercept, r2=r2, spearman_rho=rho, spearman_p=p_value)


# -- disagreement-aware evaluation (the "Learning with Disagreements" shared tasks) --------------------------

ECE_BINS = 15
PROBABILITY_FLOOR = 1e-12  # q is clipped here before the log: a confident miss costs log(1e12) ≈ 27.6, not ∞


def soft_metrics(votes: np.ndarray, proba: np.ndarray) -> dict[str, Any] | None:
    """How the predicted distribution of each test item compares with its human vote distribution.

    ``votes``: (items, labels) counts of human labels (``llm:`` annotators never count; imported ``import:`` ones
    do), ``proba``: the predicted probabilities, columns in the same label order. Only items with ≥ 2 human labels
    are scored; for them ``p`` is the vote share per label and ``q`` the prediction:

    - ``cross_entropy``: mean over items of ``−Σ_c p_c · ln q_c`` (``q`` clipped at 1e-12);
    - ``manhattan``: mean over items of ``Σ_c |p_c − q_c|`` (from 0 to 2);
    - ``ece``: expected calibration error of the predicted top label against the human majority label:
      ``Σ_b (n_b / n) · |accuracy_b − mean confidence_b|`` over 15 equal-width bins of the top probability
      (bin ``b`` holds confidences in ``(b/15, (b+1)/15]``, the first also 0); items whose majority is tied
      are left out of it (``n_ece_items`` says how many remain; None when none);
    - ``entropy_agreement_spearman``: Spearman's ρ between the entropy of ``q`` (``−Σ q ln q``) and the item's
      instance agreement ``a_i = max_c p_c``; negative when the model is least sure where people disagree most.
      None with fewer than 3 items or when either is constant.

    ``n_items``: how many items were scored. Returns None when no item has ≥ 2 human labels.
    """
    votes = np.asarray(votes, dtype=float)
    proba = np.asarray(proba, dtype=float)
    if votes.shape != proba.shape:
        raise ValueError(f"votes have shape {votes.shape} but predictions {proba.shape}")
    scored = votes.sum(axis=1) >= 2
    if not scored.any():
        return None
    counts, q = votes[scored], proba[scored]
    p = counts / counts.sum(axis=1, keepdims=True)
    cross_entropy = float(np.mean(-(p * np.log(np.clip(q, PROBABILITY_FLOOR, 1.0))).sum(axis=1)))
    manhattan = float(np.mean(np.abs(p - q).sum(axis=1)))
    ece, n_ece = expected_calibration_error(counts, q)
    entropy = -(q * np.log(np.clip(q, PROBABILITY_FLOOR, 1.0))).sum(axis=1)
    agreement = p.max(axis=1)
    rho = None
    if len(p) >= 3 and np.ptp(entropy) > 0 and np.ptp(agreement) > 0:
        rho = _finite_or_none(stats.spearmanr(entropy, agreement).statistic)
    return {"cross_entropy": cross_entropy, "manhattan": manhattan, "ece": ece, "n_ece_items": n_ece,
            "entropy_agreement_spearman": rho, "n_items": int(scored.sum())}


def expected_calibration_error(votes: np.ndarray, proba: np.ndarray, *, bins: int = ECE_BINS) -> tuple[float | None,
                                                                                                       int]:
    """``(ece, n)`` of the top predicted label against the untied human majority of each item (see
    :func:`soft_metrics`); items with a tied majority are left out; ``(None, 0)`` when none remain."""
    top = votes.max(axis=1)
    untied = (votes == top[:, None]).sum(axis=1) == 1
    if not untied.any():
        return None, 0
    q = proba[untied]
    confidence = q.max(axis=1)
    correct = (q.argmax(axis=1) == votes[untied].argmax(axis=1)).astype(float)
    # Bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 0 joins the first bin.
    # Rounded first, so that e.g. 0.6 · 15 = 9.000000000000002 stays in the bin ending at 9/15.
    index = np.clip(np.ceil(np.round(confidence * bins, 9)).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in np.unique(index):
        in_bin = index == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece), int(untied.sum())
