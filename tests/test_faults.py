"""Faults: the tool keeps its promises when the LLM server misbehaves and when job processes are killed.

- A fault-injecting OpenAI-compatible server (429 with retry-after, 500/503, replies slower than the timeout,
  truncated bodies, garbage bodies, a 200 without choices, an empty choices list, a dropped connection): the
  generation job still ends with exactly its target of accepted items, one per label as asked, no duplicates.
- ``kill -9`` of a running generation job process: after the restart check (``core.jobs.fail_orphaned_jobs``)
  the job is failed, resuming it generates only the remainder — exactly the target, no duplicate text, every
  item accepted before the kill still there, unchanged.
- ``kill -9`` of a training process mid-training: the run is marked failed with a readable error, and the
  project's items, annotations and synthetic items are exactly as before.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import jobs, projects
from core.data import importer
from core.generation import service as generation
from core.training import run as training_run
from core.training.config import TrainConfig
from db import connection
from tests.fake_llm import (
    EmptyChoices,
    FakeLLMServer,
    Garbage,
    RateLimit,
    ServerError,
    Slow,
    Status,
    Truncated,
    varied_text,
)
from tests.process_helpers import kill_and_reap, wait_for


@dataclass(frozen=True)
class Hangup:
    """Close the connection without answering (a crashed proxy or a dropped keep-alive connection)."""


class FaultyLLMServer(FakeLLMServer):
    """The shared fake server plus a ``Hangup`` fault, and a log of which fault each completion got."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.served: list[tuple[int, str]] = []

    def _next_completion(self, body):
        n, fault = super()._next_completion(body)
        self.served.append((n, type(fault).__name__ if fault is not None else "ok"))
        return n, fault

    def _handler_class(self):
        base = super()._handler_class()

        class Handler(base):
            def _complete(self, body, n, fault):
                if isinstance(fault, Hangup):
                    self.close_connection = True  # no status line, no body: the socket just closes
                    return
                super()._complete(body, n, fault)

        return Handler


# One completion in two answers normally; the others cycle through every fault.
FAULT_CYCLE = [
    None, RateLimit(retry_after=0.1), None, ServerError(500), None, Slow(seconds=1.5), None, Truncated(),
    None, Garbage(), None, Hangup(), None, Status(200, {"object": "chat.completion", "id": "no-choices"}),
    None, EmptyChoices(), None, ServerError(503),
]


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test(db_path: Path):
    """Job processes are detached on purpose; one this test started must not keep running if it fails."""
    yield
    if not db_path.exists():
        return
    with connection.open_db(db_path) as db:
        pids = [job["pid"] for job in jobs.list_jobs(db) if job["status"] in ("queued", "running") and job["pid"]]
    for pid in pids:
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill_and_reap(pid)


def _synthetic_items(db_path: Path) -> list[tuple]:
    """(id, label, text, text_hash) of every synthetic item, read directly (for checking only)."""
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT id, reference_label, text, text_hash FROM item WHERE source = 'synthetic'"
                            " ORDER BY id").fetchall()
    finally:
        conn.close()


def _project(db, name: str = "faults"):
    return projects.create_project(db, name, projects.parse_labels("pos,neg"), overlap=1)


def test_generation_reaches_exactly_its_target_through_every_kind_of_fault(db_path: Path) -> None:
    with FaultyLLMServer(fault_when=lambda body, n: FAULT_CYCLE[n % len(FAULT_CYCLE)]) as server:
        with connection.open_db(db_path) as db:
            project = _project(db)
            job_id = generation.start_generation(
                db, project.id, launch=False, backend="openai", model="fake-model", base_url=server.base_url,
                mode="zero-shot", per_label=6, concurrency=3, timeout_s=0.6, max_retries=2)
        started = time.monotonic()
        job = jobs.run(db_path, job_id)
        elapsed = time.monotonic() - started
        with connection.open_db(db_path) as db:
            summary = generation.job_summary(db, job_id)
            errors = generation.rejected_outputs(db, job_id)
    assert job["status"] == "done", job["error"]
    assert summary.accepted_per_label == {"pos": 6, "neg": 6}
    items = _synthetic_items(db_path)
    assert len(items) == 12
    assert sorted(label for _, label, _, _ in items) == ["neg"] * 6 + ["pos"] * 6
    assert len({h for _, _, _, h in items}) == 12, "a duplicate text was accepted"
    # Every fault really happened, and the job saw the ones the client does not retry as failed calls.
    kinds = {kind for _, kind in server.served}
    assert {"RateLimit", "ServerError", "Slow", "Truncated", "Garbage", "Hangup", "Status",
            "EmptyChoices"} <= kinds, kinds
    codes = {detail.split(":")[0] for detail in errors.loc[errors["reason"] == "error", "detail"]}
    assert {"malformed", "empty"} <= codes, codes
    assert summary.failed_calls == len(errors[errors["reason"] == "error"]) > 0
    # Retries (429, 5xx, timeouts, truncated, dropped) happen inside the client: more requests than calls.
    assert server.completions > summary.calls
    assert elapsed < 60



