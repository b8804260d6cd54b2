"""Issue 11, items 8, 9 and 11 — no silent wrong result out: the study trains what its table says (label source,
empty and identical runs), diversity is compared at one set size (small sources left out, with a note), and
small γ sweeps and Table 1 rows of different label sources are flagged. Exact values on tiny projects."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from core import cli, jobs, projects
from core.analysis import report, study
from core.analysis import service as analysis
from core.errors import SynthloopError
from core.training import service as training
from core.training.config import TrainConfig
from core.training.data import select_items
from core.training.metrics import agreement_sweep, sweep_fit_note
from db import connection
from db import jobs as jobs_db
from db import runs as runs_db
from db import seeds as seeds_db
from db.connection import transaction
from tests.conftest import ROOT
from tests.page_helpers import researcher_app, shown
from tests.test_analysis import FakeEmbedder
from tests.test_analysis import add_items as add_analysed_items
from tests.test_study import NEGATIVE, POSITIVE, add
from tests.training_helpers import add_items

# --- item 11: small γ sweeps are flagged -------------------------------------------------------------------

FEW_POINTS = ("R² and ρ are not meaningful: only 3 thresholds (at least 5 are needed) and only 2 items at"
              " γ = 1.00 (at least 30 are needed at every γ)")


def _levels(counts: list[int]) -> tuple[list[str], list[str], list[float]]:
    """Items at agreement levels 0.2, 0.4, … (``counts[i]`` items at level i); the first of each level is wrong."""
    y_true, y_pred, agreement = [], [], []
    for level, count in enumerate(counts):
        for k in range(count):
            y_true.append("a")
            y_pred.append("b" if k == 0 else "a")
            agreement.append(round(0.2 * (level + 1), 1))
    return y_true, y_pred, agreement


def test_sweep_with_few_thresholds_and_items_says_r2_and_rho_are_not_meaningful() -> None:
    sweep = agreement_sweep(["a", "a", "b", "b", "a", "b"], ["a", "b", "b", "a", "a", "b"],
                            [1.0, 2 / 3, 1.0, 0.5, None, 2 / 3])
    result = sweep.to_dict()
    assert [p["n_items"] for p in result["sweep"]] == [5, 4, 2]
    assert result["sweep_r2"] == pytest.approx(12321 / 12348)  # still reported, but flagged
    assert result["sweep_fit_meaningful"] is False
    assert result["sweep_fit_note"] == FEW_POINTS
    assert sweep_fit_note(result["sweep"]) == FEW_POINTS  # the same rule on a stored sweep


def test_sweep_with_five_thresholds_of_thirty_items_is_meaningful() -> None:
    sweep = agreement_sweep(*_levels([1, 1, 1, 1, 30])).to_dict()
    assert [p["n_items"] for p in sweep["sweep"]] == [34, 33, 32, 31, 30]
    assert (sweep["sweep_fit_meaningful"], sweep["sweep_fit_note"]) == (True, None)
    too_few_items = agreement_sweep(*_levels([1, 1, 1, 1, 29])).to_dict()
    assert too_few_items["sweep_fit_note"] == ("R² and ρ are not meaningful: only 29 items at γ = 1.00 (at least 30"
                                               " are needed at every γ)")
    four = agreement_sweep(*_levels([40, 40, 40, 40])).to_dict()
    assert four["sweep_fit_note"] == "R² and ρ are not meaningful: only 4 thresholds (at least 5 are needed)"
    assert agreement_sweep(["a"], ["a"], [None]).to_dict()["sweep_fit_note"] == (
        "R² and ρ are not meaningful: only 0 thresholds (at least 5 are needed)")


def _finished_run(db, project_id: int, sources: tuple[str, ...], accuracy: float, *, label_source: str = "reference",
                  sweep: list[dict] | None = None) -> int:
    config = TrainConfig(sources=sources, label_source=label_source)
    run_id = runs_db.create_run(db, project_id=project_id, config=config.to_dict(), data_source=config.data_source,
                                status="running")
    sweep = sweep if sweep is not None else [{"gamma": 2 / 3, "n_items": 2, "accuracy": 0.5, "macro_f1": 0.4},
                                             {"gamma": 1.0, "n_items": 1, "accuracy": 1.0, "macro_f1": 1.0}]
    metrics = {"accuracy": accuracy, "macro_f1": accuracy - 0.1, "labels": ["pos", "neg"],
               "per_class": {lb: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1} for lb in ("pos", "neg")},
               "confusion_matrix": [[1, 0], [0, 1]], "sweep": sweep, "sweep_slope": 1.5, "sweep_intercept": -0.5,
               "sweep_r2": 1.0, "sweep_spearman_rho": 1.0}
    runs_db.update_run(db, run_id, metrics=metrics, history={"steps": [], "epochs": []}, n_train=4, n_test=2,
                       seconds=3.0)
    runs_db.finish_run(db, run_id, status="done")
    return run_id


TWO_POINTS = ("R² and ρ are not meaningful: only 2 thresholds (at least 5 are needed) and only 1 item at γ = 1.00"
              " (at least 30 are needed at every γ)")


def test_table1_splits_and_flags_rows_of_different_label_sources(fresh_db, project) -> None:
    _finished_run(fresh_db, project.id, ("real",), 0.9)
    _finished_run(fresh_db, project.id, ("real",), 0.5, label_source="majority")
    _finished_run(fresh_db, project.id, ("few-shot",), 0.7)
    table = training.table1(training.runs_frame(fresh_db))
    assert list(table.columns) == ["project", "label source", "objective", "real · macro-F1", "real · accuracy",
                                   "few-shot · macro-F1", "few-shot · accuracy", "runs"]
    # Before, the two real runs were averaged into one cell (0.7) although they learnt from different labels.
    assert table.to_dict("records") == [
        {"project": "demo", "label source": "majority", "objective": "hard", "real · macro-F1": pytest.approx(0.4),
         "real · accuracy": 0.5, "few-shot · macro-F1": pytest.approx(float("nan"), nan_ok=True),
         "few-shot · accuracy": pytest.approx(float("nan"), nan_ok=True), "runs": 1},
        {"project": "demo", "label source": "reference", "objective": "hard", "real · macro-F1": pytest.approx(0.8),
         "real · accuracy": 0.9, "few-shot · macro-F1": pytest.approx(0.6), "few-shot · accuracy": 0.7, "runs": 2}]
    assert training.table1_note(table) == ("These rows are not comparable: they were trained with different label"
                                          " sources (demo: majority; demo: reference).")
    same = training.table1(training.runs_frame(fresh_db, label_sources=["reference"]))
    assert training.table1_note(same) is None


def test_runs_frame_and_sweep_table_mark_a_small_sweep(db_path, fresh_db, project) -> None:
    small = _finished_run(fresh_db, project.id, ("real",), 0.9)
    large_sweep = [{"gamma": g, "n_items": 40 - k, "accuracy": 0.5 + k / 10, "macro_f1": 0.5}
                   for k, g in enumerate((0.2, 0.4, 0.6, 0.8, 1.0))]
    large = _finished_run(fresh_db, project.id, ("few-shot",), 0.7, sweep=large_sweep)
    frame = training.runs_frame(fresh_db)
    assert frame.set_index("run")["sweep_note"].fillna("").to_dict() == {small: TWO_POINTS, large: ""}
    table = training.sweep_table(training.sweep_results(fresh_db, db_path, [small, large]))
    assert table["R² and ρ"].tolist() == [TWO_POINTS, "meaningful"]
    assert table["R²"].tolist() == [1.0, 1.0]  # the numbers stay, marked


def test_runs_page_flags_label_sources_and_small_sweeps(db_path, fresh_db, project, monkeypatch) -> None:
    real = _finished_run(fresh_db, project.id, ("real",), 0.9)
    _finished_run(fresh_db, project.id, ("real",), 0.5, label_source="majority")
    at = researcher_app("runs.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    warnings = [shown(w.value) for w in at.warning]
    assert warnings[0] == ("These rows are not comparable: they were trained with different label sources (demo:"
                           " majority; demo: reference).")
    assert warnings[1] == f"Run {real + 1} (real): {TWO_POINTS}."
    assert at.dataframe[0].value["label source"].tolist() == ["majority", "reference"]


# --- item 9: diversity at one common size, small sources left out ------------------------------------------

def _real_and_synthetic(db, project_id: int, *, n_real: int, generated: dict[int, tuple[str, int]]) -> None:
    """``n_real`` real items, and per generation job (``generated``: ``{job_id: (mode, n_items)}``) its
    synthetic items."""
    add_analysed_items(db, project_id, [{"text": f"real text {i}", "source": "real", "split": "train",
                                         "reference_label": "pos"} for i in range(n_real)])
    for job_id, (mode, n) in generated.items():
        add_analysed_items(db, project_id, [{"text": f"{mode} text {job_id}.{i}", "source": "synthetic",
                                             "split": "train", "reference_label": "pos", "generation_job_id": job_id,
                                             "generation_mode": mode} for i in range(n)])


LEFT_OUT_3 = {"n": 3, "n_subsample": None, "n_repeats": 0, "remote_clique": None, "remote_clique_std": None,
              "chamfer": None, "chamfer_std": None, "excluded": True}


def test_a_3_item_source_is_not_compared_beside_40_real_items(fresh_db, project) -> None:
    _real_and_synthetic(fresh_db, project.id, n_real=40, generated={5: ("zero-shot", 3)})
    result = analysis.analyse_project(fresh_db, project.id, analysis.AnalysisConfig(projection="pca"),
                                      embedder=FakeEmbedder())
    assert result["config"]["min_size"] == 10
    assert result["n_subsample"] == 40
    assert (result["real"]["n"], result["real"]["n_subsample"], result["real"]["excluded"]) == (40, 40, False)
    assert result["synthetic"] == LEFT_OUT_3 and result["zero-shot"] == LEFT_OUT_3
    assert result["generation_jobs"]["5"] == {"mode": "zero-shot", **LEFT_OUT_3}
    assert result["excluded"] == {name: {"n": 3, "reason": "fewer than the minimum of 10 items"}
                                  for name in ("synthetic", "zero-shot", "job 5")}
    assert result["top5_similarity_to_real"] == {} and result["similarity"] == {}
    frame = analysis.diversity_frame(result)
    assert frame["source"].tolist() == ["real", "real"] and set(frame["n_subsample"]) == {40}
    assert analysis.excluded_note(result) == ("Left out of the comparison (fewer than the minimum of 10 items):"
                                              " synthetic (n=3), zero-shot (n=3), job 5 (n=3).")
    assert "  synthetic  n=3      left out: fewer than the minimum of 10 items" in result["message"]


def test_every_compared_source_is_at_the_common_size(fresh_db, project) -> None:
    # zero-shot 15 (job 5); few-shot 23 (job 6: 12, job 7: 11); real 40. The smallest main source is zero-shot.
    _real_and_synthetic(fresh_db, project.id, n_real=40, generated={5: ("zero-shot", 15), 6: ("few-shot", 12),
                                                               7: ("few-shot", 11)})
    result = analysis.analyse_project(fresh_db, project.id, analysis.AnalysisConfig(projection="pca", subsample=30),
                                      embedder=FakeEmbedder())
    assert result["n_subsample"] == 15
    assert {name: result[name]["n_subsample"] for name in result["sources"]} == {
        "real": 15, "synthetic": 15, "zero-shot": 15, "few-shot": 15}
    # Before, job 6 and job 7 were drawn at 12 and 11 items beside the others at 15.
    assert result["excluded"] == {"job 6": {"n": 12, "reason": "fewer than the common size of 15 items"},
                                  "job 7": {"n": 11, "reason": "fewer than the common size of 15 items"}}
    assert result["generation_jobs"]["5"]["n_subsample"] == 15
    assert set(result["top5_similarity_to_real"]) == {"synthetic", "zero-shot", "few-shot"}
    assert {v["n_subsample"] for v in result["similarity"].values()} == {15}
    assert set(analysis.diversity_frame(result)["n_subsample"]) == {15}
    assert analysis.similarity_frame(result)["source"].tolist() == ["synthetic", "zero-shot", "few-shot", "job 5"]
    assert set(analysis.similarity_frame(result)["n_subsample"]) == {15}


def test_min_size_is_a_validated_setting() -> None:
    with pytest.raises(SynthloopError, match=r"analysis setting min_size=1 is not valid: use a whole number ≥ 2"):
        analysis.AnalysisConfig(min_size=1)
    assert analysis.AnalysisConfig.from_dict({"min_size": 3}).min_size == 3


def test_cli_analyse_json_has_n_and_excluded(db_path, fresh_db, project, monkeypatch, capsys) -> None:
    monkeypatch.setattr(analysis, "load_embedder", lambda model, batch_size: FakeEmbedder())
    _real_and_synthetic(fresh_db, project.id, n_real=12, generated={5: ("zero-shot", 3), 6: ("few-shot", 11)})
    assert cli.main(["analyse", "demo", "--json", "--db", str(db_path), "--min-size", "11"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert {name: (output[name]["n"], output[name]["excluded"]) for name in ("real", "synthetic", "zero-shot",
                                                                             "few-shot")} == {
        "real": (12, False), "synthetic": (14, False), "zero-shot": (3, True), "few-shot": (11, False)}
    assert output["n_subsample"] == 11 and output["zero-shot"]["remote_clique"] is None
    assert output["excluded"] == {"zero-shot": {"n": 3, "reason": "fewer than the minimum of 11 items"},
                                  "job 5": {"n": 3, "reason": "fewer than the minimum of 11 items"}}
    assert set(output["top5_similarity_to_real"]) == {"synthetic", "few-shot"}


def test_diversity_page_names_the_left_out_source_and_its_n(db_path, fresh_db, project, monkeypatch) -> None:
    monkeypatch.setattr(analysis, "load_embedder", lambda model, batch_size: FakeEmbedder())
    _real_and_synthetic(fresh_db, project.id, n_real=40, generated={5: ("zero-shot", 3)})
    done = analysis.run_analysis_foreground(str(db_path), project.id, analysis.AnalysisConfig(projection="pca"))
    at = researcher_app("analysis.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Left out of the comparison (fewer than the minimum of 10 items):"
                                             " synthetic (n=3), zero-shot (n=3), job 5 (n=3)."]
    assert any(c.value.startswith(f"Analysis job {done['job_id']} · 40 items per source") for c in at.caption)
    table = at.dataframe[0].value
    assert table[["source", "n", "n_subsample"]].drop_duplicates().values.tolist() == [["real", 40, 40]]
    assert at.number_input[1].value == 10  # the setting, shown in the form


# --- item 8: the study trains what its table says ----------------------------------------------------------

def _raw_labels_only(db, project_id: int) -> None:
    """Real items imported as raw per-annotator labels only (no reference label), two of them seeds, and two
    few-shot items that carry only their intended label (nobody annotated them)."""
    train = add_items(db, project_id, [{"text": t, "votes": ["pos"] * 3} for t in POSITIVE[:3]]
                      + [{"text": t, "votes": ["neg"] * 3} for t in NEGATIVE[:3]])
    add_items(db, project_id, [{"text": t, "split": "test", "votes": ["pos", "pos", "neg"]} for t in POSITIVE[4:6]]
              + [{"text": t, "split": "test", "votes": ["neg"] * 3} for t in NEGATIVE[4:6]])
    add_items(db, project_id, [{"text": "so lovely", "source": "synthetic", "label": "pos",
                                "generation": {"generation_mode": "few-shot", "generation_job_id": 2}},
                               {"text": "so awful", "source": "synthetic", "label": "neg",
                                "generation": {"generation_mode": "few-shot", "generation_job_id": 2}}])
    with transaction(db):
        seeds_db.insert_seeds(db, project_id, [train[0], train[3]])


def _empty(sources: str, label_source: str, n: int) -> str:
    return (f"no training items left for sources {sources!r} with label source {label_source!r} and min agreement 0"
            f" ({n} candidates, {n} without a label): choose other sources, another label source or a lower"
            " threshold")


NO_ZERO_SHOT = ("no zero-shot synthetic data: the run 'zero-shot' will be skipped — generate some with"
                " `python -m core generate demo --mode zero-shot --per-label N`")


@pytest.fixture
def binary(fresh_db):

    return projects.create_project(fresh_db, "demo", projects.parse_labels("pos,neg"))


def test_reference_labels_of_raw_label_data_give_empty_runs_and_an_identical_one(fresh_db, binary) -> None:
    _raw_labels_only(fresh_db, binary.id)
    found = study.check_ingredients(fresh_db, binary.id, study.StudyConfig(out_dir="x", label_source="reference"))
    assert found.runnable == ("few-shot",)
    assert found.skipped == {"real": _empty("real", "reference", 6), "zero-shot": "no zero-shot synthetic data",
                             "seeds": _empty("seeds", "reference", 2)}
    # The seeds have no reference label, so "seeds + few-shot" would train on the few-shot items alone.
    assert found.identical == {"seeds + few-shot": "few-shot"}
    assert [p.message for p in found.problems] == [
        NO_ZERO_SHOT,
        f"the run 'real' will be skipped: {_empty('real', 'reference', 6)}",
        f"the run 'seeds' will be skipped: {_empty('seeds', 'reference', 2)}",
        "the run 'seeds + few-shot' would train on exactly the training items of 'few-shot' (2 items): it is not"
        " trained again, and the report marks it as identical to 'few-shot'"]
    assert found.to_dict()["identical"] == {"seeds + few-shot": "few-shot"}


def test_majority_labels_train_the_real_run_of_raw_label_data(fresh_db, binary) -> None:
    _raw_labels_only(fresh_db, binary.id)
    found = study.check_ingredients(fresh_db, binary.id, study.StudyConfig(out_dir="x", label_source="majority"))
    assert found.runnable == ("real", "seeds")
    assert found.skipped == {"zero-shot": "no zero-shot synthetic data", "few-shot": _empty("few-shot", "majority", 2)}
    assert found.identical == {"seeds + few-shot": "seeds"}
    assert found.n_train == {"real": 6, "seeds": 2, "seeds + few-shot": 2}


def test_no_seeds_makes_seeds_plus_few_shot_identical_to_few_shot(fresh_db, binary) -> None:
    add(fresh_db, binary.id, POSITIVE[:3], "pos", split="train")
    add(fresh_db, binary.id, NEGATIVE[:3], "neg", split="train")
    add(fresh_db, binary.id, POSITIVE[4:6] + NEGATIVE[4:6], "pos", split="test")
    add(fresh_db, binary.id, ["loved it", "fun"], "pos", split="train", source="synthetic", mode="few-shot")
    add(fresh_db, binary.id, ["hated it", "dull"], "neg", split="train", source="synthetic", mode="few-shot")
    found = study.check_ingredients(fresh_db, binary.id, study.StudyConfig(out_dir="x", arms=(
        "few-shot", "seeds", "seeds + few-shot")))
    assert found.runnable == ("few-shot",)
    assert found.skipped == {"seeds": "no seeds"}
    assert found.identical == {"seeds + few-shot": "few-shot"}
    assert [p.message for p in found.problems][0] == (
        "no seeds: the run 'seeds' will be skipped — pick seed examples on the Seeds page or run `python -m core"
        " seeds sample demo --per-label N`")
    alone = study.check_ingredients(fresh_db, binary.id, study.StudyConfig(out_dir="x", arms=("seeds + few-shot",)))
    assert (alone.runnable, alone.identical) == (("seeds + few-shot",), {})
    assert alone.problems[0].message == (
        "no seeds: the run 'seeds + few-shot' will train on its other data only — pick seed examples on the Seeds"
        " page or run `python -m core seeds sample demo --per-label N`")


# --- the report says all of it ----------------------------------------------------------------------------

def _fake_training(trained: list[tuple[str, ...]]):
    """A stand-in for ``run_training``: selects the run's items like a real run and scores a fixed result."""

    def run_training(db_path, project_id, config, *, job_id=None):
        trained.append(config.sources)
        with connection.open_db(db_path) as db:
            selection = select_items(db, project_id, config)
        sweep = [{"gamma": 2 / 3, "n_items": 4, "accuracy": 0.5, "macro_f1": 0.4},
                 {"gamma": 1.0, "n_items": 2, "accuracy": 1.0, "macro_f1": 1.0}]
        return {"run_id": len(trained), "accuracy": 0.75, "macro_f1": 0.7, "n_train": len(selection.train),
                "n_test": len(selection.test), "sweep": sweep, "sweep_r2": 1.0, "sweep_spearman_rho": 1.0,
                "history": {}, "config": config.to_dict()}

    return run_training


