"""Load benchmark: simulated annotators labelling through ONE running Synthloop server on loopback.

What is measured, precisely:

- The real app (``streamlit run streamlit_app.py``) serves a project with a large annotation pool (overlap 3).
- Each simulated annotator is a **Streamlit protocol client**: it opens the app's websocket
  (``/_stcore/stream``) as a browser tab does, logs in with its invite link, and labels by sending the same
  message a click or a number-key press on a label button sends (a ``rerun_script`` carrying the button's trigger).
  The server runs the real Annotate page for it: guard, ``submit_label``, ``st.rerun``, ``next_item``, progress,
  all deltas back over the websocket. No browser runs, so 30 annotators fit on 2 cores; what is *not* measured is
  the browser's own rendering (measured separately below for one real Chromium annotator).
- **Label-submit latency** = from sending the label to receiving the end of the script run that shows the next
  item (``script_finished``), with the progress text checked to have advanced by exactly one. Anything else —
  a timeout, an exception or error element, a progress that did not advance — counts as an error.
- Phase 1, *human pace*: N annotators (default 30) each think 2-4 s per item (uniform), for a fixed time.
  Phase 2, *flat out*: the same annotators with no think time — the server's throughput limit.
- Baseline in the same run: the same label loop through the core functions alone (``next_item`` +
  ``submit_label`` + ``progress``, one client, no Streamlit), so the ratio shows what the web layer costs.
- Browser round trip (``--browser``): one real Chromium annotator pressing number keys while phase 1's load
  runs; from the key press to the next item's text on screen.
- The server's CPU time per label (from /proc) gives the labels/s one server can sustain per core.
- Integrity afterwards: every label a client counted is in the database, no (item, annotator) twice, no item
  above its overlap.

Usage: ``.venv/bin/python bench/load_bench.py [--annotators 30] [--seconds 40] [--flat-seconds 20]
[--items 3000] [--browser] [--json OUT]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from core import projects, users
from core.annotation.assignment import next_item, progress, submit_label
from core.annotation.pool import set_pool
from core.data import importer
from db import connection
from db import items as items_db
from tests.e2e import support

LABELS = ("pos", "neg", "neu")
PROGRESS = re.compile(r"(\d+) of (\d+) labelled by you")
FINISHED_SUCCESSFULLY = 0
ERROR_FORMAT = 1
RUN_TIMEOUT_S = 60.0


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    labels: int = 0


@dataclass
class PageState:
    """What one script run drew: the item text, my progress, the label buttons, errors."""

    text: str | None = None
    done: int | None = None
    buttons: dict[str, str] = field(default_factory=dict)  # label name → widget id
    errors: list[str] = field(default_factory=list)


def _absorb(state: PageState, message: ForwardMsg) -> None:
    if message.WhichOneof("type") != "delta" or message.delta.WhichOneof("type") != "new_element":
        return
    element = message.delta.new_element
    kind = element.WhichOneof("type")
    if kind == "text":
        state.text = element.text.body
    elif kind == "progress":
        match = PROGRESS.search(element.progress.text)
        if match:
            state.done = int(match.group(1))
    elif kind == "button":
        match = re.match(r".*-label_(\w+)$", element.button.id)
        if match:
            state.buttons[match.group(1)] = element.button.id
    elif kind == "exception":
        state.errors.append(f"exception: {element.exception.message}")
    elif kind == "alert" and element.alert.format == ERROR_FORMAT:
        state.errors.append(f"error: {element.alert.body}")


class ProtocolAnnotator:
    """One annotator speaking Streamlit's websocket protocol, as a browser tab does."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.replace("http://", "ws://") + "/_stcore/stream"
        self.token = token
        self.ws = None
        self.state = PageState()

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=60)
        self.state = await self._rerun(query_string=f"invite={self.token}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def _rerun(self, *, query_string: str = "", trigger: str | None = None) -> PageState:
        message = BackMsg()
        message.rerun_script.query_string = query_string
        if trigger is not None:
            widget = message.rerun_script.widget_states.widgets.add()
            widget.id = trigger
            widget.trigger_value = True
        await self.ws.send(message.SerializeToString())
        state = PageState()
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(await asyncio.wait_for(self.ws.recv(), RUN_TIMEOUT_S))
            kind = forward.WhichOneof("type")
            if kind == "new_session":
                state = PageState()  # a new run (st.rerun): only its deltas count
            _absorb(state, forward)
            if kind == "script_finished" and forward.script_finished == FINISHED_SUCCESSFULLY:
                return state

    async def label(self, name: str) -> PageState:
        before = self.state.done
        state = await self._rerun(trigger=self.state.buttons[name])
        if state.errors:
            raise RuntimeError("; ".join(state.errors))
        if state.done != (before or 0) + 1:
            raise RuntimeError(f"progress went from {before} to {state.done}")
        self.state = state
        return state


async def _annotate(client: ProtocolAnnotator, stats: Stats, stop_at: float, think: tuple[float, float],
                    rng: random.Random) -> None:
    while time.monotonic() < stop_at:
        if think[1] > 0:
            await asyncio.sleep(rng.uniform(*think))
            if time.monotonic() >= stop_at:
                return
        if not client.state.buttons:
            stats.errors.append("no item to label (the pool ran out?)")
            return
        started = time.perf_counter()
        try:
            await client.label(rng.choice(sorted(client.state.buttons)))
        except Exception as exc:  # every failure is counted, then the client reconnects
            stats.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            await client.close()
            await client.connect()
            continue
        stats.latencies.append(time.perf_counter() - started)
        stats.labels += 1


async def _phase(clients: list[ProtocolAnnotator], seconds: float, think: tuple[float, float]) -> tuple[Stats, float]:
    stats = Stats()
    started = time.monotonic()
    await asyncio.gather(*[
        _annotate(client, stats, started + seconds, think, random.Random(i)) for i, client in enumerate(clients)])
    return stats, time.monotonic() - started


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _summary(name: str, stats: Stats, seconds: float, cpu_s: float | None = None) -> dict:
    result = {
        "phase": name, "labels": stats.labels, "errors": len(stats.errors), "seconds": round(seconds, 1),
        "labels_per_s": round(stats.labels / seconds, 2) if seconds else 0.0,
        "p50_ms": round(1000 * _percentile(stats.latencies, 0.5), 1),
        "p95_ms": round(1000 * _percentile(stats.latencies, 0.95), 1),
        "p99_ms": round(1000 * _percentile(stats.latencies, 0.99), 1),
        "max_ms": round(1000 * max(stats.latencies), 1) if stats.latencies else None,
        "error_examples": sorted(set(stats.errors))[:3],
    }
    if cpu_s is not None:
        result["server_cpu_s"] = round(cpu_s, 1)
        result["server_cpu_ms_per_label"] = round(1000 * cpu_s / stats.labels, 1) if stats.labels else None
    return result


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Streamlit runs scripts on threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _setup(db_path: Path, n_annotators: int, n_items: int) -> tuple[int, list[str]]:
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "load", projects.parse_labels(",".join(LABELS)), overlap=3)
        rows = "\n".join(f"item {i}: a short post about topic {i % 97} and mood {i % 13}" for i in range(n_items))
        importer.import_file(db, project.id, ("text\n" + rows).encode(), importer.ImportSpec(), filename="load.csv")
        set_pool(db, project.id, add=True)
        tokens = []
        for i in range(n_annotators + 1):  # one extra for the baseline / browser annotator
            users.add_user(db, f"annotator{i:02d}", role="annotator")
            tokens.append(users.create_invite(db, f"annotator{i:02d}"))
    return project.id, tokens


