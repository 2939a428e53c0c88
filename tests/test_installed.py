"""The results notebooks as a Colab or pip user runs them: vitcf installed from a wheel (not from this
checkout), run from a folder outside it, with no records: every page must finish and say, in a
sentence, what to run; none may raise."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS_PAGES = ["mini_study", "design_space", "axes", "beyond", "discussion"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A folder holding vitcf installed from a freshly built wheel (its dependencies are this venv's)."""
    root = tmp_path_factory.mktemp("installed")
    wheels, site = root / "wheels", root / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = wheels.glob("vitcf-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    return site


@pytest.mark.parametrize("page", RESULTS_PAGES)
def test_a_results_page_without_records_finishes_with_a_sentence(installed, tmp_path, page):
    from nbclient import NotebookClient

    work = tmp_path / "elsewhere"
    work.mkdir()
    nb = nbformat.read(REPO / "notebooks" / f"{page}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import vitcf\nprint('vitcf from', vitcf.__file__)"))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    with pytest.MonkeyPatch.context() as patch:  # the kernel inherits this process's environment
        for key in [k for k in os.environ if k.startswith("VITCF_")]:
            patch.delenv(key)
        patch.setenv("PYTHONPATH", str(installed))
        client.execute()
    outputs = "\n".join(  # shown Markdown, glued Markdown (the page's {glue} text), and printed text
        "".join(str(v) for k, v in output.get("data", {}).items() if k.endswith("text/markdown")) + str(output.get("text", ""))
        for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "No run of the" in outputs and "fills this page" in outputs, outputs[:2000]
    assert f"vitcf from {installed}" in outputs  # the wheel's package, not this checkout's
    assert [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"] == []
    assert not (work / "results").exists() or not any((work / "results").rglob("*.json"))  # nothing written
