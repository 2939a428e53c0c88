"""Where a sweep's runs execute: in this process, as subprocesses of this machine, or as SLURM jobs.

    inline  one run after another in this process (the default: what `vitcf sweep` always did)
    local   one subprocess per run, started by submitit's LocalExecutor, `jobs` at a time; with
            `gpus`, the jobs are spread over those GPUs, each seeing its one GPU as cuda:0
    slurm   one SLURM job per run (the tasks of one job array), submitted by submitit's SlurmExecutor

The engine is submitit, the library DINO submits its jobs with: it pickles each job, starts it,
keeps its logs under `<results>/logs/` and hands back its result. What a job does is what the
inline sweep does for one run, `vitcf.engine.runner.run_one`: skip a validly recorded run, claim it,
execute the notebook into `<run>.ipynb` (whose kernel writes `<run>.json`) or write
`<run>.error.json`. So a record does not depend on the executor, and neither do the sweep's guarantees:

- resumable: a recorded run, or one a live holder claims, is reported skipped and not submitted;
- no duplicated records: a job claims its run before executing it (see `vitcf.engine.sweep`);
- failures are written down: an exception or a failed notebook by the job itself, with its job id
  and log files; a job that ends without a result (killed, out of memory) by the sweep, from
  submitit's account of it, which also removes the claim the dead job could not;
- one folder: records, notebooks and error files land in the sweep's folder, the one the book
  reads, whatever process or node wrote them (on a cluster it must be on a shared file system, as
  the log folder must).

submitit is imported only when a job is submitted or run, so `import vitcf` never needs it. This
module uses `vitcf.engine.runner` and `vitcf.engine.claims` and is used by `vitcf.engine.sweep`, never the other way round.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vitcf.base.checks import check_int, check_known, check_number
from vitcf.engine.claims import release
from vitcf.engine.runner import (
    _ANSI,
    BaselineClaim,
    RunOutcome,
    SweepRun,
    _valid,
    already_handled,
    papermill,
    run_one,
    write_error,
)

EXECUTORS = ("inline", "local", "slurm")
# The options each executor takes (field names); FLAGS spells them as the command line does.
OPTIONS = {
    "inline": (),
    "local": ("jobs", "gpus", "time_min"),
    "slurm": ("time_min", "partition", "gpus_per_job", "cpus_per_task", "mem_gb", "array_parallelism", "account",
              "qos"),
}
FLAGS = {"jobs": "--jobs", "gpus": "--gpus", "time_min": "--time", "partition": "--partition",
         "gpus_per_job": "--gpus-per-job", "cpus_per_task": "--cpus-per-task", "mem_gb": "--mem-gb",
         "array_parallelism": "--slurm-array-parallelism", "account": "--account", "qos": "--qos"}
POLL_S = {"local": 1.0, "slurm": 30.0}  # how often the sweep looks for finished jobs
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by torch when the kernel imports it
STOP_WAIT_S = 30.0  # how long Ctrl-C waits for the local jobs it cancelled to end
LOCAL_NO_LIMIT_MIN = 60 * 24 * 365  # submitit gives every local job a time limit (2 min unless told)
_SLURM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # a partition, account or QOS name


@dataclass(frozen=True)
class ExecutorConfig:
    """An executor and its options, validated on construction (ValueError naming the bad value).

    `time_min` is the minutes one run may take: required for SLURM (its --time), optional locally
    (a job past it is killed). A claim taken by a job with a time limit expires with it.
    """

    name: str = "inline"
    jobs: int | None = None  # local: runs at a time (default: one per GPU in `gpus`, else 1)
    gpus: tuple[int, ...] = ()  # local: GPU ids to spread the jobs over, one GPU per job
    time_min: int | None = None
    partition: str | None = None  # slurm, from here on
    gpus_per_job: int | None = None  # default 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    array_parallelism: int | None = None  # array tasks SLURM runs at once (submitit's default: 256)
    account: str | None = None
    qos: str | None = None

    def __post_init__(self) -> None:
        check_known("executor", self.name, EXECUTORS)
        object.__setattr__(self, "gpus", tuple(self.gpus))
        given = [f.name for f in dataclasses.fields(self)
                 if f.name != "name" and getattr(self, f.name) not in (None, ())]
        misplaced = [option for option in given if option not in OPTIONS[self.name]]
        if misplaced:
            takes = ", ".join(FLAGS[o] for o in OPTIONS[self.name]) or "none"
            flags = ", ".join(FLAGS[o] for o in misplaced)
            raise ValueError(f"{'options' if len(misplaced) > 1 else 'option'} {flags} "
                             f"{'do' if len(misplaced) > 1 else 'does'} not apply to --executor {self.name}; "
                             f"its options: {takes}")
        lows = {"jobs": 1, "time_min": 1, "cpus_per_task": 1, "array_parallelism": 1, "gpus_per_job": 0}
        for option, low in lows.items():
            if getattr(self, option) is not None:
                check_int(FLAGS[option], getattr(self, option), low)
        if self.mem_gb is not None:
            check_number(FLAGS["mem_gb"], self.mem_gb, 0, low_open=True)
        bad = [g for g in self.gpus if isinstance(g, bool) or not isinstance(g, int) or g < 0]
        if bad or len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"--gpus must list distinct GPU ids (integers >= 0), e.g. 0,1; got {list(self.gpus)}")
        for option in ("partition", "account", "qos"):
            value = getattr(self, option)
            names = value.split(",") if option == "partition" and isinstance(value, str) else [value]
            if value is not None and not all(isinstance(n, str) and _SLURM_NAME.fullmatch(n) for n in names):
                allowed = "names of letters, digits and _.+-" + (", comma-separated" if option == "partition" else "")
                raise ValueError(f"{FLAGS[option]} {value!r} is not a SLURM {option} name; allowed: {allowed}")
        if self.name == "slurm" and self.time_min is None:
            raise ValueError("--executor slurm needs --time: the minutes one run may take (its SLURM time limit; "
                             "see the expected GPU-hours in the book's reproducibility chapter)")

    @property
    def inline(self) -> bool:
        return self.name == "inline"

    def job_device(self, device: str | None) -> str:
        """The device a local or SLURM job runs on, checked here, where the sweep is planned: a SLURM
        job's GPU need not exist on this machine. (Inline runs are planned on `device` itself.)"""
        kind, index = _parse_device(device)
        if self.name == "local":
            if not self.gpus:
                if kind == "cuda":
                    raise ValueError(f"device {device!r}: local jobs see no GPU unless --gpus lists the GPUs to "
                                     f"spread them over; allowed without --gpus: cpu")
                return "cpu"
            if kind == "cpu" or index not in (None, 0):
                raise ValueError(f"device {device!r} with --gpus: each local job sees its one GPU as cuda:0; "
                                 f"allowed: cuda, cuda:0 or no --device")
            _check_gpus_exist(self.gpus)
            return "cuda:0"
        gpus = 1 if self.gpus_per_job is None else self.gpus_per_job
        if kind is None:
            return "cuda" if gpus else "cpu"
        if kind == "cuda" and (index or 0) >= gpus:
            raise ValueError(f"device {device!r}: a job has --gpus-per-job {gpus}; allowed: "
                             f"{', '.join(['cpu'] if not gpus else ['cuda', *(f'cuda:{i}' for i in range(gpus))])}")
        if kind == "cpu" and gpus:
            raise ValueError(f"device 'cpu' would leave each job's {gpus} GPU(s) idle; for CPU jobs pass "
                             f"--gpus-per-job 0")
        return str(device)

    def check_environment(self) -> None:
        """submitit importable, and SLURM's commands here for the slurm executor (RuntimeError if not)."""
        if self.inline:
            return
        if importlib.util.find_spec("submitit") is None:
            raise RuntimeError(f"--executor {self.name} submits its jobs with submitit, which is not installed; "
                               f"install it with: pip install 'submitit>=1.5'")
        missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
        if self.name == "slurm" and missing:
            raise RuntimeError(f"--executor slurm: {' and '.join(missing)} not found on PATH; run the sweep where "
                               f"SLURM's commands are (a login node), or use --executor local or inline here")

    def cpu_threads(self) -> int | None:
        """Threads each local CPU job may use: the machine's cores shared out between `jobs`, so two
        jobs on two cores run one thread each instead of four threads contending for two cores
        (small models gain most: two one-thread runs finish in about 1.3x the time of one two-thread
        run). None (torch's default) for one job, for GPU jobs and for SLURM, which sets its own."""
        if self.name != "local" or self.gpus or (self.jobs or 1) == 1:
            return None
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def slots(self, count: int) -> list[int | None]:
        """What jobs may run at once: local, `jobs` slots holding a GPU id each (None: CPU); SLURM,
        `count` (SLURM schedules the array itself)."""
        if self.name == "slurm":
            return [None] * count
        jobs = self.jobs or max(1, len(self.gpus))
        return [self.gpus[i % len(self.gpus)] if self.gpus else None for i in range(jobs)]


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """`--gpus 0,1` -> (0, 1); None -> ()."""
    if text is None:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--gpus takes GPU ids separated by commas, e.g. 0,1; got {text!r}") from None


def _parse_device(device: str | None) -> tuple[str | None, int | None]:
    if device is None:
        return None, None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; allowed: cpu, cuda, cuda:N")
    return parsed.type, parsed.index


def _check_gpus_exist(gpus: tuple[int, ...]) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"--gpus {','.join(map(str, gpus))}: CUDA is not available here; allowed: no --gpus "
                         f"(the jobs run on the CPU)")
    count = torch.cuda.device_count()
    missing = [g for g in gpus if g >= count]
    if missing:
        raise ValueError(f"--gpus {missing}: no such GPU here; allowed: {', '.join(map(str, range(count)))}")


# --- the engine: submitit ---------------------------------------------------------------------

def make_executor(config: ExecutorConfig, folder: Path, job_name: str):
    """The submitit executor for `config` with its logs in `folder`, parameters set; nothing is submitted."""
    import submitit

    if config.name == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=config.time_min or LOCAL_NO_LIMIT_MIN, gpus_per_node=0)
        return executor
    executor = submitit.SlurmExecutor(folder)
    executor.update_parameters(**slurm_parameters(config, job_name))
    return executor


def slurm_parameters(config: ExecutorConfig, job_name: str) -> dict:
    """One run's sbatch options in SlurmExecutor's vocabulary: one task on one node, with its GPUs."""
    gpus = 1 if config.gpus_per_job is None else config.gpus_per_job
    mem = config.mem_gb
    parameters = {
        "job_name": job_name, "time": config.time_min, "nodes": 1, "ntasks_per_node": 1,
        "gpus_per_node": gpus or None, "cpus_per_task": config.cpus_per_task, "partition": config.partition,
        "mem": None if mem is None else f"{mem:g}G" if mem == int(mem) else f"{int(mem * 1024)}M",
        "array_parallelism": config.array_parallelism, "account": config.account, "qos": config.qos,
    }
    return {key: value for key, value in parameters.items() if value is not None}


