"""Seeds: browse real items by label and agreement, pin and unpin the few-shot examples, sample N per label
(highest agreement first), and see how many seeds each label has. Item text appears only in dataframes."""

from __future__ import annotations

import streamlit as st

from core.errors import SynthloopError
from core.generation import seeds, service
from pages._common import current_project, database, escape_markdown, page_guard, show_error

user = page_guard(__file__)
with database() as db:
    project = current_project(db)
    pinned = seeds.list_seeds(db, project.id)
k = int(service.saved_options(project).get("examples_per_prompt", 3))

st.title(f"Seeds · {escape_markdown(project.name)}")
st.caption("Seeds are real, labelled items shown to the LLM as few-shot examples. Test items cannot be seeds.")

summary = st.container()  # filled last, so counts include what this run pinned or sampled

pinned_tab, browse_tab, sample_tab = st.tabs(["Pinned seeds", "Browse and pin", "Sample per label"])

with pinned_tab:
    if pinned.empty:
        st.info("No seeds yet: pin items in *Browse and pin* or sample them in *Sample per label*.")
    else:
        event = st.dataframe(pinned.drop(columns=["is_seed"]), hide_index=True, on_select="rerun",
                             selection_mode="multi-row", key="seeds_pinned_table")
        chosen = [int(pinned.iloc[row]["id"]) for row in event.selection.rows]
        if st.button(f"Unpin {len(chosen)} selected", disabled=not chosen, icon=":material/remove:"):
            with database() as db:
                removed = seeds.unpin(db, project.id, chosen)
            st.toast(f"Unpinned {removed} seed(s).")
            st.rerun()

with browse_tab:
    left, middle, right = st.columns(3)
    label = left.selectbox("Label", ["(all)", *project.label_names], key="seeds_label")
    min_agreement = middle.slider("Minimum agreement", 0.0, 1.0, 0.0, 0.05, key="seeds_min_agreement",
                                  help="items without known agreement are hidden when this is above 0")
    search = right.text_input("Text contains", key="seeds_search")
    with database() as db:
        table = seeds.browse(db, project.id, label=None if label == "(all)" else label,
                             min_agreement=min_agreement or None, search=search or None)
    st.caption(f"{len(table):,} real items outside the test split, best agreement first.")
    event = st.dataframe(table.head(2000), hide_index=True, on_select="rerun", selection_mode="multi-row",
                         key="seeds_browse_table")
    chosen = [int(table.iloc[row]["id"]) for row in event.selection.rows]
    with st.form("seeds_pin_ids"):
        refs = st.text_input("…or item ids to pin (imported ids or internal ids, comma-separated)",
                             key="seeds_pin_refs")
        note = st.text_input("Note", key="seeds_pin_note")
        pin_typed = st.form_submit_button("Pin these ids", icon=":material/push_pin:")
    pin_selected = st.button(f"Pin {len(chosen)} selected", disabled=not chosen, type="primary",
                             icon=":material/push_pin:")
    if pin_selected or pin_typed:
        targets = chosen if pin_selected else [r.strip() for r in refs.split(",") if r.strip()]
        try:
            with database() as db:
                ids = seeds.pin(db, project.id, targets, added_by=user.username, note=note)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.toast(f"Pinned {len(ids)} seed(s).")
            st.rerun()

with sample_tab:
    with st.form("seeds_sample"):
        per_label = st.number_input("Seeds per label", min_value=1, max_value=1000, value=max(k, 3), step=1)
        seed = st.number_input("Random seed", min_value=0, value=0, step=1,
                               help="breaks ties between items of equal agreement, reproducibly")
        sampled = st.form_submit_button("Sample seeds", type="primary", icon=":material/casino:")
    st.caption("Tops each label up to this many seeds, preferring items with the highest instance agreement "
               "(items without known agreement come last).")
    if sampled:
        try:
            with database() as db:
                result = seeds.sample_seeds(db, project.id, int(per_label), int(seed), added_by=user.username,
                                            examples_per_prompt=k)
        except SynthloopError as exc:
            show_error(exc)
        else:
            added = sum(len(v) for v in result.added.values())
            st.success(f"Added {added} seed(s): " + ", ".join(f"{lb} {n}" for lb, n in result.counts.items()))
            for warning in result.warnings:
                st.warning(warning)

with database() as db:
    counts = seeds.seed_counts(db, project.id)
with summary:
    columns = st.columns(max(1, min(len(counts), 6)))
    for i, (label, n) in enumerate(counts.items()):
        columns[i % len(columns)].metric(f"Seeds · {label}", n)
    for warning in seeds.seed_warnings(counts, k):
        st.warning(warning, icon=":material/warning:")