def test_study_skips_empty_runs_and_marks_identical_ones_in_result_and_report(db_path, fresh_db, binary, tmp_path,
                                                                               monkeypatch) -> None:
    _raw_labels_only(fresh_db, binary.id)
    trained: list[tuple[str, ...]] = []
    monkeypatch.setattr("core.training.run.run_training", _fake_training(trained))
    monkeypatch.setattr("core.analysis.service.load_embedder", lambda model, batch_size: FakeEmbedder())
    out = tmp_path / "study"
    result = study.run_study(str(db_path), binary.id, study.StudyConfig(out_dir=str(out), label_source="majority",
                                                                        analysis_projection="pca"))
    assert trained == [("real",), ("seeds",)]  # "seeds + few-shot" is not trained a second time
    assert list(result["runs"]) == ["real", "seeds"]
    assert result["identical"] == {"seeds + few-shot": "seeds"}
    assert result["skipped"] == {"zero-shot": "no zero-shot synthetic data",
                                 "few-shot": _empty("few-shot", "majority", 2)}
    assert "  seeds + few-shot  not run: identical to 'seeds' (the same training items)" in result["message"]
    table1 = pd.read_csv(out / "table1.csv", keep_default_na=False)
    assert table1[["training data", "label_source", "n_train", "accuracy", "note"]].astype(str).values.tolist() == [
        ["real", "majority", "6", "0.75", ""],
        ["zero-shot", "", "", "", "no zero-shot synthetic data"],
        ["few-shot", "", "", "", _empty("few-shot", "majority", 2)],
        ["seeds", "majority", "2", "0.75", ""],
        ["seeds + few-shot", "", "", "", "identical to 'seeds' (the same 2 training items): not trained again"]]
    notes = report.study_notes(result)
    assert "The run 'seeds + few-shot' is identical to 'seeds' (the same 2 training items): it was not trained" \
           " again, and its row in Table 1 has no numbers of its own." in notes
    index = (out / "index.html").read_text()
    assert "identical to &#x27;seeds&#x27; (the same 2 training items)" in index


