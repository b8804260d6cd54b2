"""Make the README's screenshots: run the end-to-end loop with ``SYNTHLOOP_README_SHOTS=1``.

The scenario saves small (1200×800 viewport, palette PNG, < 150 KB) pictures of the main pages into
``docs/screenshots/`` as it passes them, with Streamlit's developer toolbar hidden. Usage::

    .venv/bin/python tests/e2e/make_screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    env = {**os.environ, "SYNTHLOOP_README_SHOTS": "1"}
    code = subprocess.call([sys.executable, "-m", "pytest", "tests/e2e/test_loop.py", "-q", "-p", "no:cacheprovider"],
                           cwd=ROOT, env=env)
    folder = ROOT / "docs" / "screenshots"
    for path in sorted(folder.glob("*.png")):
        print(f"{path.relative_to(ROOT)}\t{path.stat().st_size / 1024:.0f} KB")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
