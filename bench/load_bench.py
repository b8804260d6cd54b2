"""Load benchmark: simulated annotators labelling through the running Synthloop server(s) on loopback.

What is measured, precisely:

- The real app, started by the README's serving command (``python -m core serve --workers N``: one app process
  on the port, or N behind nginx with session affinity), serves a project with a large annotation pool
  (overlap 3) to annotators who are members of it.
- Each simulated annotator is a **Streamlit protocol client**: it loads the page as a browser does (keeping the
  proxy's affinity cookie), opens the app's websocket (``/_stcore/stream``), logs in with its invite link,
  trades the login's handoff for the session cookie at ``/auth/session`` as a browser does, and labels by
  sending the same message a click or a number-key press on a label button sends (a ``rerun_script`` with the
  button's trigger and the fragment the button belongs to). The server runs the real Annotate page for it.
  No browser runs, so 100 annotators fit on 2 cores; the browser's own rendering is not measured (``--browser``
  times one real Chromium annotator beside the load).
- **Latency** = from sending the label to the end of the run that shows the next item (``script_finished``),
  with the progress text checked to have advanced by exactly one. A timeout, an exception or error element, or
  a progress that did not advance counts as an error (the client then reconnects with its session cookie, as
  a refreshed tab does).
- **Phases**: 30, 60 and 100 annotators (``--annotators``) who think 3-6 s per item (uniform, ``--think``), each
  for ``--seconds``; then *flat out*: ``--flat-annotators`` with no think time — the server's throughput limit.
- **Server CPU per label**: user + system CPU time of the app processes (and, apart, of nginx) during a phase,
  from /proc, divided by the labels stored in it.
- **Integrity** afterwards: every label a client saw accepted is in the database (``lost``: those that are
  not), no (item, annotator) twice (``duplicate_pairs``), no item above its overlap (``items_above_overlap``).
- Baseline in the same run: the label loop through the core functions alone (next item, submit, progress; one
  client, no Streamlit), so the ratio shows what the web layer costs.

The load generator shares the machine with the servers: its own CPU time is reported (``client_cpu_s``).

Usage: ``.venv/bin/python bench/load_bench.py [--workers 1] [--annotators 30,60,100] [--think 3,6]
[--seconds 40] [--flat-annotators 30] [--flat-seconds 20] [--items 4000] [--browser] [--json OUT]``
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import http.cookiejar
import json
import os
import random
import re
import sys
import tempfile
import time
import urllib.request
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
OVERLAP = 3
PROGRESS = re.compile(r"(\d+) of (\d+) labelled by you")
FINISHED_SUCCESSFULLY = 0
FINISHED_FRAGMENT_RUN_SUCCESSFULLY = 3
FINISHED = {FINISHED_SUCCESSFULLY, FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
ERROR_FORMAT = 1
RUN_TIMEOUT_S = 60.0
JSON_PHASE_KEYS = ("annotators", "labels_per_s", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_label", "errors")


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    labels: int = 0
    fragment_runs: int = 0  # label runs that re-ran only the Annotate fragment


@dataclass
class PageState:
    """What one script run drew: the item text, my progress, the label buttons, errors."""

    text: str | None = None
    done: int | None = None
    buttons: dict[str, tuple[str, str]] = field(default_factory=dict)  # label → (widget id, fragment id)
    errors: list[str] = field(default_factory=list)
    finished: int | None = None  # the script_finished status


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
            state.buttons[match.group(1)] = (element.button.id, message.delta.fragment_id)
    elif kind == "exception":
        state.errors.append(f"exception: {element.exception.message}")
    elif kind == "alert" and element.alert.format == ERROR_FORMAT:
        state.errors.append(f"error: {element.alert.body}")


class ProtocolAnnotator:
    """One annotator speaking Streamlit's websocket protocol, as a browser tab does (cookies included)."""

    def __init__(self, url: str, token: str, username: str) -> None:
        self.url = url
        self.token = token
        self.username = username
        self.cookies = http.cookiejar.CookieJar()
        self.http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.ws = None
        self.state = PageState()
        self.page_hash = ""
        self.redirect: str | None = None  # where the login sends the browser (the session-cookie route)
        self.labelled: list[str] = []  # texts of the items this annotator saw a label accepted for

    def _get(self, path: str) -> None:
        with self.http.open(f"{self.url}{path}", timeout=RUN_TIMEOUT_S) as response:
            response.read()

    async def connect(self) -> None:
        """Load the page, open the websocket and log in: by the session cookie when there is one (a refreshed
        tab), else by the invite link, whose handoff is then traded for the cookie at the session route; the login
        ends its run there, and the tab loads the page again, as a browser does."""
        for _ in range(2):
            await asyncio.to_thread(self._get, "/")
            cookie = "; ".join(f"{c.name}={c.value}" for c in self.cookies)
            self.ws = await websockets.connect(
                self.url.replace("http://", "ws://") + "/_stcore/stream", subprotocols=["streamlit"],
                max_size=None, open_timeout=RUN_TIMEOUT_S, additional_headers={"Cookie": cookie} if cookie else None)
            has_session = any(c.name == "synthloop_session" for c in self.cookies)
            self.redirect = None
            self.state = await self._rerun(query_string="" if has_session else f"invite={self.token}")
            if self.redirect:
                await asyncio.to_thread(self._get, self.redirect)
            if self.state.buttons or not self.redirect:
                break
            await self.close()
        if not self.state.buttons:
            raise RuntimeError(f"{self.username}: no item after login ({'; '.join(self.state.errors) or 'no errors'})")

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def _rerun(self, *, query_string: str = "", trigger: str | None = None,
                     fragment: str = "") -> PageState:
        message = BackMsg()
        message.rerun_script.query_string = query_string
        message.rerun_script.page_script_hash = self.page_hash
        message.rerun_script.fragment_id = fragment
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
                self.page_hash = forward.new_session.page_script_hash or self.page_hash
            elif kind == "navigation":
                self.page_hash = forward.navigation.page_script_hash or self.page_hash
            elif kind == "auth_redirect":
                self.redirect = forward.auth_redirect.url
            _absorb(state, forward)
            if kind == "script_finished" and forward.script_finished in FINISHED:
                state.finished = forward.script_finished
                return state

    async def label(self, name: str) -> PageState:
        """Label the item on screen; the next item's state once its run has finished."""
        before, text = self.state.done, self.state.text
        widget, fragment = self.state.buttons[name]
        state = await self._rerun(trigger=widget, fragment=fragment)
        if state.errors:
            raise RuntimeError("; ".join(state.errors))
        if state.done != (before or 0) + 1:
            raise RuntimeError(f"progress went from {before} to {state.done}")
        self.labelled.append(text)
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
            state = await client.label(rng.choice(sorted(client.state.buttons)))
        except Exception as exc:  # every failure is counted, then the client reconnects (a refreshed tab)
            stats.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            await client.close()
            try:
                await client.connect()
            except Exception as again:
                stats.errors.append(f"reconnect: {type(again).__name__}: {again}"[:200])
                return
            continue
        stats.latencies.append(time.perf_counter() - started)
        stats.labels += 1
        stats.fragment_runs += state.finished == FINISHED_FRAGMENT_RUN_SUCCESSFULLY