def _study_with(runs: dict, analysis_result: dict | None = None) -> dict:
    return {"project": "demo", "config": {"arms": list(runs), "label_source": "reference"}, "runs": runs,
            "skipped": {}, "failed": {}, "identical": {}, "ingredients": {"problems": []},
            "subjectivity": {"mean_test_instance_agreement": 0.8, "test_items_with_agreement": 4},
            "analysis": analysis_result or {}, "seconds": 1.0}


def _run(label_source: str, sweep: list[dict]) -> dict:
    return {"run_id": 1, "accuracy": 0.75, "macro_f1": 0.7, "n_train": 8, "n_test": 4, "sweep": sweep,
            "sweep_r2": 0.5, "sweep_spearman_rho": 0.4, "config": {"label_source": label_source}, "history": {}}


SMALL_SWEEP = [{"gamma": 0.6, "n_items": 4, "accuracy": 0.5, "macro_f1": 0.4},
               {"gamma": 1.0, "n_items": 2, "accuracy": 1.0, "macro_f1": 1.0}]
LARGE_SWEEP = [{"gamma": g, "n_items": 50 - k, "accuracy": 0.5 + k / 10, "macro_f1": 0.5}
               for k, g in enumerate((0.2, 0.4, 0.6, 0.8, 1.0))]


