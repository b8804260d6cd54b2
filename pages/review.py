"""Review: browse synthetic items with their provenance (prompt, seeds, model, temperature), accept, reject or
edit them, and choose which go to annotation. LLM text is shown only in dataframes and code blocks."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import streamlit as st

from core.errors import SynthloopError
from core.generation import review, service
from pages._common import (
    REVIEW_ITEM,
    REVIEW_SELECTED,
    CacheKey,
    cache_derived,
    current_project,
    database,
    escape_markdown,
    page_guard,
    project_cache_key,
    show_error,
)

user = page_guard(__file__)
with database() as db:
    project = current_project(db)
    jobs = service.list_generation_jobs(db, project.id)

ANY = "(any)"
ITEM_PICK = "review_item_pick"  # the item picker's widget key
st.title(f"Review · {escape_markdown(project.name)}")

left, middle, right, far = st.columns(4)
job_options = [ANY, *[int(j) for j in jobs["job_id"]]]
job = left.selectbox("Generation job", job_options, key="review_job",
                     format_func=lambda j: j if j == ANY else f"job {j}")
label = middle.selectbox("Intended label", [ANY, *project.label_names], key="review_label")
status = right.selectbox("Review status", [ANY, "accepted", "rejected"], key="review_status")
pool = far.selectbox("In annotation pool", [ANY, "yes", "no"], key="review_pool")
panel = st.slider("Panel agrees ≥", 0.0, 1.0, 0.0, 0.05, key="review_panel",
                  help="Keep items where at least this share of the LLM panel (llm: annotators, run with "
                       "llm-annotate --panel) gave the intended label; items the panel did not label are then left "
                       "out. 0: off.")

@cache_derived()
def _items(_db, key: CacheKey, **filters) -> pd.DataFrame:
    """The synthetic items shown, read again only when the project's data changes (an action here changes it):
    their panel agreement reads every label of the project."""
    return review.synthetic_items(_db, key.project.id, **filters)


try:
    with database() as db:
        table = _items(db, project_cache_key(db, project), job_id=None if job == ANY else int(job),
                       label=None if label == ANY else label, review_status=None if status == ANY else status,
                       in_pool=None if pool == ANY else pool == "yes", min_panel_agreement=panel or None)
except SynthloopError as exc:
    show_error(exc)
    st.stop()

if table.empty:
    st.info("No synthetic items match: generate some on the Generate page or change the filters.")
    st.stop()

counts = review.attribute_counts(table)
if not counts.empty:
    with st.expander("Attributes asked for (items shown, per value and intended label)"):
        st.dataframe(counts.pivot_table(index=["attribute", "value"], columns="label", values="items",
                                        fill_value=0, aggfunc="sum").reset_index(), hide_index=True)

shown = (f"The first {len(table):,} synthetic items that match (narrow the filters to see others)"
         if len(table) >= review.SHOWN_AT_MOST else f"{len(table):,} synthetic items")
st.caption(f"{shown}. Select rows to act on them, or apply an action to all shown.")
event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="review_table",
                     column_config={"text": st.column_config.TextColumn("text", width="large"),
                                    "panel_agreement": st.column_config.NumberColumn(
                                        "panel agrees", format="%.2f",
                                        help="share of the LLM panel that gave the intended label")})
selected = [int(table.iloc[row]["id"]) for row in event.selection.rows]

scope = st.radio("Apply to", ["selected rows", "all shown"], horizontal=True, key="review_scope")
targets = selected if scope == "selected rows" else [int(i) for i in table["id"]]
buttons = st.columns(4)
accept = buttons[0].button(f"Accept ({len(targets)})", disabled=not targets, icon=":material/check:")
reject = buttons[1].button(f"Reject ({len(targets)})", disabled=not targets, icon=":material/close:")
to_pool = buttons[2].button(f"Send to annotation ({len(targets)})", disabled=not targets, type="primary",
                            icon=":material/send:")
from_pool = buttons[3].button(f"Take out of annotation ({len(targets)})", disabled=not targets,
                              icon=":material/undo:")
if accept or reject or to_pool or from_pool:
    try:
        with database() as db:
            if accept or reject:
                changed = review.set_review_status(db, project.id, targets, "accepted" if accept else "rejected")
            else:
                changed = review.send_to_annotation(db, project.id, targets, in_pool=bool(to_pool))
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.toast(f"{changed} item(s) updated.")
        st.rerun()

st.subheader("Provenance and editing")
ids = [int(i) for i in table["id"]]
# A row just selected in the table opens; otherwise the open item stays (picked below, or selected earlier).
just_selected = [i for i in selected if i not in st.session_state.get(REVIEW_SELECTED, ())]
st.session_state[REVIEW_SELECTED] = selected
if just_selected:
    st.session_state[ITEM_PICK] = just_selected[-1]
elif st.session_state.get(ITEM_PICK) not in ids:  # first visit, or the open item was filtered out
    remembered = st.session_state.get(REVIEW_ITEM)
    st.session_state[ITEM_PICK] = remembered if remembered in ids else ids[0]
item_id = st.selectbox("Item", ids, key=ITEM_PICK)
st.session_state[REVIEW_ITEM] = item_id
with database() as db:
    info = review.provenance(db, project.id, item_id)

left, right = st.columns([2, 1])
with left:
    st.caption("Text")
    st.code(info.text, language=None, wrap_lines=True)
    if info.original_text:
        st.caption("Original text (before editing)")
        st.code(info.original_text, language=None, wrap_lines=True)
with right:
    st.dataframe(pd.DataFrame([
        {"field": "intended label", "value": info.intended_label},
        {"field": "review status", "value": info.review_status},
        {"field": "in annotation pool", "value": "yes" if info.in_pool else "no"},
        {"field": "job", "value": info.job_id},
        {"field": "round", "value": info.round},
        {"field": "mode", "value": info.mode},
        {"field": "backend / model", "value": f"{info.backend} / {info.model}"},
        {"field": "temperature", "value": info.temperature},
        {"field": "latency (s)", "value": None if info.latency_s is None else round(info.latency_s, 3)},
    ]).astype({"value": str}), hide_index=True)

with st.form("review_edit"):
    new_text = st.text_area("Edit the text", value=info.text, height=120, key=f"review_edit_{item_id}")
    save = st.form_submit_button("Save text", icon=":material/save:")
if save:
    try:
        with database() as db:
            review.edit_text(db, project.id, item_id, new_text)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.toast("Text saved.")
        st.rerun()

with st.expander("Prompt sent to the model"):
    for message in info.messages:
        st.caption(message.get("role", ""))
        st.code(message.get("content", ""), language=None, wrap_lines=True)
# In a feedback round the examples are seeds and earlier items people confirmed, not seeds alone.
with st.expander(f"Examples shown: seeds or confirmed items ({len(info.seeds)})"):
    if info.seeds:
        st.dataframe(pd.DataFrame([asdict(seed) for seed in info.seeds]), hide_index=True)
    else:
        st.caption("none (zero-shot)")
# A counter-example's label is the one it was written for, which people contradicted: say so in its column.
for title, shown, label_column in (
        ("Real texts retrieved for grounding", info.retrieved, "label"),
        ("Counter-examples shown (people judged them otherwise)", info.counter_examples, "intended label")):
    if shown:
        with st.expander(f"{title} ({len(shown)})"):
            st.dataframe(pd.DataFrame([asdict(example) for example in shown]), hide_index=True,
                         column_config={"label": label_column})
if info.attributes:
    with st.expander(f"Attributes asked for ({len(info.attributes)})"):
        st.dataframe(pd.DataFrame({"attribute": list(info.attributes), "value": list(info.attributes.values())}),
                     hide_index=True)
with st.expander("Raw reply and the verdict on each text in it"):
    st.code(info.raw_output or "", language=None, wrap_lines=True)
    if info.outcomes:
        st.dataframe(pd.DataFrame(list(info.outcomes)), hide_index=True)