def run_job(run: SweepRun, notebook: Path, kernel_name: str | None, time_limit_min: int | None,
            threads: int | None = None) -> dict:
    """A job's work, in the job's process: `run_one` as this job; its outcome as plain values.

    `threads` caps the CPU threads of the run's kernel, which inherits this process's environment.
    """
    import submitit

    if threads is not None:
        os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
        import torch

        torch.set_num_threads(threads)  # this process may compute the baseline probe (`ensure_baseline`)

    env = submitit.JobEnvironment()
    job = {"executor": env.cluster, "id": env.job_id, "host": env.hostname,
           "stdout": str(env.paths.stdout), "stderr": str(env.paths.stderr)}
    outcome = run_one(run, notebook, papermill(), kernel_name, job=job, time_limit_min=time_limit_min)
    return {"status": outcome.status, "seconds": outcome.seconds, "message": outcome.message,
            "notes": list(outcome.notes)}


def run_jobs(runs: list[SweepRun], config: ExecutorConfig, notebook: Path, kernel_name: str | None,
             report: Callable[[RunOutcome], None], progress: bool, desc: str) -> None:
    """Submit one job per run that is neither recorded nor claimed, and report each outcome as its job ends.

    Returns once every job has ended. Local jobs are submitted as slots free up (one GPU each with
    `gpus`); SLURM jobs all at once, as one job array.
    """
    todo = []
    for run in runs:
        skipped = already_handled(run)
        if skipped is None:
            todo.append(run)
        else:
            report(skipped)
    if not todo:
        return
    from tqdm.auto import tqdm

    folder = todo[0].record.parent
    folder.mkdir(parents=True, exist_ok=True)
    executor = make_executor(config, folder / "logs", f"vitcf-{todo[0].plan.preset.name}")
    queue, free = deque(todo), deque(config.slots(len(todo)))
    running: list[tuple[object, SweepRun, float, int | None]] = []  # (job, run, submitted at, slot)
    with tqdm(total=len(todo), desc=desc, unit="job", disable=not progress) as bar:
        try:
            while queue or running:
                if queue and free:
                    batch = [(queue.popleft(), free.popleft()) for _ in range(min(len(queue), len(free)))]
                    jobs = _submit(executor, config, batch, notebook, kernel_name)
                    running += [(job, run, time.monotonic(), slot) for job, (run, slot) in zip(jobs, batch)]
                ended = [entry for entry in running if entry[0].done()]
                running = [entry for entry in running if all(entry is not other for other in ended)]
                for job, run, submitted, slot in ended:
                    free.append(slot)
                    report(collect(job, run, config, time.monotonic() - submitted))
                    bar.update()
                if running and not ended:
                    time.sleep(POLL_S[config.name])
        except KeyboardInterrupt:
            stop(running, config)
            raise


