"""A release a reader can cite and reinstall: one version everywhere, a license, a citation file."""

import re
import tomllib
from pathlib import Path

import yaml

import vitcf

REPO = Path(__file__).resolve().parent.parent


def test_one_version_in_the_package_the_citation_and_the_changelog():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert vitcf.__version__ == version
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["version"] == version and citation["license"] == "MIT"
    first = re.search(r"^## (\S+) \((\d{4}-\d{2}-\d{2})\)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert first and first[1] == version and str(citation["date-released"]) == first[2]


def test_the_citation_names_the_paper_it_reproduces_and_the_license_is_the_declared_one():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    (paper,) = citation["references"]
    assert paper["title"].startswith("Parameter Efficient Fine-tuning of Self-supervised ViTs")
    assert paper["year"] == 2024 and paper["authors"][0]["family-names"] == "Akbarian Bafghi"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "MIT"


def test_the_binder_environment_installs_the_book_without_the_test_tools():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .[book]" in pip and not any("dev" in line for line in pip)
    assert "torch==2.14.1" in pip  # the build make pins


def test_every_notebook_opens_on_colab_with_the_repository_and_its_records():
    import json

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        install = next((c for c in cells if "google.colab" in "".join(c["source"])), None)
        assert install is not None, f"{path.name} has no Colab install cell"
        source = "".join(install["source"])
        assert "git clone" in source and 'sys.path.insert(0, "/content/vitcf")' in source, path.name
        first_import = next(i for i, c in enumerate(cells)
                            if "import vitcf" in "".join(c["source"]) or "from vitcf" in "".join(c["source"]))
        assert cells.index(install) < first_import, path.name  # installed before anything imports it


def locked() -> dict[str, str]:
    """requirements.lock's pins, by normalised name, each recorded with at least one hash."""
    from packaging.utils import canonicalize_name

    text = (REPO / "requirements.lock").read_text()
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        found = re.match(r"([A-Za-z0-9_.\-]+)==([^\s\\;]+)", block)
        if found:
            assert "--hash=sha256:" in block, f"{found[1]} is pinned without a hash"
            pins[canonicalize_name(found[1])] = found[2]
    return pins


def test_the_lock_file_is_current_with_pyproject_and_the_makefile():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = locked()
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"],
              *project["optional-dependencies"]["book"]]
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: run `make lock`"
    torch = re.search(r"^TORCH \?= (.*)$", (REPO / "Makefile").read_text(), re.M)[1].split()
    for pin in torch:  # the Makefile's torch build is the locked one
        name, version = pin.split("==")
        assert pins[canonicalize_name(name)] == version, pin
    assert "--require-hashes -r $(LOCK)" in (REPO / "Makefile").read_text()
