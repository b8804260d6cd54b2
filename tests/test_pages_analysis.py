"""The Diversity and Study pages, each run on its own with AppTest on a temporary database."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, projects
from core.analysis import report
from core.analysis import service as analysis
from db import jobs as jobs_db
from tests.page_helpers import researcher_app as _app
from tests.test_analysis import FakeEmbedder, fill_project
from tests.test_study import NEGATIVE, NO_TEST, NO_ZERO_SHOT, POSITIVE, _hand_made_study, add

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def analysed_project(fresh_db, project):
    return fill_project(fresh_db, project)


@pytest.fixture
def binary(fresh_db):
    return projects.create_project(fresh_db, "demo", projects.parse_labels("pos,neg"))






def _texts(at: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(at, kind)]


def test_analysis_page_before_any_analysis_starts_one(db_path, fresh_db, analysed_project, monkeypatch,
                                                      launched) -> None:
    at = _app("analysis.py", db_path, fresh_db, analysed_project.id, monkeypatch)
    at.run()
    assert not at.exception
    assert any(text.startswith("No analysis yet") for text in _texts(at, "info"))
    at.button[0].click().run()  # the form's "Run analysis"
    assert not at.exception
    job = analysis.latest_analysis_job(fresh_db, analysed_project.id)
    assert (job["kind"], job["status"], job["config"]["projection"]) == ("analysis", "queued", "pca")
    assert launched == [(str(db_path), job["id"])]
    at.button[0].click().run()
    assert any("is already queued" in text for text in _texts(at, "error"))  # one analysis at a time
    assert len(launched) == 1


def test_analysis_page_shows_figures_and_the_map(db_path, fresh_db, analysed_project, monkeypatch) -> None:
    monkeypatch.setattr(analysis, "load_embedder", lambda model, batch_size: FakeEmbedder())
    done = analysis.run_analysis_foreground(str(db_path), analysed_project.id, analysis.AnalysisConfig(
        projection="pca", min_size=3))
    at = _app("analysis.py", db_path, fresh_db, analysed_project.id, monkeypatch)
    at.run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 3  # Figure 1, Figure B.2, the map
    assert any(f"Analysis job {done['job_id']} · 3 items per source" in text for text in _texts(at, "caption"))
    diversity_table = at.dataframe[0].value
    assert list(diversity_table["source"].unique()) == ["real", "synthetic", "zero-shot", "few-shot", "job 11",
                                                        "job 12"]
    assert list(at.dataframe[1].value["source"]) == ["synthetic", "zero-shot", "few-shot", "job 11", "job 12"]
    assert at.radio(key="analysis_colour").value == "source"
    assert any(text == "13 points shown; nothing chosen yet." for text in _texts(at, "caption"))
    at.radio(key="analysis_colour").set_value("label").run()
    assert not at.exception and len(at.get("vega_lite_chart")) == 3


def test_analysis_page_reports_a_failed_job(db_path, fresh_db, analysed_project, monkeypatch) -> None:
    job_id = analysis.start_analysis(fresh_db, analysed_project.id, analysis.AnalysisConfig(), launch_now=False)
    jobs_db.mark_failed(fresh_db, job_id, "embedding model 'x' could not be loaded")
    at = _app("analysis.py", db_path, fresh_db, analysed_project.id, monkeypatch)
    at.run()
    assert _texts(at, "error") == [f"The last analysis (job {job_id}) failed: embedding model 'x' could not be loaded"]


def test_study_page_blocks_without_a_test_split(db_path, fresh_db, binary, monkeypatch, launched) -> None:
    add(fresh_db, binary.id, POSITIVE[:3], "pos", split="train")
    at = _app("study.py", db_path, fresh_db, binary.id, monkeypatch)
    at.run()
    assert not at.exception
    assert _texts(at, "error") == [NO_TEST]
    assert at.button[0].disabled
    assert any(text == "No finished study yet." for text in _texts(at, "info"))


def test_study_page_starts_a_study_with_the_runnable_runs(db_path, fresh_db, binary, monkeypatch,
                                                          launched) -> None:
    add(fresh_db, binary.id, POSITIVE[:4], "pos", split="train")
    add(fresh_db, binary.id, NEGATIVE[:4], "neg", split="train")
    add(fresh_db, binary.id, POSITIVE[4:6] + NEGATIVE[4:6], "pos", split="test")
    at = _app("study.py", db_path, fresh_db, binary.id, monkeypatch)
    at.run()
    assert not at.exception
    assert _texts(at, "warning")[0] == NO_ZERO_SHOT
    assert _texts(at, "success") == ["Runs to train: real."]
    assert at.multiselect[0].value == ["real"]
    at.number_input[0].set_value(2)
    at.button[0].click().run()
    assert not at.exception
    job = jobs_db.list_jobs(fresh_db, project_id=binary.id, kind="study")[0]
    assert (job["status"], job["config"]["epochs"], job["config"]["arms"]) == ("queued", 2, ["real"])
    assert launched == [(str(db_path), job["id"])]


def test_study_page_shows_the_finished_report(db_path, fresh_db, binary, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "report"
    files = report.write_report(folder, _hand_made_study())
    job_id = jobs.create(fresh_db, kind="study", project_id=binary.id, config={})
    jobs_db.finish_job(fresh_db, job_id, status="done", result={"report": {"index": str(files["index"]),
                                                                           "zip": str(files["zip"])}})
    at = _app("study.py", db_path, fresh_db, binary.id, monkeypatch)
    at.run()
    assert not at.exception
    assert any(text == f"Report of study job {job_id}" for text in _texts(at, "subheader"))
    assert len(at.get("download_button")) == 1
    assert list(at.dataframe[0].value["training data"]) == ["real", "seeds"]
    assert len(at.get("image")) == 5  # Figure 1, 2, B.1, B.2 and the map, as PNG
