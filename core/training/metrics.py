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
