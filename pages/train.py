"""Train: choose training data, label source, agreement threshold, model and settings; one click trains a
classifier in a background process. Progress (step, epoch, loss, ETA) is read from the job table every 2 s,
so it survives a browser refresh; a run can be cancelled, and a failed run shows its error."""

from __future__ import annotations

import streamlit as st

from core.errors import SynthloopError
from core.training import service
from core.training.config import LABEL_SOURCE_HELP, OBJECTIVE_HELP, PAPER_MODELS, SOFT_SOURCE_HELP, TrainConfig
from core.training.run import start_training
from core.vocab import ACTIVE_STATUSES, HELD_OUT_SPLITS, LABEL_SOURCES, OBJECTIVES, SOFT_SOURCES
from pages._common import (
    CacheKey,
    cache_derived,
    current_project,
    database,
    db_path,
    escape_markdown,
    page_guard,
    project_cache_key,
    runs_cache_key,
    show_error,
)


@cache_derived("Counting the items…")
def _training_options(_db, key: CacheKey) -> service.TrainingOptions:
    return service.training_options(_db, key.project.id)


@cache_derived()
def _ended_runs(_db, key: CacheKey, project_id: int) -> list[dict]:
    """The project's latest ended runs, read once per change to the runs (not at every poll)."""
    return service.ended_progress(_db, project_id)


user = page_guard(__file__)
with database() as db:
    project = current_project(db)
    options = _training_options(db, project_cache_key(db, project))

defaults = TrainConfig()
counts = options.counts
SOURCE_TITLES = {"real": "Real training split", "zero-shot": "Zero-shot synthetic", "few-shot": "Few-shot synthetic",
                 "seeds": "Seed examples"}
MODELS = ["embedded", *PAPER_MODELS]
MODEL_TITLES = {"embedded": "embedded MiniLM (offline, fast)", "bert-base-uncased": "bert-base-uncased (paper)",
                "roberta-base": "roberta-base (paper)"}

st.title(f"Train · {escape_markdown(project.name)}")
st.caption("Fine-tune a transformer classifier on real and/or synthetic items and evaluate it on the real "
           f"{defaults.eval_split} split, with accuracy against the test items' agreement.")
if not options.eval_items["test"]:
    st.warning("This project has no labelled real test items yet: import items with split 'test' (and a label "
               "column), or have them annotated, before training.")

with st.form("train_form"):
    st.markdown("**Training data**")
    columns = st.columns(len(SOURCE_TITLES))
    chosen_sources = [
        source for column, (source, title) in zip(columns, SOURCE_TITLES.items(), strict=True)
        if column.checkbox(f"{title} ({counts[source]})", value=source == "real" and counts["real"] > 0
                           or source == "few-shot" and counts["real"] == 0 and counts["few-shot"] > 0,
                           key=f"train_source_{source}")
    ]
    job_counts = options.generation_jobs
    chosen_jobs = st.multiselect("Generation jobs", list(job_counts), format_func=lambda j: f"job {j} "
                                 f"({job_counts[j]} items)", help="Add the synthetic items of these jobs.",
                                 key="train_jobs")
    left, right = st.columns(2)
    label_source = left.selectbox("Label source", LABEL_SOURCES, format_func=lambda s: f"{s}: {LABEL_SOURCE_HELP[s]}",
                                  key="train_label_source")
    min_agreement = right.slider("Minimum agreement γ of training items", 0.0, 1.0, defaults.min_agreement, 0.05,
                                 help="Keep training items whose instance agreement is at least γ (0 keeps all; "
                                      "above 0, items without a known agreement are left out).",
                                 key="train_min_agreement")
    left, right = st.columns(2)
    max_round = left.number_input("Synthetic data up to round (0 = every round)", 0, 1_000_000, 0,
                                  key="train_max_round",
                                  help="Keep only synthetic items generated in rounds up to this one (the Loop page "
                                       "trains one model per round this way).")
    min_panel = right.slider("Minimum LLM panel agreement of synthetic items (0 = off)", 0.0, 1.0, 0.0, 0.05,
                          key="train_min_panel",
                          help="Keep synthetic items where at least this share of the LLM panel (llm-annotate "
                               "--panel) gave the intended label; synthetic items the panel did not label are left "
                               "out. Real items are never filtered.")
    left, right = st.columns(2)
    objective = left.radio("Objective", OBJECTIVES, format_func=lambda o: f"{o}: {OBJECTIVE_HELP[o]}",
                           key="train_objective")
    soft_source = right.radio("Soft targets (soft objective)", SOFT_SOURCES,
                              format_func=lambda s: f"{s}: {SOFT_SOURCE_HELP[s]}", key="train_soft_source",
                              help="Only human labels count (not LLM annotators).")
    left, right = st.columns(2)
    annotator_heads = left.checkbox(
        "Annotator heads", key="train_annotator_heads",
        help="One output head per annotator on a shared encoder (multi-task), trained on each annotator's own "
             "labels (LLM annotators never get a head). The item prediction is the majority of the heads' labels, "
             "ties broken by their mean probability; the run reports each annotator's error rate.")
    min_annotator_labels = right.number_input("Min annotator labels", 1, 10_000_000, defaults.min_annotator_labels,
                                              key="train_min_annotator_labels",
                                              help="Training labels an annotator needs to get a head.")
    left, right = st.columns(2)
    model_choice = left.selectbox("Model", MODELS, format_func=MODEL_TITLES.get, key="train_model")
    model_other = right.text_input("…or a local model folder / hub id", key="train_model_other",
                                   help="A folder saved with save_pretrained, or a hub id already in the local "
                                        "Hugging Face cache (there is no download).")
    with st.expander("Hyper-parameters"):
        a, b, c = st.columns(3)
        epochs = a.number_input("Epochs", 1, 1000, defaults.epochs, key="train_epochs")
        learning_rate = b.number_input("Learning rate", 1e-7, 0.5, defaults.learning_rate, format="%.1e",
                                       key="train_lr", help="1e-4 suits the small embedded MiniLM; use 2e-5 to "
                                                            "5e-5 for bert-base-uncased or roberta-base.")
        batch_size = c.number_input("Batch size", 1, 4096, defaults.batch_size, key="train_batch_size")
        a, b, c = st.columns(3)
        max_length = a.number_input("Maximum length (tokens)", 8, 8192, defaults.max_length, key="train_max_length")
        seed = b.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="train_seed")
        cap = c.number_input("Cap per label (0 = none)", 0, 10_000_000, 0, key="train_cap")
        eval_split = st.radio("Evaluate on", HELD_OUT_SPLITS, horizontal=True, key="train_eval_split")
    submitted = st.form_submit_button("Train", type="primary", icon=":material/model_training:")

