"""One run of a sweep, in whichever process runs it.

What it is (`SweepRun`), what became of it (`RunOutcome`) and how it is done (`run_one`):

    record valid? skip : (invalid? kept for now) -> claim <run>.lock (held by a live holder? skip,
    naming it) -> record valid now? skip : invalid? move it aside under invalid/, naming it and why
    -> claim baseline.lock, compute the baseline probe unless it is recorded (held? wait for it) ->
    execute the notebook -> a valid record, or <run>.error.json -> release the claims

This is the piece `vitcf.engine.executors` (the processes runs execute in) and `vitcf.engine.sweep` (what to run)
share; it sits below both and imports neither. Claims are `vitcf.engine.claims`; records and their
validity, `vitcf.engine.records`. A failure of one run (a failing cell, a kernel that dies, a disk that
is full) is written down and returned, never raised, so the other runs go on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vitcf.base import io
from vitcf.engine import records
from vitcf.engine.claims import claim, claim_is_stale, describe_holder, read_claim, release
from vitcf.engine.naming import point_overrides
from vitcf.engine.presets import GridPoint, Preset, get_preset
from vitcf.engine.study import RunPlan

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # IPython colours its tracebacks; error files hold plain text
BASELINE_WAIT_S = 6 * 3600  # a job waits this long at most for another's baseline probe
BASELINE_POLL_S = 1.0


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
        changed = point_overrides(get_preset(self.plan.preset.name), self.point)
        return {
            "preset": self.plan.preset.name,
            "method": self.point.method,
            "hparams": json.dumps(self.point.hparams, sort_keys=True),
            "seed": self.plan.seed,
            "results_dir": str(self.record.parent.resolve()),
            "forgetting_steps": json.dumps(list(self.plan.forgetting_steps)),
            # the plan's preset has the run's own length; the overrides are against the named preset's
            **{name: changed.get(name, "") for name in ("lr", "steps", "source_size")},
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
    notes: tuple[str, ...] = ()  # what else happened: an invalid record moved aside, the baseline computed

    def __str__(self) -> str:
        run = self.run
        title = f"{run.label} seed {run.plan.seed}"
        job = f" (job {self.job_id})" if self.job_id else ""
        if self.status == "skipped":
            line = f"skipped  {title}: {self.message or 'record exists'}: {run.lock if self.message else run.record}"
        elif self.status == "done":
            line = f"done     {title} in {self.seconds:.1f} s{job}: {run.record}"
        else:
            line = f"FAILED   {title} in {self.seconds:.1f} s{job}: {self.message}; details: {run.error}"
        return line + "".join(f"\n         {note}" for note in self.notes)


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
        notes: list[str] = []
        if record_status(run.record, notes) == "valid":  # finished by the claim's previous holder meanwhile
            return RunOutcome(run, "skipped", notes=tuple(notes))
        _remove_debris(run.record, run.error)  # temp files of a writer killed mid-write
        return _execute(run, notebook, execute_notebook, kernel_name, job, time_limit_min, notes)
    finally:
        release(run, job)


def record_status(path: Path, notes: list[str] | None = None, kind: str | None = None) -> str:
    """"valid", "missing", or "moved": an invalid record was moved aside (`records.move_aside`), and a
    note naming it, the reason and where it went is added to `notes`. Call it holding the claim."""
    try:
        records.check(path, kind)
    except FileNotFoundError:
        return "missing"
    except records.InvalidRecordError as err:
        aside = records.move_aside(path, err.reason)
        if notes is not None:
            notes.append(f"invalid record {path}: {err.reason}; moved aside to {aside}, made again")
        return "moved"
    return "valid"


def _valid(path: Path) -> bool:
    try:
        records.check(path)
    except (OSError, ValueError):
        return False
    return True


def _remove_debris(*paths: Path) -> None:
    for path in paths:
        for debris in path.parent.glob(f".{path.name}.*.tmp"):
            debris.unlink(missing_ok=True)


# The kernel's own start-up warnings (ipykernel warns of its local TCP transport on every start) are
# no news to a sweep's reader; its errors still reach the run's outcome.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


def _execute(run: SweepRun, notebook: Path, execute_notebook: Callable, kernel_name: str | None,
             job: dict | None, time_limit_min: float | None, notes: list[str]) -> RunOutcome:
    job_id = job["id"] if job else None
    started = time.perf_counter()
    try:
        baseline = ensure_baseline(run, job, time_limit_min)
        if baseline:
            notes.append(baseline)
        execute_notebook(str(notebook), str(run.notebook), parameters=run.parameters(), kernel_name=kernel_name,
                         progress_bar=False, log_output=False, extra_arguments=QUIET_KERNEL)
        if not run.record.exists():
            raise RuntimeError(f"the notebook finished without writing the record {run.record}")
        records.check(run.record)  # a record the book could not read is no result
    except Exception as err:  # noqa: BLE001 - any failure of one run is that run's, not the sweep's
        seconds = time.perf_counter() - started
        error = describe_error(err)
        message = f"{error['type']}: {error['message']}"
        if str(run.record) not in message and str(run.notebook) not in message:
            message += f" (running {run.notebook})"
        try:
            write_error(run, error, seconds, job)
        except OSError as write_err:  # the disk that failed the run may fail the error file too
            message += f"; the error file could not be written either: {write_err}"
        return RunOutcome(run, "failed", seconds, message, job_id, tuple(notes))
    run.error.unlink(missing_ok=True)  # an earlier attempt's error is stale now
    return RunOutcome(run, "done", time.perf_counter() - started, job_id=job_id, notes=tuple(notes))


def already_handled(run: SweepRun) -> RunOutcome | None:
    """The outcome of a run that must not execute now: its record is valid, or a live holder claims it.
    (An invalid record does not count: the run is made again, by whoever claims it.)"""
    if _valid(run.record):
        return RunOutcome(run, "skipped")
    holder = read_claim(run.lock)
    if holder is not None and not claim_is_stale(holder):
        return _claimed(run, holder)
    return None


def _claimed(run: SweepRun, holder: dict) -> RunOutcome:
    return RunOutcome(run, "skipped", message=f"claimed by {describe_holder(holder)}; remove the claim if that "
                                              f"holder is gone")


# --- the baseline probe: computed once per folder, under its own claim ------------------------------

@dataclass(frozen=True)
class BaselineClaim:
    """The claim on a results folder's baseline probe (`baseline.json`, `baseline_head.safetensors`)."""

    folder: Path

    @property
    def name(self) -> str:
        return "baseline"

    @property
    def lock(self) -> Path:
        return self.folder / "baseline.lock"

    @property
    def record(self) -> Path:
        return self.folder / "baseline.json"