def stop(running: list[tuple], config: ExecutorConfig, wait_s: float = STOP_WAIT_S) -> None:
    """Ctrl-C in a sweep: cancel the jobs it started, give local ones `wait_s` to end (a run interrupted
    writes nothing: its record is written last, atomically), and remove the claims they held."""
    for job, *_ in running:
        job.cancel(check=False)
    deadline = time.monotonic() + (wait_s if config.name == "local" else 0)
    while any(not job.done() for job, *_ in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for job, run, *_ in running:
        for target in (run, BaselineClaim(run.record.parent)):
            release(target, {"id": job.job_id})


def _submit(executor, config: ExecutorConfig, batch: list[tuple[SweepRun, int | None]], notebook: Path,
            kernel_name: str | None) -> list:
    arguments = (notebook, kernel_name, config.time_min, config.cpu_threads())
    if config.name == "slurm":
        with executor.batch():  # one job array; SLURM runs --slurm-array-parallelism of it at a time
            return [executor.submit(run_job, run, *arguments) for run, _ in batch]
    jobs = []
    for run, gpu in batch:  # submitit sets CUDA_VISIBLE_DEVICES of a local job to its visible_gpus
        executor.update_parameters(gpus_per_node=0 if gpu is None else 1, visible_gpus=() if gpu is None else (gpu,))
        jobs.append(executor.submit(run_job, run, *arguments))
    return jobs


def collect(job, run: SweepRun, config: ExecutorConfig, seconds: float) -> RunOutcome:
    """The outcome of an ended job: what `run_job` returned, or a failure written down here for a
    job that returned nothing (killed, timed out before it could write, or broken outside its run)."""
    try:
        if config.name == "local" and not job.paths.result_pickle.exists():
            # A local job writes its result before its process ends, so none now means none ever
            # (submitit's job.result() would wait 15 s for it, in case of a slow shared file system).
            return _lost(job, run, config, seconds, "UncompletedJobError", "ended without a result", _log_tail(job))
        try:
            result = job.result()
        except Exception as err:  # noqa: BLE001 - one job's end is that run's failure, not the sweep's
            what = "failed outside its run" if type(err).__name__ == "FailedJobError" else "ended without a result"
            return _lost(job, run, config, seconds, type(err).__name__, what, _ANSI.sub("", str(err)))
    finally:
        # a job that was killed could not remove its claims: the run's, and the baseline's if it held it
        for target in (run, BaselineClaim(run.record.parent)):
            release(target, {"id": job.job_id})
    return RunOutcome(run, result["status"], result["seconds"], result["message"], job.job_id,
                      tuple(result.get("notes", ())))


def _lost(job, run: SweepRun, config: ExecutorConfig, seconds: float, kind: str, what: str, log: str) -> RunOutcome:
    if _valid(run.record):  # killed after its record was written: the run is whole
        return RunOutcome(run, "done", seconds, job_id=job.job_id)
    state = job.state
    message = f"job {job.job_id} of {run.record} {what} (state {state}); its log: {job.paths.stderr}"
    error = {"type": kind, "message": message, "traceback": log, "cell": None, "raised_by": kind}
    try:
        write_error(run, error, seconds, {"executor": config.name, "id": job.job_id, "state": state,
                                          "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)})
    except OSError as err:  # a full disk: the failure is still reported, with both causes
        message += f"; the error file could not be written either: {err}"
    return RunOutcome(run, "failed", seconds, f"{kind}: {message}", job.job_id)


def _log_tail(job, lines: int = 40) -> str:
    """The last lines of a job's stderr and stdout logs, for its error file."""
    parts = []
    for name, path in (("stderr", job.paths.stderr), ("stdout", job.paths.stdout)):
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {name}: {path}\n" + _ANSI.sub("", "\n".join(tail)))
    return "\n".join(parts) or f"no log was written: {job.paths.stdout}"
