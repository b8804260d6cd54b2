"""Annotate: one item at a time, labelled with the keyboard alone; back to change my earlier labels.

Blind by design: the page shows the text and my own label only — never another annotator's label, the
reference or intended label, the source (real or synthetic) or the split.

A label click re-runs only the fragment below (the item, the buttons, the progress): the router, the sidebar and
the guidelines are not drawn again. The fragment re-checks the session and the project each time, so a logout
elsewhere, a deletion or a lost assignment still ends the work at the next click.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import streamlit as st

from core import projects
from core.annotation import crowd
from core.annotation.assignment import AssignedItem, my_earlier_item
from core.annotation.pool import SKIP_RULE, assignment_settings
from core.errors import SynthloopError
from core.projects import ANNOTATE_SHORTCUTS, MEMBERSHIP_ROLE, Project
from pages._common import (
    ANNOTATE_BACK,
    ANNOTATE_SHOWN,
    PROJECT_ID,
    current_project,
    database,
    escape_markdown,
    logged_in_user,
    page_guard,
    show_error,
)

user = page_guard(__file__)
annotator = user.username
if user.role == MEMBERSHIP_ROLE and st.session_state.get(PROJECT_ID) is None:
    st.info("No project is assigned to you yet: a researcher adds you to one, then it appears here.")
    st.stop()


def _check_access(db, project: Project) -> None:
    # A crowd worker is confined to their study's project by core.annotation.crowd (its queue calls refuse any
    # other project, with a message meant for the worker); everyone else must be assigned to the project.
    if crowd.confined_project(db, annotator) is None:
        projects.require_access(db, project, user)


with database() as db:
    project = current_project(db)
    try:
        _check_access(db, project)
        ending = crowd.ending(db, project, annotator)
    except SynthloopError as exc:
        show_error(exc)
        st.stop()


# ------------------------------------------------------------------ crowd studies: the end of a worker's study
def _crowd_end_screen(end: crowd.Ending) -> None:
    """The completion (or screened-out) code as plain text, and the way back to the platform."""
    st.title("Thank you")
    st.success(end.message, icon=":material/check_circle:")
    if end.code:
        st.write("Your completion code:")
        st.code(end.code, language=None)
    if end.url:
        st.link_button(f"Return to {end.platform}" if end.platform else "Return to the study", end.url,
                       type="primary", icon=":material/open_in_new:")
    elif end.code:
        st.caption(f"Enter this code on {end.platform or 'the study page'} to finish.")


if ending is not None:
    _crowd_end_screen(ending)
    st.stop()
# ------------------------------------------------------------------

settings = assignment_settings(project)
skip_rule = SKIP_RULE.format(minutes=f"{settings.skip_minutes:g}")
# Names and descriptions come from the project's researchers (or a file): shown as the characters they are,
# never as Markdown (an image link in a label name would make every annotator's browser fetch it).
st.title(escape_markdown(project.name))
with st.expander("Guidelines", icon=":material/menu_book:"):
    if project.guidelines.strip():
        st.markdown(project.guidelines)  # written by the project's researchers, as Markdown on purpose
    for label in project.labels:
        key = f" (key {escape_markdown(label.key)})" if label.key else ""
        st.markdown(f"**{escape_markdown(label.name)}**{key}: {escape_markdown(label.description) or '—'}")
    st.caption(skip_rule)


@dataclass(frozen=True)
class Answer:
    """What a click asked for: a label (with the Unsure flag, comment and seconds of that moment) or a skip."""

    label: str | None  # None: skip
    unsure: bool = False
    comment: str = ""
    seconds: float | None = None


@dataclass
class Shown:
    """The item on screen (kept in ``session_state[ANNOTATE_SHOWN]``): when it was shown, for the seconds spent;
    the Unsure flag; a serial number, per session, that names its widgets, so that a new item starts with an
    empty comment and widget keys never carry an item id to the browser; and the answer a click left for the
    fragment's run to store."""

    item_id: int | None
    since: float
    serial: int
    unsure: bool = False
    answer: Answer | None = None


def _shown(item: AssignedItem) -> Shown:
    shown = st.session_state.get(ANNOTATE_SHOWN)
    if shown is None or shown.item_id != item.item_id:
        serial = shown.serial + 1 if shown is not None else 1
        shown = Shown(item.item_id, time.time(), serial, unsure=item.unsure)
        st.session_state[ANNOTATE_SHOWN] = shown
    return shown


# Callbacks only note what the click asked for; the fragment's run stores it, with the session and access
# checks, the next item and the progress, all on one database connection (each new one parses the schema).
def _choose(shown: Shown, label_name: str) -> None:
    shown.answer = Answer(label_name, shown.unsure, st.session_state.get(f"comment_{shown.serial}", ""),
                          round(time.time() - shown.since, 1))


def _skip(shown: Shown) -> None:
    shown.answer = Answer(None)


def _toggle_unsure(shown: Shown) -> None:
    shown.unsure = not shown.unsure


def _go_back(steps: int) -> None:
    st.session_state[ANNOTATE_BACK] = max(0, int(st.session_state.get(ANNOTATE_BACK, 0)) + steps)


