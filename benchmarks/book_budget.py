"""Wall time of the main job (`make book`) or of the extended study (`make extended`) against its target.

    python benchmarks/book_budget.py [--job book|extended|axes|glyphs|glyphs-axes|glyphs-resolution]
                                     [--weights-dir DIR | --stand-in]
                                     [--results-root DIR] [--out FILE]

Runs the same steps as the make target, from an installed environment, in a fresh temporary
folder so nothing committed is reused, and with the Makefile's sweep executor (one local job per
core). `book` (target 15 min): `vitcf params`, `vitcf sweep --preset mini` (every grid point,
through papermill), and the strict book build on those records (VITCF_RESULTS pointing at them).
`extended` (target 30 min): the mini study's core grid with seeds 0, 1 and 2 (seed 0 probed over
training steps, as `make book` runs it), its design space (`--grid design`), and the analyses (reversibility and interpolation side by side, one thread
each). `axes` (target 45 min): `make axes`. `glyphs` (target 60 min): the far new domain's core grid
(`--preset mini-glyphs`) with seeds 0, 1 and 2, all probed over training, then its positive control
(`--grid control`, seeds 0, 1 and 2). `glyphs-axes` (target 60 min): `make glyphs-axes` (the rate axis
with seed 0; `make glyphs-axes-seeds` adds seeds 1 and 2, untimed). `glyphs-resolution` (target 45 min):
`make glyphs-resolution`, the resolution axis with seeds 0, 1 and 2 beside the core grid's records.
Prints each step's time and the total, and writes them as JSON (default:
benchmarks/results/<job>_budget.json), which the book's reproducibility chapter reads.

Until the mini backbone ships, `--stand-in` times the job with a randomly initialised mini backbone
placed in a temporary weights folder (VITCF_WEIGHTS_DIR): the time does not depend on the weights'
values; the book built that way shows meaningless accuracies and is thrown away.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"book": 15 * 60, "extended": 30 * 60, "axes": 45 * 60, "glyphs": 60 * 60, "glyphs-axes": 60 * 60,
           "glyphs-resolution": 45 * 60}
# The steps a job's target covers, where not all of them: the glyph job's hour is its core grid's (the
# positive control is timed beside it).
TARGET_STEPS = {"glyphs": ("glyphs core grid, seeds 0 1 2",)}
# The preset each job sweeps.
JOB_PRESET = {"book": "mini", "extended": "mini", "axes": "mini", "glyphs": "mini-glyphs", "glyphs-axes": "mini-glyphs",
              "glyphs-resolution": "mini-glyphs"}
# The grids (and seeds) of the jobs that may find records of other grids beside theirs: what they plan,
# and how many of those their folder held before (counted in the budget record, `axis_runs`).
AXIS_JOBS = {"axes": (("schedule", (0,)), ("rates", (0, 1, 2))),
             "glyphs-axes": (("schedule", (0,)), ("rates", (0,))),
             "glyphs-resolution": (("resolution", (0, 1, 2)),)}
SWEEP_FLAGS = ["--executor", "local", "--jobs", str(os.cpu_count() or 1)]  # as the Makefile's SWEEP_FLAGS


def _timed(name: str, commands: list[list[str]], env: dict) -> dict:
    """Run `commands` side by side (each with its own output files) and time them until all have ended."""
    for command in commands:
        print(f"-> {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as logs:
        running = []
        for i, command in enumerate(commands):
            out, err = open(Path(logs) / f"{i}.out", "w+"), open(Path(logs) / f"{i}.err", "w+")
            running.append((subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True), out, err))
        failed = []
        for process, out, err in running:
            if process.wait() != 0:
                out.seek(0), err.seek(0)
                failed.append(f"{' '.join(process.args)} (exit {process.returncode}):\n{out.read()[-3000:]}\n"
                              f"{err.read()[-3000:]}")
            out.close(), err.close()
    seconds = time.perf_counter() - started
    if failed:
        raise SystemExit(f"book_budget: {name} failed after {seconds:.0f} s: " + "\n".join(failed))
    print(f"   {seconds:.1f} s", flush=True)
    return {"step": name, "command": shown(" & ".join(" ".join(c) for c in commands)), "seconds": round(seconds, 1)}


def shown(command: str) -> str:
    """`command` as the budget record keeps it: paths inside the checkout relative to it, so the record
    reads the same whichever machine measured it."""
    return command.replace(f"{REPO}/", "").replace(str(REPO), ".")


# The grids (and seeds) a job sweeps, where the folder may hold other grids' records beside them.
JOB_GRIDS = {"glyphs": (("core", (0, 1, 2)), ("control", (0, 1, 2)))}


def already_recorded(job: str, folder: Path) -> list[str]:
    """The files in `folder` that would let `job` skip work: its planned runs' records and the baseline."""
    from vitcf.engine.sweep import plan_sweep

    planned = [run.record for grid, seeds in JOB_GRIDS[job]
               for run in plan_sweep(JOB_PRESET[job], grid=grid, seeds=seeds, results_dir=folder, device="cpu")]
    return [path.name for path in [*planned, folder / "baseline.json"] if path.exists()]


