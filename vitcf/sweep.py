"""Sweeps: every grid point of a preset x seeds, each run executed as a notebook beside its record.

    plan every run (validates everything, writes nothing) -> for each run: record exists? skip it :
    execute notebooks/finetune.ipynb with papermill into <run>.ipynb -> the notebook writes <run>.json

The JSON record stays the result; the executed notebook is the human-readable view of the same run
and is kept next to it. A run whose notebook fails leaves `<run>.error.json` (what failed, where to
look) and the sweep goes on, so one bad configuration never costs the other runs. Names are
deterministic (`vitcf.records.run_name`), so re-running the same sweep is how it resumes: finished
runs are skipped, failed and interrupted ones (a notebook without a record) run again.

Where the runs execute is the executor's business (`vitcf.executors`: this process, subprocesses,
SLURM jobs); what happens to one run is decided here, in `run_one`, whichever process runs it:

    record exists? skip -> claim <run>.lock (held by a live holder? skip, naming it) -> record
    exists now? skip -> execute the notebook -> record, or <run>.error.json -> release the claim

The claim is what keeps two sweeps racing on one folder, or a re-queued job, from running a run
twice. It is a file created exclusively (O_CREAT | O_EXCL: atomic on local file systems and NFS v3
or later) naming its holder: host, pid, executor, job id, when it was taken and, for a job with a
time limit, when it expires. It is removed when the run ends, whatever the outcome. A claim is
stale, and taken over, when (1) it names the claimer's own job id (a re-queued job restarting), (2)
it was taken on this host by a process that no longer exists, or (3) it has expired; a sweep also
removes the claim of its own job once that job has ended without removing it (killed). A claim from
another host without an expiry is never taken over: delete the file once its holder is known to be
gone. Records are written atomically under deterministic names, so even a lost race could only
rewrite a record, never duplicate it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import records
from .methods import make_method
from .presets import GridPoint, Preset, get_preset
from .study import RunPlan, plan_run, record_name

if TYPE_CHECKING:
    from .executors import ExecutorConfig

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "finetune.ipynb"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # IPython colours its tracebacks; error files hold plain text
CLAIM_GRACE_S = 60  # an unreadable claim is being written for this long at most; older, it is debris
CLOCK_MARGIN_MIN = 10  # added to a claim's expiry: hosts' clocks differ


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

    @property
    def lock(self) -> Path:
        return self.plan.path.with_suffix(".lock")

    def on_device(self, device: str) -> SweepRun:
        """This run on `device`: a job's device, which the machine planning the sweep may lack."""
        return dataclasses.replace(self, plan=dataclasses.replace(self.plan, device=torch.device(device)))

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
            "lr": "" if (lr := point_lr(self.plan.preset, self.point)) is None else lr,
            "device": str(self.plan.device),
            "force": False,
        }


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: "skipped" (its record existed, or another holder claims it),
    "done" or "failed"."""

    run: SweepRun
    status: str
    seconds: float = 0.0
    message: str | None = None  # why, for a failed run or a run skipped because it is claimed
    job_id: str | None = None  # the job that ran it, under an executor other than inline

    def __str__(self) -> str:
        run = self.run
        title = f"{run.label} seed {run.plan.seed}"
        job = f" (job {self.job_id})" if self.job_id else ""
        if self.status == "skipped":
            return f"skipped  {title}: {self.message or 'record exists'}: {run.lock if self.message else run.record}"
        if self.status == "done":
            return f"done     {title} in {self.seconds:.1f} s{job}: {run.record}"
        return f"FAILED   {title} in {self.seconds:.1f} s{job}: {self.message}; details: {run.error}"


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


def point_lr(preset: Preset, point: GridPoint) -> float | None:
    """The learning rate to override for `point`, or None where the preset's schedule gives it anyway
    (a design-space point holding the rate fixed where the paper's row of the same method used another)."""
    return None if preset.schedule_for(point.method, point.hparams)[0] == point.lr else point.lr


def grid_keys(preset: str, grid: str = "core") -> set[str]:
    """The record names of `grid`'s points with the seed left out (see `grid_key`)."""
    spec = get_preset(preset)
    keys = set()
    for point in spec.points(grid):
        lr = point_lr(spec, point)
        keys.add(grid_key(record_name(point.method, point.hparams, 0, {} if lr is None else {"lr": lr})))
    return keys


def grid_key(run: str) -> str:
    """A record's name without its seed: which configuration of which grid it is."""
    return re.sub(r"_seed\d+(?=_|$)", "", run)


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

    `grid` is "core" (the paper's rows) or "design" (the design space around them, `Preset.design`);
    both write to the preset's one folder, so a design point that is also a core point is one run.
    The design space is compared at the end of training: its runs probe no forgetting steps unless
    `forgetting_steps` names some (the core grid's runs carry the curves).
    Each run goes through `plan_run`, so a bad preset, seed, device or forgetting step fails the
    whole sweep here, before the first run could leave a record behind. Repeated seeds plan once.
    """
    spec = get_preset(preset)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed (an integer >= 0), got none")
    points = select_points(spec, only, grid)
    if forgetting_steps is None and grid == "design":
        forgetting_steps = ()
    runs: dict[Path, SweepRun] = {}
    for seed in seeds:
        for point in points:
            plan = plan_run(preset, point.method, point.hparams, seed, results_dir=results_dir, device=device,
                            lr=point_lr(spec, point),
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
    executor: str | ExecutorConfig = "inline",
    grid: str = "core",
) -> SweepSummary:
    """Run every (grid point x seed) of `preset` as an executed notebook; see the module docstring.

    `only` keeps the grid points with these method names or labels. `kernel_name` None uses the
    notebook's own kernel, "python3", whose `python` jupyter_client starts as this interpreter, so
    the kernel imports the same vitcf that planned the runs. `on_run` is called with each run's
    outcome as it happens (the command line prints it). `executor` is "inline" (one run after
    another in this process), "local" or "slurm", or a `vitcf.executors.ExecutorConfig` with the
    options of those two. Every argument is checked before the first run starts or is submitted.
    """
    from .executors import ExecutorConfig, run_jobs

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


def run_one(run: SweepRun, notebook: Path, execute_notebook: Callable, kernel_name: str | None, *,
            job: dict | None = None, time_limit_min: float | None = None) -> RunOutcome:
    """Skip, execute or fail one run under its claim; a failure is written down and returned, never raised.

    `job` describes the executor's job running this (id, log files), for the claim and the error
    file; `time_limit_min` is that job's time limit, after which its claim expires.
    """
    skipped = already_handled(run)
    if skipped is not None:
        return skipped
    run.record.parent.mkdir(parents=True, exist_ok=True)  # papermill writes the notebook there first
    holder = claim(run, job, time_limit_min)
    if holder is not None:
        return _claimed(run, holder)
    try:
        if run.record.exists():  # finished by the claim's previous holder between our two looks
            return RunOutcome(run, "skipped")
        return _execute(run, notebook, execute_notebook, kernel_name, job)
    finally:
        release(run, job)


def _execute(run: SweepRun, notebook: Path, execute_notebook: Callable, kernel_name: str | None,
             job: dict | None) -> RunOutcome:
    job_id = job["id"] if job else None
    started = time.perf_counter()
    try:
        execute_notebook(str(notebook), str(run.notebook), parameters=run.parameters(), kernel_name=kernel_name,
                         progress_bar=False, log_output=False)
        if not run.record.exists():
            raise RuntimeError(f"the notebook finished without writing the record {run.record}")
    except Exception as err:  # noqa: BLE001 - any failure of one run is that run's, not the sweep's
        seconds = time.perf_counter() - started
        error = describe_error(err)
        write_error(run, error, seconds, job)
        return RunOutcome(run, "failed", seconds, f"{error['type']}: {error['message']}", job_id)
    run.error.unlink(missing_ok=True)  # an earlier attempt's error is stale now
    return RunOutcome(run, "done", time.perf_counter() - started, job_id=job_id)


def already_handled(run: SweepRun) -> RunOutcome | None:
    """The outcome of a run that must not execute now: its record exists, or a live holder claims it."""
    if run.record.exists():
        return RunOutcome(run, "skipped")
    holder = read_claim(run.lock)
    if holder is not None and not claim_is_stale(holder):
        return _claimed(run, holder)
    return None


def _claimed(run: SweepRun, holder: dict) -> RunOutcome:
    return RunOutcome(run, "skipped", message=f"claimed by {describe_holder(holder)}; remove the claim if that "
                                              f"holder is gone")


# --- claims: see the module docstring for the rule ------------------------------------------------

def claim(run: SweepRun, job: dict | None = None, time_limit_min: float | None = None) -> dict | None:
    """Take `run`'s claim: None once it is ours, else the live holder that has it.

    A stale claim is taken over; if another claimer takes it over first, theirs is the live one.
    """
    now = dt.datetime.now(dt.timezone.utc)
    expires = None if time_limit_min is None else now + dt.timedelta(minutes=time_limit_min + CLOCK_MARGIN_MIN)
    mine = {
        "run": run.name, "host": socket.gethostname(), "pid": os.getpid(),
        "executor": job["executor"] if job else "inline", "job_id": job["id"] if job else None,
        "claimed_at": now.isoformat(timespec="seconds"),
        "expires_at": None if expires is None else expires.isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }
    for _ in range(3):  # create; or judge the holder, take a stale claim over and create again
        if _create_exclusive(run.lock, mine):
            return None
        holder = read_claim(run.lock)
        if holder is None:  # released between our two looks
            continue
        if not claim_is_stale(holder, mine["job_id"]):
            return holder
        _take_over(run.lock, holder)
    return read_claim(run.lock) or {"unreadable": True}


def release(run: SweepRun, job: dict | None = None) -> None:
    """Remove `run`'s claim if this process, or `job`, holds it; anyone else's claim stays."""
    holder = read_claim(run.lock)
    if holder is None:
        return
    ours = (holder.get("host"), holder.get("pid")) == (socket.gethostname(), os.getpid())
    if ours or (job is not None and holder.get("job_id") == job["id"]):
        _take_over(run.lock, holder)


def read_claim(path: Path) -> dict | None:
    """The holder a claim names; None when there is no claim. A claim that cannot be read (its
    holder is writing it, or died doing so) reads as {"unreadable": True, "mtime": ...}."""
    try:
        text, mtime = path.read_text(), path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        holder = None
    return holder if isinstance(holder, dict) else {"unreadable": True, "mtime": mtime}


def claim_is_stale(holder: dict, job_id: str | None = None) -> bool:
    """Whether a claim may be taken over by a claimer running as `job_id` (see the module docstring)."""
    if holder.get("unreadable"):
        return time.time() - holder.get("mtime", 0) > CLAIM_GRACE_S
    if job_id is not None and holder.get("job_id") == job_id:
        return True
    if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
        return True
    try:
        expires = dt.datetime.fromisoformat(holder["expires_at"]) if holder.get("expires_at") else None
    except (TypeError, ValueError):  # not written by `claim`: judged by its host and pid alone
        expires = None
    return expires is not None and expires < dt.datetime.now(dt.timezone.utc)


def describe_holder(holder: dict) -> str:
    if holder.get("unreadable"):
        return "an unreadable claim"
    job = f"{holder.get('executor')} job {holder['job_id']}" if holder.get("job_id") else "an inline sweep"
    expiry = f", expires {holder['expires_at']}" if holder.get("expires_at") else ""
    return f"{job} on {holder.get('host')} (pid {holder.get('pid')}, since {holder.get('claimed_at')}{expiry})"


def _create_exclusive(path: Path, holder: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(holder, handle, indent=2, sort_keys=True)
    return True


def _take_over(path: Path, judged: dict) -> None:
    """Remove the claim at `path` if it is still the one judged; a claim taken meanwhile is put back."""
    aside = path.with_name(f"{path.name}.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)  # atomic: of two claimers taking over, one gets the file
    except FileNotFoundError:
        return
    try:
        if read_claim(aside) != judged:
            try:
                os.link(aside, path)  # someone's fresh claim: give it back, unless a newer one exists
            except FileExistsError:
                pass
    finally:
        aside.unlink(missing_ok=True)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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


def write_error(run: SweepRun, error: dict, seconds: float, job: dict | None = None) -> Path:
    """`<run>.error.json`, atomically: a reader finds a whole error file or none. `job` names the
    executor's job that ran it and its log files (None inline)."""
    return records.write_json(run.error, {
        "run": run.name,
        "preset": run.plan.preset.name,
        "label": run.label,
        "seed": run.plan.seed,
        "parameters": run.parameters(),
        "error": error,
        "notebook": str(run.notebook),
        "seconds": seconds,
        "job": job,
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
