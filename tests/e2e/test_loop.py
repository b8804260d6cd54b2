"""The whole loop in a real browser, as users meet it (one scenario, one fresh database, the real server).

The admin (created by the CLI before the app starts) logs in, creates a project, uploads a CSV, samples seeds,
generates few-shot synthetic items against a local fake OpenAI-compatible server (the app holds a planted API
key), sends them to annotation with the real test items, adds two annotators (an invite link and a password);
both label every pool item in their own browser context with the number keys only; the Agreement page shows
alpha (equal to the core's figure); a one-epoch MiniLM run completes; both exports download and their content
is checked against what happened; the planted key is found in no file of the data folder and no download.

Each step leaves a numbered screenshot under ``test-artifacts/test_the_whole_loop_in_a_real_browser/``. With
``SYNTHLOOP_README_SHOTS=1`` (see ``make_screenshots.py``) the main pages are also saved, small, under
``docs/screenshots/``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core import projects
from core.agreement.project import project_agreement
from core.agreement.report import ReportConfig
from db import connection
from tests.e2e import support
from tests.fake_llm import FakeLLMServer

pytestmark = pytest.mark.browser

ADMIN, ADMIN_PASSWORD = "admin", "admin-pass-2024"
PLANTED_KEY = "sk-planted-e2e-7c1d9b3a5f"
README_SHOTS = os.environ.get("SYNTHLOOP_README_SHOTS") == "1"
DOCS = support.ROOT / "docs" / "screenshots"

POS = ["what a lovely sunny morning at the beach", "the concert tonight was truly wonderful",
       "I adore this cosy little cafe downtown", "our team won the final, best day ever",
       "the new garden looks absolutely beautiful", "thanks so much, that gift made me smile",
       "a delightful film with a warm ending", "fresh bread and coffee, perfect start"]
NEG = ["the train was late again and I am furious", "this phone broke after two days, awful",
       "the soup was cold and the waiter was rude", "I hate waiting in this endless queue",
       "terrible weather ruined the whole trip", "the update deleted all my photos, dreadful",
       "a boring lecture that never seemed to end", "my flight got cancelled without notice"]


def _write_csv(path: Path) -> dict[str, tuple[str, str]]:
    """12 train and 4 test items (ids r0…r15), labels pos/neg; returns id → (text, label)."""
    rows = {}
    for i in range(8):
        rows[f"r{2 * i}"] = (POS[i], "pos")
        rows[f"r{2 * i + 1}"] = (NEG[i], "neg")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label", "split"])
        for n, (item_id, (text, label)) in enumerate(rows.items()):
            writer.writerow([item_id, text, label, "test" if n >= 12 else "train"])
    return rows


def _readme_shot(page, name: str) -> None:
    """A small viewport screenshot for the README (only when asked for)."""
    if not README_SHOTS:
        return
    support.wait_idle(page)
    charts = page.locator('[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"]')
    for n in range(charts.count()):  # visible charts draw after their data arrives (best effort)
        if charts.nth(n).is_visible():
            with contextlib.suppress(AssertionError):
                expect(charts.nth(n).locator("canvas, svg").first).to_be_attached(timeout=10_000)
    page.wait_for_timeout(300)
    support.main_area(page).evaluate("e => e.scrollTo(0, 0)")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.mouse.move(0, 0)  # no hover highlight
    size = support.small_png(page.screenshot(full_page=False), DOCS / f"{name}.png")
    assert size < 160_000, f"{name}.png is {size} bytes"


def _metric(page, label: str) -> str:
    metric = support.main_area(page).locator('[data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _key_for(text: str, annotator: int) -> str:
    """A fixed, text-based labelling rule, so both annotators mostly agree whatever order items come in:
    '1' (pos) for texts of even length. The second annotator disagrees on texts whose length is a multiple of 3."""
    key = "1" if len(text) % 2 == 0 else "2"
    if annotator == 2 and len(text) % 3 == 0:
        key = "2" if key == "1" else "1"
    return key


def _label_one(page, done: int, total: int, annotator: int) -> tuple[str, str]:
    """Read the item, press its number key, wait until my progress counts it."""
    text_box = support.main_area(page).locator('[data-testid="stText"]').first
    text = text_box.inner_text().strip()
    key = _key_for(text, annotator)
    page.keyboard.press(key)
    expect(support.main_area(page).get_by_text(f"{done + 1} of {total} labelled by you")).to_be_visible()
    if done + 1 < total:  # the next item's text may arrive a moment after the progress bar
        expect(text_box).not_to_have_text(text)
    return text, {"1": "pos", "2": "neg"}[key]


def test_the_whole_loop_in_a_real_browser(tmp_path: Path, start_app, new_page, shots) -> None:
    started = time.monotonic()
    data_dir = tmp_path / "data"
    data_dir.mkdir()  # a database is only created in an existing folder
    db_path = data_dir / "loop.db"
    csv_path = tmp_path / "tweets.csv"
    real = _write_csv(csv_path)
    downloads = tmp_path / "downloads"

    support.cli(db_path, "user", "add", ADMIN, "--role", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
    with FakeLLMServer(api_key=PLANTED_KEY, latency_s=0.05) as llm:
        # README screenshots hide the developer toolbar ("Deploy"); tests keep the defaults.
        app = start_app(db_path, env={"OPENAI_API_KEY": PLANTED_KEY},
                        extra_args=("--client.toolbarMode", "viewer") if README_SHOTS else ())
        admin = new_page()

        # 1. The admin logs in.
        support.open_app(admin, app.url)
        _readme_shot(admin, "login")
        support.login(admin, app.url, ADMIN, ADMIN_PASSWORD)
        shots(admin, "admin logged in")

        # 2. Creates a project.
        support.goto(admin, "Projects")
        form = admin.locator('[data-testid="stForm"]').filter(has_text="Create project")
        support.fill(form, "Name", "Loop demo")
        support.fill(form, "Labels (comma-separated)", "pos,neg")
        support.fill(form, "What is classified", "Short posts: positive or negative sentiment")
        support.fill(form, "Context prompt (the setting the generator writes in)",
            "You are a person writing a short social media post.")
        support.fill(form, "Labels required per item (overlap k)", "2")
        form.get_by_role("button", name="Create project").click()
        expect(support.main_area(admin).get_by_text("Edit: Loop demo")).to_be_visible()
        support.wait_idle(admin)
        shots(admin, "project created")
        _readme_shot(admin, "projects")
        with connection.open_db(db_path) as db:
            project = projects.get_project(db, "Loop demo")
        assert project.label_names == ["pos", "neg"] and project.overlap == 2

        # 3. Imports real data through the file uploader.
        support.goto(admin, "Data")
        support.upload(admin, csv_path)
        support.choose_radio(admin, "Split", "From a column")
        admin.get_by_role("button", name="Import").click()
        support.expect_text(admin, "imported 16 items and 0 annotations from 16 rows of 'tweets.csv'")
        shots(admin, "data imported")
        _readme_shot(admin, "data")

        # 4. Curates seeds: three per label, sampled.
        support.goto(admin, "Seeds")
        admin.get_by_role("tab", name="Sample per label").click()
        sample_form = admin.locator('[data-testid="stForm"]').filter(has_text="Sample seeds")
        support.fill(sample_form, "Seeds per label", "3")
        sample_form.get_by_role("button", name="Sample seeds").click()
        support.expect_text(admin, "Added 6 seed(s): pos 3, neg 3")
        shots(admin, "seeds sampled")
        _readme_shot(admin, "seeds")

        # 5. Generates few-shot items with the fake OpenAI-compatible server.
        support.goto(admin, "Generate")
        settings = admin.locator('[data-testid="stForm"]').filter(has_text="Start generation")
        support.select_option(admin, "Backend", "OpenAI-compatible URL")  # above the form, which it redraws
        support.fill(settings, "Model", "fake-model")
        support.fill(settings, "Base URL", llm.base_url)
        settings.get_by_text("few-shot", exact=True).click()
        support.fill(settings, "Texts per label (target)", "3")
        settings.get_by_role("button", name="Start generation").click()
        support.expect_text(admin, re.compile(r"Generation job \d+ started"))
        expect(support.main_area(admin).get_by_text("API key: found")).to_be_visible()
        _readme_shot(admin, "generate")
        # The Jobs tab was drawn before the job existed (it says "No generation jobs yet" until the next
        # rerun; reported as a bug), so open the page again as a user would.
        support.goto(admin, "Review")
        support.goto(admin, "Generate")
        admin.get_by_role("tab", name="Jobs").click()
        support.expect_text(admin, re.compile(r"Status:\s*done"), timeout_ms=90_000)
        expect(support.main_area(admin).get_by_text("pos: 3 / 3")).to_be_visible()
        expect(support.main_area(admin).get_by_text("neg: 3 / 3")).to_be_visible()
        shots(admin, "generation done")
        assert any(r.headers.get("Authorization") == f"Bearer {PLANTED_KEY}" or
                   r.headers.get("authorization") == f"Bearer {PLANTED_KEY}" for r in llm.completion_requests())

        # 6. Reviews the synthetic items and sends them all to annotation.
        support.goto(admin, "Review")
        support.expect_text(admin, "6 synthetic items")
        support.choose_radio(admin, "Apply to", "all shown")
        admin.get_by_role("button", name="Send to annotation (6)").click()
        support.wait_idle(admin)
        shots(admin, "synthetic items sent to annotation")
        _readme_shot(admin, "review")

        # 7. Adds the real test items to the pool too (a mixed pool: annotators cannot tell them apart).
        support.goto(admin, "Annotation pool")
        pool_form = admin.locator('[data-testid="stForm"]').filter(has_text="Add to pool")
        pool_form.get_by_text("real", exact=True).click()
        pool_form.get_by_text("test", exact=True).click()
        pool_form.get_by_role("button", name="Add to pool").click()
        expect(support.main_area(admin).locator('[data-testid="stMetric"]').filter(
            has_text="Items in the pool").get_by_text("10", exact=True)).to_be_visible()
        shots(admin, "pool of 10 items")

        # 8. Adds two annotators: one with an invite link, one with a password.
        support.goto(admin, "Users")
        add_form = admin.locator('[data-testid="stForm"]').filter(has_text="Add user")
        admin.get_by_text("Add a user").click()
        support.fill(add_form, "Username", "ann1")
        add_form.get_by_role("button", name="Add user").click()
        invite = support.main_area(admin).locator("code").filter(has_text="invite=")
        expect(invite).to_be_visible()
        token = re.search(r"invite=([A-Za-z0-9_-]+)", invite.inner_text()).group(1)
        shots(admin, "invite link for ann1")
        support.fill(add_form, "Username", "ann2")
        add_form.get_by_text("Password", exact=True).click()
        support.fill(add_form, "Password (for 'Password')", "ann2-password-1")
        add_form.get_by_role("button", name="Add user").click()
        support.expect_text(admin, "Added annotator 'ann2'.")
        _readme_shot(admin, "users")
        # Assigns both to the project: annotators see only the projects they are assigned to.
        support.goto(admin, "Projects")
        support.main_area(admin).get_by_text("Annotators of this project").click()
        support.choose_options(admin, "Assigned annotators", ["ann1", "ann2"])
        admin.get_by_role("button", name="Save assignments").click()
        expect(admin.get_by_text("Assignments saved: 2 added, 0 removed.")).to_be_visible()
        support.wait_idle(admin)

        # 9. Two annotators, two browser contexts, keyboard only, interleaved.
        ann1, ann2 = new_page(), new_page()
        support.login_with_invite(ann1, app.url, token, "ann1")
        support.login(ann2, app.url, "ann2", "ann2-password-1")
        for page in (ann1, ann2):
            # One page only: Streamlit then shows no navigation at all, just the Annotate page.
            assert support.nav_links(page) in ([], ["Annotate"]), "an annotator must see the Annotate page only"
            expect(support.main_area(page).get_by_text("0 of 10 labelled by you")).to_be_visible()
        shots(ann1, "annotator 1 first item")
        _readme_shot(ann1, "annotate")
        given: dict[str, dict[str, str]] = {"ann1": {}, "ann2": {}}
        for done in range(10):
            for n, (name, page) in enumerate((("ann1", ann1), ("ann2", ann2)), start=1):
                text, label = _label_one(page, done, 10, n)
                assert text not in given[name], f"{name} was shown {text!r} twice"
                given[name][text] = label
        for page in (ann1, ann2):
            support.expect_text(page, "Your queue is empty")
        shots(ann1, "annotator 1 done")
        shots(ann2, "annotator 2 done")

        with connection.open_db(db_path) as db:
            report = project_agreement(db, project, config=ReportConfig(n_boot=1000, seed=0))
        assert report.n_annotations == 20 and report.n_items == 10 and report.n_annotators == 2
        assert report.krippendorff_alpha is not None

        # 10. The Agreement page shows alpha (the same number the core computes).
        support.goto(admin, "Agreement")
        expect(support.main_area(admin).locator('[data-testid="stMetric"]').filter(
            has_text="Krippendorff's alpha").locator('[data-testid="stMetricValue"]')).to_have_text(
            f"{report.krippendorff_alpha:.3f}")
        assert _metric(admin, "Items with ≥ 2 labels") == "10"
        shots(admin, "agreement")
        _readme_shot(admin, "agreement")

        # 11. A training run completes (embedded MiniLM, 1 epoch, the 12 real training items).
        support.goto(admin, "Train")
        admin.get_by_text("Hyper-parameters").click()
        support.fill(admin, "Epochs", "1")
        support.fill(admin, "Batch size", "8")
        admin.get_by_role("button", name="Train", exact=True).click()
        support.expect_text(admin, re.compile(r"Run \d+ started: real → embedded"))
        support.expect_text(admin, re.compile(r"Run \d+ · real · embedded — done"), timeout_ms=240_000)
        support.expect_text(admin, re.compile(r"accuracy \d\.\d{3} · macro-F1 \d\.\d{3}"))
        shots(admin, "training run done")
        _readme_shot(admin, "train")
        support.goto(admin, "Runs")
        support.expect_text(admin, "Table 1: macro-F1 and accuracy by training data")
        _readme_shot(admin, "runs")

        # 12. The exports download, and their content is what happened.
        support.goto(admin, "Export")
        with admin.expect_download() as info:
            admin.get_by_role("button", name=re.compile(r"Download Loop-demo\.csv")).click()
        aggregated_path = downloads / "aggregated.csv"
        info.value.save_as(aggregated_path)
        shots(admin, "export")
        _readme_shot(admin, "export")
        support.choose_radio(admin, "View", "Raw: a row per annotation")
        with admin.expect_download() as info:
            admin.get_by_role("button", name=re.compile(r"Download Loop-demo-raw\.csv")).click()
        raw_path = downloads / "raw.csv"
        info.value.save_as(raw_path)

    items = list(csv.DictReader(io.StringIO(aggregated_path.read_text(encoding="utf-8"))))
    assert len(items) == 22  # 16 real + 6 synthetic
    by_id = {row["item_id"]: row for row in items}
    for item_id, (text, label) in real.items():
        assert by_id[item_id]["text"] == text and by_id[item_id]["reference_label"] == label
        assert by_id[item_id]["source"] == "real"
    synthetic = [row for row in items if row["source"] == "synthetic"]
    assert len(synthetic) == 6 and {row["generation_mode"] for row in synthetic} == {"few-shot"}
    assert sorted(row["reference_label"] for row in synthetic) == ["neg"] * 3 + ["pos"] * 3
    pooled = [row for row in items if row["n_labels"] != "0"]
    assert len(pooled) == 10 and all(row["n_labels"] == "2" for row in pooled)
    for row in pooled:  # the majority / tie columns agree with what the two annotators pressed
        labels = {given["ann1"][row["text"]], given["ann2"][row["text"]]}
        assert (row["tie"] == "True") == (len(labels) == 2)
        if len(labels) == 1:
            assert row["majority_label"] == labels.pop()
            assert float(row["instance_agreement"]) == 1.0
        else:
            assert float(row["instance_agreement"]) == 0.5
    raw = list(csv.DictReader(io.StringIO(raw_path.read_text(encoding="utf-8"))))
    assert len(raw) == 20
    assert {(row["annotator"], row["text"], row["label"]) for row in raw} == {
        (name, text, label) for name, labels in given.items() for text, label in labels.items()}

    # The planted API key is nowhere: database files, job logs, artifacts, downloads.
    for path in [*data_dir.rglob("*"), *downloads.rglob("*")]:
        if path.is_file():
            assert PLANTED_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    print(f"loop scenario: {time.monotonic() - started:.0f} s")