def test_report_flags_small_sweeps_and_rows_of_different_label_sources(tmp_path) -> None:
    planned = _study_with({"real": _run("reference", SMALL_SWEEP), "few-shot": _run("majority", LARGE_SWEEP)})
    frames = report.study_frames(planned)
    assert frames["table1"][["training data", "label_source", "sweep_r2", "sweep_fit"]].values.tolist() == [
        ["real", "reference", 0.5, "not meaningful"], ["few-shot", "majority", 0.5, ""]]
    assert frames["sweep"].drop_duplicates("arm")["panel"].tolist() == [
        "real: R² = 0.50, ρ = 0.40 (not meaningful)", "few-shot: R² = 0.50, ρ = 0.40"]
    assert report.study_notes(planned) == [
        "These rows are not comparable: they were trained with different label sources (real: reference; few-shot:"
        " majority).",
        "real: R² and ρ are not meaningful: only 2 thresholds (at least 5 are needed) and only 2 items at γ = 1.00"
        " (at least 30 are needed at every γ)."]
    report.write_report(tmp_path / "r", planned)
    index = (tmp_path / "r" / "index.html").read_text()
    assert "real: R² and ρ are not meaningful: only 2 thresholds" in index
    assert "These rows are not comparable" in index
    same = _study_with({"real": _run("reference", LARGE_SWEEP), "few-shot": _run("reference", LARGE_SWEEP)})
    assert report.study_notes(same) == []


