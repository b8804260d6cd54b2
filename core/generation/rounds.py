"""Rounds of the loop: people's verdicts on the synthetic items of earlier rounds, turned into the next round's
few-shot examples, counter-examples and per-label targets.

The verdicts are read once, when a round's job is created, and frozen into its config, so that a resumed job
shows the same examples even while annotators go on labelling. Only human labels count (not ``llm:…``), and
only on items with at least ``feedback_min_labels`` of them:

* **confirmed** — the human majority is the intended label; with instance agreement ≥ ``feedback_min_agreement``
  the item may be shown as a few-shot example (highest agreement first, as ProGen chooses its in-context
  examples by quality);
* **contradicted** — a clear human majority for another label; shown as a counter-example of its intended label;
* a tie is neither;
* each label's *label fidelity* (the share confirmed, ties counting as not) sets its target: to end with
  ``per_label`` texts people would confirm, a label with fidelity *f* needs ``per_label / f`` of them (at most
  ``MAX_TARGET_FACTOR`` times as many).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import sqlite_utils

from core.agreement.metrics import human_verdicts
from core.generation.config import GenerationConfig
from core.generation.seeds import SeedExample
from db import generation as gen_db
from db import items as items_db

MAX_TARGET_FACTOR = 4
MAX_FEEDBACK_ITEMS = 50  # per label and kind: more would only make the frozen config long


@dataclass(frozen=True)
class Feedback:
    """What the verdicts on earlier rounds give the next one."""

    example_ids: dict[str, tuple[int, ...]]
    counter_example_ids: dict[str, tuple[int, ...]]
    label_targets: dict[str, int]
    fidelity: dict[str, float]  # per label with judged items
    n_judged: int


def _ranked_ids(verdicts: pd.DataFrame, label: str) -> tuple[int, ...]:
    of_label = verdicts[verdicts["intended"] == label].reset_index()
    ranked = of_label.sort_values(["instance_agreement", "n_labels", "item_id"], ascending=[False, False, True],
                                  kind="stable")
    return tuple(int(i) for i in ranked["item_id"].head(MAX_FEEDBACK_ITEMS))


def label_target(per_label: int, fidelity: float | None) -> int:
    """Texts to generate for a label so that about ``per_label`` of them would be confirmed by people."""
    if fidelity is None:
        return per_label
    return min(math.ceil(per_label / max(fidelity, 1.0 / MAX_TARGET_FACTOR)), MAX_TARGET_FACTOR * per_label)


def select_feedback(verdicts: pd.DataFrame, fidelity: dict[str, float], config: GenerationConfig) -> Feedback:
    """Examples, counter-examples and targets for ``config``'s labels from judged items (pure)."""
    examples = verdicts[verdicts["confirmed"] & (verdicts["instance_agreement"].fillna(1.0)
                                                 >= config.feedback_min_agreement)]
    counters = verdicts[verdicts["contradicted"]]
    example_ids, counter_ids, targets = {}, {}, {}
    for label in config.labels:
        if config.mode == "few-shot" and (ids := _ranked_ids(examples, label)):
            example_ids[label] = ids
        if config.counter_examples_per_prompt and (ids := _ranked_ids(counters, label)):
            counter_ids[label] = ids
        target = label_target(config.per_label, fidelity.get(label))
        if target != config.per_label:
            targets[label] = target
    return Feedback(example_ids, counter_ids, targets, {k: v for k, v in fidelity.items() if k in config.labels},
                    n_judged=len(verdicts))


def gather_feedback(db: sqlite_utils.Database, project_id: int, config: GenerationConfig) -> Feedback:
    """The verdicts on every accepted synthetic item of the project's earlier rounds."""
    earlier = gen_db.earlier_synthetic_items(db, project_id, before_round=gen_db.next_round(db, project_id))
    intended = earlier.set_index("id")["reference_label"]
    annotations = items_db.annotation_labels_frame(db, project_id)
    verdicts = human_verdicts(annotations, intended, min_labels=config.feedback_min_labels)
    # Label fidelity: the share confirmed, a tie counting as not (core.agreement.metrics.label_fidelity's rule).
    fidelity = verdicts.groupby("intended")["confirmed"].mean()
    return select_feedback(verdicts, {str(label): float(f) for label, f in fidelity.items()}, config)


def frozen_for_round(db: sqlite_utils.Database, project_id: int, config: GenerationConfig) -> GenerationConfig:
    """``config`` with what it draws on frozen in when its round is created: the feedback of earlier rounds, and the
    grounding corpus (real items imported later are not retrieved), so that a resumed round is the same round."""
    if config.grounding == "retrieval":
        config = config.replace(grounding_up_to_item=gen_db.last_item_id(db, project_id))
    if not config.feedback:
        return config
    feedback = gather_feedback(db, project_id, config)
    return config.replace(feedback_example_ids=feedback.example_ids,
                          counter_example_ids=feedback.counter_example_ids, label_targets=feedback.label_targets)


def feedback_examples(db: sqlite_utils.Database, ids_by_label: dict[str, tuple[int, ...]]) -> dict[str, list[SeedExample]]:
    """The frozen ids as examples of their label (items deleted since are left out)."""
    found = {row["id"]: row["text"] for row in items_db.get_items(db, [i for ids in ids_by_label.values()
                                                                        for i in ids])}
    return {label: [SeedExample(i, found[i], label) for i in ids if i in found]
            for label, ids in ids_by_label.items()}
