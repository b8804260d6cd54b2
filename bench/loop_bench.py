"""The loop's generation levers at an equal call budget (issue 14): plain few-shot, grounded (retrieval),
attribute-conditioned, and grounded + attributes, on SMS spam and Financial PhraseBank with the embedded generator
(SmolLM2-135M, few-shot list form), side by side with real data measured in the same run.

    .venv/bin/python bench/loop_bench.py [--quick] [--datasets sms,fpb] [--calls-per-label 6] [--n-train 400]
        [--n-test 200] [--n-dev 30] [--seeds-per-label 8] [--epochs 5] [--judge-epochs 3] [--max-tokens 128]
        [--seed 0] [--keep-db DIR]

Per dataset: the real data is split (stratified, seeded) into training, a small dev and test splits, imported into one
project per variant (so a variant's near-duplicate filter sees only its own texts) plus one for the real runs, with
the same seeds pinned in each. A "judge" classifier is trained once on the whole real training split. Every variant
is one generation job with the same ``calls_per_label`` and seed (and a target it cannot reach, so each makes
exactly that many calls). Then, for each variant and for real training data:

- n: accepted texts; Remote-Clique and Chamfer (cosine, embedded MiniLM) at the size of the smallest set of at
  least 5 texts (a smaller set shows -), as the mean over 5 seeded subsamples (core.analysis.diversity);
- top-5 similarity to real: the real *test* texts' mean top-5 cosine similarity to the set (at the same size);
  test texts, because grounding shows training texts to the generator;
- label fidelity: the share of texts the judge assigns to their intended label (for real data: the judge's
  accuracy on the test split, its ceiling);
- macro-F1 on the real test split of a classifier trained on the set (same training settings for all; the real
  row trains on a seeded per-label sample the size of the synthetic sets' mean per label).

The embedded MiniLM's load and the embedding of the real training texts happen before the jobs, so the seconds of
a grounded job include only its own model load and retrieval. Retrieval is label-agnostic (it grounds in the
domain, not the label), so on SMS spam most passages shown to a spam call are ham. A set whose texts all have one
label trains no model (shown as -). Figures from one seed on small sets are noisy: macro-F1 of a model trained on
a few dozen texts can move by several points between seeds.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
SUBSAMPLES = 5  # seeded subsamples per diversity / similarity figure
TOP_K = 5
MIN_COMPARED = 5  # a set with fewer texts is left out of the equal-size diversity comparison


@dataclass(frozen=True)
class Dataset:
    key: str
    title: str
    labels: dict[str, str]  # label -> description written into the prompts
    style: str
    task: str
    attributes: dict[str, list[str]]


DATASETS = {
    "sms": Dataset(
        "sms", "SMS spam", {"ham": "an ordinary personal message between people who know each other",
                            "spam": "unsolicited advertising, a prize claim or a scam"},
        style="SMS text message", task="SMS spam detection",
        attributes={"topic": ["meeting up", "family", "work or school", "a prize or competition", "a phone or network "
                              "offer", "money", "love and friendship", "travel", "food", "a ringtone or video"],
                    "tone": ["casual", "urgent", "friendly", "excited", "apologetic", "formal"],
                    "length": ["a few words", "one sentence", "two or three sentences"]}),
    "fpb": Dataset(
        "fpb", "Financial PhraseBank", {"positive": "news likely to raise the company's share price",
                                        "neutral": "a factual statement with no clear effect on the share price",
                                        "negative": "news likely to lower the company's share price"},
        style="sentence from financial news", task="financial news sentiment",
        attributes={"company sector": ["banking", "telecommunications", "retail", "forestry and paper", "technology",
                                       "construction", "shipping", "food and beverages", "metals and mining",
                                       "energy"],
                    "news type": ["quarterly results", "a contract or order", "layoffs or restructuring",
                                  "an acquisition", "a product launch", "a share price move", "a management change"],
                    "length": ["short", "one long sentence"]}),
}


def variants(dataset: Dataset) -> dict[str, dict]:
    """The four generation settings compared; everything else is the same for all."""
    grounded = {"grounding": "retrieval"}
    attributes = {"attributes": dataset.attributes}
    return {"plain few-shot": {}, "grounded": grounded, "attributes": attributes,
            "grounded + attributes": {**grounded, **attributes}}


# --- data ---------------------------------------------------------------------------------------------------


def normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def load_pairs(key: str) -> list[tuple[str, str]]:
    """``(text, label)`` of a shared dataset, first occurrence of each (normalised) text only."""
    if key == "sms":
        lines = (DATA / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
        pairs = [(text.strip(), label) for label, text in (line.split("\t", 1) for line in lines if "\t" in line)]
    else:
        raw = (DATA / "financial_phrasebank" / "Sentences_50Agree.txt").read_text(encoding="latin-1")
        pairs = [tuple(line.rsplit("@", 1)) for line in re.split(r"\r\n|\r|\n", raw) if line.strip()]
        pairs = [(text.strip(), label.strip()) for text, label in pairs]
    seen: set[str] = set()
    unique = []
    for text, label in pairs:
        if normalised(text) not in seen:
            seen.add(normalised(text))
            unique.append((text, label))
    return unique


def stratified_split(labels: Sequence[str], sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Disjoint seeded samples (sorted indices), one per split in ``sizes`` order, each with the label
    proportions of ``labels`` (rounded per label)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = {label: list(rng.permutation(np.flatnonzero(labels == label))) for label in np.unique(labels)}
    splits = {}
    for split, size in sizes.items():
        chosen = []
        for label, pool in pools.items():
            take = round(size * np.mean(labels == label))
            chosen.extend(pool[:take])
            del pool[:take]
        splits[split] = np.sort(np.asarray(chosen, dtype=int))
    return splits


def real_frame(pairs: list[tuple[str, str]], n_train: int, n_test: int, n_dev: int, seed: int) -> pd.DataFrame:
    """The imported real data: ``id, text, label, split``. The small dev split is what training scores after
    each epoch (otherwise every epoch would predict the whole test split)."""
    sizes = {"test": n_test, "dev": n_dev, "train": n_train}
    splits = stratified_split([label for _, label in pairs], sizes, seed)
    rows = [{"id": f"r{i}", "text": pairs[i][0], "label": pairs[i][1], "split": split}
            for split, indices in splits.items() for i in indices]
    return pd.DataFrame(rows)


# --- pure figures -------------------------------------------------------------------------------------------


def label_fidelity(intended: Sequence[str], predicted: Sequence[str]) -> float:
    """Share of texts whose predicted label is their intended label."""
    if len(intended) != len(predicted) or not intended:
        raise ValueError("label fidelity needs as many predictions as texts, and at least one")
    return float(np.mean([a == b for a, b in zip(intended, predicted, strict=True)]))


def real_cap_per_label(synthetic_sizes: Sequence[int], n_labels: int) -> int:
    """Per-label size of the equal-size real sample: the synthetic sets' mean size per label."""
    return max(1, round(float(np.mean(synthetic_sizes)) / n_labels))


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a fixed-width text table; ``columns`` is ``(key, header, format)``; missing values print as -."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([("-" if row.get(key) is None else format(row[key], spec)) for key, _, spec in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                       enumerate(zip(line, widths, strict=True))) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