def run_async(coroutine):
    """``asyncio.run`` in a thread of its own: it also works where an event loop already runs in this thread
    (Playwright's sync API leaves one in the tests' main thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def _summary(name: str, annotators: int, stats: Stats, seconds: float, cpu: dict[str, float] | None = None,
             client_cpu_s: float | None = None) -> dict:
    result = {
        "phase": name, "annotators": annotators, "labels": stats.labels, "errors": len(stats.errors),
        "seconds": round(seconds, 1), "labels_per_s": round(stats.labels / seconds, 2) if seconds else 0.0,
        "p50_ms": _ms(_percentile(stats.latencies, 0.5)), "p95_ms": _ms(_percentile(stats.latencies, 0.95)),
        "p99_ms": _ms(_percentile(stats.latencies, 0.99)),
        "max_ms": _ms(max(stats.latencies)) if stats.latencies else None,
        "fragment_runs": stats.fragment_runs, "error_examples": sorted(set(stats.errors))[:3],
    }
    if cpu is not None:
        for kind, prefix in (("app", "server"), ("proxy", "proxy")):
            result[f"{prefix}_cpu_s"] = round(cpu[kind], 2)
            result[f"{prefix}_cpu_ms_per_label"] = round(1000 * cpu[kind] / stats.labels, 1) if stats.labels else None
    if client_cpu_s is not None:
        result["client_cpu_s"] = round(client_cpu_s, 2)
    return result


# ------------------------------------------------------------------------------------------- the servers


def _process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def _cpu_by_kind(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system, all threads) of the app processes and of nginx under the serve command."""
    totals = {"app": 0.0, "proxy": 0.0}
    for pid in _process_tree(root_pid)[1:]:  # the launcher itself only sleeps
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                kind = "proxy" if b"nginx" in cmdline.read() else "app"
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            totals[kind] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return totals


