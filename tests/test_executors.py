"""Sweeps through submitit: real LocalExecutor subprocesses running the real notebook on `smoke`.

A job costs a Python start, a kernel start and a smoke run (tens of seconds here), so one scenario
carries the executions (success, failure, claims, a killed job, resume, skip) in three jobs. Claims,
the SLURM parameters and argument errors need no job and are tested on their own. This machine has
no SLURM, so the slurm executor is built (never submitted) with SLURM's commands stubbed on PATH.
"""

import ast
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import vitcf.engine.sweep
from vitcf.base import io
from vitcf.engine.cli import main
from vitcf.engine.executors import ExecutorConfig, make_executor, parse_gpus, slurm_parameters
from vitcf.engine.study import run as run_inline
from vitcf.engine.sweep import claim, claim_is_stale, plan_sweep, read_claim, release, sweep

# `make test` distributes by file (--dist loadfile): these real-job tests share one worker.

LOCAL = ExecutorConfig("local")




def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def write_claim(path, **holder):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": path.stem, "host": socket.gethostname(), "pid": os.getpid(),
                                "executor": "inline", "job_id": None, "claimed_at": "2026-01-01T00:00:00+00:00",
                                "expires_at": None} | holder))


def test_local_jobs_fail_are_killed_resume_and_skip(tmp_path, failing_notebook, monkeypatch, capsys):
    folder = tmp_path / "results"
    runs = {r.name: r for r in plan_sweep("smoke", only=["linear", "lora"], results_dir=folder, device="cpu")}
    write_claim(runs["linear_seed0"].lock, pid=dead_pid())  # left by a crashed sweep on this host: stale
    write_claim(runs["lora_r8_seed0"].lock)  # held by this live process: another sweep is running it

    # 1. the CLI, two local jobs at once, LoRA r=4 failing in its notebook: exit code 1
    monkeypatch.setattr(vitcf.engine.sweep, "sweep", functools.partial(sweep, notebook=failing_notebook))
    argv = ["sweep", "--preset", "smoke", "--only", "linear", "LoRA r=4", "LoRA r=8", "--results-dir", str(folder),
            "--quiet", "--executor", "local", "--jobs", "2"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "done     Linear seed 0 in " in out and "1 done, 1 skipped, 1 failed" in out
    assert f"skipped  LoRA r=8 seed 0: claimed by an inline sweep on {socket.gethostname()} (pid {os.getpid()}" in out
    error = io.read_json(folder / "lora_r4_seed0.error.json")
    job = error["job"]
    assert "FAILED   LoRA r=4 seed 0 in " in out and f"(job {job['id']}): RuntimeError: injected failure" in out
    assert error["error"]["message"] == "injected failure for lora" and job["executor"] == "local"
    assert {job["stdout"], job["stderr"]} == {str(folder / "logs" / f"{job['id']}_0_log.{e}") for e in ("out", "err")}
    log = (folder / "logs" / f"{job['id']}_0_log.out").read_text()
    assert f"Starting with JobEnvironment(job_id={job['id']}" in log
    assert not runs["linear_seed0"].lock.exists() and not runs["lora_r4_seed0"].lock.exists()  # taken, released
    assert read_claim(runs["lora_r8_seed0"].lock)["pid"] == os.getpid()  # someone else's claim stays
    assert not (folder / "lora_r8_seed0.ipynb").exists()

    # 2. a job's record is the inline run's: same metrics (the baseline cache is shared to save its cost)
    reference = tmp_path / "inline"
    reference.mkdir()
    for name in ("baseline.json", "baseline_head.safetensors"):
        shutil.copy(folder / name, reference / name)
    run_inline("smoke", "linear", {}, 0, results_dir=reference, device="cpu", progress=False)
    job_record, inline_record = (io.read_json(f / "linear_seed0.json") for f in (folder, reference))
    assert job_record["metrics"] == inline_record["metrics"]
    # two jobs at once share the cores out (--jobs 2): each kernel ran with half of them
    assert job_record["environment"]["hardware"].endswith(f", {max(1, os.cpu_count() // 2)} torch threads")
    assert job_record["trainable_params"] == inline_record["trainable_params"]

    # 3. again with the real notebook: only the failed run is submitted, and its job is killed
    #    (SIGKILL, like the OOM killer: no clean-up in the job) once it holds its claim
    killed = []
    killer = threading.Thread(target=kill_the_holder, args=(runs["lora_r4_seed0"].lock, killed), daemon=True)
    killer.start()
    summary = sweep("smoke", only=["linear", "LoRA r=4"], results_dir=folder, progress=False, executor=LOCAL)
    killer.join(timeout=5)  # the sweep returns once the job has ended: killed by now, or never
    assert killed and not summary.ok and (summary.failed, summary.skipped) == (["lora_r4_seed0"], ["linear_seed0"])
    assert len(list((folder / "logs").glob("*_submitted.pkl"))) == 3  # two jobs in step 1, one now
    outcome = summary.outcomes[-1]
    error = io.read_json(folder / "lora_r4_seed0.error.json")
    assert error["job"]["id"] == killed[0]["job_id"] == outcome.job_id != job["id"]
    assert error["error"]["type"] == "UncompletedJobError" and "ended without a result" in error["error"]["message"]
    assert os.path.exists(error["job"]["stderr"]) and error["job"]["stderr"] in str(outcome)
    assert not runs["lora_r4_seed0"].lock.exists()  # the dead job's claim is removed by the sweep
    assert not (folder / "lora_r4_seed0.json").exists()

    # 4. a recorded run: nothing is submitted, nothing is touched, exit 0
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert main(["sweep", "--preset", "smoke", "--only", "linear", "--results-dir", str(folder), "--quiet",
                 "--executor", "local"]) == 0
    assert "0 done, 1 skipped, 0 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps


def kill_the_holder(lock, killed, timeout_s=600):
    """SIGKILL the process named by the claim at `lock` as soon as it appears."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        holder = read_claim(lock)
        if holder and "pid" in holder:
            os.kill(holder["pid"], signal.SIGKILL)
            killed.append(holder)
            return
        time.sleep(0.01)


def test_the_claim_rule(tmp_path):
    (run,) = plan_sweep("smoke", only="linear", results_dir=tmp_path, device="cpu")
    job = {"executor": "slurm", "id": "41_3"}

    assert claim(run, job, time_limit_min=60) is None  # taken: holder, job and expiry written down
    holder = read_claim(run.lock)
    assert (holder["host"], holder["pid"], holder["job_id"], holder["executor"]) == (
        socket.gethostname(), os.getpid(), "41_3", "slurm")
    assert holder["expires_at"] > holder["claimed_at"]
    assert claim(run) == holder  # held by a live process: not taken
    assert claim(run, {"executor": "slurm", "id": "41_3"}) is None  # the same job re-queued: taken over
    release(run, job)
    assert not run.lock.exists()

    elsewhere = {"host": "another-node", "pid": 1, "job_id": "7"}
    write_claim(run.lock, **elsewhere)
    assert not claim_is_stale(read_claim(run.lock))  # another host, no expiry: only a person may remove it
    assert claim(run) is not None and run.lock.exists()
    release(run)  # not ours: stays
    assert run.lock.exists()
    write_claim(run.lock, **elsewhere, expires_at="2026-01-01T01:00:00+00:00")
    assert claim_is_stale(read_claim(run.lock)) and claim(run) is None  # expired: taken over
    release(run)

    write_claim(run.lock, pid=dead_pid())  # this host, its process gone
    assert claim_is_stale(read_claim(run.lock)) and claim(run) is None
    release(run)

    run.lock.write_text("")  # a holder between creating and writing its claim: held for a while
    assert read_claim(run.lock)["unreadable"] and claim(run) is not None
    os.utime(run.lock, (time.time() - 3600,) * 2)  # ... but not for an hour
    assert claim(run) is None
    release(run)
    assert not run.lock.exists()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_live_claim_is_skipped_and_nothing_runs(tmp_path, executor):
    folder = tmp_path / "results"
    (run,) = plan_sweep("smoke", only="linear", results_dir=folder, device="cpu")
    write_claim(run.lock, executor="local", job_id="12")
    summary = sweep("smoke", only="linear", results_dir=folder, progress=False, executor=executor)
    assert summary.ok and summary.skipped == ["linear_seed0"]
    assert f"claimed by local job 12 on {socket.gethostname()}" in str(summary.outcomes[0])
    assert sorted(p.name for p in folder.iterdir()) == ["linear_seed0.lock"]  # no notebook, no job, no logs


def test_the_slurm_executor_gets_the_job_parameters(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"  # SLURM's commands, so that submitit builds its executor; nothing is submitted
    bin_dir.mkdir()
    for command in ("srun", "sbatch"):
        (bin_dir / command).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    import submitit
    from submitit.slurm.slurm import _make_sbatch_string

    config = ExecutorConfig("slurm", time_min=90, partition="gpu,gpu-long", cpus_per_task=8, mem_gb=32,
                            array_parallelism=4, account="proj", qos="normal")
    config.check_environment()
    assert config.job_device(None) == "cuda" and config.job_device("cuda:0") == "cuda:0"
    executor = make_executor(config, tmp_path / "logs", "vitcf-paper")
    assert isinstance(executor, submitit.SlurmExecutor)
    assert executor.parameters == slurm_parameters(config, "vitcf-paper") == {
        "job_name": "vitcf-paper", "time": 90, "nodes": 1, "ntasks_per_node": 1, "gpus_per_node": 1,
        "cpus_per_task": 8, "partition": "gpu,gpu-long", "mem": "32G", "array_parallelism": 4, "account": "proj",
        "qos": "normal"}
    script = _make_sbatch_string(command="python -m submitit.core._submit", folder=executor.folder, map_count=150,
                                 **executor.parameters)  # what sbatch would get for a 150-run array
    for line in ("--job-name=vitcf-paper", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32G",
                 "--partition=gpu,gpu-long", "--array=0-149%4", "--account=proj", "--qos=normal", "--nodes=1",
                 "--ntasks-per-node=1", f"--output={tmp_path}/logs/%A_%a_0_log.out"):
        assert f"#SBATCH {line}\n" in script
    cpu = ExecutorConfig("slurm", time_min=30, gpus_per_job=0)
    assert "gpus_per_node" not in slurm_parameters(cpu, "x") and cpu.job_device(None) == "cpu"
    assert LOCAL.slots(5) == [None] and ExecutorConfig("local", jobs=3, gpus=(0, 1)).slots(5) == [0, 1, 0]
    assert parse_gpus("0,2") == (0, 2) and parse_gpus(None) == ()


def test_vitcf_imports_submitit_only_inside_functions():
    """`import vitcf` (any module of it) must work without submitit: no import of it runs at import time."""

    def imports_at_import_time(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs when called
            if isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                yield child.module or ""
            yield from imports_at_import_time(child)

    package = Path(vitcf.engine.sweep.__file__).parent
    found = {path.name: name for path in package.glob("*.py")
             for name in imports_at_import_time(ast.parse(path.read_text())) if name.split(".")[0] == "submitit"}
    assert found == {}
    assert "import submitit" in (package / "executors.py").read_text()  # ... inside the functions that need it


@pytest.mark.parametrize("options, match", [
    (["--executor", "ray"], "unknown executor 'ray'; allowed: inline, local, slurm"),
    (["--executor", "local", "--gpus", "0,a"], "--gpus takes GPU ids separated by commas, e.g. 0,1; got '0,a'"),
    (["--executor", "local", "--gpus", "1,1"], r"distinct GPU ids .* got \[1, 1\]"),
    (["--executor", "local", "--gpus", "99"], "CUDA is not available here|no such GPU here"),
    (["--executor", "local", "--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
    (["--executor", "local", "--time", "-5"], "--time must be an integer >= 1, got -5"),
    (["--executor", "local", "--device", "cuda"], "local jobs see no GPU unless --gpus"),
    (["--executor", "local", "--partition", "gpu"], "option --partition does not apply to --executor local; its "
                                                    "options: --jobs, --gpus, --time"),
    (["--jobs", "2", "--time", "5"], "options --jobs, --time do not apply to --executor inline; its options: none"),
    (["--executor", "slurm"], "--executor slurm needs --time"),
    (["--executor", "slurm", "--time", "60", "--partition", "gpu;rm -rf"], "not a SLURM partition name; allowed"),
    (["--executor", "slurm", "--time", "60", "--mem-gb", "0"], "--mem-gb must be a finite number > 0, got 0.0"),
    (["--executor", "slurm", "--time", "60", "--device", "cpu"], "idle; for CPU jobs pass --gpus-per-job 0"),
    (["--executor", "slurm", "--time", "60", "--device", "cuda:1"], "--gpus-per-job 1; allowed: cuda, cuda:0$"),
    (["--executor", "slurm", "--time", "60"], "sbatch and srun not found on PATH"),  # no SLURM on this machine
])
def test_cli_executor_errors_exit_2_and_write_nothing(tmp_path, capsys, options, match):
    if "not found on PATH" in match and shutil.which("sbatch"):
        pytest.skip("SLURM is installed here")
    folder = tmp_path / "results"
    argv = ["sweep", "--preset", "smoke", "--only", "linear", "--results-dir", str(folder), "--quiet", *options]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitcf sweep: error: ")
    assert re.search(match, err.strip().removeprefix("vitcf sweep: error: ")), err
    assert not folder.exists()


def test_local_cpu_jobs_share_the_cores_out(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert ExecutorConfig("local", jobs=4).cpu_threads() == 4
    assert ExecutorConfig("local", jobs=32).cpu_threads() == 1
    assert ExecutorConfig("local").cpu_threads() is None  # one job: torch's own default
    assert ExecutorConfig("local", jobs=2, gpus=(0, 1)).cpu_threads() is None
    assert ExecutorConfig("slurm", time_min=5).cpu_threads() is None and ExecutorConfig().cpu_threads() is None


def test_one_direction_between_the_sweep_and_its_executors():
    """records, claims < runner < executors < sweep: no module imports one that sits above it."""
    layers = ["records", "claims", "runner", "executors", "sweep"]
    package = Path(vitcf.engine.sweep.__file__).parent

    def imported(name):
        tree = ast.parse((package / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):  # at any depth: a function-level import is still a dependency
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vitcf."):
                found.add(node.module.split(".")[1])
        return found

    for index, name in enumerate(layers):
        above = set(layers[index + 1:]) & imported(name)
        assert not above, f"vitcf/{name}.py imports {sorted(above)}, which sit above it"
    assert "claims" not in imported("records") and "runner" not in imported("claims")
