"""The study's report: a static folder a researcher can put in an appendix, and the charts the pages share.

``write_report`` writes ``index.html`` (every dynamic text escaped with ``html.escape``), the figures as SVG and
PNG (Altair charts rendered offline by vl-convert), the tables as CSV, ``study.json``, and ``report.zip`` with
all of it. The chart builders here are the single source of the paper's figures: the analysis and study pages
draw the same charts with ``st.altair_chart``.
"""

from __future__ import annotations

import html
import json
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import altair as alt
import numpy as np
import pandas as pd

from core.analysis.service import diversity_frame, excluded_note, similarity_frame
from core.data.tables import write_csv
from core.training.metrics import MIN_SWEEP_ITEMS, MIN_SWEEP_THRESHOLDS, sweep_fit_note
from core.training.service import label_source_note

FIGURES: dict[str, str] = {
    "table1": "Table 1: accuracy and macro-F1 of each training source on the real test split",
    "disagreement": "Beside Table 1: each run's predicted distribution against the human vote distribution of the"
                    " test items with ≥ 2 human labels (cross-entropy and Manhattan distance: lower is closer; ECE:"
                    " calibration against the majority label, tied items left out; ρ: Spearman's correlation of the"
                    " predicted entropy with the items' instance agreement, negative when the model is least sure"
                    " where people disagree)",
    "figure1_diversity": "Figure 1: diversity per source (Remote-Clique and Chamfer distance, mean ± std over "
                         "equal-size subsamples; higher is more diverse)",
    "figure2_accuracy_vs_gamma": "Figure 2: accuracy on test items with instance agreement ≥ γ, per training "
                                 "source, with a least-squares line, its R² and Spearman's ρ",
    "figureB1_training_curves": "Figure B.1: training curves per training source",
    "figureB2_similarity": "Figure B.2: mean top-5 cosine similarity of real items to each synthetic source",
    "figure_map": "Map: real and synthetic items projected to 2-D (a capped sample), coloured by source",
}
MISSING_FIGURE: dict[str, str] = {
    "figure1_diversity": "no source has enough items to compare",
    "figure2_accuracy_vs_gamma": "no test item has a known instance agreement (it needs two or more labels, or an"
                                 " imported agreement value), so there is no γ to sweep — collect labels on the"
                                 " Annotate page or import an agreement column",
    "figureB1_training_curves": "no training run finished",
    "figureB2_similarity": "no synthetic data, or no real items, to compare",
    "figure_map": "no embeddings to project",
}
TABLES = ("table1", "disagreement", "sweep", "diversity", "similarity", "training_curves", "per_class")
WIDTH = 260
SOFT_METRIC_KEYS = ("cross_entropy", "manhattan", "ece", "entropy_agreement_spearman")
MAX_CURVE_POINTS = 200  # per run: a 50,000-item run logs thousands of steps; the figure needs the shape


# --- charts (shared with the pages) ---------------------------------------------------------------------------

# One colour per source in every figure; generation jobs get muted tones.
SOURCE_COLOURS = {"real": "#4c78a8", "synthetic": "#9d755d", "zero-shot": "#f58518", "few-shot": "#54a24b"}
JOB_COLOURS = ("#bab0ac", "#9ecae9", "#ffbf79", "#88d27a", "#d6a5c9", "#b7b7b7")


def source_scale(sources: pd.Series) -> alt.Scale:
    names = list(dict.fromkeys(str(s) for s in sources))
    jobs = [name for name in names if name not in SOURCE_COLOURS]
    colours = {**SOURCE_COLOURS, **{name: JOB_COLOURS[i % len(JOB_COLOURS)] for i, name in enumerate(jobs)}}
    return alt.Scale(domain=names, range=[colours[name] for name in names])


def diversity_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """Figure 1 from :func:`core.analysis.diversity_frame`: a bar per source and metric with ±std error bars;
    each bar names its source's n, the title the common size every source was drawn at."""
    base = alt.Chart(frame).transform_calculate(shown="datum.source + ' (n=' + datum.n + ')'").encode(
        x=alt.X("shown:N", title=None, sort=None))
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title="distance"), color=alt.Color("source:N", legend=None,
                                                             scale=source_scale(frame["source"])),
        tooltip=["source", "metric", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("std:Q", format=".4f"),
                 "n", "n_subsample"])
    errors = base.mark_errorbar(ticks=True, color="black").encode(y=alt.Y("low:Q", title="distance"), y2="high:Q")
    return (alt.layer(bars, errors).properties(width=WIDTH, height=220)
            .facet(column=alt.Column("metric:N", title=None, sort=["Remote-Clique", "Chamfer distance"]))
            .resolve_scale(y="independent").properties(title=_drawn_at(frame)))