def reused_steps(job: str, root: Path) -> list[dict]:
    """Steps already timed into `root` by the book job (extended only); refuse a folder with other records
    (the axes job may share a folder: what it finds recorded is counted in its record, `axis_runs`; the
    glyph job's folder may hold the axes' records, never its own runs' or the baseline)."""
    mini = root / JOB_PRESET[job]
    if job in JOB_GRIDS:
        if found := already_recorded(job, mini):
            raise SystemExit(f"book_budget: {mini} already holds {', '.join(found[:6])}"
                             f"{' ...' if len(found) > 6 else ''}; a budget is measured with none of them")
        return []
    if job in AXIS_JOBS or not any(mini.glob("*.json")):
        return []
    book = REPO / "benchmarks" / "results" / "book_budget.json"
    done = json.loads(book.read_text()) if book.is_file() else {}
    if job == "extended" and done.get("results_root") and (REPO / done["results_root"]).resolve() == root:
        sweep = next(step for step in done["steps"] if step["step"] == "mini sweep")
        return [{**sweep, "step": "mini sweep, seed 0", "timed_by": "the book job (benchmarks/results/book_budget.json)"}]
    raise SystemExit(f"book_budget: {mini} already holds records; a budget is measured from an empty folder")


def kept_steps(job: str, names: list[str], out: Path) -> dict[str, dict]:
    """The earlier timings of `names`, steps of `job`, read from its budget record `out`: kept as they were
    (marked with when they were timed) instead of being run again. Refuses a step the record lacks."""
    if not names:
        return {}
    earlier = json.loads(out.read_text()) if out.is_file() else {"steps": []}
    found = {step["step"]: step for step in earlier["steps"]}
    if missing := [name for name in names if name not in found]:
        raise SystemExit(f"book_budget: {out} times no step {missing}; it has: {', '.join(found) or 'none'}")
    when = earlier["environment"]["finished_at"]
    return {name: {**found[name], "timed_by": f"an earlier measurement of this job (finished {when})"} for name in names}