class _LazyProbe:
    """`vitcf.engine.study.make_probe(preset)`, loaded on first use: a recorded baseline needs no data."""

    def __init__(self, preset: Preset):
        self._preset, self._probe = preset, None

    @property
    def loaded(self) -> bool:
        return self._probe is not None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._probe is None:
            from vitcf.engine.study import make_probe

            self._probe = make_probe(self._preset)
        return getattr(self._probe, name)


def ensure_baseline(run: SweepRun, job: dict | None = None, time_limit_min: float | None = None, *,
                    wait_s: float = BASELINE_WAIT_S, poll_s: float = BASELINE_POLL_S) -> str | None:
    """Make sure the run's folder holds its baseline probe before the run's kernel needs it.

    Exactly one claimer computes it: the others wait while a live holder has `baseline.lock`, then
    read what it wrote. An invalid `baseline.json` is moved aside (kept) first. Returns a note on
    what happened (None when the baseline was recorded already); raises what computing it raises
    (missing data, weights that do not match their card), or TimeoutError naming the claim.
    """
    target = BaselineClaim(run.record.parent)
    deadline = time.monotonic() + wait_s
    waited_for = None
    while (holder := claim(target, job, time_limit_min)) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {wait_s:.0f} s for the baseline probe claimed in {target.lock} by "
                               f"{describe_holder(holder)}; remove the claim if that holder is gone")
        waited_for = holder
        time.sleep(poll_s)
    notes: list[str] = []
    try:
        record_status(target.record, notes, "baseline")
        _remove_debris(target.record, target.folder / "baseline_head.safetensors")
        from vitcf.engine.study import baseline

        probe = _LazyProbe(run.plan.preset)
        baseline(run.plan.preset, run.plan.weights, probe, target.folder, run.plan.device, False)
        if run.plan.device.type == "cuda":
            torch.cuda.empty_cache()
    finally:
        release(target, job)
    if probe.loaded:
        notes.append(f"computed the baseline probe {target.record}")
    elif waited_for is not None:
        notes.append(f"waited for the baseline probe {target.record} from {describe_holder(waited_for)}")
    return "; ".join(notes) or None


# --- failures -----------------------------------------------------------------------------------

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
    return io.write_json(run.error, {
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


def papermill() -> Callable:
    """papermill.execute_notebook; papermill comes with the `book` extra, not the core install."""
    try:
        from papermill import execute_notebook
    except ImportError:
        raise RuntimeError("vitcf sweep executes notebooks with papermill, which is not installed; "
                           "install it with: pip install 'vitcf[book]'") from None
    return execute_notebook