def _core_baseline(db_path: Path, project_id: int, seconds: float) -> tuple[Stats, float]:
    """The same label loop through core alone: next item (reserve), submit, progress — one client."""
    stats = Stats()
    rng = random.Random(0)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        t0 = time.perf_counter()
        with connection.open_db(db_path) as db:
            project = projects.get_project(db, project_id)
            item = next_item(db, project, "baseline")
            if item is None:  # the baseline labelled every item it may: stop early
                break
            submit_label(db, project, "baseline", item.item_id, rng.choice(LABELS))
            next_item(db, project, "baseline")
            progress(db, project, "baseline")
        stats.latencies.append(time.perf_counter() - t0)
        stats.labels += 1
    return stats, time.monotonic() - started


def _browser_round_trips(url: str, token: str, presses: int, stop_at: float) -> Stats:
    """One real Chromium annotator: key press → the next item's text on screen."""
    from playwright.sync_api import expect

    stats = Stats()
    with support.browser_session() as browser:
        page = support.new_page(browser)
        support.open_app(page, f"{url}/?invite={token}")
        text_box = support.main_area(page).locator('[data-testid="stText"]').first
        expect(text_box).to_be_visible()
        expect(support.main_area(page).get_by_text(PROGRESS)).to_be_visible()
        for _ in range(presses):
            if time.monotonic() > stop_at:
                break
            support.wait_idle(page)  # a key pressed while a run is still drawing is not a fair sample
            before = text_box.inner_text()
            started = time.perf_counter()
            page.keyboard.press(random.choice("123"))
            try:
                expect(text_box).not_to_have_text(before, timeout=30_000)
            except AssertionError as exc:
                stats.errors.append(str(exc)[:200])
                continue
            stats.latencies.append(time.perf_counter() - started)
            stats.labels += 1
            page.wait_for_timeout(1500)  # a human-ish pause between items
    return stats


