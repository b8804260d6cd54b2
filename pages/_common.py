"""What every page shares: the page registry with roles, the server-side role gate, the database and the
current project. ``session_state`` keys live here and nowhere else.

Pages import this module and ``core``, never ``db``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlencode, urlsplit

import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import jobs, projects, sessions, store, users
from core.errors import SynthloopError
from core.vocab import ACTIVE_STATUSES, ROLES

# session_state keys (UI state only; records live in SQLite)
USER_ID = "auth_user_id"
SESSION_ID = "auth_session_id"  # the session row (core/sessions.py) this tab is logged in by
PROJECT_ID = "current_project_id"
PROJECT_PARAM = "project"  # the query parameter that keeps the project in the address (refresh, copied link)
ROUTED = "routed_by_entry_point"
DEEP_LINK = "deep_link"  # the page a session asked for before the router ran (page_guard → the router opens it)
ANALYSIS_MAP = "analysis_map"  # the map chart's selection (pages/analysis.py)
ANALYSIS_COLOUR = "analysis_colour"  # colour the map by source or label
ANNOTATE_BACK = "annotate_back"  # 0: my next item; n ≥ 1: my n-th most recent label, open for editing
ANNOTATE_SHOWN = "annotate_shown"  # the item on screen: when shown, Unsure, its widgets' serial (pages/annotate.py)
GENERATE_JOB = "generate_job_id"  # the generation job watched on pages/generate.py
REVIEW_ITEM = "review_item_id"  # the synthetic item whose provenance is open (pages/review.py)
REVIEW_SELECTED = "review_selected_ids"  # the table rows selected at the last run, to open a row just selected
DATA_TAB = "data_tab"  # the open tab of pages/data.py (Import or Browse items); only that one computes
RUNS_DETAIL_TAB = "runs_detail_tab"  # the open tab of a run's details (pages/runs.py)

RESEARCH = frozenset({"admin", "researcher"})
EVERYONE = frozenset(ROLES)
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str
    roles: frozenset[str]
    section: str


# The one registry: the router shows a user only the pages of their role, and each page refuses to render
# for any other role (so opening a page by URL does not help).
PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/projects.py", "Projects", ":material/folder:", RESEARCH, "Set up"),
    PageSpec("pages/data.py", "Data", ":material/table:", RESEARCH, "Set up"),
    PageSpec("pages/seeds.py", "Seeds", ":material/push_pin:", RESEARCH, "Generate"),
    PageSpec("pages/generate.py", "Generate", ":material/auto_awesome:", RESEARCH, "Generate"),
    PageSpec("pages/review.py", "Review", ":material/rule:", RESEARCH, "Generate"),
    PageSpec("pages/loop.py", "Loop", ":material/autorenew:", RESEARCH, "Generate"),
    PageSpec("pages/annotate.py", "Annotate", ":material/edit_note:", EVERYONE, "Annotate"),
    PageSpec("pages/pool.py", "Annotation pool", ":material/checklist:", RESEARCH, "Annotate"),
    PageSpec("pages/agreement.py", "Agreement", ":material/handshake:", RESEARCH, "Annotate"),
    PageSpec("pages/crowd.py", "Crowd study", ":material/groups:", RESEARCH, "Annotate"),
    PageSpec("pages/train.py", "Train", ":material/model_training:", RESEARCH, "Train"),
    PageSpec("pages/runs.py", "Runs", ":material/leaderboard:", RESEARCH, "Train"),
    PageSpec("pages/analysis.py", "Diversity", ":material/scatter_plot:", RESEARCH, "Analyse"),
    PageSpec("pages/study.py", "Study", ":material/lab_profile:", RESEARCH, "Analyse"),
    PageSpec("pages/export.py", "Export", ":material/download:", RESEARCH, "Results"),
    PageSpec("pages/users.py", "Users", ":material/group:", ADMIN, "Admin"),
)


def pages_for(role: str) -> list[PageSpec]:
    return [page for page in PAGES if role in page.roles]


def db_path() -> str:
    return str(store.resolve_db_path(os.environ.get("SYNTHLOOP_DB")))


@contextmanager
def database() -> Iterator:
    """A fresh connection for this rerun (never cached: reruns may run on another thread). A ``SYNTHLOOP_DB``
    that cannot be the database stops the page with the CLI's message."""
    with contextlib.ExitStack() as stack:
        try:
            db = stack.enter_context(store.open_db(db_path()))
        except store.DatabasePathError as exc:
            st.error(str(exc), icon=":material/error:")
            st.stop()
        yield db


# ------------------------------------------------------------------------------------------ sessions
# A login is a session row (core/sessions.py) whose signed cookie the browser holds, so that a refresh or a new
# tab (each a new Streamlit session) resumes it. The cookie is set and cleared by the routes of app.py; they
# set this flag when they serve this process. Without them (``streamlit run streamlit_app.py``, AppTest) a
# login lasts as long as the tab.
cookie_routes_served = False


def url_path(spec: PageSpec) -> str:
    """The address of a registered page (``/annotate``), the same for the router and the login's return."""
    return Path(spec.file).stem


def log_in(user: users.User) -> NoReturn:
    """Start a session of ``user`` in this tab and hand its cookie to the browser, which comes back to the page
    it was on (every way in — password, invite, first admin, crowd link — ends here). Ends this run: a stop
    while the browser leaves through the cookie route (a rerun could drop that redirect), else a rerun."""
    with database() as db:
        login = sessions.start(db, user)
    st.session_state[USER_ID] = user.id
    st.session_state[SESSION_ID] = login.session_id
    query = urlencode({"token": login.handoff, "next": _landing_path(user)})
    _leave_through(f"{sessions.START_PATH}?{query}")


def _leave_through(route: str) -> NoReturn:
    """End the run: a stop while the browser follows the cookie route (a rerun could drop that redirect), else
    (no such route: AppTest, plain ``streamlit run streamlit_app.py``) a rerun."""
    if _send_browser_to(route):
        st.stop()
    st.rerun()


def log_out() -> NoReturn:
    """End every session of the user (this browser's and any other), forget this tab's state, drop the cookie.
    Ends this run like :func:`log_in`."""
    user_id = st.session_state.get(USER_ID)
    if isinstance(user_id, int):
        with database() as db:
            sessions.end_all(db, user_id)
    st.session_state.clear()
    _leave_through(sessions.END_PATH)


def logged_in_user(open_db=None) -> users.User | None:
    """The tab's user. Its session is re-checked on every run, so a logout elsewhere, a changed password or
    role, or a deletion logs the tab out at its next action; a refresh or a new tab resumes the cookie's session.
    ``open_db``: a connection the caller holds already (each new connection costs a parse of the schema)."""
    session_id = st.session_state.get(SESSION_ID)
    with contextlib.nullcontext(open_db) if open_db is not None else database() as db:
        if isinstance(session_id, int):
            user = sessions.user_of(db, session_id)
            if user is None:
                st.session_state.clear()  # the session ended: nothing of it may linger in this tab
            return user
        resumed = _session_of_cookie(db)
        if resumed is not None:
            st.session_state[USER_ID] = resumed.user.id
            st.session_state[SESSION_ID] = resumed.session_id
            return resumed.user
        # Page tests (AppTest) log in by setting the user id alone; the app's logins always carry a session.
        user_id = st.session_state.get(USER_ID)
        return users.current_user(db, user_id) if isinstance(user_id, int) else None


def _session_of_cookie(db) -> sessions.Resumed | None:
    cookie = st.context.cookies.get(sessions.COOKIE_NAME)
    if not isinstance(cookie, str) or not cookie:  # (AppTest's cookies are mock objects)
        return None
    try:
        key = sessions.secret(db_path())
    except SynthloopError as exc:
        show_error(exc)
        st.stop()
    return sessions.from_cookie(db, key, cookie)


def _landing_path(user: users.User) -> str:
    """Where the browser returns after a login: the page this tab shows when the user's role may see it (a
    login from a deep link or a refresh lands there), else the app's first page (the router serves a user's
    first page at ``/`` only)."""
    path = urlsplit(st.context.url or "").path
    page = path.rstrip("/").rpartition("/")[2]
    if page not in {url_path(spec) for spec in pages_for(user.role)[1:]}:
        path = "/"
    project_id = st.session_state.get(PROJECT_ID)  # e.g. a crowd link's project
    return f"{path}?{urlencode({PROJECT_PARAM: project_id})}" if isinstance(project_id, int) else path


def _send_browser_to(address: str) -> bool:
    """Load ``address`` in this tab, through the message ``st.login`` uses to reach its identity provider (the
    browser follows it at once); only when app.py's routes answer here (see ``cookie_routes_served``)."""
    context = get_script_run_ctx()
    if not cookie_routes_served or context is None:
        return False
    message = ForwardMsg()
    message.auth_redirect.url = address
    context.enqueue(message)
    return True


