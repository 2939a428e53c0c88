"""The package's shape: three wings over a base, imports running one way, every module saying what it is."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vitcf"
RANK = {"base": 0, "model": 1, "engine": 2, "book": 3}  # a wing may import only wings of lower or equal rank
BOOK_MAX_LINES = 450  # the book layer is split by role into modules a reader takes in at once


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(path: Path, name: str) -> set[str]:
    """The vitcf modules (or names in them) that the module imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "vitcf"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "vitcf":
                out |= {f"{base}.{a.name}" for a in node.names} if base == "vitcf" else {base}
    return out


def _wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


MODULES = _modules()


def test_every_module_belongs_to_a_wing():
    loose = [m for m in MODULES if m != "vitcf" and _wing(m) is None]
    assert not loose, f"modules outside vitcf.base/model/engine/book: {loose}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_one_way(name):
    """book -> engine -> model -> base: no wing imports one above it (the package root exposes the model)."""
    mine = RANK.get(_wing(name), RANK["model"] if name == "vitcf" else None)
    upward = [target for target in _imported(MODULES[name], name)
              if _wing(target) is not None and RANK[_wing(target)] > mine]
    assert not upward, f"{name} imports {upward}, above its wing"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_what_it_is(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text()))
    assert doc, f"{name} has no docstring"
    summary, *rest = doc.splitlines()
    assert summary.endswith(".") and rest[:1] in ([], [""]), f"{name}: what it is is not said in one line"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _wing(m) == "book"))
def test_book_modules_are_short(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= BOOK_MAX_LINES, f"{name} has {lines} lines (at most {BOOK_MAX_LINES})"


def test_the_direction_check_sees_an_upward_import(tmp_path):
    """The check itself: a model module importing the book is caught, relative or absolute."""
    module = tmp_path / "x.py"
    module.write_text("from ...book import plots\nimport vitcf.engine.study\n")
    found = _imported(module, "vitcf.model.methods.x")
    assert "vitcf.book" in found and "vitcf.engine.study" in found


def test_the_readme_tree_names_every_module():
    """The README's tree of the package stays whole: every module (or sub-package) is on a line of it."""
    readme = (PACKAGE.parent / "README.md").read_text()
    tree = readme[readme.index("```text\nvitcf/"):]
    tree = tree[: tree.index("\n```")]
    missing = []
    for name, path in MODULES.items():
        wing = _wing(name)
        if wing is None or path.name == "__init__.py" and name.count(".") == 1:
            continue
        parts = name.split(".")[2:]
        entry = f"{parts[0]}/" if len(parts) > 1 or path.name == "__init__.py" else f"{parts[0]}.py"
        if f" {entry} " not in tree and f" {entry}\n" not in tree:
            missing.append(name)
    assert not missing, f"modules missing from the README's tree: {missing}"
