"""The book layer's shape: modules of one role each, said in their first docstring line, none of them long."""

import ast
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "vitcf" / "book"
MODULES = sorted(p.stem for p in BOOK.glob("*.py") if p.stem != "__init__")
MOST_LINES = 450


@pytest.mark.parametrize("name", MODULES)
def test_each_module_says_its_role_and_stays_short(name):
    path = BOOK / f"{name}.py"
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{path.name} has no docstring"
    summary, *rest = docstring.splitlines()
    assert summary.endswith(".") and rest[:1] in ([], [""]), f"{path.name}: its role is not said in one line"
    assert len(path.read_text().splitlines()) <= MOST_LINES, f"{path.name} is over {MOST_LINES} lines"

