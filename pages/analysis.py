"""Diversity: how diverse real and synthetic data are, how close synthetic data come to real data, and a map of
both that shows where synthetic data fail to cover the real data (click through to the items of a region)."""

from __future__ import annotations

import streamlit as st

from core.analysis import report
from core.analysis import service as analysis
from core.errors import SynthloopError
from core.vocab import ACTIVE_STATUSES, PROJECTIONS
from pages._common import (
    ANALYSIS_COLOUR,
    ANALYSIS_MAP,
    current_project,
    database,
    escape_markdown,
    job_progress,
    page_guard,
    show_error,
)

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

st.title("Diversity and similarity")
st.caption("Remote-Clique (mean distance to all other items) and Chamfer distance (distance to the nearest other "
           "item) on sentence embeddings, at equal set sizes; and the mean top-5 cosine similarity of each real "
           "item to each synthetic set (Li et al., 2023, Figure 1 and B.2). Both grow with the set size, so every "
           "source is compared at one size, and a source with too few items is left out.")

with st.form("analysis_settings"):
    left, smallest, middle, right = st.columns(4)
    subsample = left.number_input("Items per source (0: the smallest source)", min_value=0, value=0, step=100)
    min_size = smallest.number_input("Leave out sources under (items)", min_value=2,
                                     value=analysis.AnalysisConfig().min_size, step=1)
    projection = middle.radio("Map projection", PROJECTIONS, horizontal=True,
                              index=PROJECTIONS.index(analysis.AnalysisConfig().projection),
                              format_func={"tsne": "t-SNE", "pca": "PCA"}.__getitem__)
    seed = right.number_input("Seed", min_value=0, value=0, step=1)
    submitted = st.form_submit_button("Run analysis", type="primary", icon=":material/play_arrow:")
if submitted:
    try:
        config = analysis.AnalysisConfig(subsample=int(subsample) or None, seed=int(seed), projection=projection,
                                         min_size=int(min_size))
        with database() as db:
            job_id = analysis.start_analysis(db, project.id, config)
        st.toast(f"Analysis started (job {job_id}).")
    except SynthloopError as exc:
        show_error(exc)

with database() as db:
    latest_job = analysis.latest_analysis_job(db, project.id)

if latest_job and latest_job["status"] in ACTIVE_STATUSES:
    job_progress(latest_job, what="Analysis")
elif latest_job and latest_job["status"] == "failed":
    st.error(f"The last analysis (job {latest_job['id']}) failed: {escape_markdown(latest_job['error'])}")

with database() as db:
    result = analysis.latest_analysis(db, project.id)
    map_points = analysis.map_frame(db, result) if result else None
if result is None:
    st.info("No analysis yet: run one above. The first run embeds every item (about 300 texts a second on a "
            "CPU); later runs reuse the cached embeddings.")
    st.stop()

embedding = result.get("embedding", {})
compared_at = (f"{result['n_subsample']} items per source" if result["n_subsample"] is not None
               else "no source large enough to compare")
st.caption(f"Analysis job {result['job_id']} · {compared_at} · "
           f"embeddings {embedding.get('model', '')} ({embedding.get('n_computed', 0)} computed, "
           f"{embedding.get('n_cached', 0)} cached) · {result.get('seconds', 0):.1f} s")
if note := analysis.excluded_note(result):
    st.warning(note, icon=":material/warning:")

diversity_tab, similarity_tab, map_tab = st.tabs(["Figure 1: diversity", "Figure B.2: similarity to real",
                                                  "Map"])
with diversity_tab:
    frame = analysis.diversity_frame(result)
    if frame.empty:
        st.info(f"No source has {result['config'].get('min_size', 2)} or more items to compare.")
    else:
        st.altair_chart(report.diversity_chart(frame))
        st.dataframe(frame, hide_index=True)
with similarity_tab:
    frame = analysis.similarity_frame(result)
    if frame.empty:
        st.info("Similarity needs real items and synthetic items: generate synthetic data first.")
    else:
        st.altair_chart(report.similarity_chart(frame))
        st.dataframe(frame, hide_index=True)
with map_tab:
    colour = st.radio("Colour by", ["source", "label"], horizontal=True, key=ANALYSIS_COLOUR)
    st.caption("Drag a rectangle to list the items in that region; click a point to list that item. "
               "Real points without synthetic neighbours are where the synthetic data do not cover the real data.")
    event = st.altair_chart(report.map_chart(map_points, color=colour, selectable=True), on_select="rerun",
                            key=ANALYSIS_MAP, width="stretch")
    picked = event.selection.get("region") or event.selection.get("picked")
    chosen = analysis.items_in_region(map_points, picked)
    if chosen.empty:
        st.caption(f"{len(map_points)} points shown; nothing chosen yet.")
    else:
        st.write(f"{len(chosen)} items chosen")
        st.dataframe(chosen, hide_index=True, width="stretch")
