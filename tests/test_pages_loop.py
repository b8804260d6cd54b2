"""The Loop page under AppTest: it shows loop_view's numbers, and its button starts one run per round."""

from __future__ import annotations

import pandas as pd
from streamlit.testing.v1 import AppTest

from core.analysis import loop
from core.analysis.service import AnalysisConfig
from core.training.config import TrainConfig
from db import runs as runs_db
from tests.page_helpers import researcher_app as _app
from tests.test_analysis import FakeEmbedder
from tests.test_loop import _finish, looped  # noqa: F401 (a fixture)


def _loop_page(db_path, fresh_db, project, monkeypatch) -> AppTest:
    monkeypatch.setattr("core.analysis.service.load_embedder", lambda model, batch_size: FakeEmbedder())
    at = _app("loop.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    at.number_input(key="loop_min_size").set_value(3).run()
    assert not at.exception
    return at


def test_loop_page_shows_the_numbers_of_loop_view(db_path, fresh_db, project, looped, monkeypatch):  # noqa: F811
    for round_, f1 in ((1, 0.25), (2, 0.5)):
        run_id = runs_db.create_run(fresh_db, project_id=project.id, data_source="loop", config=TrainConfig(
            sources=("zero-shot", "few-shot"), max_round=round_).to_dict())
        _finish(fresh_db, run_id, f1)
    _finish(fresh_db, runs_db.create_run(fresh_db, project_id=project.id, config=TrainConfig().to_dict(),
                                         data_source="real"), 0.8)
    at = _loop_page(db_path, fresh_db, project, monkeypatch)
    view = loop.loop_view(fresh_db, project.id, embedder=FakeEmbedder(), config=AnalysisConfig(min_size=3))
    assert view.n_subsample == 4 and view.per_round["macro_f1"].tolist() == [0.25, 0.5]
    pd.testing.assert_frame_equal(at.dataframe[0].value.reset_index(drop=True), view.per_round, check_dtype=False)
    pd.testing.assert_frame_equal(at.dataframe[1].value.reset_index(drop=True), view.per_label, check_dtype=False)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Real data macro-F1": "0.800", "Real data Remote-Clique": f"{view.real['remote_clique']:.4f}",
                       "Real data Chamfer": f"{view.real['chamfer']:.4f}"}
    assert any("compared at 4 items per round and 4 of the 6 real training items" in c.value for c in at.caption)
    [chart] = at.get("vega_lite_chart")
    assert "real data: 0.800" in str(chart.proto)  # the reference rule's label


def test_train_button_starts_a_run_per_round(db_path, fresh_db, project, looped, monkeypatch, launched):  # noqa: F811
    at = _loop_page(db_path, fresh_db, project, monkeypatch)
    at.number_input(key="loop_epochs").set_value(1)
    at.button(key="FormSubmitter:loop_train-Train a model per round").click().run()
    assert not at.exception
    runs = sorted(runs_db.list_runs(fresh_db), key=lambda r: r["id"])
    assert [(r["config"]["max_round"], r["config"]["epochs"], r["status"]) for r in runs] == [
        (1, 1, "queued"), (2, 1, "queued")]
    assert len(launched) == 2
    assert "Started 2 runs: round 1 → run 1, round 2 → run 2." in at.success[0].value
    assert [p.proto.text for p in at.get("progress")] == [
        "Run 1 · zero\\-shot\\+few\\-shot \\(rounds ≤ 1\\) · embedded\\: queued",
        "Run 2 · zero\\-shot\\+few\\-shot \\(rounds ≤ 2\\) · embedded\\: queued"]
    at.button(key="FormSubmitter:loop_train-Train a model per round").click().run()
    assert "Every round already has a finished or running loop run." in at.info[0].value
