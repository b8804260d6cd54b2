"""A feedback round of the loop in a real browser (issue 14): round 1 is generated and judged by people before the
app starts; the researcher then starts round 2 on the Generate page with feedback, retrieval grounding and
attributes, follows it in the Jobs tab, reads its provenance on the Review page and both rounds on the Loop page.
Grounding embeds the project's real texts with the embedded MiniLM in the job process (a small corpus)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

from playwright.sync_api import expect

from core import jobs as core_jobs
from core import users
from db import connection, transaction
from db import generation as gen_db
from db import items as items_db
from tests.e2e import support
from tests.fake_llm import FakeLLMServer, varied_text
from tests.generation_helpers import make_project, queue_job
from tests.test_loop_levers import add_real, label_of

ADMIN, ADMIN_PASSWORD = "researcher", "researcher-pass-1"
UNLABELLED = ["An unlabelled real review of a cartoon.", "Another unlabelled one, about a thriller."]
TEST_TEXT = "A test review nobody may show the generator."
ATTRIBUTES = {"tone": ["calm", "angry"], "length": ["short"]}


def _reply(request, n: int) -> str:
    return f"{label_of(request)} {varied_text(n)}"


def _prepare(db_path: Path, server: FakeLLMServer) -> dict:
    """The project, round 1 (two texts per label) and people's verdicts: pos confirmed twice (fidelity 1), neg
    confirmed once and contradicted once (fidelity 1/2)."""
    with connection.open_db(db_path) as db:
        users.add_user(db, ADMIN, role="admin", password=ADMIN_PASSWORD)
        project = make_project(db)  # three real train items per label, all pinned as seeds
        add_real(db, project.id, UNLABELLED, "pool")
        add_real(db, project.id, [TEST_TEXT], "test")
        first = queue_job(db, project.id, server, mode="few-shot", prompt_form="chat", per_label=2,
                          examples_per_prompt=2, concurrency=1)
        assert core_jobs.run(str(db_path), first)["status"] == "done"
        made = items_db.items_frame(db, project.id, source="synthetic").sort_values("id")
        pos_ids = list(made[made["reference_label"] == "pos"]["id"])
        neg_ids = list(made[made["reference_label"] == "neg"]["id"])
        verdicts = {pos_ids[0]: "pos", pos_ids[1]: "pos", neg_ids[0]: "neg", neg_ids[1]: "pos"}
        with transaction(db):
            items_db.insert_annotations(db, [{"item_id": item, "annotator": f"person{i}", "label": label}
                                             for item, label in verdicts.items() for i in range(2)])
        texts = dict(zip(made["id"], made["text"], strict=True))
    return {"project_id": project.id, "first_job": first, "counter_text": texts[neg_ids[1]]}


def _table(scope, *, header: str | None = None) -> list[list[str]]:
    """The cells of an ``st.dataframe`` in ``scope`` (the first, or the first whose header starts with the column
    ``header``), read from the grid's accessible copy, header row first."""
    grids = scope.locator('[data-testid="stDataFrame"]')
    expect(grids.locator("table tr").first).to_be_attached()  # a grid in a closed expander has no rows yet
    for n in range(grids.count()):
        rows = grids.nth(n).evaluate("""g => [...g.querySelectorAll('table tr')].map(
            r => [...r.querySelectorAll('th, td')].map(c => c.textContent.trim()))""")
        if header is None or (rows and rows[0][:1] == [header]):
            return rows
    raise AssertionError(f"no table with a first column {header!r}")


def _shown(rows: list[dict], label_column: str = "label") -> list[list[str]]:
    """A provenance table as the Review page draws it (a missing external id or label is a blank cell)."""
    return [["item_id", "external_id", "text", label_column], *[
        [str(r["id"]), r["external_id"] or "", r["text"], r["adjudicated_label"] or r["reference_label"] or ""]
        for r in rows]]


def _expander(page, title: str | re.Pattern):
    """An expander of the main area by its title, opened (each of those read here holds a table)."""
    box = support.main_area(page).locator('[data-testid="stExpander"]').filter(
        has=page.locator("summary").filter(has_text=title)).first
    box.locator("summary").click()
    expect(box.locator('[data-testid="stDataFrame"]')).to_be_visible()
    return box


def _set_round_two_settings(page, base_url: str, attributes: str = json.dumps(ATTRIBUTES)) -> None:
    settings = page.locator('[data-testid="stForm"]').filter(has_text="Start generation")
    support.select_option(page, "Backend", "OpenAI-compatible URL")  # above the form, which it redraws
    support.fill(settings, "Model", "fake-model")
    support.fill(settings, "Base URL", base_url)
    settings.get_by_text("few-shot", exact=True).click()
    support.select_option(page, "Few-shot prompt form", "chat", scope=settings)
    support.fill(settings, "Texts per label (target)", "2")
    support.fill(settings, "Few-shot: seeds per prompt (k)", "2")
    support.fill(settings, "Concurrent requests", "1")
    settings.get_by_text("Learn from people's verdicts on earlier rounds").click()
    support.select_option(page, "Grounding in real texts", "retrieval", scope=settings)
    support.fill(settings, "Retrieved texts per call", "2")
    support.fill(settings, "Nearest texts MMR picks from", "4")
    support.fill(settings, "Attributes (JSON: lists of values, one of each sampled per call)", attributes)


