"""Generation and the LLM annotator a researcher can trust (issue 11, items 10, 13 and 15).

- The LLM annotator fails loudly: every call is kept (item, messages, raw reply, parsed label, latency, error); a
  job whose replies name no label at all ends failed with the reason and example replies, and one where only some
  replies name no label ends done with a warning and the counts, shown as plain text on the Generate page.
- Echoes are rejected: a generated text that only repeats a label name, a label description or a sentence of
  the prompt's instruction is rejected with its own reason, ``echo``.
- API keys go only where they belong: ``api_key_env`` names OPENAI_API_KEY or a variable the server's
  configuration lists, nothing else; a server that echoes the key in an error body has it redacted before the
  message reaches the database, the job log, the CLI's stderr or a page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import jobs as core_jobs
from core.errors import SynthloopError
from core.generation import llm_annotator
from core.generation import service as generation
from core.generation.api_keys import REDACTED, allowed_key_variables, redact_secrets
from core.generation.backends import BackendCallError, OpenAIBackend
from core.generation.config import GenerationConfig
from core.generation.jobs import run_generation
from core.generation.llm_annotator import LLMAnnotatorConfig
from core.generation.parsing import DuplicateIndex, echo_phrases, screen
from core.vocab import REJECT_REASONS
from db import connection
from db import generation as gen_db
from db import items as items_db
from tests.fake_llm import FakeLLMServer, ServerError, Status, last_user_message, varied_text
from tests.generation_helpers import REAL, fake_options, make_project, queue_job
from tests.page_helpers import researcher_app, shown

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Say something."}]


@pytest.fixture(autouse=True)
def _no_configured_key_variables(monkeypatch, tmp_path):
    """No key variables listed and no secrets.toml unless a test makes them (the cwd is searched for one)."""
    monkeypatch.delenv("SYNTHLOOP_API_KEY_VARS", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("SYNTHLOOP_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SYNTHLOOP_API_KEY_VARS", "OPENAI_API_KEY")}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env={**base, **(env or {})})


def _annotator_options(server: FakeLLMServer, **changes) -> dict:
    return {"backend": "openai", "model": "fake-model", "base_url": server.base_url, "max_retries": 0,
            "selection": "all", **changes}


# ------------------------------------------------------------------------ item 10: the LLM annotator fails loudly

NO_LABEL = ("the LLM named no label in any of its 6 replies (e.g. 'It is hard to say.', 'Both, really.'), so "
            "nothing was labelled: it must answer with one of pos, neg; pick a model that follows the instruction")


def _garbage(request, n) -> str:
    return "Both, really." if "Brilliant acting" in last_user_message(request) else "It is hard to say."


def test_an_llm_annotation_whose_replies_name_no_label_fails_with_the_reason_and_examples(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(reply=_garbage) as server:
        job_id = llm_annotator.start_llm_annotation(fresh_db, project.id, launch=False, **_annotator_options(server))
        job = core_jobs.run(str(db_path), job_id)
    assert job["status"] == "failed"
    assert job["error"] == NO_LABEL
    result = job["result"]
    assert (result["labelled"], result["unparsed"], result["errors"]) == (0, 6, 0)
    assert result["examples"] == ["It is hard to say.", "Both, really."] and result["warning"] == NO_LABEL
    assert items_db.annotations_frame(fresh_db, project.id).empty
    # Every call is kept as generation keeps its calls: the item, the prompt, the raw reply, no label, latency.
    calls = llm_annotator.job_calls(fresh_db, job_id)
    texts = dict(zip(items_db.items_frame(fresh_db, project.id)["id"], items_db.items_frame(fresh_db, project.id)[
        "text"], strict=True))
    assert sorted(calls["item_id"]) == sorted(texts) and calls["label"].isna().all()
    assert set(calls["error"]) == {""} and (calls["latency_s"] > 0).all()
    for call in calls.itertuples():
        expected = "Both, really." if "Brilliant acting" in texts[call.item_id] else "It is hard to say."
        assert call.raw_output == expected
        messages = json.loads(call.messages)
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[1]["content"].endswith(f"Text: {texts[call.item_id]}\nLabel:")


def test_the_cli_says_why_an_llm_annotation_failed(db_path) -> None:
    db = connection.connect(db_path)
    make_project(db)
    db.conn.close()
    with FakeLLMServer(reply=_garbage) as server:
        done = _cli("llm-annotate", "films", "--selection", "all", "--backend", "openai", "--model", "fake-model",
                    "--base-url", server.base_url, "--db", str(db_path))
    assert done.returncode == 2
    assert done.stderr == f"error: LLM annotation job 1 failed: {NO_LABEL}\n"
    with FakeLLMServer(reply=_half_garbage) as server:
        done = _cli("llm-annotate", "films", "--selection", "all", "--backend", "openai", "--model", "fake-model",
                    "--base-url", server.base_url, "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("job 2 done: 3 labelled as llm:fake-model, 3 unparsed replies, 0 failed calls\n"
                           f"warning: {HALF_WARNING}\n")


def test_an_llm_annotation_whose_calls_all_fail_fails_with_the_last_error(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(fault_when=lambda request, n: ServerError(503)) as server:
        job_id = llm_annotator.start_llm_annotation(fresh_db, project.id, launch=False, **_annotator_options(server))
        job = core_jobs.run(str(db_path), job_id)
        said = f"{server.base_url} answered 503 (server error) after retries"
    assert job["status"] == "failed"
    assert job["error"] == f"all 6 calls failed, so nothing was labelled: {said}"
    assert (job["result"]["labelled"], job["result"]["unparsed"], job["result"]["errors"]) == (0, 0, 6)
    calls = llm_annotator.job_calls(fresh_db, job_id)
    assert len(calls) == 6 and calls["raw_output"].isna().all() and set(calls["error"]) == {f"server: {said}"}


MARKDOWN_REPLY = "[maybe](http://x.example) **neither**"
HALF_WARNING = f"3 of 6 replies named no label and were not stored (e.g. {MARKDOWN_REPLY!r})"


def _half_garbage(request, n) -> str:
    text = last_user_message(request)
    return "pos" if any(f"Text: {t}" in text for t in REAL["pos"]) else MARKDOWN_REPLY


def test_a_half_garbage_llm_annotation_ends_done_with_a_warning_and_counts(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(reply=_half_garbage) as server:
        job_id = llm_annotator.start_llm_annotation(fresh_db, project.id, launch=False, **_annotator_options(server))
        job = core_jobs.run(str(db_path), job_id)
    assert job["status"] == "done" and job["error"] == ""
    result = job["result"]
    assert (result["labelled"], result["unparsed"], result["errors"], result["items"]) == (3, 3, 0, 6)
    assert result["warning"] == HALF_WARNING and result["examples"] == [MARKDOWN_REPLY]
    annotations = items_db.annotations_frame(fresh_db, project.id)
    assert len(annotations) == 3 and set(annotations["label"]) == {"pos"}
    calls = llm_annotator.job_calls(fresh_db, job_id)
    assert sorted(calls["label"].fillna("-")) == ["-", "-", "-", "pos", "pos", "pos"]
    unlabelled = llm_annotator.job_calls(fresh_db, job_id, unlabelled_only=True)
    assert list(unlabelled["raw_output"]) == [MARKDOWN_REPLY] * 3


def test_the_annotation_warning_counts_replies_and_calls() -> None:
    warning = llm_annotator.annotation_warning
    common = {"examples": ["Maybe?", "Dunno"], "labels": ("pos", "neg"), "last_error": "x answered 503"}
    assert warning(labelled=4, unparsed=0, errors=0, **common) == ""
    assert warning(labelled=3, unparsed=2, errors=1, **common) == (
        "2 of 5 replies named no label and were not stored (e.g. 'Maybe?', 'Dunno'); 1 of 6 calls failed "
        "(last: x answered 503)")
    assert warning(labelled=3, unparsed=0, errors=2, **common) == "2 of 5 calls failed (last: x answered 503)"
    assert warning(labelled=0, unparsed=1, errors=2, **common) == (
        "the LLM named no label in any of its 1 replies (e.g. 'Maybe?', 'Dunno'), so nothing was labelled: it must "
        "answer with one of pos, neg; pick a model that follows the instruction")
    assert llm_annotator.shorten("  a\nlong   reply " + "x" * 100, limit=12) == "a long reply…"


def test_the_generate_page_shows_the_annotators_warning_and_failure_as_plain_text(db_path, fresh_db,
                                                                                  monkeypatch) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(reply=_half_garbage) as server:
        job_id = llm_annotator.start_llm_annotation(fresh_db, project.id, launch=False, **_annotator_options(server))
        core_jobs.run(str(db_path), job_id)
    at = researcher_app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning if "named no label" in shown(w.value)]
    assert [shown(w) for w in warnings] == [f"LLM annotation job {job_id}: {HALF_WARNING}"]
    assert "\\[maybe\\]\\(http" in warnings[0]  # the reply's Markdown is escaped, not rendered as a link
    replies = [df.value for df in at.dataframe if "raw_output" in df.value.columns]
    assert len(replies) == 1 and list(replies[0]["raw_output"]) == [MARKDOWN_REPLY] * 3

    with FakeLLMServer(reply=_garbage) as server:
        failed = llm_annotator.start_llm_annotation(fresh_db, project.id, launch=False, overwrite=True,
                                                    **_annotator_options(server))
        core_jobs.run(str(db_path), failed)
    at.run()
    assert not at.exception
    assert [shown(e.value) for e in at.error] == [f"LLM annotation job {failed} failed: {NO_LABEL}"]


# --------------------------------------------------------------------------------- item 13: echoes are rejected


def test_echoes_of_labels_descriptions_and_instructions_are_rejected() -> None:
    assert "echo" in REJECT_REASONS
    instruction = ('Write one news headline whose label is "sarcastic" (A sarcastic news headline.). Use at most 20 '
                   "words.\nReply with the headline only: no title, no label, no explanation.")
    examples = ["Area man wins award. Nobody is surprised."]
    few_shot = f"Here are some examples:\n\nText: {examples[0]}\nLabel: sarcastic\n\n{instruction}"
    echoes = echo_phrases(["sarcastic", "not_sarcastic", "A sarcastic news headline.", ""],
                          [few_shot], examples=examples)
    assert echoes == frozenset({
        "sarcastic", "not_sarcastic", "a sarcastic news headline",  # the labels and their descriptions
        " ".join(few_shot.casefold().split()).rstrip("."),  # the instruction whole, then line by line
        "here are some examples", "text: area man wins award. nobody is surprised", "label: sarcastic",
        'write one news headline whose label is "sarcastic" (a sarcastic news headline.). use at most 20 words',
        "reply with the headline only: no title, no label, no explanation",
        "text: area man wins award",  # and sentence by sentence ("nobody is surprised" is the example's own)
        'write one news headline whose label is "sarcastic" (a sarcastic news headline', "use at most 20 words",
    })
    texts = ["SARCASTIC!", "A sarcastic news headline", "  Use at most 20 words. ",
             "Reply with the headline only: no title, no label, no explanation.",
             "Nobody is surprised.",  # a sentence of the example shown: not the instruction's
             "Local man shocked to learn that the weather changes sometimes.", "Not sarcastic"]
    outcomes = screen(texts, min_words=3, max_words=50, index=DuplicateIndex(0.8),
                      seeds=[(11, examples[0])], echoes=echoes)
    assert [(o.text, o.reason) for o in outcomes] == [
        ("SARCASTIC!", "echo"), ("A sarcastic news headline", "echo"), ("Use at most 20 words.", "echo"),
        ("Reply with the headline only: no title, no label, no explanation.", "echo"),
        ("Nobody is surprised.", None),
        ("Local man shocked to learn that the weather changes sometimes.", None),
        ("Not sarcastic", "too_short"),  # "not_sarcastic" is the label; "not sarcastic" is two words
    ]
    # Without echoes (the default) the same texts pass the echo check.
    plain = screen(texts[:4], min_words=3, max_words=50, index=DuplicateIndex(0.8))
    assert [o.reason for o in plain] == ["too_short", None, None, None]


def test_a_generation_job_rejects_echoes_with_their_own_reason(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    echoes = {0: "pos", 1: "A favourable review.", 2: "Use at most 50 words."}

    with FakeLLMServer(reply=lambda request, n: echoes.get(n) or varied_text(n)) as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=2, concurrency=1)
        run_generation(str(db_path), job_id)
    summary = generation.job_summary(fresh_db, job_id)
    assert summary.accepted == 4 and summary.rejected == {"echo": 3} and summary.calls == 7
    rejected = generation.rejected_outputs(fresh_db, job_id)
    assert sorted(rejected["text"]) == ["A favourable review.", "Use at most 50 words.", "pos"]
    assert set(rejected["reason"]) == {"echo"}
    synthetic = items_db.items_frame(fresh_db, project.id, source="synthetic")
    assert not set(synthetic["text"]) & set(echoes.values())


# -------------------------------------------------------------- item 15: API keys go only where they belong

REFUSED = ("API key variable {name!r} is not one this server may send: set 'api_key_env' to {allowed}, or have the "
           "server's administrator list it in SYNTHLOOP_API_KEY_VARS (comma-separated names) or in api_key_vars in "
           ".streamlit/secrets.toml")


def _openai_config(**changes) -> GenerationConfig:
    return GenerationConfig(labels=("a",), backend="openai", model="m", **changes)


def test_api_key_env_names_only_an_allowed_variable(monkeypatch, tmp_path) -> None:
    assert allowed_key_variables() == ("OPENAI_API_KEY",)
    assert _openai_config().api_key_env == "OPENAI_API_KEY"
    for name in ("AWS_SECRET_ACCESS_KEY", "PATH", "MY_KEY"):
        with pytest.raises(SynthloopError) as exc:
            _openai_config(api_key_env=name)
        assert str(exc.value) == REFUSED.format(name=name, allowed="OPENAI_API_KEY")
        assert exc.value.fields == ("api_key_env",)
    with pytest.raises(SynthloopError, match="'PATH' is not one this server may send"):
        LLMAnnotatorConfig(labels=("a",), api_key_env="PATH")  # the LLM annotator shares the rule

    monkeypatch.setenv("SYNTHLOOP_API_KEY_VARS", " MY_KEY, ,TEAM_KEY,not a name")
    assert allowed_key_variables() == ("OPENAI_API_KEY", "MY_KEY", "TEAM_KEY")
    assert _openai_config(api_key_env="MY_KEY").api_key_env == "MY_KEY"
    with pytest.raises(SynthloopError) as exc:
        _openai_config(api_key_env="PATH")
    assert str(exc.value) == REFUSED.format(name="PATH", allowed="one of OPENAI_API_KEY, MY_KEY, TEAM_KEY")

    monkeypatch.delenv("SYNTHLOOP_API_KEY_VARS")
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('api_key_vars = ["TOML_KEY"]\nTOML_KEY = "k-123"\n')
    assert allowed_key_variables() == ("OPENAI_API_KEY", "TOML_KEY")
    assert _openai_config(api_key_env="TOML_KEY").api_key_env == "TOML_KEY"
    with pytest.raises(SynthloopError, match="'MY_KEY' is not one this server may send"):
        _openai_config(api_key_env="MY_KEY")


def test_the_cli_refuses_a_variable_that_is_not_allowed_in_one_line(db_path) -> None:
    db = connection.connect(db_path)
    make_project(db)
    db.conn.close()
    done = _cli("generate", "films", "--mode", "zero-shot", "--per-label", "1", "--backend", "openai", "--model",
                "m", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "AWS_SECRET_ACCESS_KEY",
                "--db", str(db_path))
    assert done.returncode == 2
    assert done.stderr == "error: " + REFUSED.format(name="AWS_SECRET_ACCESS_KEY", allowed="OPENAI_API_KEY").replace(
        "'api_key_env'", "--api-key-env") + "\n"
    with connection.open_db(db_path) as db:
        assert core_jobs.list_jobs(db) == []


def test_the_generate_page_refuses_a_variable_naming_its_field(db_path, fresh_db, monkeypatch) -> None:
    project = make_project(fresh_db)
    at = researcher_app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    next(w for w in at.selectbox if w.label == "Backend").set_value("openai").run()
    next(w for w in at.text_input if w.label == "Model").set_value("m")
    next(w for w in at.text_input if w.label == "API key variable").set_value("PATH")
    at.button(key="FormSubmitter:generate_settings-Start generation").click().run()
    assert not at.exception
    assert shown(at.error[0].value) == REFUSED.format(name="PATH", allowed="OPENAI_API_KEY").replace(
        "'api_key_env'", "“API key variable”")
    assert core_jobs.list_jobs(fresh_db) == []


def test_redaction_removes_the_key_its_pieces_and_sk_tokens() -> None:
    key = "live-5b7e9f1a3c2d4e6f8a0b"
    assert redact_secrets(f"Incorrect API key provided: {key}.", keys=[key]) == f"Incorrect API key provided: {REDACTED}."
    assert redact_secrets("your key starts with live-5b7e9f…", keys=[key]) == f"your key starts with {REDACTED}…"
    assert redact_secrets("key ending in 4e6f8a0b", keys=[key]) == f"key ending in {REDACTED}"
    assert redact_secrets("live-5b is too short to tell", keys=[key]) == "live-5b is too short to tell"  # 7 characters
    assert redact_secrets("keys like sk-proj-Ab12****wxyz and sk-abc", keys=[]) == (
        f"keys like {REDACTED} and {REDACTED}")
    assert redact_secrets("a task-based risk-free desk-top", keys=[]) == "a task-based risk-free desk-top"
    assert redact_secrets("bad key k; keep it", keys=["k"]) == f"bad key {REDACTED}; keep it"  # short: whole words
    assert REDACTED == "[redacted]"


ECHOED_KEY = "Zq81-live-5b7e9f1a3c2d4e6f8a0b"  # not sk-…: only redacting the key itself removes it


def _key_leaks(blob: bytes | str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [piece for piece in (ECHOED_KEY, ECHOED_KEY[:10], ECHOED_KEY[-12:]) if piece.encode() in data]


def test_a_key_in_a_backend_error_body_is_redacted(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ECHOED_KEY)
    with FakeLLMServer(api_key="the-right-key", echo_key_in_errors=True) as server:
        client = OpenAIBackend(base_url=server.base_url, model="fake-model", max_retries=0)
        with pytest.raises(BackendCallError) as exc:
            client.complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
        assert str(exc.value) == (f"{server.base_url} rejected the API key (401): set OPENAI_API_KEY to a valid key; "
                                  f"the server said: Incorrect API key provided: {REDACTED}. Your key starts with "
                                  f"{REDACTED}.")
        server.api_key = None
        server.inject(Status(400, {"error": {"message": f"invalid header 'Bearer {ECHOED_KEY}'"}}))
        with pytest.raises(BackendCallError) as exc:
            client.complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
        assert not _key_leaks(str(exc.value)) and f"'Bearer {REDACTED}'" in str(exc.value)


def _wait_for_job(db_path: Path, job_id: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with connection.open_db(db_path) as db:
            job = core_jobs.get(db, job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_a_key_echoed_in_a_401_is_nowhere_in_the_database_log_stderr_or_page(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    db_path = folder / "keys.db"
    monkeypatch.setenv("OPENAI_API_KEY", ECHOED_KEY)
    with FakeLLMServer(api_key="the-right-key", echo_key_in_errors=True) as server:
        with connection.open_db(db_path) as db:
            project = make_project(db)
            job_id = generation.start_generation(db, project.id, **fake_options(server, mode="zero-shot",
                                                                                per_label=1))
        job = _wait_for_job(db_path, job_id)  # a real, detached job process read the key and got the 401
        said = f"Incorrect API key provided: {REDACTED}. Your key starts with {REDACTED}."
        assert job["status"] == "failed" and job["error"].endswith(said), job["error"]
        with connection.open_db(db_path) as db:
            calls = gen_db.calls_frame(db, job["id"])
            assert len(calls) and all(error.endswith(said) for error in calls["error"])  # kept, redacted
            llm_job = llm_annotator.start_llm_annotation(db, project.id, **_annotator_options(server))
        assert _wait_for_job(db_path, llm_job)["error"].endswith(said)

        done = _cli("generate", "films", "--mode", "zero-shot", "--per-label", "1", "--backend", "openai",
                    "--model", "fake-model", "--base-url", server.base_url, "--max-tokens", "8",
                    "--db", str(db_path), env={"OPENAI_API_KEY": ECHOED_KEY})
        assert done.returncode == 2 and done.stderr.endswith(f"{said}\n") and done.stderr.count("\n") == 1
        assert not _key_leaks(done.stderr) and not _key_leaks(done.stdout)

        with connection.open_db(db_path) as db:
            at = researcher_app("generate.py", db_path, db, project.id, monkeypatch)
            at.run()
            next(w for w in at.selectbox if w.label == "Backend").set_value("openai").run()
            next(w for w in at.text_input if w.label == "Model").set_value("fake-model")
            next(w for w in at.text_input if w.label == "Base URL").set_value(server.base_url)
            at.button(key="FormSubmitter:generate_settings-Test connection").click().run()
            assert not at.exception
            assert shown(at.error[0].value).endswith(said)  # test connection: the server's words, redacted
            page = "\n".join(str(node.proto) for node in at.main if getattr(node, "proto", None) is not None)
            assert "failed" in page and not _key_leaks(page)  # the failed jobs are listed too
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.parent.name == "logs" for p in files), "the job processes wrote no logs"
    for path in files:  # the database, its -wal and -shm, the job logs
        assert not _key_leaks(path.read_bytes()), path.name
