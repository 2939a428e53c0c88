"""Wall time of the main job (`make book` from an installed environment) against its 15-minute target.

    python benchmarks/book_budget.py [--weights-dir DIR | --stand-in] [--out FILE]

Runs the same three steps as `make book`, in a fresh temporary folder so nothing committed is
reused: `vitcf params`, `vitcf sweep --preset mini` (every grid point, through papermill), and the
strict book build on those records (VITCF_RESULTS pointing at them). Prints each step's time and
the total, and writes them as JSON (default: benchmarks/results/book_budget.json), which the
book's reproducibility chapter reads.

Until the mini backbone ships, `--stand-in` times the job with a randomly initialised mini backbone
placed in a temporary weights folder (VITCF_WEIGHTS_DIR): the time does not depend on the weights'
values; the book built that way shows meaningless accuracies and is thrown away.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 15 * 60


def timed(name: str, command: list[str], env: dict) -> dict:
    print(f"-> {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"book_budget: {name} failed (exit {done.returncode}) after {seconds:.0f} s:\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"   {seconds:.1f} s", flush=True)
    return {"step": name, "command": " ".join(command), "seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights-dir", help="folder holding mini.safetensors (default: the package's)")
    weights.add_argument("--stand-in", action="store_true", help="time with a random-init mini backbone")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "book_budget.json"))
    args = parser.parse_args()

    import torch

    from vitcf import records
    from vitcf.backbones import WEIGHTS_ENV, create_backbone, pretrained_weights_path
    from vitcf.checkpoints import save_state_dict

    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="vitcf-book-budget-") as tmp:
        tmp = Path(tmp)
        env = os.environ | {"VITCF_RESULTS": str(tmp / "results")}
        env.pop("VITCF_BOOK_PRESET", None)
        if args.stand_in:
            save_state_dict(create_backbone("mini"), tmp / "weights" / "mini.safetensors")
            env[WEIGHTS_ENV] = str(tmp / "weights")
        elif args.weights_dir:
            env[WEIGHTS_ENV] = args.weights_dir
        if WEIGHTS_ENV in env:  # this process resolves the weights as the steps will
            os.environ[WEIGHTS_ENV] = env[WEIGHTS_ENV]
        weights = pretrained_weights_path("mini")  # fails here, naming the file, when there are none
        steps = [
            timed("params", [str(bin_dir / "vitcf"), "params"], env),
            timed("mini sweep", [str(bin_dir / "vitcf"), "sweep", "--preset", "mini", "--quiet",
                                 "--results-dir", str(tmp / "results" / "mini")], env),
            timed("book", [str(bin_dir / "jupyter-book"), "build", str(REPO), "-W", "-n", "--keep-going",
                           "--path-output", str(tmp / "book")], env),
        ]
    total = sum(step["seconds"] for step in steps)
    summary = {
        "command": "python benchmarks/book_budget.py" + (" --stand-in" if args.stand_in else ""),
        "weights": "random-init stand-in" if args.stand_in else str(weights),
        "steps": steps,
        "total_seconds": round(total, 1),
        "target_seconds": TARGET_SECONDS,
        "within_target": total <= TARGET_SECONDS,
        "environment": records.environment(torch.device("cpu")),
    }
    records.write_json(args.out, summary)
    print(f"make book equivalent: {total:.0f} s (target {TARGET_SECONDS} s: "
          f"{'met' if summary['within_target'] else 'NOT met'}); record: {args.out}")
    return 0 if summary["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
