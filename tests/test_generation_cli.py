"""The CLI: ``seeds``, ``generate`` (as a real subprocess, JSON keys of the contract) and ``llm-annotate``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core import cli
from db import connection
from db import items as items_db
from tests.fake_llm import FakeLLMServer, varied_text
from tests.generation_helpers import make_project

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *args: str) -> tuple[int, dict | str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 and "--json" in args else captured.out + captured.err)


def test_seeds_commands(db_path, capsys) -> None:
    db = connection.connect(db_path)
    make_project(db, with_seeds=False)
    db.conn.close()
    code, out = run_cli(capsys, "seeds", "sample", "films", "--per-label", "2", "--db", str(db_path), "--json")
    assert code == 0 and out["counts"] == {"pos": 2, "neg": 2} and out["warnings"] == [
        "label 'pos' has 2 seeds, fewer than the 3 examples per prompt of the few-shot setting: pin more or lower the "
        "examples per prompt",
        "label 'neg' has 2 seeds, fewer than the 3 examples per prompt of the few-shot setting: pin more or lower the "
        "examples per prompt"]
    listed = run_cli(capsys, "seeds", "list", "films", "--db", str(db_path), "--json")[1]
    missing = [ext for ext in ("pos-0", "pos-1", "pos-2") if ext not in [s["external_id"] for s in listed["seeds"]]]
    code, out = run_cli(capsys, "seeds", "add", "films", missing[0], "--db", str(db_path), "--json")
    assert code == 0 and out["counts"] == {"pos": 3, "neg": 2}
    code, out = run_cli(capsys, "seeds", "add", "films", "nope", "--db", str(db_path))
    assert code == 2 and out.strip() == ("error: no item 'nope' in this project: use an imported id or an internal "
                                         "item id")
    code, out = run_cli(capsys, "seeds", "remove", "films", missing[0], "--db", str(db_path))
    assert code == 0 and out.strip() == "unpinned 1 seed(s)"


def test_generate_runs_in_the_foreground_and_prints_the_contract_keys(db_path) -> None:
    db = connection.connect(db_path)
    make_project(db)
    db.conn.close()
    with FakeLLMServer(reply=lambda request, n: varied_text(n) if n % 4 else "Sure!") as server:
        done = subprocess.run(
            [sys.executable, "-m", "core", "generate", "films", "--mode", "few-shot", "--per-label", "3",
             "--backend", "openai", "--model", "fake-model", "--base-url", server.base_url, "--concurrency", "2",
             "--temperature", "0.8", "--rpm", "6000", "--db", str(db_path), "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"job_id", "accepted", "rejected", "calls", "prompt_tokens", "completion_tokens", "seconds"} <= set(out)
    assert out["accepted"] == 6 and out["accepted_per_label"] == {"pos": 3, "neg": 3}
    assert out["rejected"] == {"too_short": out["calls"] - 6}  # a bare "Sure!" is one word
    assert out["prompt_tokens"] > 0 and out["completion_tokens"] > 0 and out["seconds"] > 0
    db = connection.connect(db_path)
    try:
        assert len(items_db.items_frame(db, 1, source="synthetic")) == 6
    finally:
        db.conn.close()


def test_generate_user_errors_are_one_line_with_exit_2(db_path, capsys) -> None:
    db = connection.connect(db_path)
    make_project(db)
    db.conn.close()
    code, out = run_cli(capsys, "generate", "films", "--mode", "zero-shot", "--per-label", "3", "--backend", "openai",
                        "--db", str(db_path))
    assert code == 2 and out == ("error: the openai backend needs a model name: set --model (e.g. gpt-4o-mini for "
                                 "OpenAI, a folder or hub id for transformers)\n")
    code, out = run_cli(capsys, "generate", "films", "--db", str(db_path))
    assert code == 2 and "needs --mode zero-shot|few-shot and --per-label N" in out
    code, out = run_cli(capsys, "generate", "films", "--resume", "99", "--db", str(db_path))
    assert code == 2 and out.startswith("error: job 99 is not a generation job")


def test_resume_and_llm_annotate_commands(db_path, capsys) -> None:
    db = connection.connect(db_path)
    make_project(db)
    db.conn.close()
    with FakeLLMServer(api_key="k") as server:
        args = ["--backend", "openai", "--model", "fake-model", "--base-url", server.base_url, "--db", str(db_path)]
        code, out = run_cli(capsys, "generate", "films", "--mode", "zero-shot", "--per-label", "2", *args)
        assert code == 2 and "rejected the API key (401)" in out
        server.api_key = None  # the "key" is fixed: resume the failed job
        code, out = run_cli(capsys, "generate", "films", "--resume", "1", "--db", str(db_path), "--json")
        assert code == 0 and out["job_id"] == 1 and out["accepted"] == 4
        server.reply = lambda request, n: "neg" if n % 2 else varied_text(n)  # half the replies name no label
        code, out = run_cli(capsys, "llm-annotate", "films", "--selection", "all", *args, "--json")
    assert code == 0 and out["annotator"] == "llm:fake-model" and out["items"] == 10
    assert (out["labelled"], out["unparsed"]) == (5, 5)
    assert out["warning"].startswith("5 of 10 replies named no label and were not stored (e.g. ")
