"""The loop in one chart: macro-F1 per round of a model trained on the synthetic data up to it, against a rule at
the real-data model's macro-F1, above the rounds' human label fidelity, panel agreement and top-5 similarity to
real data — one look says whether the loop is closing the gap. Built here; the Loop page only displays it."""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.analysis.loop import LoopView

MACRO_F1 = "macro-F1, synthetic data up to the round"
FIDELITY = "human label fidelity"
PANEL = "panel agreement"
SIMILARITY = "top-5 similarity to real"
CHART_WIDTH = 640
QUALITY = {FIDELITY: "fidelity", PANEL: "panel_agreement", SIMILARITY: "similarity_to_real"}


def chart_frame(view: LoopView) -> pd.DataFrame:
    """Long table ``round, metric, value`` of the rounds' known figures (a round without one has no row)."""
    rows = [{"round": int(row["round"]), "metric": metric, "value": float(row[column])}
            for row in view.per_round.to_dict(orient="records")
            for metric, column in ({MACRO_F1: "macro_f1"} | QUALITY).items() if pd.notna(row[column])]
    return pd.DataFrame(rows, columns=["round", "metric", "value"])


def loop_chart(view: LoopView) -> alt.VConcatChart:
    """Top: macro-F1 per round and the real-data reference as a dashed rule; bottom: the rounds' quality."""
    frame = chart_frame(view)
    rounds = [int(r) for r in view.per_round["round"]]
    x = alt.X("round:O", title="round", scale=alt.Scale(domain=rounds), axis=alt.Axis(labelAngle=0))
    y_scale = alt.Scale(domain=[0, 1])
    tooltip = ["round:O", "metric:N", alt.Tooltip("value:Q", format=".3f")]
    f1 = alt.Chart(frame[frame["metric"] == MACRO_F1]).mark_line(point=True).encode(
        x=x, y=alt.Y("value:Q", title="macro-F1 on the real test split", scale=y_scale), tooltip=tooltip)
    top = [f1]
    reference = view.real.get("macro_f1")
    if reference is not None:
        rule = pd.DataFrame({"value": [reference], "text": [f"real data: {reference:.3f}"]})
        top.append(alt.Chart(rule).mark_rule(strokeDash=[6, 4], color="gray").encode(y="value:Q"))
        top.append(alt.Chart(rule).mark_text(align="left", dx=4, dy=-6, color="gray").encode(
            y="value:Q", text="text:N", x=alt.value(0)))
    quality = alt.Chart(frame[frame["metric"].isin(list(QUALITY))]).mark_line(point=True).encode(
        x=x, y=alt.Y("value:Q", title="share / similarity", scale=y_scale),
        color=alt.Color("metric:N", title=None, legend=alt.Legend(orient="bottom")), tooltip=tooltip)
    # A fixed width: Vega-Lite cannot stretch the parts of a concatenated chart to their container.
    return alt.vconcat(alt.layer(*top).properties(width=CHART_WIDTH, height=240,
                                                  title="Is the loop closing the gap to real data?"),
                       quality.properties(width=CHART_WIDTH, height=160))