def test_figure1_caption_states_the_common_size_that_every_row_has(db_path, fresh_db, project, tmp_path) -> None:
    _real_and_synthetic(fresh_db, project.id, n_real=40, generated={5: ("zero-shot", 3), 6: ("few-shot", 12)})
    result = analysis.analyse_project(fresh_db, project.id, analysis.AnalysisConfig(projection="pca"),
                                      embedder=FakeEmbedder())
    planned = _study_with({"real": _run("reference", LARGE_SWEEP)}, result)
    report.write_report(tmp_path / "r", planned)
    captions = report.read_tables(tmp_path / "r")["captions"]
    claimed = int(re.search(r"subsamples of (\d+) items from every source", captions["figure1_diversity"])[1])
    table = pd.read_csv(tmp_path / "r" / "diversity.csv")
    assert claimed == 12
    assert set(table["n_subsample"]) == {claimed} and (table["n"] >= claimed).all()
    assert sorted(set(table["source"])) == ["few-shot", "job 6", "real", "synthetic"]
    assert captions["figure1_diversity"].endswith(
        "Left out of the comparison (fewer than the minimum of 10 items): zero-shot (n=3), job 5 (n=3).")
    similarity = pd.read_csv(tmp_path / "r" / "similarity.csv")
    assert set(similarity["n_subsample"]) == {12}
    assert "subsamples of 12 items from each synthetic source" in captions["figureB2_similarity"]
    index = (tmp_path / "r" / "index.html").read_text()
    assert "zero-shot (n=3), job 5 (n=3)" in index


