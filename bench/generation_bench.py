"""Generation benchmark: job throughput against a fake OpenAI-compatible server with a fixed latency, and the
embedded backend's tokens/s against raw llama.cpp calls, each measured in the same run.

    .venv/bin/python bench/generation_bench.py [--latency 0.2] [--concurrency 1,8,32] [--skip-throughput | --skip-embedded]
        [--threads N]                                  # llama.cpp threads (else SYNTHLOOP_LLAMA_THREADS or half the cores)
        [--llama-cpp-python /tmp/llamavenv/bin/python] # also replay on the previous binding, in that interpreter
        [--transformers]                               # also time transformers+gguf (slow)

Throughput ratio = calls/s of a real generation job / (concurrency / latency), the ideal. The raw client
(the openai package alone, same concurrency, no job) is printed beside it as this machine's ceiling.
Targets: ≥ 0.85 at concurrency 32; embedded job tokens/s ≥ 0.9 × raw xllamacpp tokens/s and ≥ 0.9 × raw
llama-cpp-python tokens/s (the binding it replaced; build it in a throwaway venv, it compiles for ~10 minutes:
``python3.11 -m venv /tmp/llamavenv && /tmp/llamavenv/bin/pip install llama-cpp-python``).
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
from core.generation.backends import OpenAIBackend
from core.generation.jobs import GenerationRun
from core.generation.seeds import pin
from core.models import embedded_smollm2_path
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


# The previous binding's side of the embedded comparison, run in another interpreter (one that has llama-cpp-python,
# e.g. a throwaway venv: it compiles for ~10 min). It loads the model once, says so, then makes each call read from
# stdin (one JSON request a line) exactly as the llama-cpp-python EmbeddedBackend did (chat completion, or the chat
# template rendered with the prefill appended and continued) and answers with its completion tokens and seconds.
LLAMA_CPP_PYTHON_REPLAY = r"""
import json, sys, time
import llama_cpp
import llama_cpp.llama as llama_module
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

path, n_ctx, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
defaults = llama_module.llama_cpp.llama_model_default_params

def params():  # the old backend's setting: no extra CPU buffer types
    value = defaults()
    if hasattr(value, "use_extra_bufts"):
        value.use_extra_bufts = False
    return value

llama_module.llama_cpp.llama_model_default_params = params
started = time.perf_counter()
llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
load_s = time.perf_counter() - started
llama_module.llama_cpp.llama_model_default_params = defaults
special = {name: llama.detokenize([token], special=True).decode("utf-8", "replace")
           for name, token in (("eos", llama.token_eos()), ("bos", llama.token_bos()))}
formatter = Jinja2ChatFormatter(template=llama.metadata["tokenizer.chat_template"], eos_token=special["eos"],
                                bos_token=special["bos"], add_generation_prompt=True)
llama.create_completion("Warm-up.", temperature=0.8, max_tokens=4, seed=0)
print(json.dumps({"load_s": load_s, "version": llama_cpp.__version__}), flush=True)
for line in sys.stdin:
    call = json.loads(line)
    messages = call.pop("messages")
    started = time.perf_counter()
    if messages[-1]["role"] == "assistant":
        prompt = formatter(messages=messages[:-1]).prompt + messages[-1]["content"]
        reply = llama.create_completion(prompt, **call)
    else:
        reply = llama.create_chat_completion(messages=messages, **call)
    seconds = time.perf_counter() - started
    print(json.dumps({"tokens": reply["usage"]["completion_tokens"], "seconds": seconds}), flush=True)