def _integrity(db_path: Path, project_id: int, counted: int) -> dict:
    with connection.open_db(db_path) as db:
        labels = items_db.annotations_frame(db, project_id)
    people = labels[labels["annotator"].str.startswith("annotator")]
    return {"labels_counted_by_clients": counted, "labels_in_db": len(people),
            "duplicate_pairs": int(labels.duplicated(["item_id", "annotator"]).sum()),
            "items_above_overlap": int((labels.groupby("item_id").size() > 3).sum())}


async def _warm(url: str, token: str) -> None:
    client = ProtocolAnnotator(url, token)
    await client.connect()
    await client.close()


async def _run_protocol(url: str, tokens: list[str], args) -> dict:
    clients = [ProtocolAnnotator(url, token) for token in tokens[: args.annotators]]
    started = time.perf_counter()
    for start in range(0, len(clients), 10):  # log in ten at a time, as people arrive
        await asyncio.gather(*[c.connect() for c in clients[start:start + 10]])
    login_s = time.perf_counter() - started
    results = {"login_all_s": round(login_s, 1)}
    try:
        cpu0 = _cpu_seconds(args.server_pid)
        human, seconds = await _phase(clients, args.seconds, (2.0, 4.0))
        cpu1 = _cpu_seconds(args.server_pid)
        results["human_pace"] = _summary("human pace (2-4 s per item)", human, seconds, cpu1 - cpu0)
        flat, seconds = await _phase(clients, args.flat_seconds, (0.0, 0.0))
        cpu2 = _cpu_seconds(args.server_pid)
        results["flat_out"] = _summary("flat out (no think time)", flat, seconds, cpu2 - cpu1)
        results["counted"] = human.labels + flat.labels
    finally:
        await asyncio.gather(*[c.close() for c in clients], return_exceptions=True)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=40.0, help="human-pace phase length")
    parser.add_argument("--flat-seconds", type=float, default=20.0, help="flat-out phase length")
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--browser", action="store_true", help="also time one real Chromium annotator")
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Set up a database, start the server, run the phases; returns the report (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "load.db"
        project_id, tokens = _setup(db_path, args.annotators, args.items)
        baseline, baseline_s = _core_baseline(db_path, project_id, args.baseline_seconds)
        report: dict = {"annotators": args.annotators, "pool_items": args.items, "overlap": 3,
                        "cpus": os.cpu_count(),
                        "baseline_core": _summary("core only, 1 client", baseline, baseline_s)}
        with support.AppServer(db_path, log_path=Path(tmp) / "streamlit.log") as app:
            args.server_pid = app.proc.pid
            # Warm the server (first run imports the pages' libraries) with the spare annotator.
            asyncio.run(_warm(app.url, tokens[-1]))
            browser_stats: Stats | None = None
            if args.browser:
                import threading

                holder: dict = {}
                stop_at = time.monotonic() + args.seconds + 60
                thread = threading.Thread(target=lambda: holder.setdefault(
                    "stats", _browser_round_trips(app.url, tokens[-1], 15, stop_at)))
                thread.start()
            report.update(asyncio.run(_run_protocol(app.url, tokens, args)))
            if args.browser:
                thread.join()
                browser_stats = holder.get("stats")
                if browser_stats is not None:
                    report["browser_one_annotator"] = _summary(
                        "one Chromium annotator, key press → next item on screen", browser_stats, 1.0)
                    report["browser_one_annotator"].pop("labels_per_s")
        counted = report.pop("counted") + (browser_stats.labels if browser_stats else 0)
        report["integrity"] = _integrity(db_path, project_id, counted)
    p50 = report["human_pace"]["p50_ms"]
    report["ratio_p50_server_vs_core"] = round(p50 / report["baseline_core"]["p50_ms"], 1)
    cpu_per_label = report["flat_out"].get("server_cpu_ms_per_label")
    if cpu_per_label:
        report["labels_per_s_per_server_core"] = round(1000 / cpu_per_label, 1)
    return report


def main() -> None:
    args = parse_args()
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
