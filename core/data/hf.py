"""A project's data as a Hugging Face ``datasets`` folder, and back.

:func:`export_hf` writes a ``DatasetDict`` with ``save_to_disk`` (one split per project split that has items) and
a dataset card (``README.md``) beside it; one row per accepted item:

- ``item_id``, ``text``;
- ``label``: the item's final label — adjudicated, else the majority of its raw labels, else its reference
  label — as a ``ClassLabel`` over the project's labels, ``-1`` when unknown (the ``datasets`` convention for a
  missing class label); ``reference_label`` and ``majority_label`` the same way;
- ``soft_label``: the share of the raw labels each label got, in the order of the label names (empty when the
  item has no raw labels); ``n_labels``, ``instance_agreement`` (None when unknown), ``agreement_source``;
- ``annotations``: the raw labels, ``[{annotator, label}]`` (those agreement counts: excluded annotators left
  out);
- provenance: ``source``, ``generation_mode``, ``generation_job_id``.

:func:`read_folder` turns such a folder back into the long-form frame the file readers of
:mod:`core.data.importer` produce (a row per item and annotator), so an import of it goes through the same checks.
``datasets`` is imported lazily: it costs a second or two.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import sqlite_utils

from core import projects
from core.data.export import file_slug, public_item_ids
from core.data.items import item_table
from core.errors import ImportDataError, SynthloopError
from core.vocab import SPLITS
from db import items as items_db

CARD_FILE = "README.md"
DATASET_DICT_FILE = "dataset_dict.json"
UNKNOWN_LABEL = -1
TOKEN_ENV = "HF_TOKEN"
# The long-form frame read_folder returns, and the import columns that read it.
IMPORT_COLUMNS = {"text_col": "text", "id_col": "item_id", "label_col": "reference_label", "split_col": "split",
                  "agreement_col": "imported_agreement", "annotator_col": "annotator",
                  "annotation_col": "annotation"}


def _features(label_names: list[str]) -> Any:
    from datasets import ClassLabel, Features, Sequence, Value

    label = ClassLabel(names=label_names)
    return Features({
        "item_id": Value("string"), "text": Value("string"),
        "label": label, "reference_label": label, "majority_label": label,
        "soft_label": Sequence(Value("float32")), "n_labels": Value("int32"),
        "instance_agreement": Value("float64"), "agreement_source": Value("string"),
        "annotations": [{"annotator": Value("string"), "label": Value("string")}],
        "source": Value("string"), "generation_mode": Value("string"), "generation_job_id": Value("int64"),
    })


def _text_or_none(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA else str(value)


def dataset_rows(db: sqlite_utils.Database, project_id: int) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """``(label names, {split: rows})``: the rows of :func:`export_hf`, before they become a ``DatasetDict``."""
    project = projects.get_project(db, project_id)
    names = list(project.label_names)
    code = {name: i for i, name in enumerate(names)}
    table = item_table(db, project_id)
    table["public_id"] = public_item_ids(table)
    raw = items_db.annotation_labels_frame(db, project_id)
    per_item = {item_id: [{"annotator": str(a), "label": str(lab)} for a, lab in zip(g["annotator"], g["label"],
                                                                                      strict=True)]
                for item_id, g in raw.groupby("item_id", sort=False)}

    def label_code(value: Any) -> int:
        return code.get(_text_or_none(value) or "", UNKNOWN_LABEL)

    splits: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_dict(orient="records"):
        votes = json.loads(row["votes"] or "{}")
        total = sum(votes.values())
        final = next((v for v in (row["adjudicated_label"], row["majority_label"], row["reference_label"])
                      if _text_or_none(v) in code), None)
        agreement = row["instance_agreement"]
        job = row["generation_job_id"]
        splits.setdefault(row["split"], []).append({
            "item_id": row["public_id"], "text": row["text"], "label": label_code(final),
            "reference_label": label_code(row["reference_label"]), "majority_label": label_code(row["majority_label"]),
            "soft_label": [votes.get(name, 0) / total for name in names] if total else [],
            "n_labels": int(row["n_labels"]),
            "instance_agreement": None if pd.isna(agreement) else float(agreement),
            "agreement_source": _text_or_none(row["agreement_source"]),
            "annotations": per_item.get(row["id"], []),
            "source": row["source"], "generation_mode": _text_or_none(row["generation_mode"]),
            "generation_job_id": None if pd.isna(job) else int(job),
        })
    return names, {split: splits[split] for split in SPLITS if split in splits}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def dataset_card(project: projects.Project, names: list[str], splits: dict[str, list[dict[str, Any]]],
                 agreement: dict[str, Any]) -> str:
    """The dataset card: YAML metadata (task, labels, size, splits) and what the data is and how it was made."""
    import yaml

    n_items = sum(len(rows) for rows in splits.values())
    meta = {
        "pretty_name": project.name,
        "task_categories": ["text-classification"],
        "size_categories": [_size_category(n_items)],
        "tags": ["synthloop", "annotator-disagreement", "soft-labels"],
        "label_names": names,
        "splits": {split: len(rows) for split, rows in splits.items()},
        "agreement": agreement,
    }
    sources: dict[str, int] = {}
    for rows in splits.values():
        for row in rows:
            key = row["source"] if row["source"] != "synthetic" else f"synthetic ({row['generation_mode'] or '?'})"
            sources[key] = sources.get(key, 0) + 1
    alpha, (low, high) = agreement["krippendorff_alpha"], agreement["alpha_ci"]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
        f"# {project.name}", "",
        project.description.strip() or "A text-classification dataset exported from Synthloop.", "",
        "## Labels", "", *(f"- {i}: {name}" for i, name in enumerate(names)), "",
        "## Agreement", "",
        f"Krippendorff's alpha {fmt(alpha)} (95% interval {fmt(low)} to {fmt(high)}) over"
        f" {agreement['n_annotations']} raw labels by {agreement['n_annotators']} annotators; mean instance"
        f" agreement {fmt(agreement['mean_instance_agreement'])}.", "",
        "## How the data was made", "",
        "Items by origin: " + ", ".join(f"{k}: {v}" for k, v in sorted(sources.items())) + ". Real items were"
        " imported; synthetic items were generated by a language model in Synthloop (column `generation_mode`:"
        " zero-shot or few-shot; `generation_job_id`: the generation job) and reviewed before use. Raw labels come"
        " from human annotators (and imported annotations, annotator names prefixed `import:`).", "",
        "## Columns", "",
        "- `label`: the final label: adjudicated, else the majority of the raw labels, else the reference label;"
        " -1 when unknown. `reference_label`, `majority_label`: the same way.",
        "- `soft_label`: the share of the raw labels each label got, in label order (empty without raw labels).",
        "- `instance_agreement`: the share of an item's raw labels that its most frequent label got (items with"
        " two or more; null when unknown);"
        " `agreement_source`: `labels` (from the raw labels) or `imported` (published with the data).",
        "- `annotations`: the raw labels, one `{annotator, label}` each.",
        "- `source`, `generation_mode`, `generation_job_id`: provenance.", "",
        "Load it with `datasets.load_from_disk(folder)`; import it into Synthloop with"
        " `python -m core import PROJECT FOLDER --format hf`.", "",
    ]
    return "\n".join(lines)


def export_hf(db: sqlite_utils.Database, project_id: int, folder: str | os.PathLike[str], *,
              push_to_hub: str | None = None) -> dict[str, Any]:
    """Write the project as a ``DatasetDict`` folder with its card; with ``push_to_hub`` (a repo id) upload it
    too (needs a Hugging Face token and the network). Returns a summary (rows, path, splits)."""
    from datasets import Dataset, DatasetDict

    from core.agreement.project import project_agreement

    target = Path(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SynthloopError(f"{str(target)!r} exists and is not an empty folder: choose a new folder to write")
    token = _hub_token() if push_to_hub else None  # refuse before any work when an upload cannot happen
    project = projects.get_project(db, project_id)
    names, splits = dataset_rows(db, project_id)
    if not splits:
        raise SynthloopError(f"project {project.name!r} has no items to export")
    features = _features(names)
    dataset = DatasetDict({split: Dataset.from_list(rows, features=features) for split, rows in splits.items()})
    agreement = project_agreement(db, project)
    figures = {"krippendorff_alpha": agreement.krippendorff_alpha, "alpha_ci": list(agreement.alpha_ci),
               "mean_instance_agreement": agreement.mean_instance_agreement,
               "n_annotations": agreement.n_annotations, "n_annotators": agreement.n_annotators}
    card = dataset_card(project, names, splits, figures)
    try:
        dataset.save_to_disk(str(target))
        (target / CARD_FILE).write_text(card, encoding="utf-8")
    except OSError as exc:
        raise SynthloopError(f"cannot write {str(target)!r} ({exc.strerror}): choose a writable folder") from None
    summary = {"rows": sum(len(rows) for rows in splits.values()), "path": str(target), "format": "hf",
               "splits": {split: len(rows) for split, rows in splits.items()}}
    if push_to_hub:
        dataset.push_to_hub(push_to_hub, token=token)
        from huggingface_hub import HfApi

        HfApi(token=token).upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo=CARD_FILE,
                                       repo_id=push_to_hub, repo_type="dataset")
        summary["pushed_to"] = push_to_hub
    return summary


def export_zip(db: sqlite_utils.Database, project_id: int) -> tuple[bytes, str]:
    """The folder of :func:`export_hf` as one zip, ``(bytes, file name)``: the Export page's download."""
    project = projects.get_project(db, project_id)
    name = f"{file_slug(project)}-hf"
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        export_hf(db, project_id, folder)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    bundle.write(file, Path(name) / file.relative_to(folder))
    return buffer.getvalue(), f"{name}.zip"