def test_a_feedback_round_from_the_generate_page_to_the_loop_page(tmp_path: Path, start_app, new_page,
                                                                   shots) -> None:
    started = time.monotonic()
    db_path = tmp_path / "feedback.db"
    with FakeLLMServer(reply=_reply) as llm:
        prepared = _prepare(db_path, llm)
        app = start_app(db_path)
        page = new_page()
        support.login(page, app.url, ADMIN, ADMIN_PASSWORD)
        main = support.main_area(page)

        # 1. Round 2's settings, and the preview of what the verdicts change.
        support.goto(page, "Generate")
        _set_round_two_settings(page, llm.base_url)
        page.get_by_role("button", name="Preview prompts").click()
        support.wait_idle(page)
        expect(main.get_by_text("4 earlier synthetic items have enough human labels.", exact=False)).to_be_visible()
        shots(page, "feedback preview")
        assert _table(main, header="label") == [
            ["label", "label fidelity", "examples (confirmed)", "counter-examples (contradicted)", "target"],
            ["pos", "1", "2", "0", "2"],
            ["neg", "0.5", "1", "1", "4"],
        ]

        # 2. Round 2 runs; the Jobs tab follows it to the end.
        page.get_by_role("button", name="Start generation").click()
        support.expect_text(page, re.compile(r"Generation job \d+ started"))
        page.get_by_role("tab", name="Jobs").click()
        # The picker is on the job just started, and stays there through the polls.
        support.expect_text(page, re.compile(r"Status:\s*done"), timeout_ms=60_000)
        page.wait_for_timeout(2_500)  # one more poll
        expect(main.get_by_text("Round 2 of this project's loop", exact=True)).to_be_visible()
        expect(main.get_by_text("pos: 2 / 2", exact=True)).to_be_visible()
        expect(main.get_by_text("neg: 4 / 4", exact=True)).to_be_visible()
        shots(page, "round 2 done")

        # 3. The Review page: what the attributes asked for in round 2, and what steered one of its neg items.
        support.goto(page, "Review")
        support.select_option(page, "Generation job", "job 2")
        with connection.open_db(db_path) as db:
            made = items_db.items_frame(db, prepared["project_id"], source="synthetic")
            calls = [gen_db.get_call(db, int(c)) for c in made[made["generation_job_id"] != prepared["first_job"]]
                     .sort_values("id")["generation_call_id"]]
        asked = Counter((name, value, call["label"]) for call in calls for name, value in call["attributes"].items())
        assert len(calls) == 6 and sum(asked.values()) == 12
        counts = _table(_expander(page, "Attributes asked for (items shown, per value and intended label)"))
        assert counts == [["attribute", "value", "neg", "pos"], *[
            [name, value, str(asked[name, value, "neg"]), str(asked[name, value, "pos"])]
            for name, value in sorted({(name, value) for name, value, _ in asked})]]
        support.select_option(page, "Intended label", "neg")
        support.expect_text(page, "4 synthetic items. Select rows to act on them, or apply an action to all shown.")
        picker = main.locator('[data-testid="stSelectbox"]').filter(has_text="Item").first
        item_id = int(picker.get_by_role("combobox").input_value())  # the item the page opened
        shots(page, "review of a round 2 item")
        with connection.open_db(db_path) as db:
            item = items_db.get_item(db, item_id)
            call = gen_db.get_call(db, item["generation_call_id"])
            retrieved = items_db.get_items(db, call["retrieved_ids"])
            counter_examples = items_db.get_items(db, call["counter_example_ids"])
            examples = items_db.get_items(db, call["seed_item_ids"])
            round_of_item = gen_db.get_generation_job(db, call["generation_job_id"])["round"]
        assert (item["reference_label"], round_of_item) == ("neg", 2)
        assert len(retrieved) == 2 and TEST_TEXT not in {r["text"] for r in retrieved}
        assert [r["text"] for r in counter_examples] == [prepared["counter_text"]]
        assert ["round", "2"] in _table(main, header="field")
        assert _table(_expander(page, "Examples shown: seeds or confirmed items (2)")) == _shown(examples)
        assert _table(_expander(page, "Real texts retrieved for grounding (2)")) == _shown(retrieved)
        assert _table(_expander(page, "Attributes asked for (2)")) == [
            ["attribute", "value"], *[[name, value] for name, value in call["attributes"].items()]]
        assert _table(_expander(page, "Counter-examples shown (people judged them otherwise) (1)")) == _shown(
            counter_examples, "intended label")
        shots(page, "review expanders")

        # 4. The Loop page lists both rounds with what each accepted.
        support.goto(page, "Loop")
        expect(main.get_by_role("heading", name="Per round", exact=True)).to_be_visible(timeout=60_000)
        per_round = _table(main, header="round")
        shots(page, "loop page")
        header = per_round[0]
        rows = {row[header.index("round")]: row[header.index("accepted")] for row in per_round[1:]}
        assert rows == {"1": "4", "2": "6"}

        # 5. Attributes that are not JSON: the error says so, and no job starts.
        # The form starts again from the project's defaults (reported): the settings are entered again.
        support.goto(page, "Generate")
        _set_round_two_settings(page, llm.base_url, '{"tone": ')
        page.get_by_role("button", name="Start generation").click()
        support.wait_idle(page)
        alert = main.locator('[data-testid="stAlert"]').filter(has_text="not valid JSON")
        expect(alert.locator('[data-testid="stMarkdownContainer"]')).to_have_text(
            "the attributes text is not valid JSON (Expecting value: line 1 column 10 (char 9)): write an object of "
            'lists, e.g. {"topic": ["sports", "politics"]}')
        expect(main.get_by_text(re.compile(r"Generation job \d+ started"))).to_have_count(0)
        shots(page, "invalid attributes")
    with connection.open_db(db_path) as db:
        assert db.execute("SELECT count(*) FROM generation_job").fetchone()[0] == 2
    print(f"feedback round scenario: {time.monotonic() - started:.0f} s")
