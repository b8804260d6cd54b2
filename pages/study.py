"""Study: the paper's comparison for this project in one click — train on each data source, evaluate on the real
test split, sweep the agreement threshold, measure diversity — and its report, shown here and offered as a zip."""

from __future__ import annotations

import streamlit as st

from core.analysis import study
from core.errors import SynthloopError
from core.training.config import LABEL_SOURCE_HELP
from core.vocab import ACTIVE_STATUSES, LABEL_SOURCES
from pages._common import current_project, database, escape_markdown, job_progress, page_guard, show_error

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

st.title("Study")
st.caption("Li et al. (2023) on this project: a classifier per training source (real, zero-shot, few-shot, seeds, "
           "seeds + few-shot), Table 1, Figure 1, Figure 2, Figure B.1 and Figure B.2.")
# Outside the form: which runs have training data depends on the labels they train with.
label_source = st.selectbox("Label source", LABEL_SOURCES, index=LABEL_SOURCES.index(study.StudyConfig.label_source),
                            format_func=lambda s: f"{s}: {LABEL_SOURCE_HELP[s]}", key="study_label_source",
                            help="Data imported as raw per-annotator labels only has no reference label: use "
                                 "'majority'.")
with database() as db:
    ingredients = study.check_ingredients(db, project.id, study.StudyConfig(out_dir=study.AUTO_OUT_DIR,
                                                                            label_source=label_source))

st.subheader("Ingredients")
counts = ingredients.counts
columns = st.columns(5)
for column, (key, label) in zip(columns, [("real_train", "Real training items"), ("test", "Real test items"),
                                          ("seeds", "Seeds"), ("zero-shot", "Zero-shot items"),
                                          ("few-shot", "Few-shot items")], strict=True):
    column.metric(label, counts[key])
for problem in ingredients.problems:
    (st.error if problem.blocking else st.warning)(problem.message)
if ingredients.ok:
    st.success(f"Runs to train: {', '.join(ingredients.runnable)}.")

with st.form("study_settings"):
    left, middle, right = st.columns(3)
    epochs = left.number_input("Epochs per run", min_value=1, max_value=50, value=3)
    model = middle.text_input("Classifier", value="embedded", help="'embedded' is the bundled MiniLM; or a local "
                              "model folder, or bert-base-uncased / roberta-base when present offline")
    seed = right.number_input("Seed", min_value=0, value=42)
    arms = st.multiselect("Runs", list(study.ARM_NAMES), default=list(ingredients.runnable) or None)
    submitted = st.form_submit_button("Run the study", type="primary", icon=":material/play_arrow:",
                                      disabled=not ingredients.ok)
if submitted:
    try:
        with database() as db:
            config = study.StudyConfig(out_dir=study.AUTO_OUT_DIR, epochs=int(epochs), model=model, seed=int(seed),
                                       arms=tuple(arms), label_source=label_source)
            job_id = study.start_study(db, project.id, config)
        st.toast(f"Study started (job {job_id}).")
    except SynthloopError as exc:
        show_error(exc)

with database() as db:
    latest_job = study.latest_study_job(db, project.id)

if latest_job and latest_job["status"] in ACTIVE_STATUSES:
    job_progress(latest_job, what="Study", run_every=3)
elif latest_job and latest_job["status"] == "failed":
    st.error(f"The last study (job {latest_job['id']}) failed: {escape_markdown(latest_job['error'])}")

with database() as db:
    finished = study.latest_study(db, project.id)
if finished is None:
    st.info("No finished study yet.")
    st.stop()

shown = finished["tables"]
st.subheader(f"Report of study job {finished['job_id']}")
st.caption(f"Folder: {shown['folder']}")
st.download_button("Download the report (zip)", data=shown["zip"].read_bytes(), file_name="synthloop-study.zip",
                   mime="application/zip", icon=":material/download:")
captions = shown["captions"]
if "table1" in shown["tables"]:
    st.markdown(f"**{captions['table1']}**")
    st.dataframe(shown["tables"]["table1"], hide_index=True)
if "disagreement" in shown["tables"]:
    st.markdown(f"**{captions['disagreement']}**")
    st.dataframe(shown["tables"]["disagreement"], hide_index=True)
for note in shown["notes"]:
    st.warning(note, icon=":material/warning:")
for stem, path in shown["figures"].items():
    st.image(str(path), caption=captions[stem])
with st.expander("All tables"):
    for name, frame in shown["tables"].items():
        st.markdown(f"**{name}.csv**")
        st.dataframe(frame, hide_index=True)