def _job(db_path: Path, job_id: int) -> dict:
    with connection.open_db(db_path) as db:
        return jobs.get(db, job_id)



def test_a_killed_generation_job_resumes_to_exactly_its_target_without_duplicates(db_path: Path) -> None:
    # Every text is sent twice (completions 2m and 2m+1), so a resumed job meets texts accepted before the
    # kill: the deduplication has to hold across the restart.
    reply = lambda body, n: varied_text(n // 2)  # noqa: E731
    with FakeLLMServer(latency_s=0.25, reply=reply) as server:
        with connection.open_db(db_path) as db:
            project = _project(db)
            job_id = generation.start_generation(
                db, project.id, backend="openai", model="fake-model", base_url=server.base_url, mode="zero-shot",
                per_label=8, concurrency=2, max_retries=1)  # launched as a detached `python -m core job run`
        pid = wait_for(lambda: (job := _job(db_path, job_id))["status"] == "running" and job["pid"], 60,
                    "the job process to start")
        wait_for(lambda: len(_synthetic_items(db_path)) >= 4, 60, "the first accepted items")
        kill_and_reap(pid)
        before = _synthetic_items(db_path)
        assert 4 <= len(before) < 16, "the job finished before it could be killed: slow the server down"

        with connection.open_db(db_path) as db:
            assert jobs.fail_orphaned_jobs(db) == [job_id]  # what a restarted server does first
            assert jobs.get(db, job_id)["status"] == "failed"
            generation.resume_generation(db, job_id, launch=False)
        job = jobs.run(db_path, job_id)  # the same runner the resumed background process would use
        with connection.open_db(db_path) as db:
            summary = generation.job_summary(db, job_id)

    assert job["status"] == "done", job["error"]
    after = _synthetic_items(db_path)
    assert summary.accepted_per_label == {"pos": 8, "neg": 8}
    assert len(after) == 16, f"{len(after)} synthetic items, target 16"
    assert len({h for _, _, _, h in after}) == 16, "a duplicate text was accepted"
    assert set(before) <= set(after), "an item accepted before the kill was lost or changed"
    assert summary.rejected.get("duplicate", 0) + summary.rejected.get("near-duplicate", 0) > 0, \
        f"the repeated replies were not rejected as duplicates: {summary.rejected}"


def _dump(db_path: Path, tables: tuple[str, ...]) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db_path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        conn.close()


@pytest.mark.slow
def test_a_killed_training_process_marks_the_run_failed_and_loses_nothing(db_path: Path) -> None:
    rows = ["id,text,label,split,who,lab"]
    for i in range(60):
        label = "pos" if i % 2 else "neg"
        word = "wonderful lovely great" if label == "pos" else "awful dreadful bad"
        rows.append(f"r{i},item {i} is {word} number {i},{label},{'test' if i >= 48 else 'train'},ann,{label}")
    with connection.open_db(db_path) as db:
        project = _project(db)
        importer.import_file(db, project.id, "\n".join(rows).encode(), importer.ImportSpec(
            id_col="id", label_col="label", split_col="split", annotator_col="who", annotation_col="lab"),
            filename="real.csv")
        importer.import_file(db, project.id, b"text,label\na synthetic pos text here,pos\na synthetic neg one,neg\n",
                             importer.ImportSpec(label_col="label", source="synthetic"), filename="syn.csv")
        before = _dump(db_path, ("item", "annotation", "seed", "label", "project"))
        # Slow enough to be caught mid-training: 48 items, batch 1, 5 epochs = 240 steps.
        started = training_run.start_training(db, db_path, project.id, TrainConfig(
            epochs=5, batch_size=1, max_length=32, seed=1))
    job_id, run_id = started["job_id"], started["run_id"]
    wait_for(lambda: (job := _job(db_path, job_id))["status"] in ("done", "failed", "cancelled")
          or job["result"].get("phase") == "training", 240, "training steps", interval=0.2)
    job = _job(db_path, job_id)
    assert job["status"] == "running" and job["result"].get("phase") == "training", job
    kill_and_reap(job["pid"])

    with connection.open_db(db_path) as db:
        assert jobs.fail_orphaned_jobs(db) == [job_id]
        run = training_run.get_run(db, run_id)
        assert run["status"] == "failed"
        assert "stopped without finishing" in run["error"] or "killed" in run["error"], run["error"]
        assert [r["status"] for r in training_run.list_runs(db, project_id=project.id)] == ["failed"]
    assert _dump(db_path, ("item", "annotation", "seed", "label", "project")) == before
