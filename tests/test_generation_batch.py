"""Generation through the Batch API against the fake server's batch endpoints: exact targets with provenance, the
live loop's screening, kill -9 and cancel then resume without a second submission, failed and expired batches."""

from __future__ import annotations

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
from core.generation import batch as batch_module
from core.generation import service
from db import generation as gen_db
from db import generation_batch as batch_db
from db import items as items_db
from tests.fake_llm import BatchFailure, FakeLLMServer, ServerError, last_user_message, varied_text
from tests.generation_helpers import make_project, queue_job

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.05


def label_of(request) -> str:
    return "pos" if '"pos"' in last_user_message(request) else "neg"


def synthetic(db, project_id):
    return items_db.items_frame(db, project_id, source="synthetic", include_rejected=True)


def queue_batch_job(db, project_id, server, **changes) -> int:
    return queue_job(db, project_id, server, batch=True, batch_poll_s=POLL_S, **changes)


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_batch_job_reaches_exactly_its_target_with_provenance(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(reply=lambda request, n: f"{label_of(request)} {varied_text(n)}") as server:
        job_id = queue_batch_job(fresh_db, project.id, server, mode="few-shot", per_label=4, examples_per_prompt=2,
                                 temperature=0.7, max_tokens=64, seed=5)
        job = core_jobs.run(str(db_path), job_id)
        (batch,) = server.batches.values()
    assert job["status"] == "done", job["error"]
    # One round: ceil(4 × 1.25) = 5 requests per label; the fifth text of each label is surplus.
    assert len(server.batch_submissions()) == 1 and len(server.completion_requests()) == 0
    assert [r["custom_id"] for r in batch.requests] == [f"call-{n}" for n in range(10)]
    first = batch.requests[0]
    assert (first["method"], first["url"]) == ("POST", "/v1/chat/completions")
    assert set(first["body"]) == {"model", "messages", "temperature", "max_tokens", "seed"}
    assert (first["body"]["model"], first["body"]["temperature"], first["body"]["max_tokens"]) == ("fake-model", 0.7, 64)
    assert [r["body"]["seed"] for r in batch.requests] == list(range(5, 15))
    assert batch.metadata == {"synthloop_job": str(job_id), "synthloop_batch": "1"}
    result = job["result"]
    assert result["accepted_per_label"] == {"pos": 4, "neg": 4}
    assert (result["calls"], result["failed_calls"], result["rejected"]) == (10, 0, {"target_reached": 2})
    items = synthetic(fresh_db, project.id)
    assert items["reference_label"].value_counts().to_dict() == {"pos": 4, "neg": 4} and items["text_hash"].is_unique
    sent = {json.dumps(r["body"]["messages"]) for r in batch.requests}
    for row in items.itertuples():
        call = gen_db.get_call(fresh_db, row.generation_call_id)
        assert json.dumps(call["messages"]) in sent and len(call["seed_item_ids"]) == 2
        assert call["raw_output"] == row.text and row.text.startswith(row.reference_label)
        assert call["prompt_tokens"] > 0 and call["completion_tokens"] == 15 and call["latency_s"] >= POLL_S
    totals = gen_db.get_generation_job(fresh_db, job_id)
    assert (totals["status"], totals["n_calls"], totals["completion_tokens"]) == ("done", 10, 150)
    (row,) = batch_db.list_batches(fresh_db, job_id)
    assert (row["provider_batch_id"], row["status"], row["n_requests"], row["n_done"]) == ("batch_1", "completed", 10, 10)
    assert row["finished_at"] is not None and row["error"] == ""


def test_batch_answers_are_screened_like_live_calls(fresh_db, db_path) -> None:
    def reply(request, n):
        return {1: "I'm sorry, but I can't help with that request.", 2: "Too short",
                3: varied_text(0)}.get(n, varied_text(n))

    project = make_project(fresh_db)
    with FakeLLMServer(reply=reply, fault_when=lambda request, n: ServerError(500) if n == 5 else None) as server:
        job_id = queue_batch_job(fresh_db, project.id, server, mode="zero-shot", per_label=3)
        job = core_jobs.run(str(db_path), job_id)
        submissions = len(server.batch_submissions())
    assert job["status"] == "done", job["error"]
    # Round 1 (4 requests a label): pos n0 kept, n1 refusal, n2 too short, n3 a duplicate of n0; neg n4, n6, n7
    # kept, n5 failed. Round 2: pos needs 2 more, asks 3 (n8-n10), the third is surplus.
    result = job["result"]
    assert submissions == 2
    assert result["accepted_per_label"] == {"pos": 3, "neg": 3}
    assert result["rejected"] == {"duplicate": 1, "refusal": 1, "target_reached": 1, "too_short": 1}
    assert (result["calls"], result["failed_calls"]) == (11, 1)
    calls = gen_db.calls_frame(fresh_db, job_id)
    (error,) = [e for e in calls["error"] if e]
    assert error.startswith("server: ") and "answered 500" in error
    assert [row["n_requests"] for row in batch_db.list_batches(fresh_db, job_id)] == [8, 3]


def test_kill_9_while_the_batch_runs_then_resume_polls_it_instead_of_submitting_again(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer() as server:
        server.batch_polls = 10**9  # hold the batch in progress until the job is killed
        command = [sys.executable, "-m", "core", "generate", "films", "--mode", "few-shot", "--per-label", "5",
                   "--examples-per-prompt", "2", "--backend", "openai", "--model", "fake-model", "--base-url",
                   server.base_url, "--batch", "--batch-poll", str(POLL_S), "--db", str(db_path)]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: any(b.polls >= 2 for b in server.batches.values()) or proc.poll() is not None)
            assert proc.poll() is None, "the job ended before it could be killed"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        job_id = int(gen_db.list_generation_jobs(fresh_db, project.id)[0]["job_id"])
        (recorded,) = batch_db.list_batches(fresh_db, job_id)
        assert (recorded["provider_batch_id"], recorded["status"], recorded["finished_at"]) == ("batch_1",
                                                                                               "in_progress", None)
        assert core_jobs.get(fresh_db, job_id)["message"].startswith("batch batch_1: in_progress, 0/14 requests")
        assert len(synthetic(fresh_db, project.id)) == 0
        server.batch_polls = 1  # the next poll completes it
        resumed = [sys.executable, "-m", "core", "generate", "films", "--resume", str(job_id), "--db", str(db_path)]
        done = subprocess.run(resumed, cwd=ROOT, capture_output=True, text=True, timeout=120)
        submissions = len(server.batch_submissions())
        uploads = [r for r in server.requests if r.method == "POST" and r.path.endswith("/files")]
    assert done.returncode == 0, done.stderr
    assert submissions == 1 and len(uploads) == 1
    items = synthetic(fresh_db, project.id)
    assert items["reference_label"].value_counts().to_dict() == {"pos": 5, "neg": 5}
    assert items["text_hash"].is_unique
    calls = gen_db.calls_frame(fresh_db, job_id)
    assert len(calls) == 14 and calls["n_accepted"].sum() == 10  # each batch answer stored once
    for call_id in calls["id"]:  # the resumed process kept what each request showed
        assert len(gen_db.get_call(fresh_db, int(call_id))["seed_item_ids"]) == 2
    (row,) = batch_db.list_batches(fresh_db, job_id)
    assert row["status"] == "completed" and row["finished_at"] is not None
    assert service.job_summary(fresh_db, job_id).status == "done"


def test_cancel_while_polling_keeps_the_batch_and_resume_ingests_it(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer() as server:
        server.batch_polls = 10**9
        job_id = queue_batch_job(fresh_db, project.id, server, mode="zero-shot", per_label=2)
        thread = threading.Thread(target=core_jobs.run, args=(str(db_path), job_id))
        thread.start()
        wait_for(lambda: any(b.polls >= 1 for b in server.batches.values()))
        service.cancel_generation(fresh_db, job_id)
        thread.join(20)
        assert core_jobs.get(fresh_db, job_id)["status"] == "cancelled"
        assert batch_db.list_batches(fresh_db, job_id)[0]["finished_at"] is None
        server.batch_polls = 1
        service.resume_generation(fresh_db, job_id, launch=False)
        job = core_jobs.run(str(db_path), job_id)
        submissions = len(server.batch_submissions())
    assert job["status"] == "done" and job["result"]["accepted_per_label"] == {"pos": 2, "neg": 2}
    assert submissions == 1 and job["result"]["calls"] == 6


def test_a_job_that_died_before_submitting_sends_the_recorded_requests(fresh_db, db_path, monkeypatch) -> None:
    project = make_project(fresh_db)

    def crash(*args, **kwargs):
        raise RuntimeError("killed before the upload")

    with FakeLLMServer() as server:
        job_id = queue_batch_job(fresh_db, project.id, server, mode="few-shot", per_label=2)
        with monkeypatch.context() as patch:
            patch.setattr(batch_module.BatchAPI, "submit", crash)
            assert core_jobs.run(str(db_path), job_id)["status"] == "failed"
        (recorded,) = batch_db.list_batches(fresh_db, job_id)
        assert (recorded["status"], recorded["provider_batch_id"]) == ("preparing", None)
        prepared = batch_db.unfinished_batch(fresh_db, job_id)["requests"]
        service.resume_generation(fresh_db, job_id, launch=False)
        job = core_jobs.run(str(db_path), job_id)
        (batch,) = server.batches.values()
    assert job["status"] == "done" and job["result"]["accepted"] == 4
    assert [(r["custom_id"], r["body"]["messages"]) for r in batch.requests] == [
        (r["custom_id"], r["prompt"]["messages"]) for r in prepared]
    assert len(batch_db.list_batches(fresh_db, job_id)) == 1


@pytest.mark.parametrize(("failure", "reason"), [
    (BatchFailure("failed", "invalid_request", "Line 3: unknown parameter"),
     "batch batch_1 failed: invalid_request: Line 3: unknown parameter"),
    (BatchFailure("expired"), "batch batch_1 expired: it did not finish within its completion window (24h)"),
])
def test_a_batch_that_fails_fails_the_job_with_the_providers_reason(fresh_db, db_path, failure, reason) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer() as server:
        server.batch_failure = failure
        job_id = queue_batch_job(fresh_db, project.id, server, mode="zero-shot", per_label=2)
        job = core_jobs.run(str(db_path), job_id)
        assert job["status"] == "failed"
        assert job["error"] == f"generation stopped: {reason}"
        assert gen_db.get_generation_job(fresh_db, job_id)["status"] == "failed"
        (row,) = batch_db.list_batches(fresh_db, job_id)
        assert (row["status"], row["error"]) == (failure.status, reason) and row["finished_at"] is not None
        # Resumed, the job builds a new batch: the failed one is closed.
        server.batch_failure = None
        service.resume_generation(fresh_db, job_id, launch=False)
        job = core_jobs.run(str(db_path), job_id)
        submissions = len(server.batch_submissions())
        seeds = [[line["body"]["seed"] for line in batch.requests] for batch in server.batches.values()]
    assert job["status"] == "done" and job["result"]["accepted"] == 4
    assert submissions == 2
    # The failed batch's requests were never answered, yet the new batch does not reuse their call numbers (seeds).
    assert len(seeds) == 2 and not set(seeds[0]) & set(seeds[1])


def test_batch_needs_the_openai_backend(fresh_db) -> None:
    project = make_project(fresh_db)
    with pytest.raises(SynthloopError, match="the Batch API is the openai backend's, not embedded's"):
        service.start_generation(fresh_db, project.id, launch=False, backend="embedded", batch=True)