COLUMNS = [("name", "data", "s"), ("calls", "calls", "d"), ("n", "n", "d"), ("gen_s", "gen s", ".0f"),
           ("remote_clique", "Remote-Clique", ".4f"), ("chamfer", "Chamfer", ".4f"), ("top5", "top-5 sim", ".4f"),
           ("fidelity", "fidelity", ".3f"), ("n_train", "n train", "d"), ("macro_f1", "macro-F1", ".4f"),
           ("train_s", "train s", ".0f")]


# --- the run ------------------------------------------------------------------------------------------------


def make_project(db, name: str, dataset: Dataset, frame: pd.DataFrame) -> int:
    from core import projects
    from core.data.importer import ImportSpec, import_frame

    project = projects.create_project(db, name, projects.parse_labels(list(dataset.labels), dataset.labels),
                                      description=dataset.task)
    import_frame(db, project.id, frame, ImportSpec(id_col="id", label_col="label", split_col="split"))
    return project.id


def pin_same_seeds(db, project_ids: list[int], per_label: int, seed: int) -> int:
    """Sample seeds in the first project and pin the same items (by imported id) in the others."""
    from core.generation.seeds import pin, sample_seeds
    from db import items as items_db

    chosen = [i for ids in sample_seeds(db, project_ids[0], per_label, seed).added.values() for i in ids]
    external = items_db.items_frame(db, project_ids[0]).set_index("id").loc[chosen, "external_id"].tolist()
    for project_id in project_ids[1:]:
        pin(db, project_id, external)
    return len(external)


