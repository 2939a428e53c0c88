"""Which records a results page shows, and the one note it prints in their place while there are none yet.

The book's results pages (notebooks/mini_study.ipynb, paper_scale.ipynb, discussion.ipynb, ...) name
their preset in a papermill parameters cell and call `load_study`. Every number they print comes from
the records, and every view of them goes through `shown(study, view)`: when a preset has no records
yet, the page says so and how to make them (`missing_runs`) instead of showing a number.

Two environment variables choose what a build shows (both are printed on every results page):
VITCF_RESULTS, the folder holding one sub-folder per preset (default: the checkout's `results/`),
and VITCF_BOOK_PRESET, which makes every results page show that preset's records instead of its
own. The test suite builds the book on the `smoke` preset this way, in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vitcf.book.frames import records_frame
from vitcf.book.stats import HEADLINE_K
from vitcf.engine import records
from vitcf.engine.presets import get_preset
from vitcf.model.backbones import get_spec, weights_dir
from vitcf.model.methods import make_method


RESULTS_ENV = "VITCF_RESULTS"
PRESET_ENV = "VITCF_BOOK_PRESET"


def results_root() -> Path:
    """VITCF_RESULTS if set, else the checkout's results/ (pages run with their own folder as cwd)."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    return records.RESULTS_ROOT


@dataclass
class Study:
    """The records of one preset as a page shows them."""

    preset: str  # the preset whose records these are
    requested: str  # the page's own preset (differs when VITCF_BOOK_PRESET overrides it)
    folder: Path
    runs: list[dict]
    baseline: dict | None
    failed: list[str] = field(default_factory=list)  # runs that left an error file and no record
    grid: str = "core"  # the preset's grid these runs belong to (see `load_study`)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason) of untrusted records

    @property
    def empty(self) -> bool:
        """Whether the preset has no run record yet (a page then shows `missing_runs` in its place)."""
        return not self.runs

    @property
    def overridden(self) -> bool:
        """Whether VITCF_BOOK_PRESET made this page show another preset's records than its own."""
        return self.preset != self.requested

    def frame(self, k: int = HEADLINE_K) -> pd.DataFrame:
        """The records as `vitcf.book.frames.records_frame` rows, the k-NN probe read at `k`."""
        return records_frame(self.runs, k=k)

    def source(self) -> str:
        """One Markdown sentence: where the numbers on this page come from."""
        seeds = sorted({r["seed"] for r in self.runs})
        if self.runs:
            text = (f"Numbers on this page: {len(self.runs)} run record(s) of the `{self.preset}` preset "
                    f"({len({r['label'] for r in self.runs})} configurations, seeds {', '.join(map(str, seeds))}) "
                    f"read from `{repo_relative(self.folder)}` when this page was built.")
        else:
            text = (f"No run record of the `{self.preset}` preset was in `{repo_relative(self.folder)}` when this page "
                    f"was built.")
        if self.failed:
            text += f" {len(self.failed)} run(s) failed and have no record: {', '.join(self.failed)}."
        if self.invalid:
            text += (f" **{len(self.invalid)} record(s) in the folder are invalid and not shown:** "
                     + "; ".join(f"`{name}` ({reason})" for name, reason in self.invalid) + ".")
        if self.overridden:
            text += (f" **This build shows the `{self.preset}` preset in place of this page's `{self.requested}` "
                     f"({PRESET_ENV}={self.preset}); its numbers test the book's wiring and say nothing about "
                     f"the study.**")
        return text


def repo_relative(path: Path) -> str:
    """`path` relative to the checkout where it lies inside it, else as given."""
    try:
        return str(path.resolve().relative_to(records.REPO))
    except ValueError:
        return str(path)


