"""Waiting for, and killing, the job processes tests start."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def wait_for(predicate, timeout_s: float, what: str, interval: float = 0.05):
    """``predicate()``'s first truthy value, polled until ``timeout_s``; an AssertionError naming ``what`` then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def kill_and_reap(pid: int) -> None:
    """SIGKILL a job process this test launched and reap it (our child), so it is gone, not a zombie."""
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