def _hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise SynthloopError(f"no Hugging Face token to upload with: set {TOKEN_ENV} or log in with"
                             " `hf auth login`, then export again")
    return token


# -- reading back -----------------------------------------------------------------------------------------

def is_dataset_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / DATASET_DICT_FILE).is_file()


def import_spec(spec: Any) -> Any:
    """``spec`` with the columns of :func:`read_folder`'s frame (the rest of the import settings kept)."""
    return spec.replace(split=None, annotator_cols=(), no_header=False, columns=(), **IMPORT_COLUMNS)


def read_folder(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A folder written by :func:`export_hf` as the long-form frame of the importer: a row per item and raw label
    (one row for an item without raw labels), columns ``IMPORT_COLUMNS``; the index counts rows from 1.

    ``imported_agreement`` carries only agreement that was imported (agreement from raw labels is recomputed
    from them)."""
    from datasets import load_from_disk

    folder = Path(path)
    if not is_dataset_folder(folder):
        raise ImportDataError(f"{str(folder)!r} is not a Hugging Face dataset folder (no {DATASET_DICT_FILE}):"
                              " give a folder written by export with format hf")
    dataset = load_from_disk(str(folder))
    records: list[dict[str, Any]] = []
    for split, part in dataset.items():
        names = part.features["reference_label"].names
        for row in part:
            reference = names[row["reference_label"]] if row["reference_label"] != UNKNOWN_LABEL else None
            imported = row["instance_agreement"] if row["agreement_source"] == "imported" else None
            base = {"item_id": row["item_id"], "text": row["text"], "reference_label": reference, "split": split,
                    "imported_agreement": imported}
            for raw in row["annotations"] or [{"annotator": None, "label": None}]:
                records.append({**base, "annotator": raw["annotator"], "annotation": raw["label"]})
    if not records:
        raise ImportDataError(f"{str(folder)!r} has no rows: there is nothing to import")
    frame = pd.DataFrame.from_records(records, columns=["item_id", "text", "reference_label", "split",
                                                        "imported_agreement", "annotator", "annotation"])
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame
