"""The server's entry point: Streamlit's app (``streamlit_app.py``) and the two HTTP routes that set and clear the
session cookie. A Streamlit script talks to the browser over a websocket and cannot set an HttpOnly cookie, so
a login sends the browser through ``START_PATH`` once (see ``core/sessions.py``).

Start it with ``streamlit run app.py`` (Streamlit serves this ``st.App`` itself), or with an ASGI server:
``uvicorn app:app``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import streamlit as st
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from core import sessions, store
from core.errors import SynthloopError
from pages import _common


def _back_to(path: str | None) -> str:
    """Where the browser goes afterwards: a path of this app, never another site (to a browser ``//host`` and
    ``/\\host`` are other sites)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(path)
    return "/" if parts.scheme or parts.netloc else path


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def start_session(request: Request) -> RedirectResponse:
    """``START_PATH?token=HANDOFF&next=/page``: the session's cookie for a live handoff, then back to the page.
    Anything else (a used, expired or forged token) just goes back: the page then shows the login form."""
    response = _redirect(_back_to(request.query_params.get("next")))
    try:
        db_path = _common.db_path()
        with store.open_db(db_path) as db:
            cookie = sessions.cookie_for(db, sessions.secret(db_path), request.query_params.get("token", ""))
    except (store.DatabasePathError, SynthloopError):
        return response  # the app shows what is wrong with the database or its key on the page
    if cookie:
        response.set_cookie(sessions.COOKIE_NAME, cookie, max_age=sessions.COOKIE_MAX_AGE, path="/",
                            httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response


def end_session(request: Request) -> RedirectResponse:
    """``END_PATH``: clear the cookie (the sessions were ended in the database at logout), then the login form."""
    response = _redirect("/")
    response.delete_cookie(sessions.COOKIE_NAME, path="/", httponly=True, samesite="lax",
                           secure=request.url.scheme == "https")
    return response


@asynccontextmanager
async def _serving_cookie_routes(_app):
    # The script learns that the routes above answer in this process: only then does a login send the browser
    # through them (``streamlit run streamlit_app.py`` alone keeps a login for the tab only).
    _common.cookie_routes_served = True
    yield


# Sync endpoints: Starlette runs them in its thread pool, so a slow database never blocks the event loop.
app = st.App(
    "streamlit_app.py",
    routes=[Route(sessions.START_PATH, start_session, methods=["GET"]),
            Route(sessions.END_PATH, end_session, methods=["GET"])],
    lifespan=_serving_cookie_routes,
)
