"""The loop on one page (core.analysis.loop): a hand-built project of two rounds with hand-set labels, exact
counts, label fidelity, panel agreement, equal-size diversity, ``max_round`` selection and one run per round."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from core import cli, jobs, projects
from core.analysis import diversity, loop, loop_chart
from core.analysis.service import AnalysisConfig
from core.errors import SynthloopError
from core.training.config import TrainConfig
from core.training.data import select_items
from db import generation as generation_db
from db import items as items_db
from db import jobs as jobs_db
from db import runs as runs_db
from db import transaction
from db.connection import now
from tests.test_analysis import FakeEmbedder
from tests.training_helpers import add_items

SMALL = AnalysisConfig(min_size=3, n_subsamples=3)
REAL_TRAIN = ["great film", "loved it", "superb cast", "awful film", "hated it", "dull plot"]
REAL_TEST = ["delight ok", "fun times", "mess here", "boring stuff"]


def _generation_job(db, project_id: int) -> int:
    job_id = jobs.create(db, kind="generation", project_id=project_id, config={})
    generation_db.create_generation_job(db, project_id=project_id, job_id=job_id, config={})
    generation_db.set_status(db, job_id, "done")
    jobs_db.finish_job(db, job_id, status="done")
    return job_id


def _synthetic(job_id: int, text: str, label: str, votes=(), **extra) -> dict:
    return {"text": text, "source": "synthetic", "label": label, "votes": list(votes),
            "generation": {"generation_mode": "zero-shot", "generation_job_id": job_id}, **extra}


@pytest.fixture
def looped(fresh_db, project):
    """Round 1: calls pos 1 (3 texts parsed), neg 2 (2 + 0); accepted p1 p2 n1 n2. Round 2: calls pos 1 (2),
    neg 1 (3); accepted p3 p4 n3 n4, n5 rejected. Human votes give round 1 fidelity 1/3 (p1 yes, p2 no, n1 tie,
    n2 unjudged) and round 2 fidelity 4/4; the panel labelled p1 (½ intended) and n1 (all intended)."""
    first, second = _generation_job(fresh_db, project.id), _generation_job(fresh_db, project.id)
    with transaction(fresh_db):
        generation_db.insert_calls(fresh_db, first, [{"label": "pos", "parsed": ["a", "b", "c"]},
                                                     {"label": "neg", "parsed": ["d", "e"]},
                                                     {"label": "neg", "parsed": [], "error": "timeout"}])
        generation_db.insert_calls(fresh_db, second, [{"label": "pos", "parsed": ["f", "g"]},
                                                      {"label": "neg", "parsed": ["h", "i", "j"]}])
    rows = [{"text": t, "label": "pos" if k < 3 else "neg"} for k, t in enumerate(REAL_TRAIN)]
    rows += [{"text": t, "split": "test", "label": "pos" if k < 2 else "neg"} for k, t in enumerate(REAL_TEST)]
    rows += [_synthetic(first, "p1 nice", "pos", ["pos", "pos"]), _synthetic(first, "p2 fine", "pos", ["neg", "neg"]),
             _synthetic(first, "n1 bad", "neg", ["neg", "pos"]), _synthetic(first, "n2 poor", "neg"),
             _synthetic(second, "p3 lovely", "pos", ["pos"]), _synthetic(second, "p4 grand", "pos", ["pos", "pos", "neg"]),
             _synthetic(second, "n3 rotten", "neg", ["neg"]), _synthetic(second, "n4 weak", "neg", ["neg", "neg"]),
             _synthetic(second, "n5 meh", "neg", ["pos"], review_status="rejected"),
             # An imported synthetic item of no generation job: of no round.
             {"text": "x1 imported", "source": "synthetic", "label": "pos",
              "generation": {"generation_mode": "zero-shot"}}]
    ids = dict(zip([r["text"].split(" ")[0] for r in rows], add_items(fresh_db, project.id, rows), strict=True))
    with transaction(fresh_db):
        items_db.insert_annotations(fresh_db, [
            {"item_id": ids["p1"], "annotator": "llm:a", "label": "pos"},
            {"item_id": ids["p1"], "annotator": "llm:b", "label": "neg"},
            {"item_id": ids["n1"], "annotator": "llm:a", "label": "neg"}])
    return ids


def _by_text(ids: dict[str, int], item_ids: list[int]) -> list[str]:
    names = {v: k for k, v in ids.items()}
    return [names[i] for i in item_ids]


# --- max_round ---------------------------------------------------------------------------------------------------

def test_max_round_selects_the_synthetic_items_of_rounds_up_to_it(fresh_db, project, looped):
    synthetic = ("zero-shot", "few-shot")
    up_to_1 = select_items(fresh_db, project.id, TrainConfig(sources=synthetic, max_round=1))
    assert _by_text(looped, up_to_1.train.item_ids) == ["p1", "p2", "n1", "n2"]
    assert up_to_1.report["dropped_round"] == 5  # p3 p4 n3 n4 and the imported x1
    up_to_2 = select_items(fresh_db, project.id, TrainConfig(sources=synthetic, max_round=2))
    assert _by_text(looped, up_to_2.train.item_ids) == ["p1", "p2", "n1", "n2", "p3", "p4", "n3", "n4"]
    assert up_to_2.report["dropped_round"] == 1
    every = select_items(fresh_db, project.id, TrainConfig(sources=synthetic))
    assert len(every.train) == 9 and every.report["dropped_round"] == 0
    with_real = select_items(fresh_db, project.id, TrainConfig(sources=("real", "zero-shot"), max_round=1))
    assert _by_text(looped, with_real.train.item_ids) == [
        "great", "loved", "superb", "awful", "hated", "dull", "p1", "p2", "n1", "n2"]
    assert _by_text(looped, with_real.test.item_ids) == ["delight", "fun", "mess", "boring"]
    assert with_real.test == up_to_1.test == every.test  # the test items do not depend on max_round
    assert TrainConfig(sources=synthetic, max_round=2).data_source == "zero-shot+few-shot (rounds ≤ 2)"


def test_max_round_must_be_a_round_number():
    for bad in (0, -1, 1.5, "two"):
        with pytest.raises(SynthloopError, match="max_round"):
            TrainConfig(max_round=bad)
    assert TrainConfig.from_dict(TrainConfig(max_round=3).to_dict()).max_round == 3
    assert TrainConfig.from_dict({}).max_round is None  # runs stored before the setting existed


def test_cli_train_takes_max_round(db_path, fresh_db, project, looped, capsys):
    assert cli.main(["train", "demo", "--sources", "zero-shot", "--max-round", "0", "--db", str(db_path)]) == 2
    assert "max_round=0 is not valid" in capsys.readouterr().err
    # A model that does not exist fails the run after its config (with the round) was stored.
    assert cli.main(["train", "demo", "--sources", "zero-shot", "--max-round", "1", "--model", "no-such-model-xyz",
                     "--db", str(db_path)]) == 2
    [run] = runs_db.list_runs(fresh_db)
    assert (run["config"]["max_round"], run["data_source"]) == (1, "zero-shot (rounds ≤ 1)")


# --- the view ----------------------------------------------------------------------------------------------------

def test_counts_fidelity_and_panel_per_round_and_label(fresh_db, project, looped):
    view = loop.loop_view(fresh_db, project.id, with_diversity=False)
    per_label = view.per_label.set_index(["round", "label"])
    assert per_label.loc[(1, "pos"), ["calls", "generated", "accepted"]].tolist() == [1, 3, 2]
    assert per_label.loc[(1, "neg"), ["calls", "generated", "accepted"]].tolist() == [2, 2, 2]
    assert per_label.loc[(2, "pos"), ["calls", "generated", "accepted"]].tolist() == [1, 2, 2]
    assert per_label.loc[(2, "neg"), ["calls", "generated", "accepted"]].tolist() == [1, 3, 2]  # n5 was rejected
    assert per_label.loc[(2, "neu"), ["calls", "generated", "accepted", "n_judged", "n_panel"]].tolist() == [0] * 5
    assert per_label.loc[(1, "pos"), "fidelity"] == 0.5 and per_label.loc[(1, "pos"), "n_judged"] == 2
    assert per_label.loc[(1, "neg"), "fidelity"] == 0.0 and per_label.loc[(1, "neg"), "n_judged"] == 1  # tie
    assert per_label.loc[(2, "neg"), "fidelity"] == 1.0 and per_label.loc[(2, "neg"), "n_judged"] == 2
    assert per_label.loc[(1, "pos"), "panel_agreement"] == 0.5 and per_label.loc[(1, "neg"), "panel_agreement"] == 1.0
    per_round = view.per_round.set_index("round")
    assert per_round[["calls", "generated", "accepted", "n_judged", "n_panel"]].to_dict(orient="index") == {
        1: {"calls": 3, "generated": 5, "accepted": 4, "n_judged": 3, "n_panel": 2},
        2: {"calls": 2, "generated": 5, "accepted": 4, "n_judged": 4, "n_panel": 0}}
    assert per_round.loc[1, "fidelity"] == pytest.approx(1 / 3) and per_round.loc[2, "fidelity"] == 1.0
    assert per_round.loc[1, "panel_agreement"] == 0.75 and math.isnan(per_round.loc[2, "panel_agreement"])
    assert view.per_round["generation_job_id"].tolist() == [1, 2]
    assert view.per_round["macro_f1"].isna().all() and view.real["macro_f1"] is None


def test_diversity_and_similarity_at_one_size_across_rounds_and_real(fresh_db, project, looped):
    embedder = FakeEmbedder()
    view = loop.loop_view(fresh_db, project.id, embedder=embedder, config=SMALL)
    assert view.n_subsample == 4 and view.excluded == {}  # rounds of 4 accepted items, 6 real training items
    vectors = dict(zip(embedder.texts_encoded, embedder.encode(embedder.texts_encoded), strict=True))
    real_test = np.array([vectors[t] for t in REAL_TEST])
    for round_, texts in ((1, ["p1 nice", "p2 fine", "n1 bad", "n2 poor"]),
                          (2, ["p3 lovely", "p4 grand", "n3 rotten", "n4 weak"])):
        matrix = np.array([vectors[t] for t in texts])  # 4 items at size 4: the one subset is the whole round
        row = view.per_round.set_index("round").loc[round_]
        assert row["remote_clique"] == pytest.approx(diversity.remote_clique(matrix), abs=1e-6)
        assert row["chamfer"] == pytest.approx(diversity.chamfer_distance(matrix), abs=1e-6)
        assert row["similarity_to_real"] == pytest.approx(diversity.top_k_similarity(real_test, matrix, k=4), abs=1e-6)
    real = np.array([vectors[t] for t in REAL_TRAIN])
    draws = diversity.subsample_indices(6, 4, n_subsamples=3, seed=0)
    assert len(draws) == 3
    assert view.real["remote_clique"] == pytest.approx(np.mean([diversity.remote_clique(real[d]) for d in draws]))
    assert view.real["chamfer"] == pytest.approx(np.mean([diversity.chamfer_distance(real[d]) for d in draws]))
    assert "n2 poor" in embedder.texts_encoded and "x1 imported" not in embedder.texts_encoded


def test_a_round_below_the_minimum_is_left_out_and_named(fresh_db, project, looped):
    view = loop.loop_view(fresh_db, project.id, embedder=FakeEmbedder(), config=AnalysisConfig(min_size=5))
    assert view.n_subsample is None  # real data alone is no comparison
    assert view.excluded == {"round 1": {"n": 4, "reason": "fewer than the minimum of 5 items"},
                             "round 2": {"n": 4, "reason": "fewer than the minimum of 5 items"}}
    assert view.per_round["remote_clique"].isna().all() and view.real.get("remote_clique") is None
    assert "no round has enough items for the diversity comparison" in loop.loop_lines(view)


def _finish(db, run_id: int, macro_f1: float) -> None:
    runs_db.update_run(db, run_id, metrics={"macro_f1": macro_f1, "accuracy": macro_f1})
    runs_db.finish_run(db, run_id, status="done")


def test_train_rounds_starts_one_run_per_round_and_the_view_shows_the_latest(db_path, fresh_db, project, looped,
                                                                            launched):
    started = loop.train_rounds(fresh_db, db_path, project.id, TrainConfig(epochs=1, cap_per_label=2))
    assert [s["round"] for s in started] == [1, 2] and len(launched) == 2, started
    runs = {r["config"]["max_round"]: r for r in runs_db.list_runs(fresh_db)}
    assert runs[1]["config"] == TrainConfig(sources=("zero-shot", "few-shot"), max_round=1, epochs=1,
                                            cap_per_label=2).to_dict()
    assert runs[2]["status"] == "queued"
    assert loop.train_rounds(fresh_db, db_path, project.id) == []  # both rounds have an active run
    _finish(fresh_db, runs[1]["id"], 0.4)
    runs_db.finish_run(fresh_db, runs[2]["id"], status="failed", error="boom")
    real_run = runs_db.create_run(fresh_db, project_id=project.id, config=TrainConfig().to_dict(),
                                  data_source="real")
    _finish(fresh_db, real_run, 0.9)
    view = loop.loop_view(fresh_db, project.id, with_diversity=False)
    assert view.per_round["macro_f1"].tolist()[0] == 0.4 and math.isnan(view.per_round["macro_f1"].tolist()[1])
    assert view.per_round["run_id"].tolist()[0] == runs[1]["id"]
    assert (view.real["run_id"], view.real["macro_f1"]) == (real_run, 0.9)
    [again] = loop.train_rounds(fresh_db, db_path, project.id)  # round 2 failed: it is trained again
    assert again["round"] == 2 and again["run_id"] > real_run


def test_a_round_that_cannot_train_is_reported_not_raised(db_path, fresh_db, project, looped, launched):
    third = _generation_job(fresh_db, project.id)
    add_items(fresh_db, project.id, [_synthetic(third, "only pos", "pos")])
    runs = loop.train_rounds(fresh_db, db_path, project.id, TrainConfig(max_round=None))
    assert [r["round"] for r in runs] == [1, 2, 3]
    assert "error" not in runs[2]  # round 3 alone has one label, but rounds ≤ 3 hold both
    fresh = projects.create_project(fresh_db, "empty", projects.parse_labels("pos,neg"))
    job = _generation_job(fresh_db, fresh.id)
    [failed] = loop.train_rounds(fresh_db, db_path, fresh.id)
    assert failed["round"] == 1 and "no labelled real test items" in failed["error"]
    with transaction(fresh_db):
        fresh_db.execute("UPDATE job SET status = 'running', pid = ?, heartbeat_at = ? WHERE id = ?",
                         [os.getpid(), now(), job])
    [busy] = loop.train_rounds(fresh_db, db_path, fresh.id)
    assert busy == {"round": 1, "error": f"generation job {job} is still running"}


def test_cli_loop_json(db_path, fresh_db, project, looped, capsys, monkeypatch):
    monkeypatch.setattr("core.analysis.service.load_embedder", lambda model, batch_size: FakeEmbedder())
    assert cli.main(["loop", "demo", "--json", "--min-size", "3", "--db", str(db_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["accepted"] for r in out["per_round"]] == [4, 4]
    assert out["per_round"][1]["panel_agreement"] is None and out["n_subsample"] == 4
    assert out["real"]["n"] == 6 and out["trained"] == []
    assert cli.main(["loop", "demo", "--no-diversity", "--db", str(db_path)]) == 0
    text = capsys.readouterr().out
    assert "round 1 (job 1): 3 calls, 5 generated, 4 accepted; fidelity 0.333 (n=3), panel 0.750 (n=2)" in text


def test_loop_chart_has_macro_f1_the_real_rule_and_quality(fresh_db, project, looped, launched, db_path):
    loop.train_rounds(fresh_db, db_path, project.id)
    for run in runs_db.list_runs(fresh_db):
        _finish(fresh_db, run["id"], 0.25 * run["config"]["max_round"])
    real_run = runs_db.create_run(fresh_db, project_id=project.id, config=TrainConfig().to_dict(), data_source="real")
    _finish(fresh_db, real_run, 0.8)
    view = loop.loop_view(fresh_db, project.id, with_diversity=False)
    frame = loop_chart.chart_frame(view)
    f1 = frame[frame["metric"] == loop_chart.MACRO_F1]
    assert f1[["round", "value"]].to_dict(orient="records") == [{"round": 1, "value": 0.25},
                                                               {"round": 2, "value": 0.5}]
    fidelity = frame[frame["metric"] == loop_chart.FIDELITY]
    assert fidelity["value"].tolist() == pytest.approx([1 / 3, 1.0])
    spec = loop_chart.loop_chart(view).to_dict()
    assert "vconcat" in spec and "0.800" in json.dumps(spec)  # the real-data rule is labelled with its value


@pytest.mark.slow
def test_one_model_per_round_trained_in_the_foreground(db_path, fresh_db, project, looped):
    settings = TrainConfig(epochs=1, batch_size=8, max_length=32, seed=7)
    trained = loop.train_rounds(fresh_db, db_path, project.id, settings, foreground=True)
    assert [t["round"] for t in trained] == [1, 2] and all("error" not in t for t in trained)
    runs = {r["config"]["max_round"]: r for r in runs_db.list_runs(fresh_db)}
    assert _by_text(looped, runs[1]["train_item_ids"]) == ["p1", "p2", "n1", "n2"]
    assert sorted(_by_text(looped, runs[2]["train_item_ids"])) == sorted(
        ["p1", "p2", "n1", "n2", "p3", "p4", "n3", "n4"])
    assert {r["n_test"] for r in runs.values()} == {4} and {r["status"] for r in runs.values()} == {"done"}
    view = loop.loop_view(fresh_db, project.id, with_diversity=False)
    assert view.per_round["macro_f1"].tolist() == [runs[1]["metrics"]["macro_f1"], runs[2]["metrics"]["macro_f1"]]
    assert view.per_round["macro_f1"].tolist() == [t["macro_f1"] for t in trained]
    assert loop.train_rounds(fresh_db, db_path, project.id, settings, foreground=True) == []