def page_guard(page_file: str) -> users.User:
    """Stop rendering unless the logged-in user's role (re-read from the database) may see this page."""
    name = Path(page_file).name
    spec = next(page for page in PAGES if Path(page.file).name == name)
    if not st.session_state.get(ROUTED):
        _route_through_entry_point(spec)
    user = logged_in_user()
    if user is None:
        st.warning("Please log in first.")
        st.stop()
    if user.role not in spec.roles:
        st.error(f"{spec.title} is not available to the {user.role} role.")
        st.stop()
    return user


def _route_through_entry_point(spec: PageSpec) -> None:
    """Send a session that reached a page without the router to the entry point, which then opens this page
    (``DEEP_LINK``). A cold server's first request — a refresh or a bookmark after a restart — may run a page of
    ``pages/`` directly. The query string is kept, so an invite link still logs in."""
    st.session_state[DEEP_LINK] = url_path(spec)
    with contextlib.suppress(StreamlitAPIException):
        st.switch_page("streamlit_app.py", query_params=st.query_params.to_dict())
    # No entry point to go to (a page run on its own, as in tests): the page itself decides below.
    del st.session_state[DEEP_LINK]


def current_project(db) -> projects.Project:
    """The project picked in the sidebar; stops the page with a hint when there is none."""
    project_id = st.session_state.get(PROJECT_ID)
    if project_id is None:
        st.info("Create or pick a project first (Projects page, or the picker in the sidebar).")
        st.stop()
    try:
        return projects.get_project(db, int(project_id))
    except SynthloopError:
        st.session_state.pop(PROJECT_ID, None)
        st.info("The selected project no longer exists: pick another one.")
        st.stop()


def escape_markdown(text: str) -> str:
    """Untrusted text (file columns, names, values) inside a Markdown element, shown as the characters it is."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def show_error(exc: SynthloopError, labels: Mapping[str, str] | None = None) -> None:
    """A core error with the settings it names written as this page's field labels (``labels``: field → label;
    by default the field name in words)."""
    labels = labels or {}
    message = exc.render(lambda field: "“" + labels.get(field, field.replace("_", " ").capitalize()) + "”")
    st.error(escape_markdown(message), icon=":material/error:")


def job_progress(job: dict, *, what: str, run_every: float = 2) -> None:
    """A live progress bar with a cancel button for a queued or running job; redraws the page when it ends."""
    @st.fragment(run_every=run_every)
    def _poll() -> None:
        with database() as db:
            current = jobs.watch(db, job["id"])  # a job whose process died turns failed here
        if current["status"] not in ACTIVE_STATUSES:
            st.rerun(scope="app")
        total = max(1, current["progress_total"])
        st.progress(min(1.0, current["progress_done"] / total),
                    text=f"{what} {current['status']}: {current['message']}")
        if st.button(f"Cancel {what.lower()}", icon=":material/stop:"):
            with database() as db:
                jobs.cancel(db, current["id"])

    _poll()


# ------------------------------------------------------------------------------------------ derived-table cache
# A page caches what it derives from the database (the agreement report, the browse table, the export, the
# training counts, the runs) in ``st.cache_data`` under a CacheKey: a rerun with unchanged data computes
# nothing, and the first rerun after any write, by any process, computes afresh, because triggers bump the data
# version on every write (migration 0520). Entries hold whole tables, so each cached function keeps a few.
CACHE_ENTRIES = 8


@dataclass(frozen=True)
class CacheKey:
    """What a derived table depends on: the database file (two databases never share an entry), a data
    version, and the project when the table is one project's (its labels and settings count too)."""

    db_file: str
    version: int
    project: projects.Project | None = None


def project_cache_key(db, project: projects.Project) -> CacheKey:
    """The key of a table derived from the project's data (``core.projects.data_version``). Read it before the
    data: an entry is then never older than the key it is stored under."""
    return CacheKey(store.db_file(db), projects.data_version(db, project.id), project)


def runs_cache_key(db, runs_version: int) -> CacheKey:
    """The key of a table derived from the runs (``core.training.service.runs_version``, read before them)."""
    return CacheKey(store.db_file(db), runs_version)


def cache_derived(spinner: str | bool = False) -> Callable[[Callable], Callable]:
    """``st.cache_data`` for a derived table computed by ``fn(_db, key: CacheKey, *options)``: the open
    connection ``_db`` is not part of the key (the leading underscore), the key and the options are."""
    return st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=spinner)


def vega_lite_spec(chart) -> dict:
    """An Altair chart as the Vega-Lite spec ``st.vega_lite_chart`` draws, for a cached function to make once:
    ``st.altair_chart`` serialises and validates the chart at every rerun (tens of milliseconds a chart)."""
    return chart.to_dict()
