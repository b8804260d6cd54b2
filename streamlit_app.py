"""Synthloop's entry point: page config, login (first-run admin, password, invite link), the project picker
and navigation filtered by role. Every page re-checks the role itself (pages/_common.py)."""

from __future__ import annotations

import streamlit as st

from core import jobs, projects, users
from core.annotation import crowd
from core.errors import SynthloopError
from pages._common import (
    DEEP_LINK,
    PAGES,
    PROJECT_ID,
    PROJECT_PARAM,
    ROUTED,
    USER_ID,
    database,
    db_path,
    escape_markdown,
    log_in,
    log_out,
    logged_in_user,
    pages_for,
    show_error,
    url_path,
)

st.set_page_config(page_title="Synthloop", page_icon=":material/autorenew:", layout="wide")


def _login_screen() -> None:
    st.title("Synthloop")
    st.caption("Synthetic data, human labels and subjectivity for text classification.")
    with database() as db:
        invite = st.query_params.get("invite")
        if invite:
            try:
                user = users.redeem_invite(db, invite)
            except SynthloopError as exc:
                show_error(exc)
            else:
                st.query_params.clear()
                log_in(user)
        if users.first_run(db):
            st.subheader("Create the first admin")
            with st.form("first_admin"):
                username = st.text_input("Username")
                password = st.text_input("Password", type="password")
                again = st.text_input("Password again", type="password")
                submitted = st.form_submit_button("Create admin", type="primary")
            if submitted:
                if password != again:
                    st.error("The two passwords differ: type the same password twice.")
                    return
                try:
                    user = users.add_user(db, username, role="admin", password=password)
                except SynthloopError as exc:
                    show_error(exc)
                    return
                log_in(user)
            return
        with st.form("login"):
            username = st.text_input("Username")
            password = st.text_input("Password", type="password")
            submitted = st.form_submit_button("Log in", type="primary")
        if submitted:
            try:
                user = users.authenticate(db, username, password)
            except SynthloopError as exc:
                show_error(exc)
                return
            log_in(user)


def _project_in_address() -> int | None:
    value = st.query_params.get(PROJECT_PARAM, "")
    return int(value) if value.isascii() and value.isdigit() else None


def _sidebar(user: users.User) -> None:
    with st.sidebar:
        st.markdown(f"**{escape_markdown(user.display_name or user.username)}** · {user.role}")
        with database() as db:
            rows = projects.visible_projects(db, user)  # an annotator's: only the projects they are assigned to
        if rows:
            ids = [row["id"] for row in rows]
            names = {row["id"]: row["name"] for row in rows}
            current = st.session_state.get(PROJECT_ID, _project_in_address())
            index = ids.index(current) if current in ids else 0
            st.session_state[PROJECT_ID] = st.selectbox(
                "Project", ids, index=index, format_func=names.__getitem__, key="project_picker"
            )
            # The project is kept in the address too, so a refresh or a copied link opens the same one.
            if st.query_params.get(PROJECT_PARAM) != str(st.session_state[PROJECT_ID]):
                st.query_params[PROJECT_PARAM] = str(st.session_state[PROJECT_ID])
        else:
            st.session_state.pop(PROJECT_ID, None)
        if st.button("Log out", icon=":material/logout:"):
            log_out()


def _crowd_arrival() -> bool:
    """A crowd study link (``?study=TOKEN`` with the platform's worker id) logs its worker in, on the study's
    project, and lands on Annotate; a link that cannot (unknown study, missing or invalid worker id) says so
    politely. True when this run showed that message (nothing else to show)."""
    token = st.query_params.get(crowd.STUDY_PARAM)
    if token is None:
        return False
    try:
        with database() as db:
            arrival = crowd.arrive(db, token, st.query_params.to_dict())
    except SynthloopError as exc:
        error = exc

        def _why() -> None:  # for the worker: a calm note, not an error box
            st.title("Synthloop")
            st.info(escape_markdown(str(error)), icon=":material/info:")

        st.navigation([st.Page(_why, title="Synthloop", icon=":material/info:")], position="hidden").run()
        return True
    st.query_params.clear()
    st.session_state.clear()  # nothing of an earlier login in this tab carries over to the worker
    st.session_state[ROUTED] = True
    st.session_state[PROJECT_ID] = arrival.project_id
    log_in(arrival.user)


@st.cache_resource(show_spinner=False)
def _failed_at_start(path: str) -> list[int]:
    """Once per server process and database: jobs whose process died while no app watched are marked failed
    (pages that poll a job keep checking it; see ``core.jobs.fail_orphaned_jobs``)."""
    with database() as db:
        return jobs.fail_orphaned_jobs(db)


def main() -> None:
    st.session_state[ROUTED] = True
    if _crowd_arrival():
        return
    user = logged_in_user()  # stops with the message when SYNTHLOOP_DB cannot be the database
    _failed_at_start(db_path())
    deep_link = st.session_state.pop(DEEP_LINK, None)
    if user is None:
        st.session_state.pop(USER_ID, None)
        # Every page's address shows the login form too, so a refresh or a bookmark of a page without a (live)
        # session gets the form instead of "Page not found"; after the login the browser returns to it.
        login = st.Page(_login_screen, title="Log in", icon=":material/login:", default=True)
        aliases = [st.Page(_login_screen, title="Log in", url_path=url_path(spec), visibility="hidden")
                   for spec in PAGES]
        navigation = st.navigation([login, *aliases], position="hidden")
        _open_deep_link(deep_link, aliases)
        navigation.run()
        return
    _sidebar(user)
    sections: dict[str, list] = {}
    for spec in pages_for(user.role):
        sections.setdefault(spec.section, []).append(
            st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=url_path(spec)))
    navigation = st.navigation(sections)
    _open_deep_link(deep_link, [page for section in sections.values() for page in section])
    navigation.run()


def _open_deep_link(deep_link: str | None, pages: list) -> None:
    """Open the page a session asked for before the router ran (see ``pages._common.page_guard``)."""
    target = next((page for page in pages if deep_link and page.url_path == deep_link), None)
    if target is not None:
        st.switch_page(target, query_params=st.query_params.to_dict())


main()
