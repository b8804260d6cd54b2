"""Loop: the project's rounds of generation on one page. Per round and label, what was generated and accepted,
human label fidelity and panel agreement; per round, diversity and similarity to real data at one size and the
macro-F1 of a model trained on the synthetic data up to it — with the real-data model as the line to reach.
One click starts a training run per round that has none (background jobs; progress read from the job table)."""

from __future__ import annotations

import streamlit as st

from core.analysis import loop
from core.analysis.loop_chart import loop_chart
from core.analysis.service import AnalysisConfig
from core.errors import SynthloopError
from core.training import service
from core.training.config import PAPER_MODELS, TrainConfig
from pages._common import (
    CacheKey,
    cache_derived,
    current_project,
    database,
    db_path,
    escape_markdown,
    page_guard,
    project_cache_key,
    show_error,
)

ACTIVE_LOOP_RUNS = "loop_active_runs"
COLUMNS = {"round": "round", "generation_job_id": "job", "calls": "calls", "generated": "generated",
           "accepted": "accepted", "fidelity": "label fidelity", "n_judged": "n judged",
           "panel_agreement": "panel agreement", "n_panel": "n panel", "remote_clique": "Remote-Clique",
           "chamfer": "Chamfer", "similarity_to_real": "top-5 similarity to real", "run_id": "run",
           "macro_f1": "macro-F1"}


@cache_derived("Computing the loop (embeddings are cached after the first time)…")
def _view(_db, key: CacheKey, runs_version: int, min_size: int, subsample: int, with_diversity: bool) -> loop.LoopView:
    config = AnalysisConfig(min_size=min_size, subsample=subsample or None)
    return loop.loop_view(_db, key.project.id, config=config, with_diversity=with_diversity)


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


user = page_guard(__file__)
with database() as db:
    project = current_project(db)

st.title(f"Loop · {escape_markdown(project.name)}")
st.caption("Each generation job is a round of the loop. Is it closing the gap to real data? The chart shows the "
           "macro-F1 on the real test split of a model trained on the synthetic data up to each round, against "
           "a model trained on the real training data (dashed line).")

with st.expander("Diversity settings"):
    left, middle, right = st.columns(3)
    with_diversity = left.toggle("Diversity and similarity", value=True, key="loop_diversity",
                                 help="Embeds the texts once (cached); off: counts, fidelity and macro-F1 only.")
    min_size = middle.number_input("Leave out rounds under (items)", min_value=2, value=AnalysisConfig().min_size,
                                   key="loop_min_size")
    subsample = right.number_input("Items per round (0: the smallest)", min_value=0, value=0, step=100,
                                   key="loop_subsample")

try:
    with database() as db:
        key = project_cache_key(db, project)
        view = _view(db, key, service.runs_version(db), int(min_size), int(subsample), with_diversity)
except SynthloopError as exc:
    show_error(exc)
    st.stop()

if view.per_round.empty:
    st.info("No rounds yet: every generation job is a round — generate data on the Generate page first.")
    st.stop()

st.altair_chart(loop_chart(view))
real = view.real
if view.per_round["macro_f1"].isna().all() and real["macro_f1"] is None:  # an empty macro-F1 chart, explained
    st.caption("No macro-F1 yet: train a model per round below, and one on the real training split (Train page).")
a, b, c = st.columns(3)
a.metric("Real data macro-F1", _fmt(real["macro_f1"]),
         help="The latest finished run on the real training split alone, on the real test split"
              + (f" (run {real['run_id']}, model {real['model']})." if real.get("run_id") else "."))
b.metric("Real data Remote-Clique", _fmt(real["remote_clique"], 4))
c.metric("Real data Chamfer", _fmt(real["chamfer"], 4))
if view.n_subsample is not None:
    st.caption(f"Diversity and similarity compared at {view.n_subsample} items per round and {view.n_subsample} "
               f"of the {real['n']} real training items (seeded subsamples); similarity is the mean top-5 cosine "
               "similarity of the real test items to a round's items.")
if view.excluded:
    st.caption("Left out of the diversity comparison: " + "; ".join(
        f"{name} (n={entry['n']}, {entry['reason']})" for name, entry in view.excluded.items()) + ".")

st.subheader("Per round")
st.dataframe(view.per_round, hide_index=True, column_config=COLUMNS)
st.subheader("Per round and label")
st.dataframe(view.per_label, hide_index=True, column_config=COLUMNS | {"label": "label"})

st.subheader("A model per round")
with st.form("loop_train"):
    defaults = TrainConfig()
    left, middle, right = st.columns(3)
    model = left.selectbox("Model", ["embedded", *PAPER_MODELS], key="loop_model")
    epochs = middle.number_input("Epochs", 1, 1000, defaults.epochs, key="loop_epochs")
    cap = right.number_input("Cap per label (0 = none)", 0, 10_000_000, 0, key="loop_cap")
    submitted = st.form_submit_button("Train a model per round", type="primary", icon=":material/model_training:",
                                      help="For every round without a run: train on the synthetic items of the "
                                           "rounds up to it and score on the real test split (background jobs).")
if submitted:
    try:
        settings = TrainConfig(model=model, epochs=int(epochs), cap_per_label=int(cap) or None)
        with database() as db:
            started = loop.train_rounds(db, db_path(), project.id, settings)
    except SynthloopError as exc:
        show_error(exc)
    else:
        runs = [s for s in started if "run_id" in s]
        if runs:
            st.success(f"Started {len(runs)} runs: " + ", ".join(f"round {s['round']} → run {s['run_id']}"
                                                                 for s in runs) + ".")
        for failed in (s for s in started if "error" in s):
            st.warning(escape_markdown(f"Round {failed['round']} not trained: {failed['error']}"))
        if not started:
            st.info("Every round already has a finished or running loop run.")


@st.fragment(run_every=2)
def _progress() -> None:
    # Polls the active runs from the job table; when one ends, the whole page reruns to show its macro-F1.
    with database() as db:
        rows = service.active_progress(db, project.id)
    active = {row["run_id"] for row in rows}
    ended = st.session_state.get(ACTIVE_LOOP_RUNS, set()) - active
    st.session_state[ACTIVE_LOOP_RUNS] = active
    if ended:
        st.rerun()
    for row in sorted(rows, key=lambda r: r["run_id"]):
        st.progress(row["fraction"], text=escape_markdown(
            f"Run {row['run_id']} · {row['data_source']} · {row['model']}: {row['message']}"))


_progress()
