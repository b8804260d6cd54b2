"""Users (admins only): list users, add one with a password or an invite link (shown once: only its hash is
stored), change a role, issue or revoke an invite link, delete a user."""

from __future__ import annotations

from urllib.parse import urlsplit

import pandas as pd
import streamlit as st

from core import users, vocab
from core.errors import SynthloopError
from pages._common import database, page_guard, show_error

user = page_guard(__file__)

st.title("Users")


def invite_url(token: str) -> str:
    """The app's address with the invite token; relative when the browser's address is unknown (tests)."""
    parts = urlsplit(st.context.url or "")
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}/?invite={token}"
    return f"/?invite={token}"


def show_invite(username: str, token: str) -> None:
    st.success(f"Invite link for {username!r}. Copy it now: it is shown only once.")
    st.code(invite_url(token), language=None)


user_table = st.empty()  # filled after the add form, so a user added in this run is listed

with st.expander("Add a user", icon=":material/person_add:"):
    with st.form("add_user", clear_on_submit=True):
        username = st.text_input("Username", key="users_new_name")
        display_name = st.text_input("Display name (optional)", key="users_new_display")
        role = st.selectbox("Role", vocab.ROLES, index=vocab.ROLES.index("annotator"), key="users_new_role")
        access = st.radio("Log in with", ["Invite link", "Password"], horizontal=True, key="users_new_access")
        password = st.text_input("Password (for 'Password')", type="password", key="users_new_password")
        add = st.form_submit_button("Add user", type="primary", key="users_add")
    if add:
        try:
            with database() as db:
                added = users.add_user(db, username, role=role, display_name=display_name,
                                       password=password if access == "Password" else None)
                token = users.create_invite(db, added.username) if access == "Invite link" else None
        except SynthloopError as exc:
            show_error(exc)
        else:
            if token:
                show_invite(added.username, token)
            else:
                st.success(f"Added {added.role} {added.username!r}.")

with database() as db:
    rows = users.list_users(db)
user_table.dataframe(
    pd.DataFrame(rows, columns=["username", "display_name", "role", "has_password", "invite_expires_at",
                                "created_at"]),
    hide_index=True, width="stretch",
)

if not rows:
    st.stop()

st.subheader("Manage a user")
names = [row["username"] for row in rows]
chosen = st.selectbox("User", names, key="users_manage")
current = next(row for row in rows if row["username"] == chosen)
left, right = st.columns(2)
with left:
    new_role = st.selectbox("Role", vocab.ROLES, index=vocab.ROLES.index(current["role"]), key="users_role")
    if st.button("Change role", key="users_change_role"):
        try:
            with database() as db:
                users.set_role(db, chosen, new_role)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.toast(f"{chosen!r} is now {new_role}.")
            st.rerun()
with right:
    if st.button("New invite link", key="users_new_invite", help="replaces any earlier link of this user"):
        try:
            with database() as db:
                show_invite(chosen, users.create_invite(db, chosen))
        except SynthloopError as exc:
            show_error(exc)
    if st.button("Revoke invite link", key="users_revoke_invite", disabled=not current["invite_expires_at"]):
        try:
            with database() as db:
                users.revoke_invite(db, chosen)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.toast(f"The invite link of {chosen!r} no longer works.")
            st.rerun()

confirm = st.checkbox(f"Yes, delete {chosen!r} (their labels stay, kept apart from anyone added later under this"
                      " name)", key="users_confirm")
if st.button("Delete user", key="users_delete", disabled=not confirm or chosen == user.username,
             help="You cannot delete yourself."):
    try:
        with database() as db:
            users.delete_user(db, chosen)
    except SynthloopError as exc:
        show_error(exc)
    else:
        st.toast(f"Deleted {chosen!r}.")
        st.rerun()
