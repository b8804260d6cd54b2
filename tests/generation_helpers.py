"""Shared set-up for the generation tests: a small labelled project with seeds, and jobs against a fake server."""

from __future__ import annotations

from typing import Any

from core import projects
from core.data.text import text_hash
from core.generation import seeds, service
from db import items as items_db
from db import transaction

REAL = {
    "pos": ["A warm and funny film about two sisters running a bakery.", "I loved every minute of this gentle comedy.",
            "Brilliant acting and a script full of surprises."],
    "neg": ["Two hours of my life I will never get back.", "The plot makes no sense and the jokes fall flat.",
            "Wooden acting and a lazy, predictable ending."],
}


def make_project(db: Any, *, name: str = "films", with_seeds: bool = True) -> projects.Project:
    """A project with labels pos/neg, three real train items each (external ids pos-0 …) and all pinned."""
    project = projects.create_project(db, name, projects.parse_labels("pos,neg", {"pos": "a favourable review"}),
                                      description="movie reviews", context_prompt="You are a movie reviewer.")
    rows = [{"text": text, "text_hash": text_hash(text), "source": "real", "split": "train", "reference_label": label,
             "external_id": f"{label}-{i}"} for label, texts in REAL.items() for i, text in enumerate(texts)]
    with transaction(db):
        items_db.insert_items(db, project.id, rows)
    if with_seeds:
        seeds.pin(db, project.id, [row["external_id"] for row in rows])
    return project


def fake_options(server: Any, **changes: Any) -> dict[str, Any]:
    """Generation options that talk to a FakeLLMServer (short timeout, quick retries)."""
    return {"backend": "openai", "model": "fake-model", "base_url": server.base_url, "timeout_s": 5.0,
            "max_retries": 3, "min_words": 3, **changes}


def queue_job(db: Any, project_id: int, server: Any, **changes: Any) -> int:
    return service.start_generation(db, project_id, launch=False, **fake_options(server, **changes))
