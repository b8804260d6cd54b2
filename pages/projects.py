"""Projects: list them, create one, and edit the current one (description, context prompt, guidelines, overlap,
labels with descriptions and keyboard keys); delete with a typed confirmation."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import projects, users
from core.errors import SynthloopError
from pages._common import PROJECT_ID, database, escape_markdown, page_guard, show_error

user = page_guard(__file__)

st.title("Projects")

with database() as db:
    rows = projects.list_projects(db)
    project_id = st.session_state.get(PROJECT_ID)
    project = None
    if project_id is not None:
        try:
            project = projects.get_project(db, int(project_id))
        except SynthloopError:
            st.session_state.pop(PROJECT_ID, None)

if rows:
    st.dataframe(
        pd.DataFrame(rows)[["id", "name", "description", "n_items", "n_labels", "overlap"]],
        hide_index=True,
        width="stretch",
    )
else:
    st.info("No projects yet: create the first one below.")

with st.expander("Create a project", expanded=not rows, icon=":material/add:"):
    with st.form("create_project", clear_on_submit=False):
        name = st.text_input("Name", placeholder="e.g. SMS spam", key="projects_new_name")
        labels_text = st.text_input("Labels (comma-separated)", placeholder="ham,spam", key="projects_new_labels")
        description = st.text_area("What is classified", placeholder="Text messages: spam or not",
                                   key="projects_new_description")
        context_prompt = st.text_area(
            "Context prompt (the setting the generator writes in)",
            placeholder="You are a person writing a text message to a friend.", key="projects_new_context",
        )
        overlap = st.number_input("Labels required per item (overlap k)", min_value=1, max_value=50, value=3,
                                  key="projects_new_overlap")
        create = st.form_submit_button("Create project", type="primary", key="projects_create")
    if create:
        try:
            with database() as db:
                created = projects.create_project(
                    db, name, projects.parse_labels(labels_text), description=description,
                    context_prompt=context_prompt, overlap=int(overlap),
                )
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.session_state[PROJECT_ID] = created.id
            st.toast(f"Created project {escape_markdown(repr(created.name))} with labels {escape_markdown(', '.join(created.label_names))}.")
            st.rerun()

if project is None:
    st.caption("Pick a project in the sidebar to edit it.")
    st.stop()

st.header(f"Edit: {escape_markdown(project.name)}")
label_mode = st.radio(
    "Edit labels as", ["Table", "Text"], horizontal=True, key="projects_label_mode",
    help="Text: one label per line, `name | description | key`.",
)
with st.form("edit_project"):
    new_name = st.text_input("Name", value=project.name, key=f"projects_name_{project.id}")
    new_description = st.text_area("What is classified", value=project.description,
                                   key=f"projects_description_{project.id}")
    new_context = st.text_area("Context prompt", value=project.context_prompt, key=f"projects_context_{project.id}")
    new_overlap = st.number_input("Labels required per item (overlap k)", min_value=1, max_value=50,
                                  value=project.overlap, key=f"projects_overlap_{project.id}")
    write, preview = st.tabs(["Guidelines (Markdown)", "Preview"])
    with write:
        new_guidelines = st.text_area("Annotator guidelines", value=project.guidelines, height=200,
                                      key=f"projects_guidelines_{project.id}")
    with preview:
        # Guidelines are written by the project's researchers; Streamlit's Markdown never renders raw HTML.
        st.markdown(project.guidelines or "_No guidelines yet._")
    st.markdown("**Labels** (name, description shown to annotators, keyboard key)")
    if label_mode == "Table":
        edited = st.data_editor(
            pd.DataFrame([vars(label) for label in project.labels], columns=["name", "description", "key"]),
            num_rows="dynamic", hide_index=True, width="stretch", key=f"labels_editor_{project.id}",
        )
    else:
        label_lines = st.text_area("Labels, one per line: name | description | key",
                                   value=projects.format_label_lines(project.labels), height=150,
                                   key=f"projects_label_lines_{project.id}")
    save = st.form_submit_button("Save changes", type="primary", key="projects_save")
if save:
    try:
        if label_mode == "Table":
            new_labels = projects.labels_from_rows(edited.to_dict("records"))
        else:
            new_labels = projects.parse_label_lines(label_lines)
        with database() as db:
            projects.update_project(
                db, project.id, labels=new_labels, name=new_name, description=new_description,
                context_prompt=new_context, guidelines=new_guidelines, overlap=int(new_overlap),
            )
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.toast("Saved.")
        st.rerun()

with st.expander("Annotators of this project", icon=":material/group_add:"):
    st.caption("Annotators see and label only the projects they are assigned to; researchers and admins see every"
               " project. Crowd workers are assigned by their study link.")
    with database() as db:
        annotators = [row["username"] for row in users.list_users(db) if row["role"] == projects.MEMBERSHIP_ROLE]
        assigned = [row["username"] for row in projects.members(db, project.id)
                    if row["role"] == projects.MEMBERSHIP_ROLE]
    with st.form(f"members_{project.id}"):
        chosen = st.multiselect("Assigned annotators", annotators, default=assigned,
                                key=f"projects_members_{project.id}")
        save_members = st.form_submit_button("Save assignments", key="projects_members_save")
    if save_members:
        try:
            with database() as db:
                added, removed = projects.set_annotators(db, project.id, chosen)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.toast(f"Assignments saved: {added} added, {removed} removed.")

with st.expander("Delete this project", icon=":material/delete:"):
    st.warning("Deleting removes the project with all its items, annotations, seeds and runs. It cannot be undone.")
    confirm = st.text_input(f"Type the project name ({project.name}) to confirm", key="projects_delete_confirm")
    if st.button("Delete project", type="secondary", disabled=confirm.strip() != project.name, key="projects_delete"):
        with database() as db:
            projects.delete_project(db, project.id)
        st.session_state.pop(PROJECT_ID, None)
        st.rerun()
