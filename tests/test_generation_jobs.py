"""Generation jobs end to end against the fake server: exact targets under concurrency, every call stored,
bad replies become rejected or failed calls, fatal errors stop the job, cancel, and kill -9 then resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import jobs as core_jobs
from core.errors import SynthloopError
from core.generation import service
from core.generation.jobs import run_generation
from db import connection
from db import generation as gen_db
from db import items as items_db
from tests.fake_llm import EmptyChoices, FakeLLMServer, Garbage, ServerError, Status, last_user_message, varied_text
from tests.generation_helpers import make_project, queue_job

ROOT = Path(__file__).resolve().parent.parent


def synthetic(db, project_id):
    frame = items_db.items_frame(db, project_id, source="synthetic", include_rejected=True)
    return frame


def label_of(request) -> str:
    return "pos" if '"pos"' in last_user_message(request) else "neg"


def test_job_reaches_exactly_the_target_and_stores_every_call(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(reply=lambda request, n: f"{label_of(request)} {varied_text(n)}") as server:
        job_id = queue_job(fresh_db, project.id, server, mode="few-shot", per_label=6, concurrency=4,
                           examples_per_prompt=2, temperature=0.9)
        result = core_jobs.run(str(db_path), job_id)
    assert result["status"] == "done"
    assert result["result"]["accepted_per_label"] == {"pos": 6, "neg": 6}
    items = synthetic(fresh_db, project.id)
    assert len(items) == 12 and set(items["split"]) == {"train"} and set(items["review_status"]) == {"accepted"}
    assert items["text_hash"].is_unique
    for row in items.itertuples():
        meta = json.loads(row.meta)
        assert row.generation_job_id == job_id and row.generation_mode == "few-shot" and meta["model"] == "fake-model"
        assert meta["temperature"] == 0.9
        call = gen_db.get_call(fresh_db, row.generation_call_id)
        assert call["label"] == row.reference_label and row.text.startswith(row.reference_label)
        assert call["raw_output"].endswith(row.text.split(" ", 1)[1])
        assert len(call["seed_item_ids"]) == 2 and call["messages"][0]["role"] == "system"
        assert call["outcomes"] == [{"text": row.text, "accepted": True, "reason": None, "match_id": None,
                                     "similarity": None}]
        assert call["prompt_tokens"] > 0 and call["latency_s"] > 0
    summary = service.job_summary(fresh_db, job_id)
    assert (summary.calls, summary.failed_calls, summary.accepted, summary.rejected) == (12, 0, 12, {})
    row = gen_db.get_generation_job(fresh_db, job_id)
    assert (row["status"], row["n_calls"], row["n_accepted"]) == ("done", 12, 12)
    assert row["prompt_tokens"] == summary.prompt_tokens > 0
    # Texts past a label's target are surplus, not rejections: the page counts them apart.
    counted = dataclasses.replace(summary, rejected={"too_short": 2, "target_reached": 3, "refusal": 1})
    assert (counted.rejected_by_filters, counted.surplus) == (3, 3)


def test_concurrent_multi_text_replies_never_overshoot_the_target(fresh_db, db_path) -> None:
    project = make_project(fresh_db)

    def three_texts(request, n):
        return "\n".join(f"{i + 1}. {varied_text(n * 3 + i)}" for i in range(3))

    with FakeLLMServer(reply=three_texts, latency_s=0.02) as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=7, concurrency=8)
        result = run_generation(str(db_path), job_id)
    assert result["accepted_per_label"] == {"pos": 7, "neg": 7}
    assert synthetic(fresh_db, project.id)["reference_label"].value_counts().to_dict() == {"pos": 7, "neg": 7}
    # Each call yields three texts; whatever was surplus is kept as a rejection, not as an item.
    assert result["calls"] * 3 == 14 + sum(result["rejected"].values())
    assert set(result["rejected"]) <= {"target_reached"}


def test_bad_replies_become_rejected_or_failed_calls_and_the_job_still_finishes(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    faults = {1: Garbage(), 3: EmptyChoices(), 5: ServerError(500)}

    def reply(request, n):
        if n in (2, 4):
            return "I'm sorry, but I can't help with that request."
        if n == 6:
            return "Too short"
        if n == 7:
            return varied_text(0)  # a duplicate of the first reply
        return varied_text(n)

    with FakeLLMServer(reply=reply, fault_when=lambda request, n: faults.get(n)) as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=4, concurrency=1, max_retries=0)
        result = run_generation(str(db_path), job_id)
    assert result["accepted_per_label"] == {"pos": 4, "neg": 4}
    assert result["rejected"] == {"duplicate": 1, "refusal": 2, "too_short": 1}
    assert result["failed_calls"] == 3
    calls = gen_db.calls_frame(fresh_db, job_id)
    errors = sorted(e.split(":")[0] for e in calls["error"] if e)
    assert errors == ["empty", "malformed", "server"]
    failed = calls[calls["error"] != ""]
    assert failed["raw_output"].isna().all() and set(failed["outcomes"]) == {"[]"}
    assert len(calls) == 8 + 4 + 3


def test_a_fatal_error_fails_the_job_with_a_clear_message(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(api_key="the-right-key") as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=3)
        job = core_jobs.run(str(db_path), job_id)
    assert job["status"] == "failed"
    assert job["error"].startswith("generation stopped: ") and "rejected the API key (401)" in job["error"]
    assert gen_db.get_generation_job(fresh_db, job_id)["status"] == "failed"
    assert gen_db.call_totals(fresh_db, job_id)["failed_calls"] >= 1  # the failed calls are kept


def test_a_model_that_only_repeats_itself_stops_at_the_call_budget(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(reply=lambda request, n: "Always the very same generated sentence here.") as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=2, max_calls_per_text=2.0)
        result = run_generation(str(db_path), job_id)
    assert result["accepted"] == 1
    assert result["calls"] == 12  # the budget: ceil(2 texts × 2.0) + 2 = 6 calls per label
    assert "call budget" in result["message"]


def test_rpm_limit_spaces_calls(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer() as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=3, concurrency=4,
                           requests_per_minute=600)
        started = time.perf_counter()
        run_generation(str(db_path), job_id)
        elapsed = time.perf_counter() - started
        stamps = sorted(r.received_at for r in server.completion_requests())
    assert elapsed >= 0.45
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) >= 0.08


def test_cancel_stops_the_job_cleanly(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(latency_s=0.1) as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=500, concurrency=2)
        thread = threading.Thread(target=core_jobs.run, args=(str(db_path), job_id))
        thread.start()
        deadline = time.monotonic() + 20
        while gen_db.call_totals(fresh_db, job_id)["calls"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        service.cancel_generation(fresh_db, job_id)
        thread.join(20)
    summary = service.job_summary(fresh_db, job_id)
    assert summary.status == "cancelled"
    assert 4 <= summary.accepted < 1000
    assert summary.accepted == len(synthetic(fresh_db, project.id))
    assert service.resume_generation(fresh_db, job_id, launch=False) == job_id
    assert core_jobs.get(fresh_db, job_id)["status"] == "queued"


def test_kill_9_midway_then_resume_ends_at_exactly_the_target_without_duplicates(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    # Few distinct texts per label would make duplicates likely if the resumed job regenerated old ones.
    with FakeLLMServer(latency_s=0.05) as server:
        job_id = queue_job(fresh_db, project.id, server, mode="few-shot", per_label=40, concurrency=4)
        command = [sys.executable, "-m", "core", "job", "run", str(job_id), "--db", str(db_path)]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = len(synthetic(fresh_db, project.id))
            if n >= 15:
                break
            assert proc.poll() is None, "the job ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        before = len(synthetic(fresh_db, project.id))
        assert 15 <= before < 80
        assert core_jobs.get(fresh_db, job_id)["status"] == "running"  # nobody marked it: the process just died
        service.resume_generation(fresh_db, job_id, launch=False)  # notices the dead process, re-queues
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    items = synthetic(fresh_db, project.id)
    assert items["reference_label"].value_counts().to_dict() == {"pos": 40, "neg": 40}
    assert items["text_hash"].is_unique
    assert not set(items["text_hash"]) & set(items_db.items_frame(fresh_db, project.id, source="real")["text_hash"])
    calls = gen_db.calls_frame(fresh_db, job_id, limit=10_000)
    assert calls["n_accepted"].sum() == 80  # every stored item belongs to a stored call, and vice versa
    summary = service.job_summary(fresh_db, job_id)
    assert summary.status == "done" and summary.accepted == 80
    with pytest.raises(SynthloopError, match="already reached its target of 40 per label"):
        service.resume_generation(fresh_db, job_id, launch=False)


def test_secrets_never_reach_the_database(fresh_db, db_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    project = make_project(fresh_db)
    with FakeLLMServer(api_key="sk-very-secret-value") as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=2)
        assert run_generation(str(db_path), job_id)["accepted"] == 4
    fresh_db.conn.execute("PRAGMA wal_checkpoint(FULL)")
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert b"sk-very-secret-value" not in raw
    assert gen_db.get_generation_job(fresh_db, job_id)["config"]["api_key_env"] == "OPENAI_API_KEY"


def test_status_404_for_unknown_model_is_fatal(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(fault_when=lambda r, n: Status(404, {"error": {"message": "no such model"}})) as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=2)
        job = core_jobs.run(str(db_path), job_id)
    assert job["status"] == "failed" and "does not know model 'fake-model' (404)" in job["error"]


def test_connection_reopened_per_thread_is_not_needed(fresh_db) -> None:
    # The runner writes from its main thread only; a second connection sees its rows (WAL, short transactions).
    other = connection.connect(fresh_db.conn.execute("PRAGMA database_list").fetchone()[2])
    try:
        assert other.execute("SELECT COUNT(*) FROM generation_job").fetchone()[0] == 0
    finally:
        other.conn.close()