"""


class LlamaCppPythonReplay:
    """The replay above in a subprocess of ``python`` (an interpreter with llama-cpp-python installed)."""

    def __init__(self, python: str, path: Path, n_ctx: int, threads: int) -> None:
        self.proc = subprocess.Popen([python, "-c", LLAMA_CPP_PYTHON_REPLAY, str(path), str(n_ctx), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise SystemExit(f"{python} could not load the model with llama-cpp-python (exit {self.proc.returncode})")
        ready = json.loads(line)
        self.load_s, self.version = ready["load_s"], ready["version"]

    def call(self, request: dict) -> tuple[int, float]:
        """One request: ``(completion tokens, seconds)``."""
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["tokens"], answer["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def embedded(calls: int, max_tokens: int, rounds: int = 4, llama_cpp_python: str | None = None) -> dict:
    """Tokens/s of few-shot jobs on the embedded backend vs the very same calls made straight to llama.cpp.

    Each round runs a job, then replays its calls on the same loaded ``xllamacpp.Server`` (same request bodies:
    messages, seeds, temperature, token cap, so both sides generate the same tokens and only the time differs) and,
    with ``llama_cpp_python`` (the path of a Python that has it), on the previous binding in that interpreter with
    the same thread count, call by call in alternating order so that changes in machine load hit both bindings
    alike. Its sampler differs, so it generates other tokens (counts printed). Also reported: the share of the
    job's wall time spent inside the backend call.
    """
    from core.generation.backends import EMBEDDED_CONTEXT, EmbeddedBackend, llama_chat_request, llama_threads

    threads = llama_threads()
    backend = EmbeddedBackend()
    started = time.perf_counter()
    server = backend.server
    load_s = time.perf_counter() - started
    old = LlamaCppPythonReplay(llama_cpp_python, backend.path, EMBEDDED_CONTEXT, threads) if llama_cpp_python else None
    options = {"mode": "few-shot", "backend": "embedded", "max_tokens": max_tokens, "temperature": 0.8,
               "style": "movie review", "min_words": 1, "labels": ["positive"], "per_label": calls}
    raw_tokens = raw_seconds = job_tokens = job_seconds = job_calls = job_latency = old_tokens = old_seconds = 0.0
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
        server.handle_chat_completions(llama_chat_request([{"role": "user", "content": "Warm-up."}],
                                                          temperature=0.8, max_tokens=4, seed=0))
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
            # Call numbers start at 0 in each job and the job's seed for call n is (config.seed + n) % 2**31.
            requests = [llama_chat_request(messages, temperature=config.temperature, max_tokens=max_tokens,
                                           seed=(config.seed + number) % 2**31)
                        for number, messages in enumerate(replay)]
            for number, request in enumerate(requests):
                if old is not None and number % 2:
                    tokens, seconds = old.call(dict(request))
                    old_tokens, old_seconds = old_tokens + tokens, old_seconds + seconds
                started = time.perf_counter()
                reply = server.handle_chat_completions(request)
                raw_seconds += time.perf_counter() - started
                raw_tokens += reply["usage"]["completion_tokens"]
                if old is not None and not number % 2:
                    tokens, seconds = old.call(dict(request))
                    old_tokens, old_seconds = old_tokens + tokens, old_seconds + seconds
    if old is not None:
        old.close()
    raw_rate, job_rate = raw_tokens / raw_seconds, job_tokens / job_seconds
    row = {"load_s": round(load_s, 2), "threads": threads, "raw_tokens_per_s": round(raw_rate, 1),
           "raw_tokens": int(raw_tokens), "job_tokens_per_s": round(job_rate, 1), "job_tokens": int(job_tokens),
           "job_calls": int(job_calls), "ratio": round(job_rate / raw_rate, 3),
           "share_of_job_time_in_backend": round(float(job_latency / job_seconds), 3), "accepted": accepted}
    print(f"embedded SmolLM2-135M (xllamacpp {xllamacpp_version()}, {threads} thread(s)): load {load_s:.2f} s; raw "
          f"{raw_rate:.1f} tokens/s; job {job_rate:.1f} tokens/s = {job_rate / raw_rate:.3f} of raw "
          f"({int(job_calls)} calls replayed, {int(job_tokens)} vs {int(raw_tokens)} tokens); "
          f"{job_latency / job_seconds:.3f} of the job's time inside the backend call", flush=True)
    if old is not None:
        old_rate = old_tokens / old_seconds
        row.update({"llama_cpp_python_version": old.version, "llama_cpp_python_load_s": round(old.load_s, 2),
                    "llama_cpp_python_tokens_per_s": round(old_rate, 1), "llama_cpp_python_tokens": int(old_tokens),
                    "job_vs_llama_cpp_python": round(job_rate / old_rate, 3),
                    "raw_xllamacpp_vs_llama_cpp_python": round(raw_rate / old_rate, 3)})
        print(f"  previous binding, llama-cpp-python {old.version} (same calls, {threads} thread(s)): load "
              f"{old.load_s:.2f} s; raw {old_rate:.1f} tokens/s ({int(old_tokens)} tokens); job on xllamacpp = "
              f"{job_rate / old_rate:.3f} of it, raw xllamacpp = {raw_rate / old_rate:.3f} (target: job ≥ 0.9)",
              flush=True)
    return row


def xllamacpp_version() -> str:
    import xllamacpp

    return xllamacpp.__version__


def transformers_gguf(max_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.generation.backends import llama_threads

    torch.set_num_threads(llama_threads())  # the same thread count as the llama.cpp runs
    path = embedded_smollm2_path()
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
    """The install's wall time (``time pip install … 2>&1 | tee /tmp/install.log``) and what pip built from source
    (nothing, since the embedded generator runs on xllamacpp's prebuilt wheels instead of llama-cpp-python)."""
    if not log.is_file():
        return {}
    text = log.read_text(errors="replace")
    real = re.search(r"^real\s+(\S+)", text, flags=re.MULTILINE)
    built = sorted(set(re.findall(r"Building wheel for (\S+)", text)))
    facts = {"pip_install_real": real.group(1) if real else None, "built_from_source": built}
    print(f"install log: whole `pip install -r requirements.txt` {facts['pip_install_real']}; built from source: "
          f"{', '.join(built) or 'nothing'}")
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--skip-throughput", action="store_true", help="only the embedded (and transformers) runs")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--embedded-calls", type=int, default=3, help="texts per embedded job")
    parser.add_argument("--embedded-rounds", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, help="llama.cpp threads (sets SYNTHLOOP_LLAMA_THREADS)")
    parser.add_argument("--llama-cpp-python", metavar="PYTHON",
                        help="a Python with llama-cpp-python: also replay the embedded calls on that binding")
    parser.add_argument("--transformers", action="store_true", help="also time transformers+gguf (≈20 s load)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        os.environ["SYNTHLOOP_LLAMA_THREADS"] = str(args.threads)
    report: dict = {"cpus": os.cpu_count(), "latency_s": args.latency}
    if not args.skip_throughput:
        report["throughput"] = throughput(args.latency, [int(c) for c in args.concurrency.split(",")])
    if not args.skip_embedded:
        report["embedded"] = embedded(args.embedded_calls, args.max_tokens, args.embedded_rounds,
                                      args.llama_cpp_python)
    if args.transformers:
        report["transformers_gguf"] = transformers_gguf(args.max_tokens)
    report["install"] = install_facts()
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
