"""Charts of agreement (Altair specifications, drawn by pages and the study report alike)."""


from __future__ import annotations

import pandas as pd


def agreement_histogram(items: pd.DataFrame):
    """Altair histogram of instance agreement ``a_i`` (items with a value), stacked by source."""
    import altair as alt

    frame = items.loc[items["instance_agreement"].notna(), ["instance_agreement", "source"]]
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("instance_agreement:Q", bin=alt.Bin(extent=[0, 1], step=0.05), title="instance agreement a_i"),
            y=alt.Y("count():Q", title="items"),
            color=alt.Color("source:N", title="source"),
            tooltip=["source:N", alt.Tooltip("count():Q", title="items")],
        )
        .properties(height=220)
    )