if submitted:
    try:
        config = TrainConfig(
            sources=tuple(chosen_sources), generation_job_ids=tuple(chosen_jobs), label_source=label_source,
            min_agreement=float(min_agreement), model=model_other.strip() or model_choice, epochs=int(epochs),
            learning_rate=float(learning_rate), batch_size=int(batch_size), max_length=int(max_length),
            seed=int(seed), cap_per_label=int(cap) or None, eval_split=eval_split, objective=objective,
            soft_source=soft_source, annotator_heads=annotator_heads,
            min_annotator_labels=int(min_annotator_labels), min_panel_agreement=float(min_panel) or None,
            max_round=int(max_round) or None,
        )
        with database() as db:
            started = start_training(db, db_path(), project.id, config)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.success(f"Run {started['run_id']} started: {config.data_source} → {config.model}.")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


@st.fragment(run_every=2)
def _progress() -> None:
    # A poll reads the active runs' status and progress and one counter; ended runs only when that changed.
    with database() as db:
        ended = _ended_runs(db, runs_cache_key(db, service.runs_version(db)), project.id)
        rows = service.active_progress(db, project.id) + ended
    if not rows:
        st.caption("No runs yet.")
        return
    st.subheader("Runs")
    for row in rows:
        with st.container(border=True):
            title = f"Run {row['run_id']} · {row['data_source']} · {row['model']} — {row['status']}"
            if row["status"] in ACTIVE_STATUSES:
                st.markdown(f"**{title}**")
                st.progress(row["fraction"], text=row["message"])
                a, b, c, d = st.columns(4)
                a.metric("Step", f"{row['step']}/{row['total_steps'] or '?'}")
                b.metric("Epoch", f"{row['epoch'] or '-'}/{row['epochs'] or '?'}")
                c.metric("Loss", "-" if row["loss"] is None else f"{row['loss']:.4f}")
                d.metric("ETA", _eta(row["eta_seconds"]))
                if st.button("Cancel", key=f"cancel_run_{row['run_id']}", icon=":material/stop_circle:"):
                    try:
                        with database() as db:
                            service.cancel(db, row["run_id"])
                    except SynthloopError as exc:
                        show_error(exc)
            elif row["status"] == "failed":
                st.markdown(f"**{title}**")
                st.error(row["error"] or "failed", icon=":material/error:")
            elif row["status"] == "done":
                st.markdown(f"**{title}**")
                st.markdown(f"accuracy **{row['accuracy']:.3f}** · macro-F1 **{row['macro_f1']:.3f}** — details, "
                            "sweep chart and model download on the Runs page.")
            else:
                st.markdown(f"**{title}**")
                st.caption(row["error"] or row["status"])


_progress()
