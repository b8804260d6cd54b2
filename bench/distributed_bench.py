"""Training throughput of the embedded MiniLM: 2 CPU processes under torchrun (gloo, DistributedDataParallel)
against 1 process, same data, epochs and (global) batch size.

Each part runs in its own process tree: ``python bench/distributed_bench.py --worker`` (1 process, torch's default
thread count) and ``torchrun --nproc_per_node 2 bench/distributed_bench.py --worker`` (2 processes, one thread
each: torchrun's default ``OMP_NUM_THREADS=1``). The worker trains with ``TransformerClassifier`` exactly as a
run does (``core.training.distributed`` shards the data and all-reduces the gradients) and rank 0 prints the
training time. On a 2-core machine expect little or no gain: the point is that the same code scales out on GPUs.

Run: ``.venv/bin/python bench/distributed_bench.py [--n-train 256 --epochs 1 --batch-size 32 --max-length 64]``.
Texts are SMS Spam Collection messages from ``../shared/data`` when present, else synthetic sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMS = ROOT.parent / "shared" / "data" / "sms_spam" / "SMSSpamCollection"


def load_data(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    if SMS.is_file():
        pairs = [line.split("\t", 1) for line in SMS.read_text(encoding="utf-8").splitlines() if "\t" in line]
    else:
        rng = random.Random(seed)
        words = ["the", "a", "film", "was", "good", "bad", "great", "awful", "plot", "acting", "long", "story"]
        pairs = [(rng.choice(["ham", "spam"]), " ".join(rng.choices(words, k=rng.randint(3, 40)))) for _ in range(n)]
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:n]
    return [t for _, t in pairs], [label for label, _ in pairs]


def worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from core.training import distributed
    from core.training.classifier import TransformerClassifier

    texts, labels = load_data(args.n_train)
    with distributed.process_group():
        clf = TransformerClassifier("embedded", epochs=args.epochs, batch_size=args.batch_size,
                                    max_length=args.max_length, seed=0, labels=["ham", "spam"])
        clf.fit(texts, labels)
        if distributed.is_main():
            seconds = clf.history_["train_seconds"]
            print(json.dumps({"processes": distributed.world_size(), "train_seconds": seconds,
                              "examples_per_s": len(texts) * args.epochs / seconds,
                              "steps": len(clf.history_["steps"]),
                              "final_loss": clf.history_["steps"][-1]["loss"]}), flush=True)


def measure(command: list[str]) -> dict:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    options = ["--n-train", str(args.n_train), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--max-length", str(args.max_length), "--worker"]
    script = str(Path(__file__).resolve())
    started = time.perf_counter()
    one = measure([sys.executable, script, *options])
    two = measure([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, *options])
    print(f"{args.n_train} SMS texts, {args.epochs} epoch(s), global batch {args.batch_size}, max length"
          f" {args.max_length}, {os.cpu_count()} CPUs")
    for name, result in (("1 process", one), ("2 processes (torchrun, gloo)", two)):
        print(f"  {name:30s} {result['examples_per_s']:7.1f} examples/s  ({result['train_seconds']:.1f}s,"
              f" {result['steps']} steps, last loss {result['final_loss']:.3f})")
    print(f"  throughput ratio 2 processes / 1 process: {two['examples_per_s'] / one['examples_per_s']:.2f}"
          f"  (bench took {time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