# ------------------------------------------------------------------------------------------- the run


def _setup(db_path: Path, n_annotators: int, n_items: int) -> tuple[int, list[tuple[str, str]]]:
    """The project, its pool, and ``n_annotators`` members with invite links: ``[(username, token), …]``."""
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "load", projects.parse_labels(",".join(LABELS)), overlap=OVERLAP)
        rows = "\n".join(f"item {i}: a short post about topic {i % 97} and mood {i % 13}" for i in range(n_items))
        importer.import_file(db, project.id, ("text\n" + rows).encode(), importer.ImportSpec(), filename="load.csv")
        set_pool(db, project.id, add=True)
        annotators = []
        for i in range(n_annotators):
            name = f"annotator{i:03d}"
            user = users.add_user(db, name, role="annotator")
            projects.add_member(db, project.id, user.id)
            annotators.append((name, users.create_invite(db, name)))
    return project.id, annotators


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


def _browser_round_trips(url: str, token: str, username: str, presses: int, stop_at: float) -> Stats:
    """One real Chromium annotator: key press → the next item's text on screen."""
    from playwright.sync_api import expect

    stats = Stats()
    with support.browser_session() as browser:
        page = support.new_page(browser)
        support.login_with_invite(page, url, token, username)
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


def _integrity(db_path: Path, project_id: int, clients: list[ProtocolAnnotator]) -> dict:
    with connection.open_db(db_path) as db:
        labels = items_db.annotations_frame(db, project_id)
        texts = dict(db.execute("SELECT text, id FROM item WHERE project_id = ?", [project_id]).fetchall())
    stored = set(zip(labels["item_id"], labels["annotator"], strict=True))
    seen = [(texts.get(text), client.username) for client in clients for text in client.labelled]
    return {"labels_counted_by_clients": len(seen),
            "labels_in_db": int(labels["annotator"].str.startswith("annotator").sum()),
            "lost": sum(pair not in stored for pair in seen),
            "duplicate_pairs": int(labels.duplicated(["item_id", "annotator"]).sum()),
            "items_above_overlap": int((labels.groupby("item_id").size() > OVERLAP).sum())}


async def _phase(name: str, clients: list[ProtocolAnnotator], seconds: float, think: tuple[float, float],
                 server_pid: int) -> dict:
    stats = Stats()
    cpu0, client0, started = _cpu_by_kind(server_pid), time.process_time(), time.monotonic()
    await asyncio.gather(*[
        _annotate(client, stats, started + seconds, think, random.Random(f"{name}:{i}"))
        for i, client in enumerate(clients)])
    cpu1 = _cpu_by_kind(server_pid)  # after the last label of the phase (some end a moment after its time)
    cpu = {kind: cpu1[kind] - cpu0[kind] for kind in cpu0}
    # Labels are sent only within the phase's time: the rate is over that time.
    return _summary(name, len(clients), stats, seconds, cpu, time.process_time() - client0)


async def _run_protocol(url: str, annotators: list[tuple[str, str]], args, server_pid: int) -> tuple[dict, list]:
    clients: list[ProtocolAnnotator] = []
    report: dict = {"phases": []}
    think = tuple(args.think)
    try:
        for n in args.annotators:
            # New annotators arrive ten at a time, as people do; those already here keep their sessions.
            started, arrived = time.perf_counter(), len(clients)
            while len(clients) < n:
                batch = [ProtocolAnnotator(url, token, name) for name, token in annotators[len(clients):n][:10]]
                await asyncio.gather(*[client.connect() for client in batch])
                clients += batch
            arrivals = {"new_annotators": n - arrived, "their_logins_s": round(time.perf_counter() - started, 1)}
            report["phases"].append({**await _phase(f"{n} annotators, {think[0]:g}-{think[1]:g} s per item",
                                                    clients[:n], args.seconds, think, server_pid), **arrivals})
        if args.flat_seconds > 0:
            flat = clients[:args.flat_annotators]
            report["phases"].append(await _phase(f"flat out, {len(flat)} annotators", flat, args.flat_seconds,
                                                 (0.0, 0.0), server_pid))
    finally:
        await asyncio.gather(*[c.close() for c in clients], return_exceptions=True)
    return report, clients


