"""The results notebooks as a Colab or pip user runs them, from a folder outside the checkout.

With vitcf installed from a wheel and no records, every page must finish and say, in a sentence, what
to run; with the repository's clone first on the path (what Colab's install cell leaves), every page
must show the clone's committed records. None may raise."""

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
    work = tmp_path / "elsewhere"
    work.mkdir()
    cells, shown = _run_outside(page, work, str(installed))
    assert "No run of the" in shown and "fills this page" in shown, shown[:2000]
    assert f"vitcf from {installed}" in shown  # the wheel's package, not this checkout's
    assert [o for cell in cells for o in cell.get("outputs", []) if o.get("output_type") == "error"] == []
    assert not (work / "results").exists() or not any((work / "results").rglob("*.json"))  # nothing written

def _run_outside(page: str, work: Path, pythonpath: str) -> tuple[list, str]:
    """Execute results page `page` in folder `work` with vitcf imported from `pythonpath` and no VITCF_
    setting; return its cells and its shown text (Markdown and HTML, glued or displayed, and printed text)."""
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks" / f"{page}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import vitcf\nprint('vitcf from', vitcf.__file__)"))
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    with pytest.MonkeyPatch.context() as patch:  # the kernel inherits this process's environment
        for key in [k for k in os.environ if k.startswith("VITCF_")]:
            patch.delenv(key)
        patch.setenv("PYTHONPATH", pythonpath)
        client.execute()
    shown = "\n".join(
        "".join(str(v) for k, v in output.get("data", {}).items() if k.endswith(("text/markdown", "text/html"))) + str(output.get("text", ""))
        for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", []))
    return nb.cells, shown


@pytest.mark.parametrize("page", RESULTS_PAGES)
def test_a_results_page_run_on_a_clone_shows_its_records(tmp_path, page):
    """As Colab's install cell leaves a kernel: the repository's clone first on the path, the notebook run
    from another folder. The page must find the clone's committed records and show them, not the note."""
    from vitcf.book import pages

    work = tmp_path / "elsewhere"
    work.mkdir()
    cells, shown = _run_outside(page, work, str(REPO))
    assert [o for cell in cells for o in cell.get("outputs", []) if o.get("output_type") == "error"] == []
    assert f"vitcf from {REPO / 'vitcf'}" in shown  # the clone's package
    assert "No run of the" not in shown, shown[:2000]
    labels = set(pages.load_study("mini-glyphs").frame()["label"])
    assert any(label in shown for label in labels)  # the records' configurations are on the page
    assert not (work / "results").exists()  # read from the clone, nothing written beside the notebook
