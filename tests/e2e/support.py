"""End-to-end helpers: start the real app on loopback, drive Debian's Chromium with Playwright, save screenshots.

Used by the browser tests (through ``tests/e2e/conftest.py``), ``tests/e2e/make_screenshots.py`` and
``bench/load_bench.py``. Nothing here downloads a browser: Chromium comes from the system (``apt-get install
chromium``); Playwright only drives it through ``executable_path``.

Streamlit sends its content over a websocket after the page has loaded, so every check waits with
``expect(...)`` (or :func:`wait_idle`) instead of reading the DOM at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PYTHON = sys.executable
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ENTRY_POINT = "app.py"  # what the README's run command starts
VIEWPORT = {"width": 1200, "height": 800}
# Two shared cores: a rerun that imports pandas/altair or starts a job can take several seconds.
EXPECT_TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "x"


def cli(db_path: str | os.PathLike[str], *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m core ARGS --db DB`` in the project root (as a user would)."""
    proc = subprocess.run(
        [PYTHON, "-m", "core", *args, "--db", str(db_path)], cwd=ROOT, input=stdin, text=True,
        capture_output=True, env={**os.environ, **(env or {})}, timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"`python -m core {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class _ServerProcess:
    """What the app-server helpers share: ``start()``/``stop()`` as a context manager, and the tail of the log
    their output goes to (``log_path``) for a failing test to show."""

    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AppServer(_ServerProcess):
    """``streamlit run app.py`` (the README's command: the app with its session-cookie routes) on 127.0.0.1 with
    ``SYNTHLOOP_DB`` set; stopped (its whole process group) on exit. Its output goes to ``log_path`` so a failing
    test can show it."""

    def __init__(self, db_path: str | os.PathLike[str], *, env: dict[str, str] | None = None,
                 log_path: str | os.PathLike[str] | None = None, port: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.db_path = Path(db_path)
        self.extra_args = tuple(extra_args)
        self.env = env or {}
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else self.db_path.parent / "streamlit.log"
        self.proc: subprocess.Popen | None = None

    def start(self, *, timeout_s: float = 90) -> AppServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SYNTHLOOP_DB": str(self.db_path), "PYTHONUNBUFFERED": "1", **self.env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "streamlit", "run", ENTRY_POINT, "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--server.runOnSave", "false", *self.extra_args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"streamlit did not answer on {self.url} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        self.proc = None


def launch_browser(playwright):  # -> playwright.sync_api.Browser
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("chromium is not installed: `apt-get install chromium` (never `playwright install`)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)


@contextlib.contextmanager
def browser_session() -> Iterator:
    """Playwright + Chromium for a script (tests use the fixtures in conftest.py)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, *, viewport: dict[str, int] | None = None, accept_downloads: bool = True):
    """A page in a NEW browser context: its own cookies and its own Streamlit session (one per user)."""
    context = browser.new_context(viewport=viewport or VIEWPORT, accept_downloads=accept_downloads,
                                  device_scale_factor=1)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    return context.new_page()


# --- driving Streamlit -------------------------------------------------------------------------------------------

def main_area(page):
    return page.locator('[data-testid="stMain"]')


def sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def wait_idle(page, *, settle_ms: int = 150, timeout_ms: int = EXPECT_TIMEOUT_MS) -> None:
    """Wait until the app is connected and no script run is in progress (the "Running…" status is gone).

    The status widget appears only after a short delay, so we also let a moment pass first; ``settle_ms``
    gives the websocket time to deliver the last deltas."""
    from playwright.sync_api import expect

    page.wait_for_timeout(settle_ms)
    expect(page.locator('[data-testid="stApp"]')).to_be_visible(timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').filter(has_text=re.compile("Running|Connecting|Stop"))
        stale = page.locator('[data-stale="true"]')
        if running.count() == 0 and stale.count() == 0:
            page.wait_for_timeout(settle_ms)
            if running.count() == 0:
                return
        page.wait_for_timeout(100)
    raise AssertionError("the app kept running a script for too long")


def open_app(page, url: str) -> None:
    page.goto(url)
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="stApp"]')).to_be_visible()
    wait_idle(page)


def _handed_over(url: str) -> bool:
    """The page the browser lands on after a login's trip through the cookie route (not the route, not the
    invite link)."""
    return "/auth/" not in url and "invite=" not in url


def logging_in(page):
    """``with logging_in(page): <the action that logs in>``: a login sends the tab through the app's session
    route (which sets the cookie) and back, a new page load; this waits for it, so nothing done next is lost."""
    return page.expect_navigation(url=_handed_over, wait_until="load")


def login(page, url: str, username: str, password: str) -> None:
    """Open the app and log in with the login form; waits for the session cookie and the sidebar with the user's
    name."""
    from playwright.sync_api import expect

    open_app(page, url)
    form = page.locator('[data-testid="stForm"]')
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password", exact=True).fill(password)
    with logging_in(page):
        form.get_by_role("button", name="Log in").click()
    expect(sidebar(page).get_by_text(username, exact=False).first).to_be_visible()
    wait_idle(page)


def login_with_invite(page, url: str, token: str, username: str) -> None:
    from playwright.sync_api import expect

    with logging_in(page):
        page.goto(f"{url}/?invite={token}")
    expect(sidebar(page).get_by_text(username, exact=False).first).to_be_visible()
    wait_idle(page)


def nav_links(page) -> list[str]:
    """The page titles the sidebar navigation offers."""
    links = page.locator('[data-testid="stSidebarNav"] a')
    # A link's text is "<icon name>\n\n<title>": keep the title.
    return [text.strip().split("\n")[-1].strip() for text in links.all_inner_texts()]


def goto(page, title: str) -> None:
    """Open a page by clicking its sidebar link (as a user does), then wait for its title to render."""
    from playwright.sync_api import expect

    nav = page.locator('[data-testid="stSidebarNav"]')
    link = nav.get_by_role("link", name=title, exact=True)
    if not link.is_visible():  # long navigations are folded behind "View N more"
        more = nav.get_by_text(re.compile(r"^View \d+ more$"))
        if more.count():
            more.first.click()
    link.click()
    expect(link).to_have_attribute("aria-current", "page")
    wait_idle(page)


def expect_text(page, text: str | re.Pattern, *, timeout_ms: int = EXPECT_TIMEOUT_MS):
    from playwright.sync_api import expect

    locator = main_area(page).get_by_text(text).first
    expect(locator).to_be_visible(timeout=timeout_ms)
    return locator


def upload(page, file_path: str | os.PathLike[str], *, index: int = 0) -> None:
    """Give a file to the ``index``-th ``st.file_uploader`` of the page."""
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').nth(index).set_input_files(str(file_path))
    from playwright.sync_api import expect

    expect(main_area(page).get_by_text(Path(file_path).name, exact=True).first).to_be_visible()
    wait_idle(page)


def select_option(page, label: str, option: str, *, scope=None) -> None:
    """Choose ``option`` in the ``st.selectbox`` labelled ``label``."""
    scope = scope or main_area(page)
    box = scope.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.get_by_role("combobox").click()  # a react-aria combobox: its options open in a listbox
    page.get_by_role("listbox").get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def choose_options(page, label: str, options: list[str], *, scope=None) -> None:
    """Add ``options`` to the ``st.multiselect`` labelled ``label``."""
    from playwright.sync_api import expect

    box = (scope or main_area(page)).locator('[data-testid="stMultiSelect"]').filter(has_text=label).first
    for option in options:
        choice = page.locator('[role="option"]').filter(has_text=option).first
        for _ in range(5):  # a run that ends meanwhile (a table editor settling) closes the list again
            if choice.is_visible():  # still open after the last choice
                break
            wait_idle(page, settle_ms=500)
            # The toggle ("Open"), not the text box: a click there alone does not open the list.
            box.locator('button[aria-haspopup="listbox"]').click()
            with contextlib.suppress(AssertionError):
                expect(choice).to_be_visible(timeout=3000)
                break
        choice.click()
        expect(box.get_by_text(option, exact=True)).to_be_visible()
    page.keyboard.press("Escape")


def field(scope, label: str):
    """The text/number input or text area labelled ``label`` (not its "Help for …" button)."""
    quoted = label.replace('"', '\\"')
    return scope.locator(f'input[aria-label="{quoted}"], textarea[aria-label="{quoted}"]').first


def fill(scope, label: str, value: str) -> None:
    """Type ``value`` and leave the field, as a user does: Streamlit commits a text field on blur, and a form
    button clicked while the field still has focus can be lost in the rerun that the commit starts."""
    box = field(scope, label)
    box.fill(value)
    box.press("Tab")
    wait_idle(box.page)


def choose_radio(page, label: str, option: str, *, scope=None) -> None:
    scope = scope or main_area(page)
    group = scope.locator('[data-testid="stRadio"]').filter(has_text=label).first
    group.get_by_text(option, exact=True).click()
    wait_idle(page)


class Shots:
    """Numbered full-page screenshots of one test under ``test-artifacts/<test>/``."""

    def __init__(self, name: str, root: Path = ARTIFACTS) -> None:
        self.folder = root / slug(name)
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.paths: list[Path] = []

    def __call__(self, page, step: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{slug(step)}.png"
        with contextlib.suppress(Exception):  # a screenshot must never be what fails a test
            page.screenshot(path=str(path), full_page=full_page)
            self.paths.append(path)
        return path


def small_png(png: bytes, path: str | os.PathLike[str], *, max_bytes: int = 150_000, colours: int = 128) -> int:
    """Write a screenshot as an optimised palette PNG (UI screenshots have few colours); returns its size.

    Halves the palette until the file fits ``max_bytes`` (UI text stays legible down to ~32 colours)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    data = b""
    while colours >= 16:
        quantised = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        quantised.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
        if len(data) <= max_bytes:
            break
        colours //= 2
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return len(data)


class ServeCommand(_ServerProcess):
    """``python -m core serve --workers N`` (the README's command for several app processes behind nginx) on a
    free loopback port with ``--db``; stopped with SIGTERM (the launcher stops nginx and the app processes)."""

    def __init__(self, db_path: str | os.PathLike[str], *, workers: int, log_path: str | os.PathLike[str]) -> None:
        self.db_path, self.workers, self.log_path = Path(db_path), workers, Path(log_path)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, *, timeout_s: float = 180) -> ServeCommand:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "core", "serve", "--workers", str(self.workers), "--port", str(self.port),
             "--address", "127.0.0.1", "--db", str(self.db_path)],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/_stcore/health",
                                                                      timeout=2) as response:
                behind_proxy = response.headers.get("Server", "").startswith("nginx")
                if response.status == 200 and (self.workers == 1 or behind_proxy):
                    return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"serve did not answer on {self.url} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        self.proc = None

