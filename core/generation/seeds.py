"""Seeds: real, labelled items a researcher pins as few-shot examples for generation.

A seed's label is the item's *effective* label: the adjudicated label, else the imported reference label,
else the annotators' majority (never a tie). Test items cannot be seeds, so few-shot prompts never leak the
test set. Sampling prefers items people agreed on (high instance agreement) when agreement is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlite_utils

from core.data.items import item_table
from core.data.tables import reference_candidates
from core.errors import NotFoundError, SynthloopError
from core.projects import get_project
from db import seeds as seeds_db
from db import transaction

SEED_COLUMNS = ["id", "external_id", "text", "split", "label", "instance_agreement", "agreement_source",
                "n_labels", "is_seed"]


@dataclass(frozen=True)
class SeedExample:
    """One seed as prompts use it."""

    item_id: int
    text: str
    label: str


@dataclass(frozen=True)
class SampleResult:
    added: dict[str, list[int]]
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def effective_labels(table: pd.DataFrame) -> pd.Series:
    """Adjudicated label, else reference label, else a non-tied majority label (None when unlabelled)."""
    label = table["adjudicated_label"].astype(object)
    label = label.where(label.notna(), table["reference_label"].astype(object))
    majority = table["majority_label"].astype(object).where(~table["tie"], None)
    label = label.where(label.notna(), majority)
    return label.where(label.notna(), None)


def browse(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    label: str | None = None,
    min_agreement: float | None = None,
    search: str | None = None,
    seeds_only: bool = False,
) -> pd.DataFrame:
    """Real, non-test items with their effective label, agreement and whether they are pinned, best-agreed first."""
    table = item_table(db, project_id, source="real")
    table = table[table["split"] != "test"].copy()
    table["label"] = effective_labels(table)
    pinned = set(seeds_db.seed_item_ids(db, project_id))
    table["is_seed"] = table["id"].isin(pinned)
    if label is not None:
        table = table[table["label"] == label]
    if min_agreement is not None:
        table = table[table["instance_agreement"].fillna(-1.0) >= min_agreement]
    if search:
        table = table[table["text"].str.contains(search, case=False, regex=False)]
    if seeds_only:
        table = table[table["is_seed"]]
    table = table.sort_values(["instance_agreement", "id"], ascending=[False, True], na_position="last")
    return table[SEED_COLUMNS].reset_index(drop=True)


def pin(
    db: sqlite_utils.Database, project_id: int, refs: Sequence[str | int], *, added_by: str = "", note: str = ""
) -> list[int]:
    """Pin items given by imported external id or internal id; all or nothing. Returns the pinned item ids."""
    refs = [str(ref).strip() for ref in refs if str(ref).strip()]
    if not refs:
        raise SynthloopError("no items given: pass one or more item ids (imported ids or internal ids)")
    resolved = _resolve_refs(db, project_id, refs)
    missing = [ref for ref in refs if ref not in resolved]
    if missing:
        raise NotFoundError(f"no item {missing[0]!r} in this project: use an imported id or an internal item id")
    table = browse(db, project_id).set_index("id")
    all_items = item_table(db, project_id).set_index("id")
    item_ids = list(dict.fromkeys(resolved[ref] for ref in refs))
    for ref in refs:
        item_id = resolved[ref]
        if item_id not in table.index:
            row = all_items.loc[item_id]
            why = "is in the test split" if row["split"] == "test" else f"is {row['source']}"
            raise SynthloopError(f"item {ref!r} {why}: seeds must be real items outside the test split")
        if pd.isna(table.loc[item_id, "label"]):
            raise SynthloopError(f"item {ref!r} has no label (no reference, adjudicated or majority label): "
                                 "label it first or pick another item")
    with transaction(db):
        seeds_db.insert_seeds(db, project_id, item_ids, added_by=added_by, note=note)
    return item_ids


def unpin(db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int]) -> int:
    with transaction(db):
        return seeds_db.delete_seeds(db, project_id, [int(i) for i in item_ids])


def unpin_refs(db: sqlite_utils.Database, project_id: int, refs: Sequence[str]) -> int:
    """Unpin items given by imported external id or internal id (unknown ones are ignored)."""
    resolved = _resolve_refs(db, project_id, [str(r) for r in refs])
    return unpin(db, project_id, list(resolved.values()))


def _resolve_refs(db: sqlite_utils.Database, project_id: int, refs: Sequence[str]) -> dict[str, int]:
    """``ref → item id`` for the refs that name an item; a neutralised CSV cell (``'=x``) names ``=x``."""
    resolved = seeds_db.resolve_item_refs(db, project_id, refs)
    for ref in refs:
        if ref not in resolved:
            restored = seeds_db.resolve_item_refs(db, project_id, reference_candidates(ref)[1:])
            if restored:
                resolved[ref] = next(iter(restored.values()))
    return resolved


def seed_examples(db: sqlite_utils.Database, project_id: int) -> list[SeedExample]:
    """Pinned seeds with their effective labels, in pinning order (unlabelled ones are skipped)."""
    table = browse(db, project_id, seeds_only=True).set_index("id")
    return [
        SeedExample(int(item_id), str(table.loc[item_id, "text"]), str(table.loc[item_id, "label"]))
        for item_id in seeds_db.seed_item_ids(db, project_id)
        if item_id in table.index and not pd.isna(table.loc[item_id, "label"])
    ]


def seed_counts(db: sqlite_utils.Database, project_id: int) -> dict[str, int]:
    """Pinned seeds per label of the project (labels without seeds count 0)."""
    project = get_project(db, project_id)
    counts = dict.fromkeys(project.label_names, 0)
    for example in seed_examples(db, project_id):
        counts[example.label] = counts.get(example.label, 0) + 1
    return counts


def seed_warnings(counts: dict[str, int], examples_per_prompt: int) -> list[str]:
    """A warning for each label with fewer seeds than the few-shot setting shows per prompt."""
    return [
        f"label {label!r} has {n} seed{'s' if n != 1 else ''}, fewer than the {examples_per_prompt} examples per "
        f"prompt of the few-shot setting: pin more or lower the examples per prompt"
        for label, n in counts.items()
        if n < examples_per_prompt
    ]


def sample_seeds(
    db: sqlite_utils.Database,
    project_id: int,
    per_label: int,
    seed: int = 0,
    *,
    added_by: str = "",
    examples_per_prompt: int | None = None,
) -> SampleResult:
    """Top up the pinned seeds to ``per_label`` per label, preferring the items with the highest agreement.

    Items with known agreement come first (highest first, ties broken by a seeded shuffle), then items with
    unknown agreement in seeded random order. Labels with too few candidates get what there is and a warning.
    """
    if not isinstance(per_label, int) or per_label < 1:
        raise SynthloopError(f"{{per_label}} {per_label!r} is not valid: use a whole number of seeds per label ≥ 1",
                             fields=("per_label",))
    rng = np.random.default_rng(seed)
    table = browse(db, project_id)
    table = table[table["label"].notna()]
    counts = seed_counts(db, project_id)
    added: dict[str, list[int]] = {}
    warnings: list[str] = []
    for label, have in counts.items():
        need = per_label - have
        if need <= 0:
            continue
        candidates = table[(table["label"] == label) & ~table["is_seed"]].copy()
        candidates["shuffle"] = rng.permutation(len(candidates))
        candidates["agreement_key"] = candidates["instance_agreement"].fillna(-1.0)
        candidates = candidates.sort_values(["agreement_key", "shuffle"], ascending=[False, True])
        chosen = [int(i) for i in candidates["id"].head(need)]
        if len(chosen) < need:
            warnings.append(f"label {label!r} has only {have + len(chosen)} usable real items outside the test split "
                            f"(asked for {per_label}): import or label more")
        added[label] = chosen
    with transaction(db):
        for ids in added.values():
            seeds_db.insert_seeds(db, project_id, ids, added_by=added_by, note="sampled")
    counts = seed_counts(db, project_id)
    if examples_per_prompt is not None:
        warnings.extend(seed_warnings(counts, examples_per_prompt))
    return SampleResult(added=added, counts=counts, warnings=warnings)


def list_seeds(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """The pinned seeds with their labels and agreement, for pages and the CLI."""
    return browse(db, project_id, seeds_only=True)
