"""Annotation pool: which items annotators label (real / synthetic, splits, one generation job) and how the
pool is handed out (overlap k, strategy, reservations, the skip rule)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import projects, vocab
from core.annotation.pool import (
    STRATEGY_TEXT,
    AssignmentSettings,
    assignment_settings,
    generation_jobs_in_project,
    pool_status,
    save_assignment_settings,
    set_pool,
)
from core.errors import SynthloopError
from core.vocab import STRATEGIES
from pages._common import current_project, database, page_guard, show_error

user = page_guard(__file__)
with database() as db:
    project = current_project(db)
    status = pool_status(db, project)
    jobs = generation_jobs_in_project(db, project.id)
settings = assignment_settings(project)

st.title("Annotation pool")
cols = st.columns(3)
cols[0].metric("Items in the pool", status.n_items)
cols[1].metric(f"Items with ≥ {status.overlap} labels", status.n_complete)
cols[2].metric("Labels given", f"{status.n_slots_filled} of {status.n_slots}")
if status.n_slots:
    st.progress(status.n_slots_filled / status.n_slots)
if status.groups:
    st.dataframe(pd.DataFrame(status.groups), hide_index=True)

st.subheader("Choose items")
st.caption("Filters combine: e.g. real + test puts the real test items in the pool. Annotators never see whether "
           "an item is real or synthetic, nor its split.")
with st.form("pool"):
    left, middle, right = st.columns(3)
    source = left.radio("Source", ["any", "real", "synthetic"], horizontal=True)
    split = middle.radio("Split", ["any", *vocab.SPLITS], horizontal=True)
    job_options = [None] + [job["generation_job_id"] for job in jobs]
    job = right.selectbox("Generation job", job_options,
                          format_func=lambda j: "any" if j is None else f"job {j}")
    add, remove = st.columns(2)
    added = add.form_submit_button("Add to pool", type="primary", icon=":material/add:")
    removed = remove.form_submit_button("Remove from pool", icon=":material/remove:")
if added or removed:
    try:
        with database() as db:
            changed = set_pool(db, project.id, add=bool(added),
                                          source=None if source == "any" else source,
                                          split=None if split == "any" else split, generation_job_id=job)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.toast(f"{changed} items {'added to' if added else 'removed from'} the pool.")
        st.rerun()

st.subheader("How items are handed out")
with st.form("assignment"):
    overlap = st.number_input("Labels per item (overlap k)", min_value=1, max_value=50, value=project.overlap)
    strategy = st.radio("Strategy", STRATEGIES, index=STRATEGIES.index(settings.strategy),
                        format_func=STRATEGY_TEXT.__getitem__)
    left, middle, right = st.columns(3)
    max_overlap = left.number_input("Disagreement: at most this many labels", min_value=1, max_value=50,
                                    value=settings.max_target(project.overlap))
    threshold = middle.number_input("Disagreement: more labels while a_i is below", min_value=0.05, max_value=1.0,
                                    value=float(settings.agreement_threshold), step=0.05)
    reservation = right.number_input("Reservation (seconds)", min_value=10, max_value=3600,
                                     value=settings.reservation_seconds, step=10)
    skip_minutes = st.number_input("A skipped item comes back after (minutes), or sooner when nothing else is left",
                                   min_value=0.0, max_value=1440.0, value=float(settings.skip_minutes), step=1.0)
    saved = st.form_submit_button("Save", type="primary")
if saved:
    try:
        new_settings = AssignmentSettings(
            strategy=strategy, max_overlap=int(max_overlap), agreement_threshold=float(threshold),
            reservation_seconds=int(reservation), skip_minutes=float(skip_minutes), seed=settings.seed,
        )
        with database() as db:
            if int(overlap) != project.overlap:
                projects.update_project(db, project.id, overlap=int(overlap))
            save_assignment_settings(db, project.id, new_settings)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.toast("Saved.")
        st.rerun()
