"""The LLM panel: members (models and instruction variants), ``llm-annotate --panel``, the panel's figures
against people, the panel-agreement filter of the Review page, and the Agreement page's panel section."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from core import cli, projects
from core.agreement.panel import (
    PANEL_TIE,
    ReliabilityBin,
    panel_agreement,
    panel_calibration,
    panel_report,
    panel_table,
)
from core.agreement.project import project_panel
from core.errors import SynthloopError
from core.generation import review
from core.generation.llm_annotator import LLMAnnotatorConfig, build_messages
from db import connection, transaction
from db import items as items_db
from db import jobs as jobs_db
from tests.fake_llm import UNKNOWN_ANSWER, FakeLLMServer
from tests.page_helpers import researcher_app
from tests.training_helpers import add_items


def _frame(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["item_id", "annotator", "label"])


# Panel members llm:a, llm:b, llm:c; people p1, p2, p3.
HAND_MADE = _frame([
    (1, "llm:a", "pos"), (1, "llm:b", "pos"), (1, "llm:c", "pos"), (1, "p1", "pos"), (1, "p2", "pos"),
    (2, "llm:a", "pos"), (2, "llm:b", "pos"), (2, "llm:c", "neg"), (2, "p1", "neg"),
    (3, "llm:a", "neg"), (3, "llm:b", "neg"), (3, "llm:c", "pos"), (3, "p1", "neg"), (3, "p2", "neg"),
    (3, "p3", "pos"),
    (4, "llm:a", "neg"), (4, "llm:b", "neg"), (4, "llm:c", "neg"), (4, "p1", "neg"),
    (5, "llm:a", "pos"), (5, "llm:b", "neg"), (5, "p1", "pos"),  # the panel ties
    (6, "llm:a", "pos"), (6, "p1", "pos"), (6, "p2", "neg"),  # the people tie: skipped
    (7, "llm:a", "pos"),  # no people
    (8, "p1", "neg"),  # no panel
])


def test_panel_agreement_is_the_share_of_the_panel_giving_the_intended_label() -> None:
    intended = {1: "pos", 2: "pos", 5: "pos", 7: "neg", 8: "neg", 9: "pos"}
    agreement = panel_agreement(HAND_MADE, intended)
    # 1: 3 of 3; 2: 2 of 3; 5: 1 of 2; 7: 0 of 1; 8 and 9: no panel label (people do not count).
    assert agreement.loc[[1, 2, 5, 7]].tolist() == pytest.approx([1.0, 2 / 3, 0.5, 0.0])
    assert agreement.loc[[8, 9]].isna().all() and agreement.index.name == "item_id"
    table = panel_table(HAND_MADE, {2: "pos", 8: "neg"})
    assert table["panel_votes"].tolist() == ['{"pos": 2, "neg": 1}', "{}"]
    assert table["panel_agreement"].iloc[0] == pytest.approx(2 / 3)


def test_unanimous_means_every_member_labelled_the_item_with_the_intended_label() -> None:
    items = pd.DataFrame({"id": [1, 6, 4, 8], "source": ["synthetic", "synthetic", "synthetic", "real"],
                          "reference_label": ["pos", "pos", "neg", None]})
    report = panel_report(HAND_MADE, items)
    # 1: a, b, c all pos; 4: a, b, c all neg; 6: only llm:a labelled it (agreement 1, yet not unanimous).
    assert (report.n_synthetic, report.n_synthetic_labelled, report.n_panel_unanimous) == (3, 3, 2)
    assert report.mean_panel_agreement == 1.0 and report.members == ("llm:a", "llm:b", "llm:c")


def test_panel_calibration_against_people_by_hand() -> None:
    calibration = panel_calibration(HAND_MADE)
    # Items 1-5 (6: the people tie; 7: no people; 8: no panel).
    # panel majority: pos, pos, neg, neg, tie;  human majority: pos, neg, neg, neg, pos  -> 3 of 5 right.
    assert (calibration.n_items, calibration.n_human_ties, calibration.n_panel_ties) == (5, 1, 1)
    assert calibration.accuracy == pytest.approx(0.6)
    # Cohen's kappa: p_o = 3/5; marginals panel pos 2, neg 2, tie 1 / people pos 2, neg 3;
    # p_e = (2·2 + 2·3 + 1·0) / 25 = 2/5; kappa = (3/5 − 2/5) / (1 − 2/5) = 1/3.
    assert calibration.cohen_kappa == pytest.approx(1 / 3)
    # Alpha, two coders per item: coincidences o_pp = 2, o_nn = 4, o_pn = o_np = 1, o_tp = o_pt = 1;
    # n_pos = 4, n_neg = 5, n_tie = 1, n = 10; alpha = 1 − (n − 1) · 4 / (100 − 16 − 25 − 1) = 1 − 36/58 = 11/29.
    assert calibration.krippendorff_alpha == pytest.approx(11 / 29)
    # Confidence (the majority's vote share) 1, 2/3, 2/3, 1, 1/2; right 1, 0, 1, 1, 0.
    # Bins (0.9, 1]: n 2, conf 1, acc 1 -> 0; (0.6, 0.7]: n 2, conf 2/3, acc 1/2 -> 2/5 · 1/6;
    # (0.4, 0.5]: n 1, conf 1/2, acc 0 -> 1/5 · 1/2. ECE = 1/15 + 1/10 = 1/6.
    assert calibration.ece == pytest.approx(1 / 6)
    assert calibration.reliability == pytest.approx((
        ReliabilityBin(0.4, 0.5, 1, 0.5, 0.0), ReliabilityBin(0.6, 0.7, 2, 2 / 3, 0.5),
        ReliabilityBin(0.9, 1.0, 2, 1.0, 1.0)))
    assert calibration.members == ("llm:a", "llm:b", "llm:c")
    assert "tie for the panel majority counts as wrong" in calibration.rule and PANEL_TIE not in {"pos", "neg"}


def test_panel_calibration_without_shared_items_or_with_one_label_is_undefined() -> None:
    nothing = panel_calibration(HAND_MADE[HAND_MADE["item_id"].isin([7, 8])])
    assert (nothing.n_items, nothing.accuracy, nothing.cohen_kappa, nothing.krippendorff_alpha, nothing.ece,
            nothing.reliability) == (0, None, None, None, None, ())
    one_label = panel_calibration(HAND_MADE[HAND_MADE["item_id"].isin([1])])
    assert (one_label.accuracy, one_label.cohen_kappa, one_label.krippendorff_alpha, one_label.ece) == (
        1.0, None, None, 0.0)


# ------------------------------------------------------------------------------------------ members


def test_an_instruction_variant_names_its_own_annotator() -> None:
    base = {"labels": ("pos", "neg"), "task": "reviews"}
    instruction = "Classify the text into exactly one of these labels:\n{label_lines}\nBe strict.\nText: {text}"
    config = LLMAnnotatorConfig(**base, instruction_variant="strict-v2", instruction=instruction)
    assert config.annotator == "llm:SmolLM2-135M-Instruct/strict-v2"
    assert build_messages(config, "ok")[1]["content"] == ("Classify the text into exactly one of these labels:\n"
                                                         "- pos\n- neg\nBe strict.\nText: ok")
    assert LLMAnnotatorConfig(**base).annotator == "llm:SmolLM2-135M-Instruct"
    with pytest.raises(SynthloopError, match=r"instruction variant 'Strict!' is not valid: use 1 to 32 characters"):
        LLMAnnotatorConfig(**base, instruction_variant="Strict!")
    with pytest.raises(SynthloopError, match=r"an instruction of your own needs an 'instruction_variant' name"):
        LLMAnnotatorConfig(**base, instruction=instruction)
    with pytest.raises(SynthloopError, match=r"the instruction is not a valid template \(KeyError"):
        LLMAnnotatorConfig(**base, instruction_variant="x", instruction="Label {text} as {answer}")
    with pytest.raises(SynthloopError, match=r"the instruction does not contain \{text\}"):
        LLMAnnotatorConfig(**base, instruction_variant="x", instruction="Pick one of {label_lines}")


# ------------------------------------------------------------------------------------------ the CLI

SYNTHETIC = [("a warm tale", "pos"), ("a bright comedy", "pos"), ("a dull mess", "neg"), ("a tired plot", "neg")]
STRICT = "Classify the text into exactly one of these labels:\n{label_lines}\nBe strict.\n\nText: {text}\nLabel:"


@pytest.fixture
def films(fresh_db):
    """Labels pos/neg, two real items and four synthetic ones; people labelled three synthetic items."""
    project = projects.create_project(fresh_db, "films", projects.parse_labels("pos,neg"), description="reviews")
    rows = [{"text": "real one", "label": "pos"}, {"text": "real two", "label": "neg"}]
    rows += [{"text": text, "source": "synthetic", "label": label} for text, label in SYNTHETIC]
    ids = dict(zip([r["text"] for r in rows], add_items(fresh_db, project.id, rows), strict=True))
    people = [("a warm tale", "p1", "pos"), ("a warm tale", "p2", "pos"), ("a bright comedy", "p1", "neg"),
              ("a dull mess", "p1", "neg")]
    with transaction(fresh_db):
        items_db.insert_annotations(fresh_db, [{"item_id": ids[t], "annotator": a, "label": lb} for t, a, lb in people])
    return project, ids


def _members(server: FakeLLMServer, *extra: dict) -> list[dict]:
    common = {"backend": "openai", "base_url": server.base_url, "max_retries": 0, "timeout_s": 5.0}
    return [{**common, "model": "model-a"}, {**common, "model": "model-b"},
            {**common, "model": "model-a", "instruction_variant": "strict", "instruction": STRICT}, *extra]


def _write(tmp_path, members) -> str:
    path = tmp_path / "panel.json"
    path.write_text(json.dumps(members), encoding="utf-8")
    return str(path)


def _cli(capsys, *args: str) -> tuple[int, dict | str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 and "--json" in args else captured.out + captured.err)


def _agrees(model: str, text: str) -> str:
    """model-a gives each text its intended label; model-b says neg to everything."""
    return dict(SYNTHETIC).get(text, UNKNOWN_ANSWER) if model == "model-a" else "neg"


def test_llm_annotate_panel_runs_every_member_and_prints_the_panel(fresh_db, db_path, films, tmp_path,
                                                                   capsys) -> None:
    project, ids = films
    with FakeLLMServer(models=("model-a", "model-b"), labeller=_agrees) as server:
        panel = _write(tmp_path, _members(server))
        code, out = _cli(capsys, "llm-annotate", "films", "--panel", panel, "--db", str(db_path), "--json")
        assert code == 0, out
        # The strict variant's instruction reached the server.
        assert sum("Be strict." in r.body["messages"][-1]["content"] for r in server.completion_requests()) == 4
        assert server.completions == 12  # 3 members × 4 synthetic items, the real ones untouched
        again = _cli(capsys, "llm-annotate", "films", "--panel", panel, "--db", str(db_path), "--json")[1]
    assert [(m["member"], m["annotator"], m["labelled"], m["items"]) for m in out["members"]] == [
        (1, "llm:model-a", 4, 4), (2, "llm:model-b", 4, 4), (3, "llm:model-a/strict", 4, 4)]
    assert [m["status"] for m in again["members"]] == ["skipped"] * 3  # each skips the items it already labelled
    labels = items_db.annotation_labels_frame(fresh_db, project.id)
    panel_labels = labels[labels["annotator"].str.startswith("llm:")]
    assert len(panel_labels) == 12 and set(panel_labels["item_id"]) == {ids[t] for t, _ in SYNTHETIC}
    # Panel agreement: pos items 2/3 (model-b says neg), neg items 3/3.
    assert out["panel"]["mean_panel_agreement"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1) / 4)
    assert out["panel"]["n_synthetic_labelled"] == 4 and out["panel"]["n_panel_unanimous"] == 2
    # Against people on 3 items: panel pos, pos, neg vs people pos, neg, neg -> accuracy 2/3;
    # kappa: p_o 2/3, p_e (2·1 + 1·2)/9 = 4/9 -> (2/9)/(5/9) = 0.4; ECE: (0.6, 0.7] n 2 conf 2/3 acc 1/2
    # -> 2/3 · 1/6 = 1/9, (0.9, 1] n 1 conf 1 acc 1 -> 0.
    calibration = out["panel"]["calibration"]
    assert (calibration["n_items"], calibration["accuracy"]) == (3, pytest.approx(2 / 3))
    assert calibration["cohen_kappa"] == pytest.approx(0.4) and calibration["ece"] == pytest.approx(1 / 9)
    # alpha: o_pp 2, o_nn 2, o_pn = o_np 1, n_pos = n_neg = 3 -> 1 − 5 · 2 / (36 − 18) = 4/9.
    assert calibration["krippendorff_alpha"] == pytest.approx(4 / 9)
    message = _cli(capsys, "llm-annotate", "films", "--panel", panel, "--db", str(db_path))[1]
    assert "member 2 llm:model-b: nothing to label" in message and "accuracy 0.667, Cohen's kappa 0.400" in message

    # The Review page's table: the panel's agreement per synthetic item, and the filter.
    table = review.synthetic_items(fresh_db, project.id)
    assert dict(zip(table["text"], table["panel_agreement"], strict=True)) == pytest.approx(
        {"a warm tale": 2 / 3, "a bright comedy": 2 / 3, "a dull mess": 1.0, "a tired plot": 1.0})
    assert review.synthetic_items(fresh_db, project.id, min_panel_agreement=0.9)["text"].tolist() == [
        "a dull mess", "a tired plot"]


def test_a_bad_panel_file_is_refused_before_any_call(fresh_db, db_path, films, tmp_path, capsys) -> None:
    with FakeLLMServer(models=("model-a", "model-b"), labeller=_agrees) as server:
        cases = [
            ("[{\"model\": ", "is not valid JSON (Expecting value at line 1, column 12): write a list of member"),
            ({"model": "x"}, "a panel is a JSON list of at least one member object, not dict"),
            (["model-a"], "panel member 1 is str \"model-a\", not an object"),
            (_members(server, {"model": "model-b", "temprature": 0}),
             "panel member 4 has an unknown setting 'temprature': the known ones are backend, model"),
            (_members(server, {"model": "model-b", "selection": "all"}),
             "panel member 4 sets 'selection', which belongs to the whole panel"),
            (_members(server, {"backend": "openai", "model": ""}),
             "panel member 4 of 4: the openai backend needs a model name: set 'model'"),
            (_members(server, {"backend": "openai", "model": "model-b", "base_url": server.base_url}),
             "panel members 2 and 4 are both annotator 'llm:model-b': give one another model or its own "
             "instruction_variant"),
        ]
        for members, expected in cases:
            path = tmp_path / "panel.json"
            path.write_text(members if isinstance(members, str) else json.dumps(members), encoding="utf-8")
            code, out = _cli(capsys, "llm-annotate", "films", "--panel", str(path), "--db", str(db_path))
            assert code == 2 and expected in out, out
        code, out = _cli(capsys, "llm-annotate", "films", "--panel", str(path), "--model", "m", "--db", str(db_path))
        assert code == 2 and "leave out --model and set 'model' in the members instead" in out
        assert server.completions == 0
    assert jobs_db.list_jobs(fresh_db, kind="llm_annotation") == []


def test_a_member_that_fails_stops_the_panel_and_says_which(fresh_db, db_path, films, tmp_path, capsys) -> None:
    project, _ = films
    with FakeLLMServer(models=("model-a",), labeller=_agrees) as server:  # model-b is unknown to this server
        panel = _write(tmp_path, _members(server))
        code, out = _cli(capsys, "llm-annotate", "films", "--panel", panel, "--db", str(db_path))
    assert code == 2
    assert out.startswith("error: panel member 2 of 3 (llm:model-b) failed in job 2: ")
    assert "the labels of member 1 are kept: fix that member in the panel file and run the panel again" in out
    annotators = set(items_db.annotation_labels_frame(fresh_db, project.id)["annotator"])
    assert annotators == {"p1", "p2", "llm:model-a"}  # member 3 never ran


# ------------------------------------------------------------------------------------------ the Agreement page


def _panel_labels(db, ids: dict[str, int], rows: list[tuple[str, str, str]]) -> None:
    with transaction(db):
        items_db.insert_annotations(db, [{"item_id": ids[t], "annotator": a, "label": lb} for t, a, lb in rows])


def test_agreement_page_shows_the_panel_against_people(fresh_db, db_path, films, monkeypatch) -> None:
    project, ids = films
    at = researcher_app("agreement.py", db_path, fresh_db, project.id, monkeypatch).run()
    assert not at.exception
    assert any(s.value == "LLM panel vs people" for s in at.subheader)
    assert any("No LLM panel yet" in i.value for i in at.info)

    _panel_labels(fresh_db, ids, [("a tired plot", "llm:a", "neg")])  # an item no person labelled
    at.run()
    assert any("No item is labelled by both the panel and people" in i.value for i in at.info)

    _panel_labels(fresh_db, ids, [(t, m, _agrees(model, t)) for t, _ in SYNTHETIC
                                  for m, model in (("llm:model-a", "model-a"), ("llm:model-b", "model-b"))])
    at.run()
    assert not at.exception
    calibration = project_panel(fresh_db, projects.get_project(fresh_db, project.id)).calibration
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Items labelled by both"] == str(calibration.n_items) == "3"
    for label, value in (("Panel accuracy", calibration.accuracy), ("Panel Cohen's kappa", calibration.cohen_kappa),
                         ("Panel Krippendorff's alpha", calibration.krippendorff_alpha),
                         ("Panel ECE", calibration.ece)):
        assert value is not None and math.isfinite(value)
        assert metrics[label] == f"{value:.3f}", label
    assert len(at.get("vega_lite_chart")) == 2  # the instance-agreement histogram and the reliability diagram
    with connection.open_db(db_path) as db:
        assert project_panel(db, projects.get_project(db, project.id)).members == (
            "llm:a", "llm:model-a", "llm:model-b")


def test_review_page_filters_on_panel_agreement(fresh_db, db_path, films, monkeypatch) -> None:
    project, ids = films
    _panel_labels(fresh_db, ids, [(t, m, _agrees(model, t)) for t, _ in SYNTHETIC
                                  for m, model in (("llm:model-a", "model-a"), ("llm:model-b", "model-b"))])
    at = researcher_app("review.py", db_path, fresh_db, project.id, monkeypatch).run()
    assert not at.exception
    shown_table = at.dataframe[0].value
    # pos items: model-a pos, model-b neg -> 1/2; neg items: both neg -> 1.
    assert dict(zip(shown_table["text"], shown_table["panel_agreement"], strict=True)) == {
        "a warm tale": 0.5, "a bright comedy": 0.5, "a dull mess": 1.0, "a tired plot": 1.0}
    at.slider(key="review_panel").set_value(0.75).run()
    assert at.dataframe[0].value["text"].tolist() == ["a dull mess", "a tired plot"]
