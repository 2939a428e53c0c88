"""Sweeps: every grid point of a preset x seeds, each run executed as a notebook beside its record.

    plan every run (validates everything, writes nothing) -> for each run: valid record? skip it :
    execute notebooks/finetune.ipynb with papermill into <run>.ipynb -> the notebook writes <run>.json

The JSON record stays the result; the executed notebook is the human-readable view of the same run
and is kept next to it. A run whose notebook fails leaves `<run>.error.json` (what failed, where to
look) and the sweep goes on, so one bad configuration never costs the other runs. Names are
deterministic (`vitcf.engine.naming`), so re-running the same sweep is how it resumes: finished
runs are skipped, failed and interrupted ones (a notebook without a record) run again.

Where the runs execute is the executor's business (`vitcf.engine.executors`: this process, subprocesses,
SLURM jobs); what happens to one run is decided by `vitcf.engine.runner.run_one`, whichever process runs it:
a valid record is skipped, an invalid one (truncated, another schema, a field missing) is moved
aside under `invalid/` and the run made again, a run another holder claims (`vitcf.engine.claims`) is
skipped, and the folder's baseline probe is computed by exactly one of the runs that need it.

The modules form one direction: records, claims < runner < executors < sweep < cli; each uses only
what sits below it. The names this module used to define (`run_one`, `claim`, `SweepRun`, ...) are
still importable from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vitcf.engine.claims import (  # noqa: F401 - re-exported: vitcf.engine.sweep's names before vitcf.engine.claims existed
    CLAIM_GRACE_S,
    CLOCK_MARGIN_MIN,
    claim,
    claim_is_stale,
    describe_holder,
    read_claim,
    release,
)
from vitcf.engine.executors import ExecutorConfig, run_jobs
from vitcf.model.methods import make_method
from vitcf.engine.naming import point_overrides
from vitcf.engine.presets import GridPoint, Preset, get_preset
from vitcf.engine.runner import (  # noqa: F401 - re-exported, as above
    RunOutcome,
    SweepRun,
    already_handled,
    describe_error,
    ensure_baseline,
    run_one,
    write_error,
)
from vitcf.engine.runner import papermill as _papermill
from vitcf.engine.study import plan_run

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "finetune.ipynb"


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


def select_points(preset: Preset, only: Iterable[str] | str | None, grid: str = "core") -> tuple[GridPoint, ...]:
    """The points of the preset's `grid` named in `only` by method name ("lora") or label ("LoRA r=4").

    Every entry must match at least one point: a typo would otherwise shrink a sweep silently.
    """
    points = preset.points(grid)
    if only is None:
        return points
    wanted = [only] if isinstance(only, str) else list(only)
    labels = [make_method(p.method, **p.hparams).label for p in points]
    methods = list(dict.fromkeys(p.method for p in points))
    allowed = f"allowed: method names {', '.join(methods)}; labels {', '.join(dict.fromkeys(labels))}"
    if not wanted:
        raise ValueError(f"`only` names no grid point (None runs them all); {allowed}")
    unknown = [entry for entry in wanted if entry not in methods and entry not in labels]
    if unknown:
        raise ValueError(f"`only` entries {unknown!r} match no point of the {grid} grid of preset {preset.name!r}; "
                         f"{allowed}")
    return tuple(p for p, label in zip(points, labels) if p.method in wanted or label in wanted)


def plan_sweep(
    preset: str,
    *,
    seeds: Iterable[int] = (0,),
    only: Iterable[str] | str | None = None,
    results_dir: str | Path | None = None,
    device: str | None = None,
    forgetting_steps: Iterable[int] | None = None,
    grid: str = "core",
) -> list[SweepRun]:
    """Plan every run of a sweep, seed by seed in the grid's order; nothing is read or written.

    `grid` is "core" (the paper's rows), "design" (the design space around them, `Preset.design`),
    "rates" (the learning-rate axis), "schedule" (the schedule-length axis), "control" (the positive
    control) or "resolution" (the new domain's source resolution as an axis); all write to the
    preset's one folder, so a point of one grid that is also a point of another is one run.
    The design space and the rate and resolution axes are compared at the end of training: their runs probe no
    forgetting steps unless `forgetting_steps` names some (the core grid's runs carry the curves).
    The schedule axis probes at `Preset.long_forgetting_steps` within each run's schedule, so its
    runs at the preset's own length probe exactly as the core grid's.
    Each run goes through `plan_run`, so a bad preset, seed, device or forgetting step fails the
    whole sweep here, before the first run could leave a record behind. Repeated seeds plan once.
    """
    spec = get_preset(preset)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed (an integer >= 0), got none")
    points = select_points(spec, only, grid)
    if forgetting_steps is None and grid in ("design", "rates", "resolution"):
        forgetting_steps = ()
    if grid == "schedule":
        asked = spec.long_forgetting_steps if forgetting_steps is None else tuple(forgetting_steps)
        longest = max((point.steps or spec.steps for point in points), default=spec.steps)
        if forgetting_steps is not None and (beyond := [s for s in asked if isinstance(s, int) and s > longest]):
            raise ValueError(f"forgetting steps {beyond} lie beyond the longest schedule of the grid ({longest} steps)")
    runs: dict[Path, SweepRun] = {}
    for seed in seeds:
        for point in points:
            steps = forgetting_steps
            if grid == "schedule":  # each run probes at the steps within its own schedule
                steps = [s for s in asked if not isinstance(s, int) or s <= (point.steps or spec.steps)]
            plan = plan_run(preset, point.method, point.hparams, seed, results_dir=results_dir, device=device,
                            **point_overrides(spec, point), forgetting_steps=None if steps is None else tuple(steps))
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
    executor: str | ExecutorConfig = "inline",
    grid: str = "core",
) -> SweepSummary:
    """Run every (grid point x seed) of `preset` as an executed notebook; see the module docstring.

    `only` keeps the grid points with these method names or labels. `kernel_name` None uses the
    notebook's own kernel, "python3", whose `python` jupyter_client starts as this interpreter, so
    the kernel imports the same vitcf that planned the runs. `on_run` is called with each run's
    outcome as it happens (the command line prints it). `executor` is "inline" (one run after
    another in this process), "local" or "slurm", or a `vitcf.engine.executors.ExecutorConfig` with the
    options of those two. Every argument is checked before the first run starts or is submitted.
    """
    config = executor if isinstance(executor, ExecutorConfig) else ExecutorConfig(executor)
    job_device = None if config.inline else config.job_device(device)
    runs = plan_sweep(preset, seeds=seeds, only=only, results_dir=results_dir,
                      device=device if config.inline else "cpu",  # jobs get `job_device`; checked above
                      forgetting_steps=forgetting_steps, grid=grid)
    notebook = _check_notebook(notebook)
    execute_notebook = _papermill()
    config.check_environment()
    summary = SweepSummary(preset)

    def report(outcome: RunOutcome) -> None:
        summary.add(outcome)
        if on_run is not None:
            on_run(outcome)

    if config.inline:
        _run_inline(runs, notebook, execute_notebook, kernel_name, report, progress, f"sweep {preset}")
    else:
        run_jobs([run.on_device(job_device) for run in runs], config, notebook, kernel_name, report, progress,
                 f"sweep {preset}")
    return summary


def _run_inline(runs: list[SweepRun], notebook: Path, execute_notebook: Callable, kernel_name: str | None,
                report: Callable[[RunOutcome], None], progress: bool, desc: str) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=len(runs), desc=desc, unit="run", disable=not progress) as bar:
        for run in runs:
            bar.set_postfix_str(f"{run.label} seed {run.plan.seed}")
            report(run_one(run, notebook, execute_notebook, kernel_name))
            bar.update()


def _check_notebook(notebook: str | Path) -> Path:
    path = Path(notebook).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"sweep notebook not found: {path} (the default is {NOTEBOOK})")
    return path