def _drawn_at(frame: pd.DataFrame) -> str:
    sizes = sorted({int(n) for n in frame["n_subsample"]})
    return f"every source at {sizes[0]} items" if len(sizes) == 1 else ""


def similarity_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Figure B.2 from :func:`core.analysis.similarity_frame` (each bar names its source's n)."""
    base = alt.Chart(frame).transform_calculate(shown="datum.source + ' (n=' + datum.n_synthetic + ')'").encode(
        x=alt.X("shown:N", title=None, sort=None))
    bars = base.mark_bar().encode(
        y=alt.Y("similarity:Q", title="mean top-5 cosine similarity"),
        color=alt.Color("source:N", legend=None, scale=source_scale(frame["source"])),
        tooltip=["source", alt.Tooltip("similarity:Q", format=".4f"), alt.Tooltip("std:Q", format=".4f"),
                 "n_synthetic", "n_subsample"])
    errors = base.mark_errorbar(ticks=True, color="black").encode(
        y=alt.Y("low:Q", title="mean top-5 cosine similarity"), y2="high:Q")
    return alt.layer(bars, errors).properties(width=WIDTH, height=220, title=_drawn_at(frame))


def sweep_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """Figure 2: per run (``panel`` carries the name, R² and ρ), accuracy against γ with a fitted line."""
    base = alt.Chart(frame).encode(x=alt.X("gamma:Q", title="instance agreement threshold γ",
                                           scale=alt.Scale(zero=False)))
    points = base.mark_circle(size=50).encode(
        y=alt.Y("accuracy:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
        tooltip=[alt.Tooltip("gamma:Q", format=".3f"), alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("macro_f1:Q", format=".3f"), "n_items"])
    line = base.transform_regression("gamma", "accuracy", groupby=["panel"]).mark_line(color="firebrick").encode(
        y="accuracy:Q")
    panels = list(dict.fromkeys(frame["panel"]))  # the runs' order, not alphabetical
    return alt.layer(points, line).properties(width=WIDTH, height=200).facet(
        facet=alt.Facet("panel:N", title=None, sort=panels), columns=3)


def training_curves_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """Figure B.1: per metric (training loss, and dev metrics when a dev split exists), one line per run."""
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch"), y=alt.Y("value:Q", title=None),
        color=alt.Color("arm:N", title="training data", sort=None),
        tooltip=["arm", "metric", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=WIDTH, height=200).facet(
        column=alt.Column("metric:N", title=None, sort=list(dict.fromkeys(frame["metric"])))).resolve_scale(
        y="independent")


def map_chart(frame: pd.DataFrame, *, color: Literal["source", "label"] = "source",
              selectable: bool = False) -> alt.Chart:
    """The 2-D map of :func:`core.analysis.map_frame`; with ``selectable`` a drag selects a region
    (parameter ``region``) and a click picks points (parameter ``picked``)."""
    chart = alt.Chart(frame).mark_circle(size=28, opacity=0.7).encode(
        x=alt.X("x:Q", title=None, axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("y:Q", title=None, axis=alt.Axis(labels=False, ticks=False)),
        color=alt.Color(f"{color}:N", title=color,
                        scale=source_scale(frame["source"]) if color == "source" else alt.Undefined),
        shape=alt.Shape("source:N", title="source") if color == "label" else alt.value("circle"),
        tooltip=["item_id", "source", "label"],
    ).properties(height=480)
    if selectable:
        chart = chart.add_params(alt.selection_interval(name="region", encodings=["x", "y"]),
                                 alt.selection_point(name="picked", fields=["item_id"], on="click"))
    return chart


# --- frames ------------------------------------------------------------------------------------------------

def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: Any, digits: int = 3) -> str:
    number = _finite(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _label_source(study: dict[str, Any], run: dict[str, Any]) -> str | None:
    return (run.get("config") or {}).get("label_source") or study.get("config", {}).get("label_source")


def _sweep_note(run: dict[str, Any]) -> str | None:
    """Why the run's R² and ρ are not meaningful (None when they are, or when there is no sweep)."""
    return sweep_fit_note(run["sweep"]) if run.get("sweep") else None


def _identical_to(study: dict[str, Any], other: str) -> str:
    n_train = (study.get("runs", {}).get(other) or {}).get("n_train")
    items = "training items" if n_train is None else f"{n_train} training items"
    return f"identical to {other!r} (the same {items})"


def table1_frame(study: dict[str, Any]) -> pd.DataFrame:
    """One row per planned run: training data, its label source, sizes, accuracy, macro-F1, sweep fit (with
    ``sweep_fit`` "not meaningful" for a small sweep), and why a run is missing — skipped, failed, or identical
    to another run (whose numbers are not repeated)."""
    subjectivity = study.get("subjectivity", {}).get("mean_test_instance_agreement")
    rows = []
    arms = list(study.get("config", {}).get("arms", []))
    # After the paper's arms, any further trained run (the soft-label run of the real data).
    for name in [*arms, *(name for name in study.get("runs", {}) if name not in arms)]:
        run = study.get("runs", {}).get(name)
        if run is None:
            other = (study.get("identical") or {}).get(name)
            why = (f"{_identical_to(study, other)}: not trained again" if other else
                   study.get("skipped", {}).get(name) or study.get("failed", {}).get(name) or "not run")
            rows.append({"training data": name, "label_source": None, "n_train": None, "n_test": None,
                         "accuracy": None, "macro_f1": None, "sweep_r2": None, "sweep_spearman_rho": None,
                         "sweep_fit": None, "mean_test_agreement": subjectivity, "run_id": None, "note": why})
            continue
        rows.append({"training data": name, "label_source": _label_source(study, run), "n_train": run.get("n_train"),
                     "n_test": run.get("n_test"), "accuracy": _finite(run.get("accuracy")),
                     "macro_f1": _finite(run.get("macro_f1")), "sweep_r2": _finite(run.get("sweep_r2")),
                     "sweep_spearman_rho": _finite(run.get("sweep_spearman_rho")),
                     "sweep_fit": "not meaningful" if _sweep_note(run) else "",
                     "mean_test_agreement": subjectivity, "run_id": run.get("run_id"), "note": ""})
    frame = pd.DataFrame(rows, columns=["training data", "label_source", "n_train", "n_test", "accuracy", "macro_f1",
                                        "sweep_r2", "sweep_spearman_rho", "sweep_fit", "mean_test_agreement",
                                        "run_id", "note"])
    # Counts and ids stay whole numbers even where a skipped run leaves a gap.
    return frame.astype({"n_train": "Int64", "n_test": "Int64", "run_id": "Int64"})


def disagreement_frame(study: dict[str, Any]) -> pd.DataFrame:
    """One row per trained run (the soft-label run too): its objective, accuracy and macro-F1 beside its
    disagreement-aware metrics (``soft_metrics`` of the run; empty where no test item has ≥ 2 human labels)."""
    rows = []
    for name, run in study.get("runs", {}).items():
        soft = run.get("soft_metrics") or {}
        rows.append({"training data": name, "objective": (run.get("config") or {}).get("objective") or "hard",
                     "accuracy": _finite(run.get("accuracy")), "macro_f1": _finite(run.get("macro_f1")),
                     **{key: _finite(soft.get(key)) for key in SOFT_METRIC_KEYS},
                     "n_items": soft.get("n_items"), "run_id": run.get("run_id")})
    frame = pd.DataFrame(rows, columns=["training data", "objective", "accuracy", "macro_f1", *SOFT_METRIC_KEYS,
                                        "n_items", "run_id"])
    return frame.astype({"n_items": "Int64", "run_id": "Int64"})


def sweep_frame(study: dict[str, Any]) -> pd.DataFrame:
    """Every run's γ sweep: ``arm, panel, gamma, n_items, accuracy, macro_f1`` (``panel`` titles Figure 2)."""
    rows = []
    for name, run in study.get("runs", {}).items():
        panel = f"{name}: R² = {_fmt(run.get('sweep_r2'), 2)}, ρ = {_fmt(run.get('sweep_spearman_rho'), 2)}"
        if _sweep_note(run):
            panel += " (not meaningful)"
        for point in run.get("sweep") or []:
            rows.append({"arm": name, "panel": panel, "gamma": _finite(point.get("gamma")),
                         "n_items": point.get("n_items"), "accuracy": _finite(point.get("accuracy")),
                         "macro_f1": _finite(point.get("macro_f1"))})
    return pd.DataFrame(rows, columns=["arm", "panel", "gamma", "n_items", "accuracy", "macro_f1"])


def training_curves_frame(study: dict[str, Any]) -> pd.DataFrame:
    """Long table ``arm, metric, epoch, value``: the step losses (window-averaged to at most 200 points per
    run, placed at fractional epochs) and every numeric per-epoch entry of the run's history."""
    rows = []
    for name, run in study.get("runs", {}).items():
        history = run.get("history") or {}
        steps = [s for s in history.get("steps") or [] if _finite(s.get("loss")) is not None]
        if steps:
            total = max(1, len(steps))
            epochs = max(int(s.get("epoch", 1)) for s in steps)
            windows = np.array_split(np.arange(total), min(MAX_CURVE_POINTS, total))
            for window in windows:
                losses = [float(steps[i]["loss"]) for i in window]
                rows.append({"arm": name, "metric": "training loss (per step)",
                             "epoch": float((window[-1] + 1) / total * epochs), "value": float(np.mean(losses))})
        for entry in history.get("epochs") or []:
            # Per-epoch scores on the dev split (the test split when there is no dev split); the epoch's mean
            # training loss repeats the step curve and is left out.
            where = entry.get("dev_set") or "dev"
            for key, value in entry.items():
                if key.startswith("dev_") and _finite(value) is not None and not isinstance(value, bool):
                    metric = f"{key[4:].replace('_', '-')} on {where} (per epoch)"
                    rows.append({"arm": name, "metric": metric, "epoch": float(entry["epoch"]), "value": float(value)})
    return pd.DataFrame(rows, columns=["arm", "metric", "epoch", "value"])


def per_class_frame(study: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for name, run in study.get("runs", {}).items():
        for label, scores in (run.get("per_class") or {}).items():
            if isinstance(scores, dict):
                rows.append({"arm": name, "label": label, **{k: scores.get(k) for k in
                                                               ("precision", "recall", "f1", "support")}})
    return pd.DataFrame(rows, columns=["arm", "label", "precision", "recall", "f1", "support"])


def study_notes(study: dict[str, Any]) -> list[str]:
    """What a reader of Table 1 and Figure 2 must know: rows trained with different label sources, runs not
    trained because they equal another, and sweeps too small for their R² and ρ to mean anything."""
    runs = study.get("runs", {})
    notes = []
    if note := label_source_note([(name, _label_source(study, run)) for name, run in runs.items()]):
        notes.append(note)
    for name, other in (study.get("identical") or {}).items():
        notes.append(f"The run {name!r} is {_identical_to(study, other)}: it was not trained again, and its row"
                     " in Table 1 has no numbers of its own.")
    notes.extend(f"{name}: {note}." for name, run in runs.items() if (note := _sweep_note(run)))
    if study.get("soft_skipped"):
        notes.append(f"No soft-label run: {study['soft_skipped']}.")
    return notes


def figure_captions(study: dict[str, Any]) -> dict[str, str]:
    """The captions of the report's table and figures, with the common size the diversity and similarity
    figures were computed at, the sources left out of them, and a pointer to flagged sweeps."""
    captions = dict(FIGURES)
    analysis = study.get("analysis") or {}
    size = analysis.get("n_subsample")
    if size is not None:
        captions["figure1_diversity"] = (
            "Figure 1: diversity per source (Remote-Clique and Chamfer distance, mean ± std over seeded subsamples"
            f" of {size} items from every source; higher is more diverse; n: the source's size)")
        captions["figureB2_similarity"] = (
            "Figure B.2: mean top-5 cosine similarity of real items to each synthetic source (mean ± std over"
            f" seeded subsamples of {size} items from each synthetic source; n: the source's size)")
    if note := excluded_note(analysis):
        for stem in ("figure1_diversity", "figureB2_similarity"):
            captions[stem] += f". {note}"
    if any(_sweep_note(run) for run in study.get("runs", {}).values()):
        captions["figure2_accuracy_vs_gamma"] += (
            f". Panels marked “not meaningful” have fewer than {MIN_SWEEP_THRESHOLDS} thresholds or fewer than"
            f" {MIN_SWEEP_ITEMS} items at some γ: their R² and ρ are shown but say nothing")
    return captions


def study_frames(study: dict[str, Any]) -> dict[str, pd.DataFrame]:
    analysis = study.get("analysis") or {}
    return {"table1": table1_frame(study), "disagreement": disagreement_frame(study), "sweep": sweep_frame(study), "diversity": diversity_frame(analysis),
            "similarity": similarity_frame(analysis), "training_curves": training_curves_frame(study),
            "per_class": per_class_frame(study)}


# --- writing -----------------------------------------------------------------------------------------------

def save_chart(chart: alt.TopLevelMixin, folder: Path, stem: str) -> dict[str, Path]:
    """Render a chart offline to ``stem.svg`` and ``stem.png`` (2× scale) with vl-convert."""
    import vl_convert  # lazily: it loads a JavaScript engine

    spec = chart.to_dict()
    svg, png = folder / f"{stem}.svg", folder / f"{stem}.png"
    svg.write_text(vl_convert.vegalite_to_svg(spec), encoding="utf-8")
    png.write_bytes(vl_convert.vegalite_to_png(spec, scale=2))
    return {f"{stem}_svg": svg, f"{stem}_png": png}


def _figures(study: dict[str, Any], frames: dict[str, pd.DataFrame]) -> dict[str, Callable[[], Any]]:
    """Builders of the figures that have data (a missing figure is explained in the HTML instead)."""
    figures: dict[str, Callable[[], Any]] = {}
    if not frames["diversity"].empty:
        figures["figure1_diversity"] = lambda: diversity_chart(frames["diversity"])
    if not frames["sweep"].empty:
        figures["figure2_accuracy_vs_gamma"] = lambda: sweep_chart(frames["sweep"])
    if not frames["training_curves"].empty:
        figures["figureB1_training_curves"] = lambda: training_curves_chart(frames["training_curves"])
    if not frames["similarity"].empty:
        figures["figureB2_similarity"] = lambda: similarity_chart(frames["similarity"])
    points = (study.get("analysis") or {}).get("map") or {}
    if points.get("x"):
        frame = pd.DataFrame({"item_id": points["item_id"], "x": points["x"], "y": points["y"],
                              "source": points["group"], "label": [lb or "(none)" for lb in points["label"]]})
        figures["figure_map"] = lambda: map_chart(frame, color="source").properties(width=520, height=420)
    return figures


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for value in row:
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                text = "—"
            elif isinstance(value, float):
                text = _fmt(value, 3)
            else:
                text = str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 2em 0; } figcaption { font-size: 0.9em; color: #444; margin-top: 0.5em; }
img { max-width: 100%; } .note { color: #8a5a00; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
"""


def _index_html(study: dict[str, Any], frames: dict[str, pd.DataFrame], written: dict[str, Path]) -> str:
    e = html.escape
    title = f"Synthloop study: {study.get('project', '')}"
    subjectivity = study.get("subjectivity", {})
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{STYLE}</style></head><body>", f"<h1>{e(title)}</h1>"]
    parts.append(
        "<p>The comparison of Li et al. (EMNLP 2023) on this project: a classifier trained on each data source, "
        "evaluated on the real test split; accuracy against the test items' instance agreement γ; diversity of "
        f"each source and similarity of synthetic to real data. Mean instance agreement of the test items: "
        f"{e(_fmt(subjectivity.get('mean_test_instance_agreement')))} "
        f"({e(str(subjectivity.get('test_items_with_agreement', 0)))} items with a known agreement).</p>")
    problems = (study.get("ingredients") or {}).get("problems") or []
    failed = study.get("failed") or {}
    if problems or failed:
        parts.append("<h2>Not run</h2><ul>")
        parts.extend(f"<li class='note'>{e(p['message'])}</li>" for p in problems)
        parts.extend(f"<li class='note'>run {e(repr(k))} failed: {e(v)}</li>" for k, v in failed.items())
        parts.append("</ul>")
    captions = figure_captions(study)
    parts.append(f"<h2>{e(captions['table1'])}</h2>{_html_table(frames['table1'])}"
                 "<p><a href='table1.csv'>table1.csv</a> · <a href='per_class.csv'>per_class.csv</a></p>")
    parts.append(f"<h2>{e(captions['disagreement'])}</h2>{_html_table(frames['disagreement'])}"
                 "<p><a href='disagreement.csv'>disagreement.csv</a></p>")
    if notes := study_notes(study):
        parts.append("<h2>Notes</h2><ul>")
        parts.extend(f"<li class='note'>{e(note)}</li>" for note in notes)
        parts.append("</ul>")
    for stem in ("figure1_diversity", "figure2_accuracy_vs_gamma", "figureB1_training_curves",
                 "figureB2_similarity", "figure_map"):
        caption = captions[stem]
        if f"{stem}_svg" in written:
            parts.append(f"<figure><img src='{stem}.svg' alt='{e(caption, quote=True)}'><figcaption>{e(caption)} "
                         f"(<a href='{stem}.png'>PNG</a>)</figcaption></figure>")
        else:
            parts.append(f"<p class='note'>{e(caption)}: {e(MISSING_FIGURE.get(stem, 'no data'))}.</p>")
    analysis = study.get("analysis") or {}
    if analysis:
        size = analysis.get("n_subsample")
        compared = (f"At {size} items per source, mean ± std over seeded subsamples" if size is not None
                    else "No source had enough items to compare")
        left_out = excluded_note(analysis)
        parts.append(f"<h2>Diversity and similarity</h2><p>{e(compared)}; embeddings: "
                     f"{e(str((analysis.get('embedding') or {}).get('model', '')))}."
                     f"{e(' ' + left_out) if left_out else ''}</p>")
        parts.append(_html_table(frames["diversity"]))
        parts.append(_html_table(frames["similarity"]))
    links = " · ".join(f"<a href='{name}.csv'>{name}.csv</a>" for name in TABLES)
    parts.append(f"<h2>Data</h2><p>{links} · <a href='study.json'>study.json</a> · "
                 "<a href='report.zip'>report.zip</a></p>")
    settings = json.dumps(study.get("config", {}), indent=2, default=str)
    parts.append(f"<h2>Settings</h2><pre>{e(settings)}</pre>")
    parts.append(f"<p>Run time: {e(_fmt(study.get('seconds'), 1))} s.</p></body></html>")
    return "\n".join(parts)


def save_json(folder: Path, study: dict[str, Any]) -> Path:
    path = folder / "study.json"
    path.write_text(json.dumps(study, indent=2, default=str), encoding="utf-8")
    return path


def write_report(folder: Path, study: dict[str, Any]) -> dict[str, Path]:
    """Write the report folder (created if needed) and its zip; returns the paths written, with ``index``
    and ``zip``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = study_frames(study)
    written: dict[str, Path] = {}
    for name, frame in frames.items():
        path = folder / f"{name}.csv"
        write_csv(frame, path)
        written[f"{name}_csv"] = path
    for stem, build in _figures(study, frames).items():
        written.update(save_chart(build(), folder, stem))
    index = folder / "index.html"
    index.write_text(_index_html(study, frames, written), encoding="utf-8")
    written["index"] = index
    written["json"] = save_json(folder, study)
    written["zip"] = zip_folder(folder)
    return written


def zip_folder(folder: Path) -> Path:
    """``folder/report.zip`` holding every other file of the folder (under the folder's name)."""
    target = folder / "report.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path != target:
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return target


def read_tables(folder: Path) -> dict[str, Any]:
    """What the study page shows from a report folder: its CSV tables, figure PNG paths, the figures' captions
    and the notes (both from the folder's ``study.json``)."""
    folder = Path(folder)
    tables = {name: pd.read_csv(folder / f"{name}.csv") for name in TABLES if (folder / f"{name}.csv").is_file()}
    figures = {stem: folder / f"{stem}.png" for stem in FIGURES if (folder / f"{stem}.png").is_file()}
    saved = folder / "study.json"
    study = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    return {"tables": tables, "figures": figures, "captions": figure_captions(study), "notes": study_notes(study),
            "zip": folder / "report.zip", "folder": folder}
