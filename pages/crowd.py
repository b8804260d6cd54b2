"""Crowd study: links that bring Prolific, MTurk or other crowd workers to this project, their workers and
progress, quality checks (gold items, attention checks, qualification) and per-annotator quality with exclusion."""

from __future__ import annotations

from urllib.parse import urlsplit

import streamlit as st

from core import vocab
from core.annotation import crowd, quality
from core.config import field_help
from core.errors import SynthloopError
from pages._common import current_project, database, escape_markdown, page_guard, show_error

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

LABELS = {"quota": "Items per worker", "completion_code": "Completion code", "completion_url": "Completion URL",
          "screened_out_code": "Screened-out code", "gold_rate": "Share of quality checks",
          "qualification_threshold": "Qualification threshold", "base_url": "App address for workers",
          "max_run": "Flag runs of one label longer than"}
HELP = field_help(crowd.StudySettings)

st.title(f"Crowd study · {escape_markdown(project.name)}")
st.caption("A study link brings crowd workers to this project with no password: each arrives as the annotator "
           "<platform>:<worker id>, sees only this project, and gets the completion code at the end. Quality checks "
           "are mixed into their items and never count as data labels.")


def _browser_origin() -> str:
    parts = urlsplit(st.context.url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


# ------------------------------------------------------------------------------------------ new study
with st.expander("New study", icon=":material/add_link:", expanded=False):
    with st.form("crowd_new_study"):
        left, right = st.columns(2)
        platform = left.selectbox("Platform", vocab.CROWD_PLATFORMS,
                                  format_func=lambda p: crowd.PLATFORMS[p].name or "other (generic)")
        quota = right.number_input(LABELS["quota"], min_value=0, max_value=100_000, value=20, step=1,
                                   help=HELP["quota"] + " (0: until the queue ends)")
        left, middle, right = st.columns(3)
        completion_code = left.text_input(LABELS["completion_code"], help=HELP["completion_code"])
        screened_out_code = middle.text_input(LABELS["screened_out_code"], help=HELP["screened_out_code"])
        completion_url = right.text_input(LABELS["completion_url"], help=HELP["completion_url"])
        left, right = st.columns(2)
        gold_rate = left.number_input(LABELS["gold_rate"], min_value=0.0, max_value=0.5, value=0.1, step=0.05,
                                      help=HELP["gold_rate"])
        threshold = right.number_input(LABELS["qualification_threshold"], min_value=0.0, max_value=1.0, value=0.8,
                                       step=0.05, help=HELP["qualification_threshold"])
        created = st.form_submit_button("Create study", type="primary")
    if created:
        try:
            settings = crowd.StudySettings(
                quota=int(quota) or None, completion_code=completion_code.strip(),
                completion_url=completion_url.strip(), screened_out_code=screened_out_code.strip(),
                gold_rate=float(gold_rate), qualification_threshold=float(threshold))
            with database() as db:
                study = crowd.create_study(db, project, platform, settings)
        except SynthloopError as exc:
            show_error(exc, LABELS)
        else:
            st.success(f"Study {study.id} created: its link is in the table below.", icon=":material/check:")

# ------------------------------------------------------------------------------------------ studies
st.subheader("Studies")
address = st.text_input(LABELS["base_url"], value=crowd.suggested_base_url(_browser_origin()),
                        help=f"where workers reach this app; ${crowd.PUBLIC_URL_ENV} sets the default")
try:
    with database() as db:
        studies = crowd.studies_table(db, project, base=address)
        workers = crowd.workers_table(db, project)
except SynthloopError as exc:
    show_error(exc, LABELS)
    st.stop()
if studies.empty:
    st.info("No study yet: create one above, then give its link to the platform.")
else:
    st.dataframe(studies, hide_index=True, width="stretch")
    for row in studies.itertuples():
        st.caption(f"Study {row.study_id} ({row.platform}): {crowd.PLATFORMS[row.platform].note}")
        st.code(row.url, language=None)

st.subheader("Workers")
if workers.empty:
    st.caption("No worker has arrived yet.")
else:
    st.dataframe(workers, hide_index=True, width="stretch")
    with database() as db:
        data = crowd.workers_csv(db, project)
    st.download_button("Download workers (CSV)", data=data, file_name=f"crowd-workers-{project.id}.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")

# ------------------------------------------------------------------------------------------ quality
st.subheader("Annotator quality")
max_run = st.number_input(LABELS["max_run"], min_value=1, max_value=1000, value=quality.DEFAULT_MAX_RUN, step=1,
                          help="straight-lining: the longest run of one label in an annotator's sequence")
with database() as db:
    report = quality.quality_report(db, project, max_run=int(max_run))
st.caption("Gold accuracy over gold items mixed into the queue; attention checks passed; qualification score; "
           "seconds per item (median); longest run of one label. Excluded annotators stay in the database and "
           "the raw export, but leave agreement, aggregation and training.")
st.dataframe(report, hide_index=True, width="stretch")
if not report.empty:
    with st.form("crowd_exclude"):
        who = st.selectbox("Annotator", report["annotator"].tolist())
        reason = st.text_input("Reason (optional)")
        left, right = st.columns(2)
        exclude = left.form_submit_button("Exclude", icon=":material/person_remove:")
        take_back = right.form_submit_button("Take back", icon=":material/person_add:")
    if exclude or take_back:
        try:
            with database() as db:
                quality.set_excluded(db, project, who, excluded=bool(exclude), reason=reason)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.rerun()

# ------------------------------------------------------------------------------------------ checks
st.subheader("Quality checks")
st.caption("A gold item is an item with a known label (it leaves the annotation pool); an attention check is an "
           "instruction shown as an item. Qualification checks come first: a worker below the study's threshold is "
           "screened out. Workers cannot tell checks from other items.")
with database() as db:
    checks = quality.checks_table(db, project)
if not checks.empty:
    st.dataframe(checks, hide_index=True, width="stretch")
gold_tab, attention_tab, remove_tab = st.tabs(["Add a gold item", "Add an attention check", "Remove a check"])
with gold_tab, st.form("crowd_gold"):
    item_ref = st.text_input("Item id", help="the item's imported id (as in exports), else its database id")
    gold_labels = st.multiselect("Correct label(s)", project.label_names)
    gold_qualification = st.checkbox("Qualification item", key="gold_qualification")
    add_gold = st.form_submit_button("Add gold item", type="primary")
if add_gold:
    try:
        with database() as db:
            quality.add_gold(db, project, item_ref.strip(), gold_labels, qualification=gold_qualification)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.rerun()
with attention_tab, st.form("crowd_attention"):
    attention_label = st.selectbox("Label the instruction asks for", project.label_names)
    attention_text = st.text_input("Instruction (optional)",
                                   placeholder=quality.ATTENTION_TEXT.format(label="<label>"))
    attention_qualification = st.checkbox("Qualification item", key="attention_qualification")
    add_attention = st.form_submit_button("Add attention check", type="primary")
if add_attention:
    try:
        with database() as db:
            quality.add_attention_check(db, project, attention_label, text=attention_text,
                                        qualification=attention_qualification)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.rerun()
with remove_tab:
    if checks.empty:
        st.caption("No check yet.")
    else:
        with st.form("crowd_remove_check"):
            check_id = st.selectbox("Check", checks["check_id"].tolist())
            removed = st.form_submit_button("Remove check and its answers")
        if removed:
            try:
                with database() as db:
                    quality.remove_check(db, project, int(check_id))
            except SynthloopError as exc:
                show_error(exc)
            else:
                st.rerun()
