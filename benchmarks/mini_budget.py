"""Wall time of the whole mini study on this machine: the baseline probe plus every paper row.

    python benchmarks/mini_budget.py [--checkpoint PATH | --stand-in] [--seed 0] [--out FILE]

Runs in a fresh temporary results folder (nothing is reused) and prints one line per run, then the
total against the 10-minute budget of the mini preset. The summary is also written as JSON
(default: benchmarks/results/mini_budget.json), which the book's reproducibility chapter reads. Until the mini backbone ships, `--stand-in`
uses a randomly initialised mini backbone: the timing is the same (it does not depend on the
weights), the accuracies are meaningless.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from vitcf.model.backbones import create_backbone
from vitcf.model.checkpoints import save_state_dict
from vitcf.base import env, io
from vitcf.engine.presets import get_preset
from vitcf.engine.study import execute, plan_run

BUDGET_SECONDS = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="mini backbone weights (default: the shipped file)")
    weights.add_argument("--stand-in", action="store_true", help="time with a random-init mini backbone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "mini_budget.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = args.checkpoint
        if args.stand_in:
            torch.manual_seed(0)
            checkpoint = save_state_dict(create_backbone("mini"), folder / "stand-in-mini.safetensors")
        started = time.perf_counter()
        rows = []
        for point in get_preset("mini").grid:
            plan = plan_run("mini", point.method, point.hparams, args.seed, results_dir=folder / "runs",
                            checkpoint=checkpoint, device="cpu")
            record = execute(plan, progress=False)
            rows.append({"run": record["label"], "seconds": round(record["timings"]["total_seconds"], 1),
                         "train_images_per_second": round(record["timings"]["images_per_second"])})
            print(f"{record['label']:<16} {record['timings']['total_seconds']:6.1f} s  "
                  f"({record['timings']['images_per_second']:.0f} training images/s)", flush=True)
        total = time.perf_counter() - started
        baseline = json.loads((folder / "runs" / "baseline.json").read_text())["seconds"]
    summary = {
        "device": "cpu", "threads": torch.get_num_threads(), "baseline_seconds": round(baseline, 1),
        "runs": rows, "total_seconds": round(total, 1), "budget_seconds": BUDGET_SECONDS,
        "weights": "random stand-in" if args.stand_in else str(checkpoint or "shipped"),
        "command": "python benchmarks/mini_budget.py " + " ".join(sys.argv[1:]),
        "environment": env.environment(torch.device("cpu")),
    }
    io.write_json(args.out, summary)
    print(json.dumps(summary, indent=2))
    print(f"total {total:.0f} s for the baseline and {len(rows)} runs; budget {BUDGET_SECONDS} s: "
          f"{'within' if total <= BUDGET_SECONDS else 'OVER'}")
    return 0 if total <= BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
