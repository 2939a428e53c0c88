"""Sweeps: every grid point of a preset x seeds, each run executed as a notebook beside its record.

    plan every run (validates everything, writes nothing) -> for each run: record exists? skip it :
    execute notebooks/finetune.ipynb with papermill into <run>.ipynb -> the notebook writes <run>.json

The JSON record stays the result; the executed notebook is the human-readable view of the same run
and is kept next to it. A run whose notebook fails leaves `<run>.error.json` (what failed, where to
look) and the sweep goes on, so one bad configuration never costs the other runs. Names are
deterministic (`vitcf.records.run_name`), so re-running the same sweep is how it resumes: finished
runs are skipped, failed and interrupted ones (a notebook without a record) run again.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import records
from .methods import make_method
from .presets import GridPoint, Preset, get_preset
from .study import RunPlan, plan_run

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "finetune.ipynb"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # IPython colours its tracebacks; error files hold plain text


@dataclass(frozen=True)
class SweepRun:
    """One planned run of a sweep: its grid point, its validated plan and the files it owns."""

    point: GridPoint
    label: str
    plan: RunPlan

    @property
    def name(self) -> str:
        return self.plan.path.stem

    @property
    def record(self) -> Path:
        return self.plan.path

    @property
    def notebook(self) -> Path:
        return self.plan.path.with_suffix(".ipynb")

    @property
    def error(self) -> Path:
        return self.plan.path.with_suffix(".error.json")

    def parameters(self) -> dict:
        """The notebook's papermill parameters: plain values only, JSON for the structured ones.

        The folder is passed absolute and the device resolved, so the kernel (whatever its working
        directory) plans exactly the run planned here and writes the record at `self.record`.
        """
        return {
            "preset": self.plan.preset.name,
            "method": self.point.method,
            "hparams": json.dumps(self.point.hparams, sort_keys=True),
            "seed": self.plan.seed,
            "results_dir": str(self.record.parent.resolve()),
            "forgetting_steps": json.dumps(list(self.plan.forgetting_steps)),
            "device": str(self.plan.device),
            "force": False,
        }


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: "skipped" (its record existed), "done" or "failed"."""

    run: SweepRun
    status: str
    seconds: float = 0.0
    message: str | None = None  # the error, for a failed run

    def __str__(self) -> str:
        run = self.run
        title = f"{run.label} seed {run.plan.seed}"
        if self.status == "skipped":
            return f"skipped  {title}: record exists: {run.record}"
        if self.status == "done":
            return f"done     {title} in {self.seconds:.1f} s: {run.record}"
        return f"FAILED   {title} in {self.seconds:.1f} s: {self.message}; details: {run.error}"


@dataclass
class SweepSummary:
    """The run names of a sweep by outcome; `ok` is False when any run failed."""

    preset: str
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, outcome: RunOutcome) -> None:
        lists = {"done": self.completed, "skipped": self.skipped, "failed": self.failed}
        lists[outcome.status].append(outcome.run.name)
        self.outcomes.append(outcome)

    def __str__(self) -> str:
        total = len(self.completed) + len(self.skipped) + len(self.failed)
        text = (f"sweep {self.preset}: {total} runs: {len(self.completed)} done, {len(self.skipped)} skipped, "
                f"{len(self.failed)} failed")
        if self.failed:
            text += " (run the same sweep again to retry the failed runs)"
        return text


def select_points(preset: Preset, only: Iterable[str] | str | None) -> tuple[GridPoint, ...]:
    """The preset's grid points named in `only` by method name ("lora") or label ("LoRA r=4").

    Every entry must match at least one point: a typo would otherwise shrink a sweep silently.
    """
    if only is None:
        return preset.grid
    wanted = [only] if isinstance(only, str) else list(only)
    labels = [make_method(p.method, **p.hparams).label for p in preset.grid]
    methods = list(dict.fromkeys(p.method for p in preset.grid))
    allowed = f"allowed: method names {', '.join(methods)}; labels {', '.join(labels)}"
    if not wanted:
        raise ValueError(f"`only` names no grid point (None runs them all); {allowed}")
    unknown = [entry for entry in wanted if entry not in methods and entry not in labels]
    if unknown:
        raise ValueError(f"`only` entries {unknown!r} match no grid point of preset {preset.name!r}; {allowed}")
    return tuple(p for p, label in zip(preset.grid, labels) if p.method in wanted or label in wanted)


def plan_sweep(
    preset: str,
    *,
    seeds: Iterable[int] = (0,),
    only: Iterable[str] | str | None = None,
    results_dir: str | Path | None = None,
    device: str | None = None,
    forgetting_steps: Iterable[int] | None = None,
) -> list[SweepRun]:
    """Plan every run of a sweep, seed by seed in the grid's order; nothing is read or written.

    Each run goes through `plan_run`, so a bad preset, seed, device or forgetting step fails the
    whole sweep here, before the first run could leave a record behind. Repeated seeds plan once.
    """
    spec = get_preset(preset)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed (an integer >= 0), got none")
    points = select_points(spec, only)
    runs: dict[Path, SweepRun] = {}
    for seed in seeds:
        for point in points:
            plan = plan_run(preset, point.method, point.hparams, seed, results_dir=results_dir, device=device,
                            forgetting_steps=None if forgetting_steps is None else tuple(forgetting_steps))
            runs.setdefault(plan.path, SweepRun(point, plan.method.label, plan))
    return list(runs.values())


