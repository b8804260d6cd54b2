"""Several app processes behind nginx (``python -m core serve --workers 2``, the README's command) in a real
browser: a login, an upload on the Data page and the downloads of an export all pass through the proxy, which
keeps each browser on the process that holds its Streamlit session; an annotator assigned on the Projects page
labels by keyboard through it too."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core import projects, users
from core.serving.launcher import nginx_path
from db import connection
from tests.e2e import support

pytestmark = pytest.mark.browser

PASSWORD = "proxy-pass-2024"
ROWS = [("p1", "what a lovely morning", "pos"), ("p2", "the bus was late again", "neg"),
        ("p3", "great coffee today", "pos"), ("p4", "my phone broke", "neg")]


@pytest.fixture
def served(tmp_path: Path, request):
    if nginx_path() is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does it)")
    db_path = tmp_path / "served.db"
    with connection.open_db(db_path) as db:
        projects.create_project(db, "Proxy demo", projects.parse_labels("pos,neg"), overlap=1)
        users.add_user(db, "rex", role="researcher", password=PASSWORD)
        users.add_user(db, "ann", role="annotator", password=PASSWORD)
    server = support.ServeCommand(db_path, workers=2, log_path=tmp_path / "serve.log").start()
    yield server
    server.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- serve log ---\n{server.log_tail()}")
        for log in sorted((tmp_path / "served.db.files" / "serve").glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-2000:]}")


def test_a_browser_logs_in_uploads_and_downloads_through_the_proxy(served, tmp_path: Path, new_page,
                                                                   shots) -> None:
    csv_path = tmp_path / "posts.csv"
    csv_path.write_text("id,text,label\n" + "".join(f"{i},{t},{lab}\n" for i, t, lab in ROWS), encoding="utf-8")
    page = new_page()
    support.login(page, served.url, "rex", PASSWORD)
    cookies = {cookie["name"] for cookie in page.context.cookies()}
    assert {"synthloop_route", "synthloop_session"} <= cookies, cookies  # affinity (nginx) and login (the app)
    shots(page, "logged in through nginx")

    # An upload is an HTTP request to the process that holds the tab's session.
    support.goto(page, "Data")
    support.upload(page, csv_path)
    page.get_by_role("button", name="Import").click()
    support.expect_text(page, "imported 4 items and 0 annotations from 4 rows of 'posts.csv'")
    shots(page, "imported through nginx")

    # The researcher assigns the annotator to the project.
    support.goto(page, "Projects")
    support.main_area(page).get_by_text("Annotators of this project").click()
    support.choose_options(page, "Assigned annotators", ["ann"])
    page.get_by_role("button", name="Save assignments").click()
    expect(page.get_by_text("Assignments saved: 1 added, 0 removed.")).to_be_visible()
    support.wait_idle(page)

    # Downloads too (the file is held in the memory of the session's process).
    support.goto(page, "Export")
    downloads = []
    for view in (None, "Raw: a row per annotation"):
        if view:
            support.choose_radio(page, "View", view)
        with page.expect_download() as info:
            page.get_by_role("button", name=re.compile(r"Download Proxy-demo(-raw)?\.csv")).click()
        path = tmp_path / f"export-{len(downloads)}.csv"
        info.value.save_as(path)
        downloads.append(path)
    exported = list(csv.DictReader(io.StringIO(downloads[0].read_text(encoding="utf-8"))))
    assert sorted((row["text"], row["reference_label"]) for row in exported) == sorted((t, lab) for _, t, lab in ROWS)
    shots(page, "exported through nginx")

    # A refresh keeps the researcher logged in (a new Streamlit session, resumed from the cookie).
    page.reload()
    expect(support.sidebar(page).get_by_text("rex", exact=False).first).to_be_visible()

    # The annotator, in another browser, labels by keyboard through the proxy.
    support.cli(served.db_path, "pool", "add", "Proxy demo", "--source", "real")
    ann = new_page()
    support.login(ann, served.url, "ann", PASSWORD)
    main = support.main_area(ann)
    expect(main.get_by_text("0 of 4 labelled by you")).to_be_visible()
    ann.keyboard.press("1")
    expect(main.get_by_text("1 of 4 labelled by you")).to_be_visible()
    shots(ann, "annotator through nginx")
    with connection.open_db(served.db_path) as db:
        assert db.execute("SELECT annotator, label FROM annotation").fetchall() == [("ann", "pos")]