def load_study(preset: str, grid: str = "core") -> Study:
    """The records of `preset`'s `grid` (or VITCF_BOOK_PRESET's preset's) under `results_root()`.

    "core" holds the paper's rows, "design" the design space around them (`Preset.points`): both
    live in the preset's one folder, and a page shows only the runs of the grid it asks for (a run
    with a changed schedule, e.g. `vitcf run --steps 10`, belongs to neither).
    """
    from vitcf.engine.naming import grid_key, grid_keys

    get_preset(preset)  # an unknown name fails here, naming the allowed ones
    shown = os.environ.get(PRESET_ENV) or preset
    keys = grid_keys(shown, grid)
    folder = results_root() / shown
    valid, invalid = records.scan(folder)
    # Labels as this version names the configurations (records made when surgical blocks were counted
    # from 0 read as the pages count them, from 1).
    runs = [r | {"label": make_method(r["method"], **r["hparams"]).label} for r in valid if grid_key(r["run"]) in keys]
    invalid = [(path.name, reason) for path, reason in invalid]
    baseline = None
    if (folder / "baseline.json").is_file():
        try:
            baseline = records.check(folder / "baseline.json", "baseline")
        except records.InvalidRecordError as err:
            invalid.append(("baseline.json", err.reason))
    names = {r["run"] for r in runs}
    errors = (p.name[: -len(".error.json")] for p in folder.glob("*.error.json")) if folder.is_dir() else ()
    failed = sorted(name for name in errors if name not in names and grid_key(name) in keys)
    return Study(shown, preset, folder, runs, baseline, failed, grid, invalid)


def weights_card(backbone: str) -> dict | None:
    """The provenance card written beside a shipped backbone's weights (`vitcf pretrain`), if any."""
    spec = get_spec(backbone)
    if spec.shipped is None:
        return None
    card = (weights_dir() / spec.shipped).with_suffix(".json")
    if not card.is_file():
        return None
    try:
        return records.check(card, "card")
    except records.InvalidRecordError as err:
        import warnings

        warnings.warn(f"{err}: the book shows no card", stacklevel=2)
        return None


def analyses(study: Study) -> dict[str, list[dict]]:
    """The analysis records (vitcf.engine.analyses) in the study's folder, by analysis name."""
    valid, invalid = records.scan(study.folder / "analyses", "analysis")
    study.invalid.extend((f"analyses/{path.name}", reason) for path, reason in invalid
                         if (f"analyses/{path.name}", reason) not in study.invalid)
    found: dict[str, list[dict]] = {}
    for record in valid:
        found.setdefault(record["analysis"], []).append(record)
    return found


def has_curves(study: Study) -> bool:
    """Whether any run probed the pre-training domain during training (metrics.knn_over_steps)."""
    return any(r["metrics"].get("knn_over_steps") for r in study.runs)


# --- the one guard: what a page shows while its preset has no records -----------------------------------

def shown(study: Study, view):
    """`view(study)` for display, or the Markdown that says what to run when the study has no records."""
    from IPython.display import Markdown

    return Markdown(missing_runs(study)) if study.empty else view(study)


def missing_runs(study: Study) -> str:
    """What to run to fill a page whose preset has no records yet (Markdown)."""
    preset = get_preset(study.preset)
    sweep = f"vitcf sweep --preset {study.preset}" + ("" if study.grid == "core" else f" --grid {study.grid}")
    text = f"No run of the `{study.preset}` preset is recorded in `{repo_relative(study.folder)}` yet."
    if study.failed:
        text += f" {len(study.failed)} run(s) failed: see their `.error.json` files."
    weights = weights_card(preset.backbone)
    spec = get_spec(preset.backbone)
    if preset.pretrained and spec.shipped is not None and weights is None:
        text += (f" The `{preset.backbone}` backbone's pre-trained weights are not in this checkout either: "
                 f"`vitcf pretrain --preset {preset.backbone}` makes them (about 80 minutes on two CPU cores; see the pre-training "
                 f"notebook), then `{sweep}` fills this page.")
    else:
        text += f" `{sweep}` fills this page."
    return text


def missing_analysis(study: Study, name: str) -> str:
    """What to run when an analysis has no records (Markdown)."""
    return (f"No `{name}` analysis of the `{study.preset}` preset is recorded in `{repo_relative(study.folder / 'analyses')}` "
            f"yet; `vitcf analyse --preset {study.preset} --only {name}` runs it.")