def sweep(
    preset: str,
    *,
    seeds: Iterable[int] = (0,),
    only: Iterable[str] | str | None = None,
    results_dir: str | Path | None = None,
    device: str | None = None,
    forgetting_steps: Iterable[int] | None = None,
    progress: bool = True,
    notebook: str | Path = NOTEBOOK,
    kernel_name: str | None = None,
    on_run: Callable[[RunOutcome], None] | None = None,
) -> SweepSummary:
    """Run every (grid point x seed) of `preset` as an executed notebook; see the module docstring.

    `only` keeps the grid points with these method names or labels. `kernel_name` None uses the
    notebook's own kernel, "python3", whose `python` jupyter_client starts as this interpreter, so
    the kernel imports the same vitcf that planned the runs. `on_run` is called with each run's
    outcome as it happens (the command line prints it). Every argument is checked before the
    first run starts.
    """
    runs = plan_sweep(preset, seeds=seeds, only=only, results_dir=results_dir, device=device,
                      forgetting_steps=forgetting_steps)
    notebook = _check_notebook(notebook)
    execute_notebook = _papermill()
    from tqdm.auto import tqdm

    summary = SweepSummary(preset)
    with tqdm(total=len(runs), desc=f"sweep {preset}", unit="run", disable=not progress) as bar:
        for run in runs:
            bar.set_postfix_str(f"{run.label} seed {run.plan.seed}")
            outcome = run_one(run, notebook, execute_notebook, kernel_name)
            summary.add(outcome)
            if on_run is not None:
                on_run(outcome)
            bar.update()
    return summary


def run_one(run: SweepRun, notebook: Path, execute_notebook: Callable, kernel_name: str | None) -> RunOutcome:
    """Skip, execute or fail one run; a failure is written down and returned, never raised."""
    if run.record.exists():
        return RunOutcome(run, "skipped")
    run.record.parent.mkdir(parents=True, exist_ok=True)  # papermill writes the notebook there first
    started = time.perf_counter()
    try:
        execute_notebook(str(notebook), str(run.notebook), parameters=run.parameters(), kernel_name=kernel_name,
                         progress_bar=False, log_output=False)
        if not run.record.exists():
            raise RuntimeError(f"the notebook finished without writing the record {run.record}")
    except Exception as err:  # noqa: BLE001 - any failure of one run is that run's, not the sweep's
        seconds = time.perf_counter() - started
        error = describe_error(err)
        write_error(run, error, seconds)
        return RunOutcome(run, "failed", seconds, f"{error['type']}: {error['message']}")
    run.error.unlink(missing_ok=True)  # an earlier attempt's error is stale now
    return RunOutcome(run, "done", time.perf_counter() - started)


def describe_error(err: Exception) -> dict:
    """Type, message and traceback of a failed run: the notebook's own error when papermill has it.

    Papermill reports an exception raised in a cell as PapermillExecutionError carrying the
    kernel's exception name, value and traceback; anything else (a dead kernel, a missing record)
    is described by the exception itself.
    """
    if hasattr(err, "ename") and hasattr(err, "evalue"):
        lines = [_ANSI.sub("", line) for line in getattr(err, "traceback", None) or []]
        return {"type": err.ename, "message": err.evalue, "traceback": "\n".join(lines) or None,
                "cell": getattr(err, "exec_count", None), "raised_by": type(err).__name__}
    return {"type": type(err).__name__, "message": str(err),
            "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__)),
            "cell": None, "raised_by": type(err).__name__}


def write_error(run: SweepRun, error: dict, seconds: float) -> Path:
    """`<run>.error.json`, atomically: a reader finds a whole error file or none."""
    return records.write_json(run.error, {
        "run": run.name,
        "preset": run.plan.preset.name,
        "label": run.label,
        "seed": run.plan.seed,
        "parameters": run.parameters(),
        "error": error,
        "notebook": str(run.notebook),
        "seconds": seconds,
        "failed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })


def _check_notebook(notebook: str | Path) -> Path:
    path = Path(notebook).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"sweep notebook not found: {path} (the default is {NOTEBOOK})")
    return path


def _papermill() -> Callable:
    """papermill.execute_notebook; papermill comes with the `book` extra, not the core install."""
    try:
        from papermill import execute_notebook
    except ImportError:
        raise RuntimeError("vitcf sweep executes notebooks with papermill, which is not installed; "
                           "install it with: pip install 'vitcf[book]'") from None
    return execute_notebook
