"""What steers one generation call beyond the seeds, as pure functions (randomness from a passed ``rng``):

* **grounding** (as in SynthesizRR): real texts of the project retrieved by embedding similarity to a sampled
  real text, picked by maximal marginal relevance so that they are near the query but not near each other;
* **attributes** (as in AttrPrompt): one value of each of the researcher's attribute lists, sampled per call;
* **counter-examples**: earlier synthetic texts of the label that people judged to be something else.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.generation.config import GenerationConfig
from core.generation.seeds import SeedExample


@dataclass(frozen=True)
class Steering:
    """One call's levers: the texts it retrieved, the counter-examples it shows and the attributes it asks for."""

    retrieved: tuple[SeedExample, ...] = ()
    counter_examples: tuple[SeedExample, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def retrieved_ids(self) -> list[int]:
        return [example.item_id for example in self.retrieved]

    @property
    def counter_example_ids(self) -> list[int]:
        return [example.item_id for example in self.counter_examples]


NO_STEERING = Steering()


def mmr(query: np.ndarray, candidates: np.ndarray, *, k: int, trade_off: float) -> list[int]:
    """Maximal marginal relevance over L2-normalised rows: repeatedly the candidate maximising
    ``trade_off · sim(query) − (1 − trade_off) · max sim(already chosen)``; returns row positions in pick order."""
    if len(candidates) == 0 or k <= 0:
        return []
    relevance = candidates @ query
    chosen: list[int] = []
    redundancy = np.full(len(candidates), -np.inf)
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = np.where(available, trade_off * relevance - (1.0 - trade_off) * penalty, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[best])
    return chosen


class Grounder:
    """The project's real texts with their normalised embeddings and known labels (``None``: unlabelled);
    :meth:`retrieve` picks a call's passages."""

    def __init__(self, item_ids: Sequence[int], texts: Sequence[str], vectors: np.ndarray, *, k: int,
                 candidates: int, trade_off: float, labels: Sequence[str | None] | None = None) -> None:
        self.examples = [SeedExample(item_id=int(i), text=t, label="") for i, t in zip(item_ids, texts, strict=True)]
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.k, self.candidates, self.trade_off = k, candidates, trade_off
        self.of_label: dict[str, list[int]] = {}
        for position, label in enumerate(labels or ()):
            if label:
                self.of_label.setdefault(label, []).append(position)

    def retrieve(self, rng: random.Random, label: str | None = None) -> tuple[SeedExample, ...]:
        """The query is a real text of ``label`` (any real text when the label has none), so the passages are
        from the label's part of the domain (as SynthesizRR queries with the label's examples); its nearest
        ``candidates`` texts, labelled or not (the query first), are narrowed to ``k`` by MMR."""
        if not self.examples:
            return ()
        queries = self.of_label.get(label or "") or range(len(self.examples))
        query = self.vectors[queries[rng.randrange(len(queries))]]
        similarity = self.vectors @ query
        nearest = np.argsort(-similarity, kind="stable")[: self.candidates]
        picked = mmr(query, self.vectors[nearest], k=self.k, trade_off=self.trade_off)
        return tuple(self.examples[int(nearest[p])] for p in picked)


def sample_attributes(attributes: Mapping[str, Sequence[str]], rng: random.Random) -> dict[str, str]:
    """One value of each attribute list, in the lists' order."""
    return {name: rng.choice(list(values)) for name, values in attributes.items()}


def sample_counter_examples(pool: Sequence[SeedExample], *, k: int, rng: random.Random) -> tuple[SeedExample, ...]:
    return tuple(rng.sample(list(pool), min(k, len(pool))))


class PlaceholderGrounder:
    """Stands in for :class:`Grounder` in a prompt preview: the ``k`` passages are placeholders (retrieving would
    embed the whole corpus just to draw a preview)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def retrieve(self, rng: random.Random, label: str | None = None) -> tuple[SeedExample, ...]:
        return tuple(SeedExample(0, f"<real text {i} retrieved for this call>", "") for i in range(1, self.k + 1))


def steer(config: GenerationConfig, label: str, call_number: int, *, grounder: Grounder | PlaceholderGrounder | None,
          counter_examples: Sequence[SeedExample]) -> Steering:
    """What steers call ``call_number`` of ``label`` beyond its seeds (nothing when no lever is on)."""

    def rng(lever: str) -> random.Random:
        return steering_rng(config.seed, label, call_number, lever)

    return Steering(
        retrieved=grounder.retrieve(rng("grounding"), label) if grounder else (),
        counter_examples=sample_counter_examples(counter_examples, k=config.counter_examples_per_prompt,
                                                 rng=rng("counter-examples")),
        attributes=sample_attributes(config.attributes, rng("attributes")))


def steering_rng(seed: int, label: str, call_number: int, lever: str) -> random.Random:
    """A stream of its own per call and lever, so that turning one lever on changes neither the seeds a call
    samples nor what the other levers choose (settings then differ only in what they are meant to change)."""
    return random.Random(f"{seed}:{label}:{call_number}:{lever}")