def test_study_page_takes_a_label_source_and_says_which_runs_it_trains(db_path, fresh_db, binary, monkeypatch,
                                                                        launched) -> None:
    _raw_labels_only(fresh_db, binary.id)
    at = researcher_app("study.py", db_path, fresh_db, binary.id, monkeypatch)
    at.run()
    assert not at.exception
    assert at.selectbox(key="study_label_source").value == "reference"
    assert [s.value for s in at.success] == ["Runs to train: few-shot."]
    assert ("the run 'seeds + few-shot' would train on exactly the training items of 'few-shot' (2 items): it is not"
            " trained again, and the report marks it as identical to 'few-shot'") in [w.value for w in at.warning]
    at.selectbox(key="study_label_source").set_value("majority").run()
    assert [s.value for s in at.success] == ["Runs to train: real, seeds."]
    assert at.multiselect[0].value == ["real", "seeds"]
    at.button[0].click().run()
    assert not at.exception
    job = jobs_db.list_jobs(fresh_db, project_id=binary.id, kind="study")[0]
    assert (job["config"]["label_source"], job["config"]["arms"]) == ("majority", ["real", "seeds"])


def test_study_page_shows_the_report_notes(db_path, fresh_db, binary, tmp_path, monkeypatch) -> None:
    planned = _study_with({"real": _run("reference", SMALL_SWEEP), "few-shot": _run("majority", LARGE_SWEEP)})
    files = report.write_report(tmp_path / "r", planned)
    job_id = jobs.create(fresh_db, kind="study", project_id=binary.id, config={})
    jobs_db.finish_job(fresh_db, job_id, status="done", result={"report": {"index": str(files["index"]),
                                                                           "zip": str(files["zip"])}})
    at = researcher_app("study.py", db_path, fresh_db, binary.id, monkeypatch)
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning][-2:] == report.study_notes(planned)
    assert at.dataframe[0].value["label_source"].tolist() == ["reference", "majority"]


def test_cli_study_label_source(db_path, fresh_db, binary, tmp_path) -> None:
    _raw_labels_only(fresh_db, binary.id)

    def study_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core", "study", "demo", "--out", str(tmp_path / "r"),
                               "--db", str(db_path), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)

    checked = study_cli("--label-source", "majority", "--check", "--json")
    assert checked.returncode == 0, checked.stderr
    output = json.loads(checked.stdout)
    assert (output["runnable"], output["identical"]) == (["real", "seeds"], {"seeds + few-shot": "seeds"})
    wrong = study_cli("--label-source", "gold")
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr == ("error: python -m core study: argument --label-source: invalid choice: 'gold' (choose"
                            " from 'reference', 'majority', 'aggregate', 'adjudicated') (see --help)\n")
