"""Charts of agreement (Altair specifications, drawn by pages and the study report alike)."""


from __future__ import annotations

import numpy as np
import pandas as pd

AGREEMENT_BIN_WIDTH = 0.05
BIN_COLUMNS = ["bin_start", "bin_end", "source", "items"]


def agreement_bins(items: pd.DataFrame) -> pd.DataFrame:
    """Items per bin of instance agreement ``a_i`` and per source, for :func:`agreement_histogram`: columns
    ``bin_start``, ``bin_end`` (bins of ``AGREEMENT_BIN_WIDTH`` from 0; 1 falls in the last), ``source``,
    ``items``; items without a value are left out. A few dozen rows however many items, so a chart built from
    it sends and hashes no per-item data."""
    frame = items.loc[items["instance_agreement"].notna(), ["instance_agreement", "source"]]
    n_bins = round(1 / AGREEMENT_BIN_WIDTH)
    # The small tolerance keeps 0.6 (0.6 / 0.05 = 11.999…) in the bin that starts at 0.6.
    index = np.clip(np.floor(frame["instance_agreement"].to_numpy(float) / AGREEMENT_BIN_WIDTH + 1e-9), 0, n_bins - 1)
    counts = (pd.DataFrame({"bin": index.astype(int), "source": frame["source"].to_numpy()})
              .groupby(["bin", "source"]).size().rename("items").reset_index())
    counts["bin_start"] = (counts["bin"] * AGREEMENT_BIN_WIDTH).round(10)
    counts["bin_end"] = ((counts["bin"] + 1) * AGREEMENT_BIN_WIDTH).round(10)
    return counts[BIN_COLUMNS].astype({"items": int})


def agreement_histogram(bins: pd.DataFrame):
    """Altair histogram of instance agreement ``a_i``, stacked by source, from :func:`agreement_bins`."""
    import altair as alt

    return (
        alt.Chart(bins)
        .mark_bar()
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="instance agreement a_i", scale=alt.Scale(domain=[0, 1])),
            x2="bin_end:Q",
            y=alt.Y("items:Q", title="items", stack="zero"),
            color=alt.Color("source:N", title="source"),
            tooltip=["source:N", alt.Tooltip("bin_start:Q", title="from"), alt.Tooltip("bin_end:Q", title="to"),
                     alt.Tooltip("items:Q", title="items")],
        )
        .properties(height=220)
    )


def reliability_chart(bins: pd.DataFrame):
    """Altair reliability diagram of the LLM panel (``PanelCalibration.reliability_frame()``: ``start``, ``end``,
    ``n``, ``confidence``, ``accuracy`` per non-empty bin): a bar per bin of the panel's vote share up to the share
    of its items where the panel majority equals the human majority, a point at the bin's mean confidence, and the
    diagonal a calibrated panel would follow."""
    import altair as alt

    x = alt.X("start:Q", bin="binned", title="panel vote share for its majority label (confidence)",
              scale=alt.Scale(domain=[0, 1]))
    tooltip = [alt.Tooltip("start:Q", title="from"), alt.Tooltip("end:Q", title="to"), alt.Tooltip("n:Q", title="items"),
               alt.Tooltip("confidence:Q", title="mean confidence", format=".3f"),
               alt.Tooltip("accuracy:Q", title="accuracy", format=".3f")]
    bars = alt.Chart(bins).mark_bar(opacity=0.8).encode(
        x=x, x2="end:Q", y=alt.Y("accuracy:Q", title="accuracy against the human majority",
                                 scale=alt.Scale(domain=[0, 1])), tooltip=tooltip)
    points = alt.Chart(bins).mark_point(filled=True, color="black").encode(
        x="confidence:Q", y="confidence:Q", tooltip=tooltip)
    diagonal = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(
        strokeDash=[4, 4], color="gray").encode(x="x:Q", y="y:Q")
    return alt.layer(bars, diagonal, points).properties(height=240)
