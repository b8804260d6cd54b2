"""Several app processes over one database behind nginx, started and stopped by one command.

One Streamlit process runs every script of its sessions on one core (Python's GIL), so more annotators need more
processes. ``serve`` starts ``workers`` of them (``streamlit run app.py``, the app with its session-cookie
routes) on loopback ports, and nginx in front on the public port with session affinity (``nginx.conf`` beside
this module): every request of a browser, websocket, uploads and downloads included, reaches the process that
holds its Streamlit session. SQLite in WAL mode takes their writes (every write is a short ``BEGIN IMMEDIATE``
transaction). A login survives a move to another process (a restarted one, a changed affinity) because it is a
cookie checked against the database, not state of the process.

The processes stay in the launcher's process group: Ctrl-C or a signal to the group stops them all; a SIGTERM or
SIGINT to the launcher stops nginx first, then the app processes. An app process that dies is started again.
The generated configuration and each process's log are written to the database's files folder
(``<db>.files/serve/``).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import SynthloopError
from core.store import files_dir

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = "app.py"  # the app with its session-cookie routes (the README's run command)
TEMPLATE = Path(__file__).with_name("nginx.conf")
RUN_FOLDER = "serve"
DEFAULT_MAX_UPLOAD_MB = 200  # Streamlit's own default for server.maxUploadSize
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def nginx_config(*, app_ports: list[int], listen: str, run_dir: Path, max_upload_mb: int,
                 user: str | None = None) -> str:
    """The proxy's configuration: ``listen`` (``address:port``) in front of the app processes on ``app_ports``.
    ``user`` (``"name group"``) is nginx's worker user, needed only when nginx starts as root."""
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=0;" for port in app_ports)
    text = TEMPLATE.read_text()
    for marker, value in (("@USER@", f"user {user};" if user else ""), ("@RUN_DIR@", str(run_dir)),
                          ("@MAX_UPLOAD_MB@", str(max_upload_mb)), ("@SERVERS@", servers), ("@LISTEN@", listen)):
        text = text.replace(marker, value)
    return text


def worker_user() -> str | None:
    """nginx started as root hands its workers to an unprivileged user (it chowns its temporary folders)."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"


def _reachable(address: str) -> str:
    """Where this machine reaches a server listening on ``address`` (every interface: loopback)."""
    return "127.0.0.1" if address in ("0.0.0.0", "::", "") else address


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class AppProcess:
    """One ``streamlit run app.py``."""

    address: str
    port: int
    log_path: Path
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://{_reachable(self.address)}:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)


@dataclass
class Serving:
    """The running processes: nginx (when there are several app processes) and the app processes."""

    url: str
    run_dir: Path
    apps: list[AppProcess]
    nginx: subprocess.Popen | None = None
    stopping: bool = field(default=False)

    def pids(self) -> list[int]:
        return [app.proc.pid for app in self.apps if app.proc is not None]

    def stop(self) -> None:
        self.stopping = True
        procs = ([self.nginx] if self.nginx else []) + [app.proc for app in self.apps if app.proc]
        for proc in procs:  # nginx first: no new request reaches an app process that is stopping
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            if proc is self.nginx:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _app_command(address: str, port: int, max_upload_mb: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", ENTRY_POINT, "--server.headless", "true",
            "--server.address", address, "--server.port", str(port), "--server.maxUploadSize", str(max_upload_mb),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--server.runOnSave", "false"]


def nginx_path() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def start(db_path: str | os.PathLike[str], *, workers: int, port: int, address: str,
          max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB) -> Serving:
    """Start the app processes (and nginx in front of them when ``workers`` > 1); returns once all answer."""
    if not 1 <= workers <= 64:
        raise SynthloopError(f"{{workers}} {workers!r} is not valid: use 1 to 64 app processes", fields=("workers",))
    if not 1 <= port <= 65535:
        raise SynthloopError(f"{{port}} {port!r} is not a TCP port", fields=("port",))
    nginx = nginx_path()
    if workers > 1 and nginx is None:
        raise SynthloopError("several app processes need nginx in front of them, and it is not installed: install"
                             " it (apt-get install nginx) or set {workers} to 1", fields=("workers",))
    run_dir = files_dir(db_path, RUN_FOLDER)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SYNTHLOOP_DB": str(Path(db_path).resolve()), "PYTHONUNBUFFERED": "1"}
    # With one process there is nothing to balance: it listens on the public address itself.
    if workers == 1:
        listens = [(address, port)]
    else:
        listens = [("127.0.0.1", free_port()) for _ in range(workers)]
    apps = [AppProcess(a, p, run_dir / f"app-{n}.log", _app_command(a, p, max_upload_mb), env)
            for n, (a, p) in enumerate(listens)]
    serving = Serving(url=f"http://{_reachable(address)}:{port}", run_dir=run_dir, apps=apps)
    try:
        for app in apps:
            app.start()
        _wait_until(lambda: all(_healthy(app.url) for app in apps), serving, "the app processes")
        if workers > 1:
            config = run_dir / "nginx.conf"
            config.write_text(nginx_config(app_ports=[p for _, p in listens], listen=f"{address}:{port}", run_dir=run_dir,
                                           max_upload_mb=max_upload_mb, user=worker_user()))
            with open(run_dir / "nginx.log", "ab") as log:
                serving.nginx = subprocess.Popen([nginx, "-p", str(run_dir), "-e", str(run_dir / "nginx-error.log"),
                                                  "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL)
            _wait_until(lambda: _healthy(serving.url), serving, "nginx")
    except BaseException:
        serving.stop()
        raise
    return serving


def _wait_until(ready: Callable[[], bool], serving: Serving, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        for proc, name in [(app.proc, app.log_path) for app in serving.apps] + [(serving.nginx, "nginx-error.log")]:
            if proc is not None and proc.poll() is not None:
                raise SynthloopError(f"{what} did not start: a process exited with status {proc.returncode}; see"
                                     f" {serving.run_dir / Path(name).name}")
        if time.monotonic() > deadline:
            raise SynthloopError(f"{what} did not answer within {START_TIMEOUT_S:.0f} s; see the logs in"
                                 f" {serving.run_dir}")
        time.sleep(0.25)


def supervise(serving: Serving, *, poll_s: float = 1.0) -> None:
    """Run until SIGTERM or SIGINT: start an app process again when it dies; stop everything when nginx does."""
    def stop(signum, _frame) -> None:
        serving.stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not serving.stopping:
            time.sleep(poll_s)
            if serving.nginx is not None and serving.nginx.poll() is not None and not serving.stopping:
                raise SynthloopError(f"nginx stopped (status {serving.nginx.returncode}); see"
                                     f" {serving.run_dir / 'nginx-error.log'}")
            for app in serving.apps:
                if app.proc is not None and app.proc.poll() is not None and not serving.stopping:
                    app.restarts += 1
                    print(f"app process on port {app.port} exited ({app.proc.returncode}): starting it again",
                          file=sys.stderr, flush=True)
                    app.start()
    finally:
        serving.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
