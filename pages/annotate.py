"""Annotate: one item at a time, labelled with the keyboard alone; back to change my earlier labels.

Blind by design: the page shows the text and my own label only — never another annotator's label, the
reference or intended label, the source (real or synthetic) or the split.
"""

from __future__ import annotations

import time

import streamlit as st

from core.annotation.assignment import my_earlier_item, next_item, progress, skip_item, submit_label
from core.annotation.pool import SKIP_RULE, assignment_settings
from core.errors import SynthloopError
from pages._common import ANNOTATE_BACK, ANNOTATE_SHOWN, current_project, database, page_guard, show_error

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

annotator = user.username
settings = assignment_settings(project)
back = int(st.session_state.get(ANNOTATE_BACK, 0))
label_keys = {label.key.lower() for label in project.labels if label.key}


def _nav(key: str) -> str | None:
    """A navigation shortcut, unless a label already uses that key."""
    return None if key in label_keys else key


with database() as db:
    try:
        item = (my_earlier_item(db, project, annotator, back) if back
                else next_item(db, project, annotator))
        progress = progress(db, project, annotator)
    except SynthloopError as exc:
        show_error(exc)
        st.stop()
if back and item is None:  # went back past my first label
    st.session_state[ANNOTATE_BACK] = back = 0
    st.rerun()

st.title(project.name)
st.progress(progress.done / progress.total if progress.total else 1.0,
            text=f"{progress.done} of {progress.total} labelled by you")
with st.expander("Guidelines", icon=":material/menu_book:"):
    if project.guidelines.strip():
        st.markdown(project.guidelines)
    for label in project.labels:
        key = f" (key {label.key})" if label.key else ""
        st.markdown(f"**{label.name}**{key}: {label.description or '—'}")
    st.caption(SKIP_RULE.format(minutes=f"{settings.skip_minutes:g}"))

if item is None:
    if progress.skipped:
        st.info(f"Only items you skipped are left ({progress.skipped}); they come back shortly.")
    else:
        st.success("Your queue is empty: thank you! New items appear here when the researcher adds them.")
    if progress.done and st.button("Back to my last label", icon=":material/undo:", shortcut=_nav("b")):
        st.session_state[ANNOTATE_BACK] = 1
        st.rerun()
    st.stop()

shown = st.session_state.get(ANNOTATE_SHOWN)
if not shown or shown[0] != item.item_id:
    st.session_state[ANNOTATE_SHOWN] = shown = (item.item_id, time.time())

if back:
    st.caption(f"Reviewing your label {back} back · your label: **{item.label}** · click a label to change it")
with st.container(border=True):
    st.text(item.text)  # untrusted text: shown as plain text, never as Markdown or HTML

st.checkbox("Unsure", value=item.unsure, key=f"unsure_{item.item_id}")
st.text_input("Comment (optional)", value=item.comment, key=f"comment_{item.item_id}", max_chars=2000)

def _submit(label_name: str) -> None:
    """Store the label before the rerun that the click starts, so one script run shows the next item."""
    try:
        with database() as db:
            submit_label(
                db, project, annotator, item.item_id, label_name,
                unsure=bool(st.session_state.get(f"unsure_{item.item_id}", False)),
                comment=st.session_state.get(f"comment_{item.item_id}", ""),
                seconds=round(time.time() - shown[1], 1),
            )
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.session_state[ANNOTATE_BACK] = max(0, back - 1)
        st.session_state.pop(ANNOTATE_SHOWN, None)


columns = st.columns(max(len(project.labels), 1))
for column, label in zip(columns, project.labels, strict=False):
    # Streamlit prints the shortcut key on the button itself.
    column.button(label.name, key=f"label_{label.name}", help=label.description or None,
                  shortcut=label.key or None, type="primary" if label.name == item.label else "secondary",
                  width="stretch", on_click=_submit, args=(label.name,))

left, middle, right = st.columns(3)
if left.button("Back", icon=":material/arrow_back:", shortcut=_nav("b"),
               disabled=progress.done <= back, help="Review and change your earlier labels"):
    st.session_state[ANNOTATE_BACK] = back + 1
    st.rerun()
if back:
    if middle.button("Forward", icon=":material/arrow_forward:",
                     shortcut=_nav("n")):
        st.session_state[ANNOTATE_BACK] = back - 1
        st.rerun()
    if right.button("Back to new items", icon=":material/fast_forward:"):
        st.session_state[ANNOTATE_BACK] = 0
        st.rerun()
elif middle.button("Skip", icon=":material/skip_next:", shortcut=_nav("s"),
                   help=SKIP_RULE.format(minutes=f"{settings.skip_minutes:g}")):
    try:
        with database() as db:
            skip_item(db, project, annotator, item.item_id)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.session_state.pop(ANNOTATE_SHOWN, None)
        st.rerun()
