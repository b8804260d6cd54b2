"""Generation benchmark: job throughput against a fake OpenAI-compatible server with a fixed latency, and the
embedded backend's tokens/s against raw llama.cpp calls, each measured in the same run.

    .venv/bin/python bench/generation_bench.py [--latency 0.2] [--concurrency 1,8,32] [--skip-embedded]
                                               [--transformers]   # also time transformers+gguf (slow)

Throughput ratio = calls/s of a real generation job / (concurrency / latency), the ideal. The raw client
(the openai package alone, same concurrency, no job) is printed beside it as this machine's ceiling.
Targets: ≥ 0.85 at concurrency 32; embedded job tokens/s ≥ 0.9 × raw llama.cpp tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import projects
from core.data.text import text_hash
from core.generation import service
from core.generation.backends import OpenAIBackend, embedded_model_path
from core.generation.jobs import GenerationRun
from core.generation.seeds import pin
from db import connection, transaction
from db import generation as gen_db
from db import items as items_db

SEED_TEXTS = {
    "positive": ["An absolute delight from start to finish, with a cast that clearly loved the material.",
                 "I laughed, I cried, and I went back the next day to see it again.",
                 "Sharp writing and a warm heart make this the best comedy of the year."],
    "negative": ["Two hours of my life I will never get back; the plot makes no sense at all.",
                 "The acting is wooden and the jokes land with a thud every single time.",
                 "A lazy sequel that copies the first film without any of its charm."],
}


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    # The server runs in its own process so its work does not compete with the client for one GIL.
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_llm.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def make_project(db_path: str) -> int:
    db = connection.connect(db_path)
    try:
        project = projects.create_project(db, "bench", projects.parse_labels("positive,negative"),
                                          description="movie reviews", context_prompt="You are a movie reviewer.")
        rows = [{"text": t, "text_hash": text_hash(t), "source": "real", "split": "train", "reference_label": label,
                 "external_id": f"{label}-{i}"} for label, texts in SEED_TEXTS.items() for i, t in enumerate(texts)]
        with transaction(db):
            items_db.insert_items(db, project.id, rows)
        pin(db, project.id, [r["external_id"] for r in rows])
        return project.id
    finally:
        db.conn.close()


def raw_client_rate(base_url: str, concurrency: int, calls: int) -> float:
    backend = OpenAIBackend(base_url=base_url, model="fake-model", max_connections=concurrency)
    messages = [{"role": "user", "content": "Write one movie review."}]

    def one(i: int) -> None:
        backend.complete(messages, temperature=1.0, max_tokens=64, seed=i)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm the connection pool
        started = time.perf_counter()
        list(pool.map(one, range(calls)))
    return calls / (time.perf_counter() - started)


def job_rate(db_path: str, project_id: int, base_url: str, concurrency: int, calls: int) -> tuple[float, dict]:
    db = connection.connect(db_path)
    try:
        job_id = service.start_generation(db, project_id, launch=False, mode="zero-shot", backend="openai",
                                          model="fake-model", base_url=base_url, concurrency=concurrency,
                                          per_label=calls // 2, seed=concurrency)
    finally:
        db.conn.close()
    started = time.perf_counter()
    result = GenerationRun(db_path, job_id).run()
    elapsed = time.perf_counter() - started
    return result["calls"] / elapsed, result


def throughput(latency: float, levels: list[int]) -> list[dict]:
    proc, base_url = start_server(latency)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db_path = str(Path(tmp) / "bench.db")
            project_id = make_project(db_path)
            for concurrency in levels:
                ideal = concurrency / latency
                calls = max(40, int(ideal * 6)) // 2 * 2  # about six seconds of ideal work
                raw = raw_client_rate(base_url, concurrency, calls)
                rate, result = job_rate(db_path, project_id, base_url, concurrency, calls)
                rows.append({"concurrency": concurrency, "calls": result["calls"], "ideal_calls_per_s": ideal,
                             "job_calls_per_s": round(rate, 1), "job_ratio": round(rate / ideal, 3),
                             "raw_client_calls_per_s": round(raw, 1), "raw_client_ratio": round(raw / ideal, 3),
                             "accepted": result["accepted"], "rejected": result["rejected"]})
                print(f"concurrency {concurrency:>3}: job {rate:7.1f} calls/s = {rate / ideal:.3f} of ideal "
                      f"{ideal:.0f}/s; raw openai client {raw:7.1f}/s = {raw / ideal:.3f}  "
                      f"({result['calls']} calls, {result['accepted']} accepted)", flush=True)
    finally:
        proc.kill()
        proc.wait()
    return rows


def embedded(calls: int, max_tokens: int, rounds: int = 4) -> dict:
    """Tokens/s of few-shot jobs on the embedded backend vs the very same calls made straight to llama.cpp.

    Each round runs a job, then replays its calls on the same loaded ``llama_cpp.Llama``: same prompts (as the
    backend renders them), same seeds, same token cap, so both sides generate the same tokens and only the time
    differs. Rounds alternate so that changes in machine load hit both sides alike. Also reported: the share of
    the job's wall time spent inside the backend call.
    """
    from core.generation.backends import EmbeddedBackend, llama_threads, prefill_split

    backend = EmbeddedBackend()
    started = time.perf_counter()
    llama = backend.llama
    load_s = time.perf_counter() - started
    options = {"mode": "few-shot", "backend": "embedded", "max_tokens": max_tokens, "temperature": 0.8,
               "style": "movie review", "min_words": 1, "labels": ["positive"], "per_label": calls}
    raw_tokens = raw_seconds = job_tokens = job_seconds = job_calls = job_latency = 0.0
    accepted = 0
    with tempfile.TemporaryDirectory() as tmp:
        db_path = str(Path(tmp) / "bench.db")
        project_id = make_project(db_path)
        db = connection.connect(db_path)
        try:
            config = service.build_config(projects.get_project(db, project_id), **options)
            job_ids = [service.create_job(db, project_id, config) for _ in range(rounds)]
        finally:
            db.conn.close()
        llama.create_completion("Warm-up.", temperature=0.8, max_tokens=4, seed=0)
        for job_id in job_ids:
            started = time.perf_counter()
            result = GenerationRun(db_path, job_id, backend=backend).run()
            job_seconds += time.perf_counter() - started
            job_tokens += result["completion_tokens"]
            job_calls += result["calls"]
            accepted += result["accepted"]
            db = connection.connect(db_path)
            try:
                frame = gen_db.calls_frame(db, job_id).sort_values("id")
                job_latency += frame["latency_s"].sum()
                replay = [gen_db.get_call(db, int(call_id))["messages"] for call_id in frame["id"]]
            finally:
                db.conn.close()
            for number, messages in enumerate(replay):
                turns, prefill = prefill_split(messages)
                prompt = backend.render(turns) + prefill
                started = time.perf_counter()
                reply = llama.create_completion(prompt, temperature=config.temperature, max_tokens=max_tokens,
                                                seed=(config.seed + number) % 2**31)
                raw_seconds += time.perf_counter() - started
                raw_tokens += reply["usage"]["completion_tokens"]
    raw_rate, job_rate = raw_tokens / raw_seconds, job_tokens / job_seconds
    row = {"load_s": round(load_s, 2), "threads": llama_threads(), "raw_tokens_per_s": round(raw_rate, 1),
           "raw_tokens": int(raw_tokens), "job_tokens_per_s": round(job_rate, 1), "job_tokens": int(job_tokens),
           "job_calls": int(job_calls), "ratio": round(job_rate / raw_rate, 3),
           "share_of_job_time_in_backend": round(float(job_latency / job_seconds), 3), "accepted": accepted}
    print(f"embedded SmolLM2-135M (llama.cpp, {llama_threads()} thread(s)): load {load_s:.2f} s; raw "
          f"{raw_rate:.1f} tokens/s; job {job_rate:.1f} tokens/s = {job_rate / raw_rate:.3f} of raw "
          f"({int(job_calls)} calls replayed, {int(job_tokens)} vs {int(raw_tokens)} tokens); "
          f"{job_latency / job_seconds:.3f} of the job's time inside the backend call", flush=True)
    return row


def transformers_gguf(max_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.generation.backends import llama_threads

    torch.set_num_threads(llama_threads())  # the same thread count as the llama.cpp runs
    path = embedded_model_path()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    load_s = time.perf_counter() - started
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Write a short movie review."}],
                                           tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt")
    tokens, seconds = 0, 0.0
    for i in range(2):
        torch.manual_seed(i)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=True, temperature=0.8)
        seconds += time.perf_counter() - started
        tokens += out.shape[1] - inputs["input_ids"].shape[1]
    row = {"load_s": round(load_s, 1), "tokens_per_s": round(tokens / seconds, 1), "threads": llama_threads()}
    print(f"transformers + gguf (same file, {llama_threads()} thread(s)): load {load_s:.1f} s; "
          f"{tokens / seconds:.1f} tokens/s", flush=True)
    return row


def install_facts(log: Path = Path("/tmp/install.log")) -> dict:
    """llama-cpp-python's build time as pip logged it (pip prints 'still running' about once a minute)."""
    if not log.is_file():
        return {}
    text = log.read_text(errors="replace")
    real = re.search(r"^real\s+(\S+)", text, flags=re.MULTILINE)
    facts = {"pip_install_real": real.group(1) if real else None,
             "llama_cpp_build_minutes_approx": text.count("Building wheel for llama-cpp-python (pyproject.toml): "
                                                          "still running")}
    print(f"install log: whole `pip install -r requirements.txt` {facts['pip_install_real']}; llama-cpp-python "
          f"wheel build ≈ {facts['llama_cpp_build_minutes_approx']} min (pip's once-a-minute 'still running' lines)")
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--embedded-calls", type=int, default=3, help="texts per embedded job")
    parser.add_argument("--embedded-rounds", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--transformers", action="store_true", help="also time transformers+gguf (≈20 s load)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict = {"cpus": os.cpu_count(), "latency_s": args.latency}
    report["throughput"] = throughput(args.latency, [int(c) for c in args.concurrency.split(",")])
    if not args.skip_embedded:
        report["embedded"] = embedded(args.embedded_calls, args.max_tokens, args.embedded_rounds)
    if args.transformers:
        report["transformers_gguf"] = transformers_gguf(args.max_tokens)
    report["install"] = install_facts()
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
