"""Issue 11, items 8, 9 and 11 — no silent wrong result out: the study trains what its table says (label source,
empty and identical runs), diversity is compared at one set size (small sources left out, with a note), and
small γ sweeps and Table 1 rows of different label sources are flagged. Exact values on tiny projects."""

from __future__ import annotations

import pytest

from core.training.metrics import agreement_sweep, sweep_fit_note

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
    from core.training.config import TrainConfig
    from db import runs as runs_db

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
    from core.training import service

    _finished_run(fresh_db, project.id, ("real",), 0.9)
    _finished_run(fresh_db, project.id, ("real",), 0.5, label_source="majority")
    _finished_run(fresh_db, project.id, ("few-shot",), 0.7)
    table = service.table1(service.runs_frame(fresh_db))
    assert list(table.columns) == ["project", "label source", "real · macro-F1", "real · accuracy",
                                   "few-shot · macro-F1", "few-shot · accuracy", "runs"]
    # Before, the two real runs were averaged into one cell (0.7) although they learnt from different labels.
    assert table.to_dict("records") == [
        {"project": "demo", "label source": "majority", "real · macro-F1": pytest.approx(0.4),
         "real · accuracy": 0.5, "few-shot · macro-F1": pytest.approx(float("nan"), nan_ok=True),
         "few-shot · accuracy": pytest.approx(float("nan"), nan_ok=True), "runs": 1},
        {"project": "demo", "label source": "reference", "real · macro-F1": pytest.approx(0.8),
         "real · accuracy": 0.9, "few-shot · macro-F1": pytest.approx(0.6), "few-shot · accuracy": 0.7, "runs": 2}]
    assert service.table1_note(table) == ("These rows are not comparable: they were trained with different label"
                                          " sources (demo: majority; demo: reference).")
    same = service.table1(service.runs_frame(fresh_db, label_sources=["reference"]))
    assert service.table1_note(same) is None


def test_runs_frame_and_sweep_table_mark_a_small_sweep(db_path, fresh_db, project) -> None:
    from core.training import service

    small = _finished_run(fresh_db, project.id, ("real",), 0.9)
    large_sweep = [{"gamma": g, "n_items": 40 - k, "accuracy": 0.5 + k / 10, "macro_f1": 0.5}
                   for k, g in enumerate((0.2, 0.4, 0.6, 0.8, 1.0))]
    large = _finished_run(fresh_db, project.id, ("few-shot",), 0.7, sweep=large_sweep)
    frame = service.runs_frame(fresh_db)
    assert frame.set_index("run")["sweep_note"].fillna("").to_dict() == {small: TWO_POINTS, large: ""}
    table = service.sweep_table(service.sweep_results(fresh_db, db_path, [small, large]))
    assert table["R² and ρ"].tolist() == [TWO_POINTS, "meaningful"]
    assert table["R²"].tolist() == [1.0, 1.0]  # the numbers stay, marked


def test_runs_page_flags_label_sources_and_small_sweeps(db_path, fresh_db, project, monkeypatch) -> None:
    from tests.page_helpers import researcher_app, shown

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

def _real_and_synthetic(db, project_id: int, *, n_real: int, jobs: dict[int, tuple[str, int]]) -> None:
    """``n_real`` real items, and per generation job ``{job_id: (mode, n_items)}`` synthetic items."""
    from tests.test_analysis import add_items

    add_items(db, project_id, [{"text": f"real text {i}", "source": "real", "split": "train",
                                "reference_label": "pos"} for i in range(n_real)])
    for job_id, (mode, n) in jobs.items():
        add_items(db, project_id, [{"text": f"{mode} text {job_id}.{i}", "source": "synthetic", "split": "train",
                                    "reference_label": "pos", "generation_job_id": job_id, "generation_mode": mode}
                                   for i in range(n)])


LEFT_OUT_3 = {"n": 3, "n_subsample": None, "n_repeats": 0, "remote_clique": None, "remote_clique_std": None,
              "chamfer": None, "chamfer_std": None, "excluded": True}


def test_a_3_item_source_is_not_compared_beside_40_real_items(fresh_db, project) -> None:
    from core.analysis import service as analysis
    from tests.test_analysis import FakeEmbedder

    _real_and_synthetic(fresh_db, project.id, n_real=40, jobs={5: ("zero-shot", 3)})
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
    from core.analysis import service as analysis
    from tests.test_analysis import FakeEmbedder

    # zero-shot 15 (job 5); few-shot 23 (job 6: 12, job 7: 11); real 40. The smallest main source is zero-shot.
    _real_and_synthetic(fresh_db, project.id, n_real=40, jobs={5: ("zero-shot", 15), 6: ("few-shot", 12),
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
    from core.analysis import service as analysis
    from core.errors import SynthloopError

    with pytest.raises(SynthloopError, match=r"analysis setting min_size=1 is not valid: use a whole number ≥ 2"):
        analysis.AnalysisConfig(min_size=1)
    assert analysis.AnalysisConfig.from_dict({"min_size": 3}).min_size == 3


def test_cli_analyse_json_has_n_and_excluded(db_path, fresh_db, project, monkeypatch, capsys) -> None:
    import json

    from core import cli
    from core.analysis import service as analysis
    from tests.test_analysis import FakeEmbedder

    monkeypatch.setattr(analysis, "load_embedder", lambda model, batch_size: FakeEmbedder())
    _real_and_synthetic(fresh_db, project.id, n_real=12, jobs={5: ("zero-shot", 3), 6: ("few-shot", 11)})
    assert cli.main(["analyse", "demo", "--json", "--db", str(db_path), "--min-size", "11"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert {name: (output[name]["n"], output[name]["excluded"]) for name in ("real", "synthetic", "zero-shot",
                                                                             "few-shot")} == {
        "real": (12, False), "synthetic": (14, False), "zero-shot": (3, True), "few-shot": (11, False)}
    assert output["n_subsample"] == 11 and output["zero-shot"]["remote_clique"] is None
    assert output["excluded"] == {"zero-shot": {"n": 3, "reason": "fewer than the minimum of 11 items"},
                                  "job 5": {"n": 3, "reason": "fewer than the minimum of 11 items"}}
    assert set(output["top5_similarity_to_real"]) == {"synthetic", "few-shot"}
