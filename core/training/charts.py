"""Altair figures for runs, drawn like the paper's: accuracy against the agreement threshold γ with the fitted
line, R² and ρ (Figure 2 / C.1, several runs overlaid), and training curves (Figure B.1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

from core.training.metrics import sweep_fit_note


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def sweep_frames(results: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points (one row per run × γ) and fitted lines (two end points per run) for :func:`sweep_chart`."""
    points, lines = [], []
    for result in results:
        sweep = result.get("sweep") or []
        if not sweep:
            continue
        name = (f"run {result['run_id']} · {result.get('data_source')} (R²={_fmt(result.get('sweep_r2'))},"
                f" ρ={_fmt(result.get('sweep_spearman_rho'))}{'' if sweep_fit_note(sweep) is None else ', not meaningful'})")
        for point in sweep:
            points.append({"run": name, **point})
        slope, intercept = result.get("sweep_slope"), result.get("sweep_intercept")
        if slope is not None and intercept is not None:
            gammas = [p["gamma"] for p in sweep]
            for gamma in (min(gammas), max(gammas)):
                lines.append({"run": name, "gamma": gamma, "fit": slope * gamma + intercept})
    return (pd.DataFrame(points, columns=["run", "gamma", "n_items", "accuracy", "macro_f1"]),
            pd.DataFrame(lines, columns=["run", "gamma", "fit"]))


def sweep_chart(results: Sequence[dict[str, Any]], *, metric: str = "accuracy") -> alt.LayerChart:
    """Accuracy (or macro-F1) of each run on the test items with agreement ≥ γ, with its least-squares line."""
    points, lines = sweep_frames(results)
    title = "accuracy" if metric == "accuracy" else "macro-F1"
    color = alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom", columns=1, labelLimit=600))
    dots = alt.Chart(points).mark_point(filled=True, size=60).encode(
        x=alt.X("gamma:Q", title="instance agreement threshold γ", scale=alt.Scale(zero=False)),
        y=alt.Y(f"{metric}:Q", title=title, scale=alt.Scale(zero=False)),
        color=color,
        tooltip=["run", alt.Tooltip("gamma:Q", format=".3f"), "n_items:Q", alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("macro_f1:Q", format=".3f")],
    )
    layers = [dots]
    if metric == "accuracy" and not lines.empty:
        layers.append(alt.Chart(lines).mark_line(strokeDash=[4, 3]).encode(x="gamma:Q", y="fit:Q", color=color))
    return alt.layer(*layers).properties(height=320)


def loss_chart(history: dict[str, Any]) -> alt.Chart:
    """Training loss per step, coloured by epoch."""
    steps = pd.DataFrame(history.get("steps") or [], columns=["step", "epoch", "loss"])
    return alt.Chart(steps).mark_line(point=False).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("loss:Q", title="training loss"),
        color=alt.Color("epoch:O", title="epoch"), tooltip=["step", "epoch", alt.Tooltip("loss:Q", format=".4f")],
    ).properties(height=260)


def dev_chart(history: dict[str, Any]) -> alt.Chart:
    """Dev (or test) accuracy and macro-F1 after each epoch."""
    epochs = pd.DataFrame(history.get("epochs") or [])
    rows = []
    for _, row in epochs.iterrows():
        for column, name in (("dev_accuracy", "accuracy"), ("dev_macro_f1", "macro-F1")):
            if column in row and pd.notna(row[column]):
                rows.append({"epoch": int(row["epoch"]), "metric": name, "value": float(row[column])})
    frame = pd.DataFrame(rows, columns=["epoch", "metric", "value"])
    on = history.get("curve_set", "dev")
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("epoch:O", title="epoch"), y=alt.Y("value:Q", title=f"{on} score", scale=alt.Scale(zero=False)),
        color=alt.Color("metric:N", title=""), tooltip=["epoch", "metric", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=260)


def confusion_chart(matrix: pd.DataFrame) -> alt.LayerChart:
    """Heat map of the confusion matrix (rows: true label, columns: predicted label) with counts."""
    long = matrix.rename_axis(index="true", columns="predicted").stack().rename("count").reset_index()
    base = alt.Chart(long).encode(x=alt.X("predicted:N", title="predicted"), y=alt.Y("true:N", title="true"))
    cells = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None))
    text = base.mark_text().encode(text="count:Q")
    return alt.layer(cells, text).properties(height=max(120, 40 * len(matrix)))
