"""Results a researcher can trust (issue 11): files belong to their database, a dead job is marked dead and a
job runs once, and a bad database path is one clear line.

- Two databases in one folder: each one's run artifacts, job logs and study reports go under its own
  ``<db file>.files/`` folder, the model served for run 1 of database B is B's, and a run recorded by an older
  version (artifacts beside the database) is still served, and deleted, from the path it recorded.
- ``kill -9`` of a job process: ``job list``, the reads pages poll, and the run of a training job see it as
  failed, with a message saying the process died; the run can then be deleted.
- ``job run ID`` started twice at once: exactly one process runs the job; the other exits 2 with one line.
- ``--db`` / ``SYNTHLOOP_DB`` naming a read-only file, a directory, a file that is not a database, or a file in
  a missing folder: one line on stderr, exit status 2, no folder created; the app shows the same line.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, projects, users
from core.analysis import study
from core.generation import service as generation
from core.training import run as runs
from core.training import service as training
from core.training.config import TrainConfig
from db import connection
from db import generation as gen_db
from db import jobs as jobs_db
from db import runs as runs_db
from pages._common import PROJECT_ID, USER_ID
from tests.fake_llm import FakeLLMServer, varied_text
from tests.generation_helpers import fake_options, make_project, queue_job
from tests.process_helpers import kill_and_reap, wait_for
from tests.training_helpers import add_items

ROOT = Path(__file__).resolve().parent.parent
POSITIVE = ["great movie", "loved it", "wonderful acting", "brilliant film", "so much fun", "a delight", "superb",
            "really enjoyable", "fantastic story", "excellent cast"]
NEGATIVE = ["awful movie", "hated it", "terrible acting", "boring film", "waste of time", "a mess", "dreadful",
            "really dull", "stupid story", "poor cast"]
TINY = {"epochs": 1, "batch_size": 8, "max_length": 32}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})



def _job(db_path: Path, job_id: int) -> dict:
    """The job as a page sees it (a process that died shows as failed at once, so waits end)."""
    with connection.open_db(db_path) as db:
        return jobs.watch(db, job_id)



def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test(tmp_path: Path):
    """Job processes are detached on purpose; none this test started may keep running after it."""
    yield
    for db_file in tmp_path.glob("*.db"):
        pids: list[int] = []
        with contextlib.suppress(Exception), connection.open_db(db_file) as db:
            pids = [j["pid"] for j in jobs_db.list_jobs(db) if j["status"] in ("queued", "running") and j["pid"]]
        for pid in pids:
            if pid != os.getpid():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill_and_reap(pid)


def _tiny_project(db, name: str) -> projects.Project:
    """Eight training and two test items per label."""
    project = projects.create_project(db, name, projects.parse_labels("pos,neg"))
    rows = [{"text": t, "label": "pos", "split": "test" if i >= 8 else "train"} for i, t in enumerate(POSITIVE)]
    rows += [{"text": t, "label": "neg", "split": "test" if i >= 8 else "train"} for i, t in enumerate(NEGATIVE)]
    add_items(db, project.id, rows)
    return project


# --- item 6: every file a database produces lives in that database's folder --------------------------------

def test_file_locations_are_per_database(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    assert connection.files_dir(a) == tmp_path / "a.db.files"
    assert runs.artifact_dir(a, 1) == tmp_path / "a.db.files" / "artifacts" / "run-1"
    assert runs.artifact_dir(b, 1) == tmp_path / "b.db.files" / "artifacts" / "run-1"
    assert jobs.log_path(a, 3) == tmp_path / "a.db.files" / "logs" / "job-3.log"
    assert jobs.log_path(b, 3) == tmp_path / "b.db.files" / "logs" / "job-3.log"
    assert study.default_out_dir(str(a), 1, 2) == str(tmp_path / "a.db.files" / "reports" / "project-1" / "study-2")
    assert study.default_out_dir(str(b), 1, 2) == str(tmp_path / "b.db.files" / "reports" / "project-1" / "study-2")


@pytest.mark.slow
def test_two_databases_in_one_folder_keep_their_runs_and_logs_apart(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    # Database A was used by an older version: its run 1 recorded artifacts beside the database.
    old_folder = tmp_path / "artifacts" / "run-1"
    (old_folder / "model").mkdir(parents=True)
    (old_folder / "model" / "weights.txt").write_text("A's old model")
    old_zip = tmp_path / "artifacts" / "run-1.zip"
    with zipfile.ZipFile(old_zip, "w") as bundle:
        bundle.writestr("run-1/model/weights.txt", "A's old model")
    with connection.open_db(a) as db:
        project_a = _tiny_project(db, "alpha")
        old_run = runs_db.create_run(db, project_id=project_a.id, config=TrainConfig(**TINY).to_dict(),
                                     data_source="real")
        runs_db.update_run(db, old_run, artifact_path=str(old_folder))
        runs_db.finish_run(db, old_run, status="done")
        started_a = runs.start_training(db, a, project_a.id, TrainConfig(**TINY, seed=1))  # run 2 of A
    with connection.open_db(b) as db:
        project_b = _tiny_project(db, "beta")
        started_b = runs.start_training(db, b, project_b.id, TrainConfig(**TINY, seed=2))  # run 1 of B
    assert (old_run, started_a["run_id"], started_b["run_id"]) == (1, 2, 1)
    for path, started in ((a, started_a), (b, started_b)):
        job = wait_for(lambda p=path, s=started: _job(p, s["job_id"])["status"] in ("done", "failed")
                    and _job(p, s["job_id"]), 300, "the training jobs", interval=0.5)
        assert job["status"] == "done", job["error"]

    with connection.open_db(b) as db:
        run_b = runs.get_run(db, 1)
    assert run_b["artifact_path"] == str(tmp_path / "b.db.files" / "artifacts" / "run-1")
    assert (tmp_path / "b.db.files" / "artifacts" / "run-1" / "model").is_dir()
    served_b = training.zip_file(b, 1)
    assert served_b == tmp_path / "b.db.files" / "artifacts" / "run-1.zip"
    with zipfile.ZipFile(served_b) as bundle:
        assert json.loads(bundle.read("run-1/config.json"))["seed"] == 2  # B's model, not A's
    assert "step 2/2" in (tmp_path / "b.db.files" / "logs" / f"job-{started_b['job_id']}.log").read_text()
    assert "step 2/2" in (tmp_path / "a.db.files" / "logs" / f"job-{started_a['job_id']}.log").read_text()
    assert training.zip_file(a, 2) == tmp_path / "a.db.files" / "artifacts" / "run-2.zip"

    # A's old run is served from the path it recorded, untouched by B's run 1.
    assert training.zip_file(a, 1) == old_zip
    with zipfile.ZipFile(old_zip) as bundle:
        assert bundle.namelist() == ["run-1/model/weights.txt"]
    with connection.open_db(a) as db:
        assert runs.result_dict(runs.get_run(db, 1), a)["zip_path"] == str(old_zip)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("a.db-", "b.db-"))) == \
        ["a.db", "a.db.files", "artifacts", "b.db", "b.db.files"]

    with connection.open_db(a) as db:
        runs.delete_run(db, a, 1)
    assert not old_folder.exists() and not old_zip.exists()
    assert training.zip_file(b, 1) == served_b and training.zip_file(a, 2) is not None


def test_an_old_run_is_evaluated_from_the_path_it_recorded(tmp_path: Path) -> None:
    db_path = tmp_path / "old.db"
    recorded = tmp_path / "elsewhere" / "run-1"
    with connection.open_db(db_path) as db:
        project = _tiny_project(db, "old")
        run_id = runs_db.create_run(db, project_id=project.id, config=TrainConfig(**TINY).to_dict(),
                                    data_source="real")
        runs_db.update_run(db, run_id, artifact_path=str(recorded))
        runs_db.finish_run(db, run_id, status="done")
    done = _cli("evaluate", str(run_id), "--db", str(db_path))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: the model files of run 1 are gone ({recorded / 'model'}): train the run again\n"


# --- item 7: a dead job is marked dead; a job runs once -----------------------------------------------------

def test_job_list_marks_a_killed_job_failed_and_says_its_process_died(db_path: Path) -> None:
    with FakeLLMServer(latency_s=0.2) as server:
        with connection.open_db(db_path) as db:
            project = make_project(db)
            job_id = generation.start_generation(db, project.id, **fake_options(
                server, mode="zero-shot", per_label=50, concurrency=1))  # a detached `job run` process
        pid = wait_for(lambda: (job := _job(db_path, job_id))["status"] == "running" and job["pid"], 60,
                    "the job process to start")
        wait_for(lambda: server.completions >= 2, 60, "the first calls")
        kill_and_reap(pid)

    done = _cli("job", "list", "--json", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["jobs"]
    assert [(j["id"], j["status"]) for j in listed] == [(job_id, "failed")]
    message = (f"the job's process (pid {pid}) died without finishing (killed or crashed):"
               " resume the job to generate only the rest")
    assert listed[0]["error"] == message
    human = _cli("job", "list", "--db", str(db_path))
    assert human.stdout == (f"{job_id}\tgeneration\tfailed\t{listed[0]['progress_done']}/100\tfailed: {message}\n")


def test_a_training_run_whose_process_died_is_failed_and_can_be_deleted(db_path: Path) -> None:
    with connection.open_db(db_path) as db:
        project = _tiny_project(db, "tiny")
        started = runs.start_training(db, db_path, project.id, TrainConfig(**TINY))
    pid = wait_for(lambda: (job := _job(db_path, started["job_id"]))["status"] == "running" and job["pid"], 60,
                "the training process to start")
    kill_and_reap(pid)

    listed = _cli("runs", "list", "--json", "--db", str(db_path))
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)["runs"]
    assert (run["run"], run["status"]) == (started["run_id"], "failed")
    assert run["error"] == f"the job's process (pid {pid}) died without finishing (killed or crashed): start a new run"
    deleted = _cli("runs", "delete", str(started["run_id"]), "--db", str(db_path))
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, f"deleted run {started['run_id']}\n", "")


def test_the_reads_pages_poll_mark_a_dead_job_failed(fresh_db, db_path: Path) -> None:
    pid = _dead_pid()
    project = make_project(fresh_db)
    generation_job = queue_job(fresh_db, project.id, server=type("S", (), {"base_url": "http://127.0.0.1:9/v1"}))
    study_job = jobs.create(fresh_db, kind="study", project_id=project.id, config={})
    tiny = _tiny_project(fresh_db, "tiny")
    started = runs.start_training(fresh_db, db_path, tiny.id, TrainConfig(**TINY), launch=False)
    for job_id in (generation_job, study_job, started["job_id"]):
        jobs_db.start_job(fresh_db, job_id, pid=pid)

    died = f"the job's process (pid {pid}) died without finishing (killed or crashed)"
    summary = generation.job_summary(fresh_db, generation_job)  # the Generate page's poll
    assert (summary.status, summary.error) == ("failed", f"{died}: resume the job to generate only the rest")
    watched = jobs.watch(fresh_db, study_job)  # the shared progress panel's poll (Study, Diversity)
    assert (watched["status"], watched["error"]) == ("failed", f"{died}: start the study again")
    [row] = training.recent_progress(fresh_db, tiny.id)  # the Train page's poll
    assert (row["status"], row["error"]) == ("failed", f"{died}: start a new run")


def test_job_run_started_twice_at_once_runs_the_job_once(fresh_db, db_path: Path) -> None:
    gate = threading.Event()  # holds every model call until the loser has exited

    def reply(body, n):
        gate.wait(60)
        return varied_text(n)

    with FakeLLMServer(reply=reply) as server:
        project = make_project(fresh_db)
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=5, concurrency=1, timeout_s=90)
        command = [sys.executable, "-m", "core", "job", "run", str(job_id), "--db", str(db_path)]
        procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        try:
            loser = wait_for(lambda: next((p for p in procs if p.poll() is not None), None), 30,
                          "one of the two processes to refuse the job")
        finally:
            gate.set()
        winner = next(p for p in procs if p is not loser)
        loser_out, loser_err = loser.communicate(timeout=30)
        winner_out, winner_err = winner.communicate(timeout=120)

    assert (loser.returncode, loser_out) == (2, "")
    assert loser_err == (f"error: job {job_id} is already running (process {winner.pid}): wait for it to finish,"
                         f" or stop it with `python -m core job cancel {job_id}`\n")
    assert (winner.returncode, winner_out) == (0, f"job {job_id} done\n"), winner_err
    summary = generation.job_summary(fresh_db, job_id)
    assert summary.accepted_per_label == {"pos": 5, "neg": 5}
    assert gen_db.calls_frame(fresh_db, job_id, limit=1000)["n_accepted"].sum() == 10


def test_two_resumes_at_once_queue_the_job_once(fresh_db, db_path: Path, launched, monkeypatch) -> None:
    project = make_project(fresh_db)
    job_id = queue_job(fresh_db, project.id, server=type("S", (), {"base_url": "http://127.0.0.1:9/v1"}))
    jobs_db.mark_failed(fresh_db, job_id, "stopped")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)
    # Widen the window between "is the job stopped?" and "queue it again", where the two resumes race.
    counted = gen_db.accepted_per_label
    monkeypatch.setattr(gen_db, "accepted_per_label", lambda *a, **k: (time.sleep(0.5), counted(*a, **k))[1])

    def resume() -> None:
        with connection.open_db(db_path) as db:
            barrier.wait()
            try:
                generation.resume_generation(db, job_id)
                outcomes.append("resumed")
            except Exception as exc:
                outcomes.append(str(exc))

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == [f"job {job_id} is still queued: cancel it first or wait for it to finish", "resumed"]
    assert len(launched) == 1


# --- item 16: a bad database path is one clear line ----------------------------------------------------------

def _bad_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    read_only = tmp_path / "read-only.db"
    with connection.open_db(read_only):
        pass
    read_only.chmod(0o444)
    directory = tmp_path / "a-folder"
    directory.mkdir()
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are my notes, not a database\n" * 10)
    missing = tmp_path / "missing" / "deeper" / "x.db"
    return {
        "read-only": (read_only, f"the database {read_only} is read-only: make it writable (chmod u+w {read_only})"
                                 " or give --db (or SYNTHLOOP_DB) a writable copy"),
        "directory": (directory, f"the database path {directory} is a directory: give --db (or SYNTHLOOP_DB)"
                                 f" a database file, e.g. {directory / 'synthloop.db'}"),
        "not a database": (not_a_db, f"{not_a_db} is not a SQLite database: give --db (or SYNTHLOOP_DB) a Synthloop"
                                     " database, or the name of a new file to create one"),
        "missing folder": (missing, f"the folder of the database {missing} does not exist: create it first"
                                    f" (mkdir -p {missing.parent}) or give --db (or SYNTHLOOP_DB) a path in an"
                                    " existing folder"),
    }


@pytest.mark.parametrize("case", ["read-only", "directory", "not a database", "missing folder"])
@pytest.mark.parametrize("how", ["--db", "--db first", "SYNTHLOOP_DB"])
def test_a_bad_database_path_is_one_line_and_exit_2(tmp_path: Path, case: str, how: str) -> None:
    path, message = _bad_paths(tmp_path)[case]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    if how == "--db":
        done = _cli("project", "list", "--db", str(path))
    elif how == "--db first":
        done = _cli("--db", str(path), "project", "list")
    else:
        done = _cli("project", "list", env={"SYNTHLOOP_DB": str(path)})
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: {message}\n")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing created
    assert not (tmp_path / "missing").exists()


def test_the_app_shows_a_bad_database_path_as_an_error(tmp_path: Path, monkeypatch) -> None:
    good = tmp_path / "good.db"
    with connection.open_db(good) as db:
        user = users.add_user(db, "rita", role="researcher", password="a long password")
        project = projects.create_project(db, "p", projects.parse_labels("a,b"))
    path, message = _bad_paths(tmp_path)["directory"]
    monkeypatch.setenv("SYNTHLOOP_DB", str(path))
    at = AppTest.from_file(str(ROOT / "pages" / "projects.py"), default_timeout=60)
    at.session_state[USER_ID] = user.id
    at.session_state[PROJECT_ID] = project.id
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [message]