def job_steps(job: str, bin_dir: Path, results: Path, tmp: Path, env: dict, skip: int = 0,
              kept: dict[str, dict] | None = None) -> list[dict]:
    """Time the steps of `job` (see the module docstring), records under `results`; the first `skip`
    steps of the extended job were timed before and are left out; a step named in `kept` keeps that timing."""
    kept = kept or {}

    def timed(name, commands, env):  # noqa: F811 - the module's timer, unless the step's timing is kept
        return kept[name] if name in kept else _timed(name, commands, env)

    vitcf, mini = str(bin_dir / "vitcf"), str(results / "mini")
    glyphs = str(results / "mini-glyphs")
    if job == "glyphs":  # the far domain's core grid, three seeds probed over training; then the positive control
        return [
            timed("glyphs core grid, seeds 0 1 2", [[vitcf, "sweep", "--preset", "mini-glyphs", "--seeds", "0", "1", "2",
                                                     "--quiet", "--results-dir", glyphs, *SWEEP_FLAGS]], env),
            timed("glyphs positive control, seeds 0 1 2", [[vitcf, "sweep", "--preset", "mini-glyphs", "--grid",
                                                            "control", "--seeds", "0", "1", "2", "--quiet",
                                                            "--results-dir", glyphs, *SWEEP_FLAGS]], env),
        ]
    if job == "glyphs-axes":  # as `make glyphs-axes`: the schedule axis (longest run first), then the rate axis
        return [
            timed("glyphs schedule axis", [[vitcf, "sweep", "--preset", "mini-glyphs", "--grid", "schedule", "--quiet",
                                            "--results-dir", glyphs, *SWEEP_FLAGS]], env),
            timed("glyphs rate axis, seed 0", [[vitcf, "sweep", "--preset", "mini-glyphs", "--grid", "rates", "--seeds",
                                                "0", "--quiet", "--results-dir", glyphs, *SWEEP_FLAGS]], env),
        ]
    if job == "glyphs-resolution":  # as `make glyphs-resolution`
        return [timed("glyphs resolution axis, seeds 0 1 2", [[vitcf, "sweep", "--preset", "mini-glyphs", "--grid",
                                                               "resolution", "--seeds", "0", "1", "2", "--quiet",
                                                               "--results-dir", glyphs, *SWEEP_FLAGS]], env)]
    if job == "axes":  # as `make axes`: the schedule axis (longest run first), then the rate axis
        return [
            timed("mini schedule axis", [[vitcf, "sweep", "--preset", "mini", "--grid", "schedule", "--quiet",
                                          "--results-dir", mini, *SWEEP_FLAGS]], env),
            timed("mini rate axis", [[vitcf, "sweep", "--preset", "mini", "--grid", "rates", "--seeds", "0", "1", "2",
                                      "--quiet", "--results-dir", mini, *SWEEP_FLAGS]], env),
        ]
    if job == "book":
        return [
            timed("params", [[vitcf, "params"]], env),
            timed("mini sweep", [[vitcf, "sweep", "--preset", "mini", "--quiet", "--results-dir", mini, *SWEEP_FLAGS]],
                  env),
            timed("book", [[str(bin_dir / "jupyter-book"), "build", str(REPO), "-W", "-n", "--keep-going",
                            "--path-output", str(tmp / "book")]], env),
        ]
    one_thread = env | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    steps = [
        ("mini sweep, seed 0", [[vitcf, "sweep", "--preset", "mini", "--quiet", "--results-dir", mini, *SWEEP_FLAGS]],
         env),
        ("mini sweep, seeds 1 2", [[vitcf, "sweep", "--preset", "mini", "--seeds", "1", "2", "--forgetting-steps",
                                    "--quiet", "--results-dir", mini, *SWEEP_FLAGS]], env),
        ("mini design space", [[vitcf, "sweep", "--preset", "mini", "--grid", "design", "--quiet",
                                "--results-dir", mini, *SWEEP_FLAGS]], env),
        ("mini analyses", [[vitcf, "analyse", "--preset", "mini", "--only", only, "--quiet", "--results-dir", mini]
                           for only in ("reversibility", "interpolation")], one_thread),
    ]
    return [_timed(*step) for step in steps[skip:]]


