"""Training and inference speed of the embedded MiniLM: Synthloop's loop against a plain Hugging Face ``Trainer``.

Same model, data, epochs and batch size, measured in the same run, each part in its own process (so peak memory
is per part and one part's warm caches do not help another):

- ``synthloop``: ``core.training.classifier.TransformerClassifier`` (dynamic padding, length-grouped batches);
- ``trainer``: ``transformers.Trainer`` with default settings and a tokenizer, i.e. ``DataCollatorWithPadding``
  (dynamic padding, random batches) — the baseline the ratio is taken against;
- ``trainer-padded``: the classic recipe, texts padded to the maximum length up front (default collator).

Run: ``.venv/bin/python bench/training_bench.py [--n-train 512 --n-test 512 --epochs 1 --batch-size 32
--max-length 128]``. Texts are SMS Spam Collection messages from ``../shared/data`` when present, else
synthetic sentences of varied length. Prints examples/s (wall clock, and per CPU-second, which is steadier on a shared machine), the ratios and
each part's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMS = ROOT.parent / "shared" / "data" / "sms_spam" / "SMSSpamCollection"
PARTS = ("synthloop", "trainer", "trainer-padded")


def load_data(n_train: int, n_test: int, seed: int = 0) -> tuple[list[str], list[str], list[str], str]:
    if SMS.is_file():
        pairs = [line.split("\t", 1) for line in SMS.read_text(encoding="utf-8").splitlines() if "\t" in line]
        source = "SMS spam"
    else:
        rng = random.Random(seed)
        words = ["the", "a", "film", "was", "good", "bad", "great", "awful", "plot", "acting", "long", "short", "story", "fun", "dull", "scene"]
        pairs = [(rng.choice(["ham", "spam"]), " ".join(rng.choices(words, k=rng.randint(3, 60)))) for _ in
                 range(n_train + n_test)]
        source = "synthetic sentences"
    random.Random(seed).shuffle(pairs)
    train, test = pairs[:n_train], pairs[n_train:n_train + n_test]
    return [t for _, t in train], [lb for lb, _ in train], [t for _, t in test], source


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_synthloop(args: argparse.Namespace) -> dict:
    from core.training.classifier import TransformerClassifier

    texts, labels, test_texts, _ = load_data(args.n_train, args.n_test)
    clf = TransformerClassifier("embedded", epochs=args.epochs, batch_size=args.batch_size,
                                max_length=args.max_length, learning_rate=5e-5, warmup_ratio=0.0, weight_decay=0.0,
                                seed=0, labels=["ham", "spam"])
    clf.fit(texts, labels)
    train_cpu = clf.history_["train_cpu_seconds"]  # the training loop only, like Trainer.train() below
    train_seconds = clf.history_["train_seconds"]
    started, cpu = time.perf_counter(), time.process_time()
    clf.predict_proba(test_texts, batch_size=args.batch_size)
    infer_seconds, infer_cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"train_seconds": train_seconds, "infer_seconds": infer_seconds, "train_cpu": train_cpu,
            "infer_cpu": infer_cpu}


def run_trainer(args: argparse.Namespace, *, padded: bool) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from core.models import embedded_minilm_path

    hf_logging.set_verbosity_error()
    texts, labels, test_texts, _ = load_data(args.n_train, args.n_test)
    path = str(embedded_minilm_path())
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    padding = "max_length" if padded else False
    index = {"ham": 0, "spam": 1}

    def encode(batch_texts: list[str], batch_labels: list[str] | None) -> list[dict]:
        enc = tokenizer(batch_texts, truncation=True, max_length=args.max_length, padding=padding)
        rows = [{key: enc[key][i] for key in enc} for i in range(len(batch_texts))]
        if batch_labels is not None:
            for row, label in zip(rows, batch_labels, strict=True):
                row["labels"] = index[label]
        return rows

    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(output_dir=out, num_train_epochs=args.epochs,
                                          per_device_train_batch_size=args.batch_size,
                                          per_device_eval_batch_size=args.batch_size, report_to=[], save_strategy="no",
                                          logging_strategy="no", disable_tqdm=True, seed=0)
        trainer = Trainer(model=model, args=training_args, train_dataset=encode(texts, labels),
                          processing_class=None if padded else tokenizer)
        started, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        train_seconds, train_cpu = time.perf_counter() - started, time.process_time() - cpu
        test_rows = encode(test_texts, None)
        started, cpu = time.perf_counter(), time.process_time()
        trainer.predict(test_rows)
        infer_seconds, infer_cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"train_seconds": train_seconds, "infer_seconds": infer_seconds, "train_cpu": train_cpu,
            "infer_cpu": infer_cpu}


def child(args: argparse.Namespace) -> None:
    if args.part == "synthloop":
        result = run_synthloop(args)
    else:
        result = run_trainer(args, padded=args.part == "trainer-padded")
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-test", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--omp-wait-policy", choices=("PASSIVE", "ACTIVE"), default="PASSIVE",
                        help="OMP_WAIT_POLICY for every part (default PASSIVE, as Synthloop's training uses)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        child(args)
        return
    _, _, _, source = load_data(args.n_train, args.n_test)
    print(f"data: {source}, {args.n_train} train / {args.n_test} test texts; epochs {args.epochs}, batch size"
          f" {args.batch_size}, max length {args.max_length}; device: CPU ({_threads()} torch threads,"
          f" OMP_WAIT_POLICY={args.omp_wait_policy})")
    # Every part runs under the same OpenMP wait policy: Synthloop sets PASSIVE itself (see
    # core.training.classifier.import_torch); the baselines would otherwise spin and lose on a shared CPU.
    env = {**os.environ, "OMP_WAIT_POLICY": args.omp_wait_policy}
    results = {}
    for part in PARTS:
        command = [sys.executable, __file__, "--part", part, "--n-train", str(args.n_train), "--n-test",
                   str(args.n_test), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{part} failed:\n{done.stderr[-3000:]}")
        results[part] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[part]
        r["train_eps"] = args.n_train * args.epochs / r["train_seconds"]
        r["infer_eps"] = args.n_test / r["infer_seconds"]
        r["train_epc"] = args.n_train * args.epochs / r["train_cpu"]
        r["infer_epc"] = args.n_test / r["infer_cpu"]
        print(f"{part:>15}: training {r['train_eps']:7.1f} examples/s ({r['train_seconds']:.1f}s;"
              f" {r['train_epc']:.1f} per CPU-s), inference {r['infer_eps']:7.1f} examples/s"
              f" ({r['infer_seconds']:.1f}s; {r['infer_epc']:.1f} per CPU-s), peak RSS {r['peak_rss_mb']:.0f} MB",
              flush=True)
    ours = results["synthloop"]
    for baseline in ("trainer", "trainer-padded"):
        base = results[baseline]
        print(f"ratio synthloop / {baseline}: training {ours['train_eps'] / base['train_eps']:.2f}x,"
              f" inference {ours['infer_eps'] / base['infer_eps']:.2f}x (wall clock); per CPU-second: training"
              f" {ours['train_epc'] / base['train_epc']:.2f}x, inference {ours['infer_epc'] / base['infer_epc']:.2f}x")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
