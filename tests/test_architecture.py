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
    [*_python_files("core"), *_python_files("pages"), ROOT / "streamlit_app.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_sql_outside_db(path: Path) -> None:
    match = SQL.search(path.read_text(encoding="utf-8"))
    assert match is None, f"SQL in {path.relative_to(ROOT)}: {match.group(0)[:60]!r}"


@pytest.mark.parametrize("path", [*_python_files("pages"), ROOT / "streamlit_app.py"],
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