def generate(db, project_id: int, args: argparse.Namespace, dataset: Dataset, levers: dict) -> dict:
    """One job at the fixed call budget; its accepted texts, intended labels, calls and seconds."""
    from core.generation import service
    from db import generation as gen_db

    job_id = service.start_generation(
        db, project_id, launch=False, mode="few-shot", backend="embedded", style=dataset.style,
        per_label=1_000_000, calls_per_label=args.calls_per_label, seed=args.seed, temperature=args.temperature,
        max_tokens=args.max_tokens, examples_per_prompt=3, **levers)
    started = time.perf_counter()
    summary = service.run_in_foreground(db, job_id)
    seconds = time.perf_counter() - started
    items = gen_db.synthetic_items(db, project_id, generation_job_id=summary.generation_job_id)
    return {"generation_job_id": summary.generation_job_id, "calls": summary.calls, "gen_s": seconds,
            "texts": items["text"].tolist(), "labels": items["reference_label"].tolist(),
            "rejected": summary.rejected}


def generate_all(db, project_of: dict[str, int], args: argparse.Namespace, dataset: Dataset) -> dict[str, dict]:
    """Every variant's job, in its own project, one after the other (each has the machine to itself)."""
    results = {}
    for name, levers in variants(dataset).items():
        results[name] = r = generate(db, project_of[name], args, dataset, levers)
        print(f"{name}: {r['calls']} calls, {len(r['texts'])} accepted "
              f"({pd.Series(r['labels'], dtype=object).value_counts().to_dict()}), {r['gen_s']:.0f} s; "
              f"rejected {r['rejected']}", flush=True)
    return results


def train(db_path: str, project_id: int, args: argparse.Namespace, **data) -> dict:
    """One training run with the settings every scored model shares; ``{}`` when the set cannot train a
    classifier (e.g. every accepted text has the same label), said so on the console."""
    from core.errors import SynthloopError
    from core.training.config import TrainConfig
    from core.training.run import run_training

    config = TrainConfig(epochs=data.pop("epochs", args.epochs), max_length=64, batch_size=16, seed=args.seed,
                         **data)
    try:
        return run_training(db_path, project_id, config)
    except SynthloopError as exc:
        print(f"  not trained: {exc}", flush=True)
        return {}


@dataclass
class Measure:
    """What every row is measured with: the embedder and its cache, the judge, the real vectors, the common size."""

    db: object
    embedder: object
    judge: object
    test_vectors: np.ndarray
    size: int
    seed: int

    def spread_and_similarity(self, vectors: np.ndarray) -> dict:
        """Remote-Clique, Chamfer and top-5 similarity of the test texts to the set, at the common size."""
        from core.analysis import diversity

        if len(vectors) < max(2, self.size):
            return {}
        spread = diversity.diversity(vectors, size=self.size, n_subsamples=SUBSAMPLES, seed=self.seed)
        similarity = diversity.similarity_to_real(self.test_vectors, vectors, k=TOP_K, size=self.size,
                                                  n_subsamples=SUBSAMPLES, seed=self.seed)
        return {"remote_clique": spread.remote_clique, "chamfer": spread.chamfer, "top5": similarity.mean}

    def vectors(self, texts: list[str]) -> np.ndarray:
        from core.analysis.embeddings import embed_texts

        return embed_texts(self.db, texts, embedder=self.embedder).vectors

    def fidelity(self, texts: list[str], labels: list[str]) -> float | None:
        return label_fidelity(labels, self.judge.predict(texts)) if texts else None


def scored(model: dict, started: float) -> dict:
    return {"n_train": model.get("n_train"), "macro_f1": model.get("macro_f1"),
            "train_s": time.perf_counter() - started}


def synthetic_row(name: str, result: dict, measure: Measure, db_path: str, project_id: int,
                  args: argparse.Namespace) -> dict:
    row = {"name": name, "calls": result["calls"], "n": len(result["texts"]), "gen_s": result["gen_s"],
           "fidelity": measure.fidelity(result["texts"], result["labels"])}
    if result["texts"]:
        row.update(measure.spread_and_similarity(measure.vectors(result["texts"])))
    started = time.perf_counter()
    model = train(db_path, project_id, args, sources=(), generation_job_ids=(result["generation_job_id"],))
    return {**row, **scored(model, started)}


def real_rows(measure: Measure, db_path: str, project_id: int, args: argparse.Namespace, cap: int,
              train_rows: pd.DataFrame, test_rows: pd.DataFrame, judge_run: dict) -> list[dict]:
    """Real data at the synthetic sets' size (diversity at the common size, a model on ``cap`` per label), and the
    judge trained on the whole training split."""
    started = time.perf_counter()
    model = scored(train(db_path, project_id, args, sources=("real",), cap_per_label=cap), started)
    sample = {"name": f"real (≤{cap} per label)", "n": min(measure.size, len(train_rows)),
              **measure.spread_and_similarity(measure.vectors(train_rows["text"].tolist())),
              "fidelity": measure.fidelity(test_rows["text"].tolist(), test_rows["label"].tolist()), **model}
    judge = {"name": "real (all train: the judge)", "n": len(train_rows), "n_train": judge_run["n_train"],
             "macro_f1": judge_run["macro_f1"], "train_s": judge_run["seconds"]}
    return [sample, judge]


