"""The project's own rules, checked: imports point pages → core → db, SQL lives in db/, no raw HTML."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|CREATE\s+TABLE|DELETE\s+FROM)\b", re.I | re.S)


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", _python_files("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_neither_streamlit_nor_pages(path: Path) -> None:
    tops = {_top(name) for name in _imported_modules(path)}
    assert not tops & {"streamlit", "pages"}, f"{path.name} imports {tops & {'streamlit', 'pages'}}"


@pytest.mark.parametrize("path", _python_files("db"), ids=lambda p: str(p.relative_to(ROOT)))
def test_db_imports_no_higher_layer(path: Path) -> None:
    tops = {_top(name) for name in _imported_modules(path)}
    assert not tops & {"streamlit", "pages", "core"}


@pytest.mark.parametrize(
    "path",
    [*_python_files("core"), *_python_files("pages"), ROOT / "streamlit_app.py", ROOT / "app.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_sql_outside_db(path: Path) -> None:
    match = SQL.search(path.read_text(encoding="utf-8"))
    assert match is None, f"SQL in {path.relative_to(ROOT)}: {match.group(0)[:60]!r}"


@pytest.mark.parametrize("path", [*_python_files("pages"), ROOT / "streamlit_app.py", ROOT / "app.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_render_no_raw_html(path: Path) -> None:
    assert "unsafe_allow_html=True" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", _python_files("pages"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_import_no_heavy_libraries_at_module_level(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(_top(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(_top(node.module))
    assert not top_level & {"torch", "transformers", "sqlite3", "sqlite_utils", "db"}


def test_every_registered_page_exists_and_checks_its_role() -> None:
    from pages._common import PAGES

    for spec in PAGES:
        source = (ROOT / spec.file).read_text(encoding="utf-8")
        assert "page_guard(__file__)" in source, f"{spec.file} does not call page_guard"


def _capability_package(path: Path) -> str | None:
    """``core/<package>/…`` → the package; modules at the top of core/ are shared building blocks (None)."""
    parts = path.relative_to(ROOT / "core").parts
    return parts[0] if len(parts) > 1 else None


@pytest.mark.parametrize("path", _python_files("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_packages_import_no_private_names_of_another_package(path: Path) -> None:
    """A capability package of core/ uses another's public names only, so each can change its insides."""
    own = _capability_package(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    offending = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
            parts = node.module.split(".")
            other = parts[1] if len(parts) > 2 else None
            if other is not None and other != own:
                offending += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
                offending += [node.module for part in parts[2:] if part.startswith("_")]
    assert not offending, f"{path.relative_to(ROOT)} imports private names {offending}"


def test_every_core_package_says_what_lives_there() -> None:
    for init in sorted((ROOT / "core").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} needs a docstring saying what lives there"


def _string_collections(path: Path) -> list[tuple[int, frozenset[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) >= 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            found.append((node.lineno, frozenset(e.value for e in node.elts)))
    return found


@pytest.mark.parametrize(
    "path",
    [p for p in [*_python_files("core"), *_python_files("pages"), ROOT / "streamlit_app.py", ROOT / "app.py"]
     if p.name != "vocab.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_closed_vocabularies_are_spelled_out_only_in_core_vocab(path: Path) -> None:
    """A list of a vocabulary's values (or most of one) anywhere but core/vocab.py is a second definition."""
    import core.vocab as vocab

    vocabularies = {name: frozenset(values) for name, values in vars(vocab).items()
                    if name.isupper() and isinstance(values, tuple) and len(values) >= 2}
    for line, strings in _string_collections(path):
        for name, values in vocabularies.items():
            spelled = strings == values if len(values) == 2 else len(strings & values) >= 3
            assert not (spelled and strings <= values | {"any", "(all)"}), (
                f"{path.relative_to(ROOT)}:{line} spells out {name} {sorted(strings)}: use core.vocab.{name}")


def test_every_config_field_has_help_and_round_trips() -> None:
    import dataclasses
    import importlib

    from core.config import Config, field_help

    for module in ("core.data.importer", "core.generation.config", "core.generation.llm_annotator",
                   "core.training.config", "core.analysis.service", "core.analysis.study", "core.agreement.report",
                   "core.annotation.pool", "core.annotation.crowd"):
        importlib.import_module(module)
    configs = {c for c in _all_subclasses(Config) if dataclasses.is_dataclass(c)}
    assert {c.__name__ for c in configs} >= {"ImportSpec", "GenerationConfig", "BackendSettings",
                                             "LLMAnnotatorConfig", "TrainConfig", "AnalysisConfig", "StudyConfig",
                                             "ReportConfig", "AssignmentSettings", "PromptTemplates",
                                             "StudySettings"}
    for config in configs:
        missing = [name for name, text in field_help(config).items() if not text]
        assert not missing, f"{config.__name__} fields without help: {missing}"
        for method in ("to_dict", "from_dict"):
            assert method not in vars(config), f"{config.__name__} re-implements {method}: use core.config.Config's"


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found
