"""The frozen settings of one training run, validated at construction and stored with the run's results.

Every number a run reports can be traced back to ``TrainConfig.to_dict()`` stored beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import Config, is_finite_number, is_whole_number, setting
from core.errors import SynthloopError
from core.vocab import (
    DATA_SOURCES,
    HELD_OUT_SPLITS,
    LABEL_SOURCES,
    OBJECTIVES,
    SOFT_SOURCES,
    HeldOutSplit,
    LabelSource,
    Objective,
    SoftSource,
)

EMBEDDED_MODEL = "embedded"
PAPER_MODELS = ("bert-base-uncased", "roberta-base")

LABEL_SOURCE_HELP = {
    "reference": "the imported gold label of real items; the intended label of synthetic items",
    "majority": "the human majority label (items with a tie or fewer than one label are left out)",
    "aggregate": "the model-based aggregate of the annotations (e.g. Dawid-Skene)",
    "adjudicated": "the researcher's adjudicated label, else the human majority",
}

OBJECTIVE_HELP = {
    "hard": "one label per item (the label source's)",
    "soft": "each item's human vote distribution (its one label where it has no votes)",
}
SOFT_SOURCE_HELP = {
    "votes": "the share of the human votes per label",
    "dawid-skene": "the Dawid-Skene posterior of the true label (weighs annotators by reliability)",
}


def _fail(name: str, value: Any, expected: str) -> SynthloopError:
    return SynthloopError(f"training setting {name}={value!r} is not valid: {expected}")


@dataclass(frozen=True)
class TrainConfig(Config):
    """What to train on, with which labels, which model and which hyper-parameters.

    ``sources`` picks training items: ``real`` (the real training split), ``zero-shot`` / ``few-shot``
    (accepted synthetic items of that generation mode), ``seeds`` (the curated few-shot seed items);
    ``generation_job_ids`` adds the synthetic items of those generation jobs. ``min_agreement`` (γ) keeps only
    training items whose instance agreement is ≥ γ (items without a known agreement are then left out);
    0 keeps everything. ``min_panel_agreement`` keeps only synthetic items whose LLM-panel agreement (the share of
    ``llm:`` annotators who gave the intended label, :mod:`core.agreement.panel`) is at least that; synthetic items
    the panel did not label are left out, real items are not affected; None turns it off. ``cap_per_label`` keeps at most that many items per label (seeded sample).
    ``max_round`` keeps only the synthetic items of the project's loop rounds up to that one (a round is a
    generation job, ``generation_job.round``; synthetic items of no round are left out too); real items are not
    affected; None keeps every round.
    ``objective`` ``soft`` trains with cross-entropy against each item's label distribution: the share of its human
    votes per label (``soft_source`` ``votes``; annotators named ``llm:…`` do not count) or the Dawid–Skene
    posterior of its true label (``dawid-skene``); an item without human labels uses its one label (one-hot).
    The items themselves are chosen exactly as for ``hard``.
    The default learning rate (1e-4) suits the small embedded MiniLM; bert-base / roberta-base train better with
    2e-5 to 5e-5.
    """

    KIND = "training setting"

    sources: tuple[str, ...] = setting(("real",), "training data: one or more of the training sources")
    generation_job_ids: tuple[int, ...] = setting((), "also train on the accepted items of these generation jobs")
    label_source: LabelSource = setting("reference", "which label an item trains and tests with")
    min_agreement: float = setting(0.0, "γ: keep training items whose instance agreement is at least this")
    min_panel_agreement: float | None = setting(None, "keep synthetic training items whose LLM-panel agreement with"
                                                      " their intended label is at least this (none: off)")
    cap_per_label: int | None = setting(None, "keep at most this many training items per label (seeded sample)")
    max_round: int | None = setting(None, "train on the synthetic items of rounds up to this one only (none: every"
                                          " round; real items are not affected)")
    model: str = setting(EMBEDDED_MODEL, "the embedded MiniLM, a local model folder or a hub id")
    epochs: int = setting(3, "passes over the training data")
    learning_rate: float = setting(1e-4, "AdamW learning rate (peak, after warm-up)")
    batch_size: int = setting(32, "examples per optimiser step")
    max_length: int = setting(128, "tokens per text; longer texts are truncated")
    warmup_ratio: float = setting(0.1, "share of the steps with a linearly rising learning rate")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    seed: int = setting(42, "seed of the data order, the weight initialisation and any sampling")
    eval_split: HeldOutSplit = setting("test", "the real held-out split the model is scored on")
    objective: Objective = setting("hard", "train on one label per item (hard) or on its label distribution (soft)")
    soft_source: SoftSource = setting("votes", "soft targets: the human vote shares or the Dawid-Skene posterior"
                                               " (soft objective only)")
    # Per-annotator modelling (core.training.annotator_heads): one output head per annotator on a shared encoder.
    annotator_heads: bool = setting(False, "train one output head per annotator (multi-task); the item prediction"
                                           " is the majority of the heads")
    min_annotator_labels: int = setting(20, "an annotator needs at least this many training labels to get a head"
                                            " (annotator heads only)")

    def __post_init__(self) -> None:
        # Accept lists and comma strings from forms and JSON, but store tuples so the config stays hashable.
        sources = self.sources.split(",") if isinstance(self.sources, str) else self.sources
        sources = tuple(dict.fromkeys(str(s).strip() for s in sources if str(s).strip()))
        object.__setattr__(self, "sources", sources)
        for source in sources:
            if source not in DATA_SOURCES:
                raise _fail("sources", source, f"use one or more of {', '.join(DATA_SOURCES)}")
        try:
            job_ids = tuple(dict.fromkeys(int(j) for j in self.generation_job_ids))
        except (TypeError, ValueError):
            raise _fail("generation_job_ids", self.generation_job_ids, "use whole-number job ids") from None
        object.__setattr__(self, "generation_job_ids", job_ids)
        if not sources and not job_ids:
            raise SynthloopError("no training data chosen: pick at least one source (real, zero-shot, few-shot,"
                                 " seeds) or a generation job")
        if self.label_source not in LABEL_SOURCES:
            raise _fail("label_source", self.label_source, f"use one of {', '.join(LABEL_SOURCES)}")
        if self.eval_split not in HELD_OUT_SPLITS:
            raise _fail("eval_split", self.eval_split, f"use one of {', '.join(HELD_OUT_SPLITS)}")
        if self.objective not in OBJECTIVES:
            raise _fail("objective", self.objective, f"use one of {', '.join(OBJECTIVES)}")
        if self.soft_source not in SOFT_SOURCES:
            raise _fail("soft_source", self.soft_source, f"use one of {', '.join(SOFT_SOURCES)}")
        if not isinstance(self.annotator_heads, bool):
            raise _fail("annotator_heads", self.annotator_heads, "use true or false")
        if not is_whole_number(self.min_annotator_labels) or self.min_annotator_labels < 1:
            raise _fail("min_annotator_labels", self.min_annotator_labels, "use a whole number ≥ 1")
        if self.annotator_heads and self.objective != "hard":
            raise SynthloopError("{annotator_heads} trains on each annotator's own labels, so it takes {objective}"
                                 f" 'hard', not {self.objective!r}: turn one of them off",
                                 fields=("annotator_heads", "objective"))
        if isinstance(self.min_agreement, bool) or not isinstance(self.min_agreement, int | float) \
                or not 0.0 <= float(self.min_agreement) <= 1.0:
            raise _fail("min_agreement", self.min_agreement, "use a number from 0 to 1 (0 keeps every item)")
        object.__setattr__(self, "min_agreement", float(self.min_agreement))
        if self.min_panel_agreement is not None:
            if not is_finite_number(self.min_panel_agreement) or not 0.0 <= self.min_panel_agreement <= 1.0:
                raise _fail("min_panel_agreement", self.min_panel_agreement,
                            "use a number from 0 to 1, or none to keep synthetic items whatever the LLM panel says")
            object.__setattr__(self, "min_panel_agreement", float(self.min_panel_agreement))
        if self.cap_per_label is not None and (not is_whole_number(self.cap_per_label) or self.cap_per_label < 1):
            raise _fail("cap_per_label", self.cap_per_label, "use a whole number ≥ 1, or none for no cap")
        if self.max_round is not None and (not is_whole_number(self.max_round) or self.max_round < 1):
            raise _fail("max_round", self.max_round, "use a round number ≥ 1, or none for every round")
        if not isinstance(self.model, str) or not self.model.strip():
            raise _fail("model", self.model, f"use {EMBEDDED_MODEL!r}, a local model folder or a hub id")
        object.__setattr__(self, "model", self.model.strip())
        for name, low, high in (("epochs", 1, 1000), ("batch_size", 1, 4096), ("max_length", 8, 8192)):
            value = getattr(self, name)
            if not is_whole_number(value) or not low <= value <= high:
                raise _fail(name, value, f"use a whole number from {low} to {high}")
        if not is_finite_number(self.learning_rate) or not 0 < self.learning_rate < 1:
            raise _fail("learning_rate", self.learning_rate, "use a positive number below 1, e.g. 5e-5")
        if not is_finite_number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise _fail("warmup_ratio", self.warmup_ratio, "use a fraction of the steps from 0 to below 1")
        if not is_finite_number(self.weight_decay) or not 0 <= self.weight_decay < 1:
            raise _fail("weight_decay", self.weight_decay, "use a number from 0 to below 1")
        if not is_whole_number(self.seed) or not 0 <= self.seed < 2**32:
            raise _fail("seed", self.seed, "use a whole number from 0 to 2**32 - 1")

    @property
    def data_source(self) -> str:
        """A short name for the training data, the column of the paper's Table 1 (e.g. ``few-shot``)."""
        parts = list(self.sources) + [f"job {j}" for j in self.generation_job_ids]
        # Data up to a round of the loop, or kept by the LLM panel, is other data: Table 1 must not average them.
        filters = ([] if self.max_round is None else [f"rounds ≤ {self.max_round}"]) + (
            [] if self.min_panel_agreement is None else [f"panel ≥ {self.min_panel_agreement:g}"])
        return "+".join(parts) + (f" ({', '.join(filters)})" if filters else "")