def _numbers(text: str) -> list[int]:
    return sorted(int(n) for n in text.split(","))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="app processes (more than 1: behind nginx)")
    parser.add_argument("--annotators", type=_numbers, default=[30, 60, 100],
                        help="annotators per human-pace phase, comma-separated (default 30,60,100)")
    parser.add_argument("--think", type=lambda t: [float(x) for x in t.split(",")], default=[3.0, 6.0],
                        help="seconds an annotator spends on an item, uniform between the two (default 3,6)")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each human-pace phase")
    parser.add_argument("--flat-annotators", type=int, default=30, help="annotators in the flat-out phase")
    parser.add_argument("--flat-seconds", type=float, default=20.0, help="flat-out phase length (0: none)")
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--browser", action="store_true", help="also time one real Chromium annotator")
    parser.add_argument("--json", help="write the report to this file")
    args = parser.parse_args(argv)
    args.flat_annotators = min(args.flat_annotators, max(args.annotators))
    return args


def run(args: argparse.Namespace) -> dict:
    """Set up a database, start the server(s), run the phases; returns the report (see the module docstring)."""
    n_clients = max(args.annotators)
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "load.db"
        project_id, annotators = _setup(db_path, n_clients + 1, args.items)  # +1: the baseline/browser one
        baseline, baseline_s = _core_baseline(db_path, project_id, args.baseline_seconds)
        report: dict = {"workers": args.workers, "pool_items": args.items, "overlap": OVERLAP,
                        "think_s": list(args.think), "cpus": os.cpu_count(),
                        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                        "baseline_core": _summary("core only, 1 client", 1, baseline, baseline_s)}
        with support.ServeCommand(db_path, workers=args.workers, log_path=Path(tmp) / "serve.log") as served:
            browser_stats: Stats | None = None
            if args.browser:
                import threading

                holder: dict = {}
                stop_at = time.monotonic() + args.seconds * len(args.annotators) + 60
                name, token = annotators[-1]
                thread = threading.Thread(target=lambda: holder.setdefault(
                    "stats", _browser_round_trips(served.url, token, name, 15, stop_at)))
                thread.start()
            phases, clients = run_async(_run_protocol(served.url, annotators[:n_clients], args, served.proc.pid))
            report.update(phases)
            if args.browser:
                thread.join()
                browser_stats = holder.get("stats")
                if browser_stats is not None:
                    report["browser_one_annotator"] = _summary(
                        "one Chromium annotator, key press → next item on screen", 1, browser_stats, 1.0)
                    report["browser_one_annotator"].pop("labels_per_s")
        report["integrity"] = _integrity(db_path, project_id, clients)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def table(report: dict) -> str:
    """The report as the table the README quotes."""
    def cell(value, width: int, digits: int = 0) -> str:
        return f"{'—' if value is None else f'{value:,.{digits}f}':>{width}}"

    lines = [f"{'phase':<34}{'annotators':>11}{'labels/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
             f"{'CPU ms/label':>14}{'errors':>8}"]
    for phase in report["phases"]:
        lines.append(f"{phase['phase']:<34}{phase['annotators']:>11}{cell(phase['labels_per_s'], 10, 2)}"
                     f"{cell(phase['p50_ms'], 9)}{cell(phase['p95_ms'], 9)}{cell(phase['p99_ms'], 9)}"
                     f"{cell(phase.get('server_cpu_ms_per_label'), 14, 1)}{phase['errors']:>8}")
    integrity = report["integrity"]
    lines.append(f"integrity: lost {integrity['lost']}, duplicate pairs {integrity['duplicate_pairs']}, items above"
                 f" overlap {integrity['items_above_overlap']} (labels accepted {integrity['labels_counted_by_clients']},"
                 f" in the database {integrity['labels_in_db']})")
    lines.append(f"{report['workers']} app process(es) on {report['cpus']} cores; load average at start"
                 f" {report['load_average_at_start'][0]}, at end {report['load_average_at_end'][0]}")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    report = run(args)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