def common_size(sizes: Sequence[int], minimum: int = MIN_COMPARED) -> int:
    """The size every set is compared at: the smallest set that has at least ``minimum`` texts."""
    usable = [n for n in sizes if n >= minimum]
    return min(usable) if usable else minimum


def run_dataset(dataset: Dataset, args: argparse.Namespace) -> list[dict]:
    from core.analysis.embeddings import load_embedder
    from core.training.classifier import TransformerClassifier
    from db import connection

    frame = real_frame(load_pairs(dataset.key), args.n_train, args.n_test, args.n_dev, args.seed)
    train_rows, test_rows = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    print(f"\n== {dataset.title}: {len(train_rows)} real train / {len(test_rows)} real test texts "
          f"({train_rows['label'].value_counts().to_dict()}); {args.calls_per_label} calls per label per variant",
          flush=True)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(args.keep_db or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        db_path = str(folder / f"loop-{dataset.key}.db")
        if Path(db_path).exists():
            raise SystemExit(f"{db_path} exists: give --keep-db an empty folder")
        db = connection.connect(db_path)
        real_id = make_project(db, f"{dataset.key}-real", dataset, frame)
        project_of = {name: make_project(db, f"{dataset.key}-{i}", dataset, frame)
                      for i, name in enumerate(variants(dataset))}
        n_seeds = pin_same_seeds(db, list(project_of.values()), args.seeds_per_label, args.seed)
        measure = Measure(db, load_embedder(), None, np.empty((0, 0)), 0, args.seed)
        started = time.perf_counter()
        measure.vectors(train_rows["text"].tolist())  # cached: grounded jobs then only retrieve
        measure.test_vectors = measure.vectors(test_rows["text"].tolist())
        print(f"{n_seeds} seeds pinned in each variant's project; real texts embedded in "
              f"{time.perf_counter() - started:.0f} s", flush=True)

        results = generate_all(db, project_of, args, dataset)

        judge_run = train(db_path, real_id, args, sources=("real",), epochs=args.judge_epochs)
        measure.judge = TransformerClassifier.load(Path(judge_run["artifact_path"]) / "model")
        sizes = [len(r["texts"]) for r in results.values()]
        measure.size = common_size(sizes)
        print(f"judge: trained on all {judge_run['n_train']} real training texts, macro-F1 "
              f"{judge_run['macro_f1']:.4f} on the test split; diversity and similarity compared at {measure.size}"
              f" texts", flush=True)
        rows = [synthetic_row(name, r, measure, db_path, project_of[name], args) for name, r in results.items()]
        cap = real_cap_per_label(sizes, len(dataset.labels))
        rows += real_rows(measure, db_path, real_id, args, cap, train_rows, test_rows, judge_run)
        db.conn.close()
    print(f"\n{dataset.title}: {args.calls_per_label} calls per label each, seed {args.seed}; diversity/similarity at"
          f" {measure.size} texts (mean of {SUBSAMPLES} subsamples; - where a set is smaller); fidelity = the judge"
          " agrees with the intended label (real: the judge's accuracy on the test split); macro-F1 on the real"
          " test split")
    print(format_table(rows, COLUMNS), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sms,fpb", help="comma-separated: sms, fpb")
    parser.add_argument("--calls-per-label", type=int, default=6, help="the fixed call budget of every variant")
    parser.add_argument("--n-train", type=int, default=400, help="real training texts (judge, grounding, seeds)")
    parser.add_argument("--n-test", type=int, default=200, help="real test texts")
    parser.add_argument("--n-dev", type=int, default=30, help="real dev texts (scored after each epoch)")
    parser.add_argument("--keep-db", metavar="DIR", help="write the databases there and keep them (to inspect calls)")
    parser.add_argument("--seeds-per-label", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every model scored by macro-F1")
    parser.add_argument("--judge-epochs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 call per label, tiny splits, 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.calls_per_label, args.n_train, args.n_test, args.n_dev, args.seeds_per_label = 1, 120, 60, 20, 3
        args.epochs, args.judge_epochs = 1, 1
    unknown = [key for key in args.datasets.split(",") if key not in DATASETS]
    if unknown:
        raise SystemExit(f"unknown dataset {unknown[0]!r}: use some of {', '.join(DATASETS)}")
    if not DATA.is_dir():
        raise SystemExit(f"the shared datasets are not at {DATA}")
    started = time.perf_counter()
    for key in args.datasets.split(","):
        run_dataset(DATASETS[key], args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