def _to_new_items() -> None:
    st.session_state[ANNOTATE_BACK] = 0


def _store(db, project: Project, shown: Shown, answer: Answer) -> SynthloopError | None:
    """Store the click's label (or skip) on the item it was given for; the refusal, if core refused it."""
    try:
        if answer.label is None:
            crowd.skip_item(db, project, annotator, shown.item_id)
        else:
            crowd.submit_label(db, project, annotator, shown.item_id, answer.label, unsure=answer.unsure,
                               comment=answer.comment, seconds=answer.seconds)
            st.session_state[ANNOTATE_BACK] = max(0, int(st.session_state.get(ANNOTATE_BACK, 0)) - 1)
    except SynthloopError as exc:
        return exc
    shown.item_id = None  # the next item comes under a new serial
    return None


@st.fragment
def annotate() -> None:
    shown = st.session_state.get(ANNOTATE_SHOWN)
    answer = shown.answer if shown is not None else None
    if answer is not None:
        shown.answer = None
    refused = None
    with database() as db:
        if logged_in_user(db) is None:  # the session ended meanwhile (logout elsewhere, deletion, role change)
            st.rerun(scope="app")
        try:
            current = projects.get_project(db, project.id)  # labels edited meanwhile count at the next click
            _check_access(db, current)
            if answer is not None:
                refused = _store(db, current, shown, answer)
            back = int(st.session_state.get(ANNOTATE_BACK, 0))
            item = my_earlier_item(db, current, annotator, back) if back else None
            if back and item is None:  # went back past my first label
                st.session_state[ANNOTATE_BACK] = back = 0
            if not back:
                # core.annotation.crowd serves a crowd worker's queue (qualification, quality checks, quota) and
                # is core.annotation.assignment for everyone else.
                item = crowd.next_item(db, current, annotator)
            progress = crowd.progress(db, current, annotator)
            finished = item is None and crowd.ending(db, current, annotator) is not None
        except SynthloopError as exc:
            show_error(exc)
            return
    if finished:  # a worker's study ended with this click: the page shows their end screen
        st.rerun(scope="app")

    st.progress(progress.done / progress.total if progress.total else 1.0,
                text=f"{progress.done} of {progress.total} labelled by you")
    if refused is not None:
        show_error(refused)
    if item is None:
        if progress.skipped:
            st.info(f"Only items you skipped are left ({progress.skipped}); they come back shortly.")
        else:
            st.success("Your queue is empty: thank you! New items appear here when the researcher adds them.")
        if progress.done:
            st.button("Back to my last label", icon=":material/undo:", shortcut=ANNOTATE_SHORTCUTS["back"],
                      key="nav_back", on_click=_go_back, args=(1,))
        return
    shown = _shown(item)

    if back:
        st.caption(f"Reviewing your label {back} back · your label: **{escape_markdown(item.label or '')}**"
                   " · click a label to change it")
    with st.container(border=True):
        st.text(item.text)  # untrusted text: shown as plain text, never as Markdown or HTML

    label_keys = {label.key.lower() for label in current.labels if label.key}

    def page_key(action: str) -> str | None:
        """The page's shortcut for ``action``, unless a label of a project saved before it was reserved has it."""
        key = ANNOTATE_SHORTCUTS[action]
        return None if key in label_keys else key

    # Buttons, not an <input>: Streamlit ignores shortcut keys while an input has the focus, so a checkbox for
    # Unsure would swallow the label keys after a click on it. Only the comment box keeps them for typing.
    columns = st.columns(max(len(current.labels), 1))
    for column, label in zip(columns, current.labels, strict=False):
        # Streamlit prints the shortcut key on the button itself.
        column.button(escape_markdown(label.name), key=f"label_{label.name}", shortcut=label.key or None,
                      type="primary" if label.name == item.label else "secondary", width="stretch",
                      on_click=_choose, args=(shown, label.name))
        if label.description:
            column.caption(escape_markdown(label.description))
    unsure, comment = st.columns([1, 3], vertical_alignment="bottom")
    unsure.button("Unsure", key=f"unsure_{shown.serial}", shortcut=page_key("unsure"),
                  icon=":material/check_box:" if shown.unsure else ":material/check_box_outline_blank:",
                  help="Mark this label as a guess", on_click=_toggle_unsure, args=(shown,))
    comment.text_input("Comment (optional)", value=item.comment, key=f"comment_{shown.serial}", max_chars=2000)

    left, middle, right = st.columns(3)
    left.button("Back", icon=":material/arrow_back:", shortcut=ANNOTATE_SHORTCUTS["back"], key="nav_back",
                disabled=progress.done <= back, help="Review and change your earlier labels",
                on_click=_go_back, args=(1,))
    if back:
        middle.button("Forward", icon=":material/arrow_forward:", shortcut=ANNOTATE_SHORTCUTS["forward"],
                      key="nav_forward", on_click=_go_back, args=(-1,))
        right.button("Back to new items", icon=":material/fast_forward:", key="nav_newest",
                     on_click=_to_new_items)
    else:
        middle.button("Skip", icon=":material/skip_next:", shortcut=page_key("skip"), key="nav_skip",
                      help=skip_rule, on_click=_skip, args=(shown,))


annotate()
