"""The embedded backend (SmolLM2-135M GGUF through llama.cpp on CPU) generating a few texts offline."""

from __future__ import annotations

import pytest

from core.generation import service
from core.generation.backends import EmbeddedBackend, embedded_model_path
from core.generation.jobs import run_generation
from db import items as items_db
from tests.generation_helpers import make_project

pytestmark = pytest.mark.slow


def test_the_model_file_ships_in_the_package() -> None:
    path = embedded_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


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


def test_chat_and_prefill_calls_answer() -> None:
    backend = EmbeddedBackend()
    chat = backend.complete([{"role": "user", "content": "Name a fruit."}], temperature=0.0, max_tokens=8, seed=0)
    assert chat.text.strip() and chat.completion_tokens > 0 and chat.latency_s > 0
    continued = backend.complete([{"role": "user", "content": "List fruits."},
                                  {"role": "assistant", "content": "1. apple\n2. pear\n3."}],
                                 temperature=0.0, max_tokens=6, seed=0)
    assert continued.completion_tokens > 0 and not continued.text.startswith("1. apple")


def test_transformers_backend_says_plainly_when_a_hub_model_is_not_available(tmp_path) -> None:
    from core.generation.backends import BackendCallError, TransformersBackend

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