def axis_runs_recorded(folder: Path, job: str = "axes") -> dict:
    """How many runs an axis job plans, and how many of them `folder` already holds valid records of
    (those it skips, so the time covers the others only)."""
    from vitcf.engine import records
    from vitcf.engine.sweep import plan_sweep

    runs = [run for grid, seeds in AXIS_JOBS[job]
            for run in plan_sweep(JOB_PRESET[job], grid=grid, seeds=seeds, results_dir=folder, device="cpu")]
    paths = {run.record for run in runs}
    recorded = []
    for path in paths:
        try:
            records.check(path)
            recorded.append(path.stem)
        except (OSError, ValueError):
            pass
    return {"planned": len(paths), "recorded_before": sorted(recorded)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights-dir", help="folder holding mini.safetensors (default: the package's)")
    weights.add_argument("--stand-in", action="store_true", help="time with a random-init mini backbone")
    parser.add_argument("--job", choices=tuple(TARGETS), default="book", help="which make target to time")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/<job>_budget.json")
    parser.add_argument("--results-root", default=None, type=Path,
                        help="run into this results root (e.g. results) and keep the records, instead of a temporary "
                             "folder; it must hold no mini record yet, except, for --job extended, those the book "
                             "job's timed run made there (its seed-0 sweep time is then counted, not re-run)")
    parser.add_argument("--keep-timed", nargs="+", default=[], metavar="STEP",
                        help="keep these steps' timings from the job's budget record instead of running them again "
                             "(e.g. 'glyphs schedule axis' when only the rate axis changed)")
    args = parser.parse_args()
    out = args.out or str(REPO / "benchmarks" / "results" / f"{args.job}_budget.json")
    kept = kept_steps(args.job, args.keep_timed, Path(out))

    import torch

    from vitcf.base.env import environment
    from vitcf.base.io import write_json
    from vitcf.model.backbones import WEIGHTS_ENV, create_backbone, pretrained_weights_path
    from vitcf.model.checkpoints import save_state_dict, sha256

    bin_dir = Path(sys.executable).parent
    earlier = []
    if args.results_root is not None:
        earlier = reused_steps(args.job, args.results_root.resolve())
    with tempfile.TemporaryDirectory(prefix=f"vitcf-{args.job}-budget-") as tmp:
        tmp = Path(tmp)
        results = args.results_root.resolve() if args.results_root is not None else tmp / "results"
        env = os.environ | {"VITCF_RESULTS": str(results)}
        env.pop("VITCF_BOOK_PRESET", None)
        if args.stand_in:  # with the card that `vitcf pretrain` would write (the sha256 is checked against it)
            stand_in = save_state_dict(create_backbone("mini"), tmp / "weights" / "mini.safetensors")
            write_json(tmp / "weights" / "mini.json", {"weights": {"file": stand_in.name,
                                                                         "sha256": sha256(stand_in)}})
            env[WEIGHTS_ENV] = str(tmp / "weights")
        elif args.weights_dir:
            env[WEIGHTS_ENV] = args.weights_dir
        if WEIGHTS_ENV in env:  # this process resolves the weights as the steps will
            os.environ[WEIGHTS_ENV] = env[WEIGHTS_ENV]
        weights = pretrained_weights_path("mini")  # fails here, naming the file, when there are none
        axis_runs = axis_runs_recorded(results / JOB_PRESET[args.job], args.job) if args.job in AXIS_JOBS else None
        steps = earlier + job_steps(args.job, bin_dir, results, tmp, env, skip=len(earlier), kept=kept)
    total = sum(step["seconds"] for step in steps)
    covered = TARGET_STEPS.get(args.job)
    targeted = total if covered is None else sum(step["seconds"] for step in steps if step["step"] in covered)
    target = TARGETS[args.job]
    summary = {
        "command": "python benchmarks/book_budget.py" + (f" --job {args.job}" if args.job != "book" else "")
                   + (" --stand-in" if args.stand_in else "")
                   + (" --keep-timed " + " ".join(f"'{name}'" for name in args.keep_timed) if args.keep_timed else ""),
        "job": f"make {args.job}",
        "weights": "random-init stand-in" if args.stand_in else os.path.relpath(weights, REPO),
        "results_root": None if args.results_root is None else shown(str(args.results_root.resolve())),
        "steps": steps,
        **({"axis_runs": axis_runs} if axis_runs is not None else {}),
        "total_seconds": round(total, 1),
        "target_seconds": target,
        "target_covers": "every step" if covered is None else ", ".join(covered),
        "targeted_seconds": round(targeted, 1),
        "within_target": targeted <= target,
        "environment": environment(torch.device("cpu")),
    }
    write_json(out, summary)
    print(f"make {args.job} equivalent: {total:.0f} s, of which {targeted:.0f} s under the target ({target} s: "
          f"{'met' if summary['within_target'] else 'NOT met'}); record: {out}")
    return 0 if summary["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
