"""The recipe search behind the shipped mini backbone: short DINO runs of candidate recipes, side by side.

    python benchmarks/pretrain_recipes.py [--only NAME ...] [--jobs 2] [--out FILE]

Each candidate is the `mini` pre-training preset with a few settings changed (CANDIDATES below),
trained on the first `--limit` Fashion-MNIST train images for `--epochs` epochs with its own full
schedule, then scored by the learning curve's k-NN (k=20, T=0.07; bank: the first 10,000 train
images, queries: the first 2,000 test images). Candidates run `--jobs` at a time, one torch thread
each. The rows are appended to the record (default: vitcf/weights/mini.recipes.json), which
`vitcf pretrain --preset mini` copies into the weights' card, and which says which recipe was chosen
and why (`--choose NAME --why TEXT`). A short run ranks recipes early in training only; the record
says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_OUT = Path(__file__).parent.parent / "vitcf" / "weights" / "mini.recipes.json"
BASE = {"batch_size": 256, "teacher_momentum": [0.99, 1.0], "local_views": 4, "base_lr": 1e-3}
CANDIDATES = {
    "A: lr 1e-3, 4 local crops": {**BASE},
    "B: lr 3e-3": {**BASE, "base_lr": 3e-3},
    "C: no local crops": {**BASE, "local_views": 0},
    "D: teacher T 0.07, 4096 prototypes": {**BASE, "teacher_temp": 0.07, "head_out": 4096},
}

CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
from vitcf.engine.pretrain import get_pretrain_config, pretrain
overrides, limit, epochs = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = get_pretrain_config("mini", limit=limit, epochs=epochs, **overrides)
started = time.perf_counter()
result = pretrain(config, device=torch.device("cpu"), progress=False)
print(json.dumps({"curve": result.curve, "images_per_second": result.images_per_second,
                  "seconds": time.perf_counter() - started}))
"""


def run(name: str, overrides: dict, limit: int, epochs: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(overrides), str(limit), str(epochs)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"name": name, "overrides": overrides, "error": done.stderr.strip().splitlines()[-1:]}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    row = {"name": name, "overrides": overrides, "limit": limit, "epochs": epochs, **out,
           "knn": out["curve"][-1]["knn"]}
    print(f"{name:<40} k-NN {row['knn']:5.2f}  ({row['images_per_second']:.0f} images/s on one thread, "
          f"{row['seconds'] / 60:.1f} min)", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=None, choices=sorted(CANDIDATES), metavar="NAME")
    parser.add_argument("--limit", type=int, default=15_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--choose", default=None, help="record this candidate as the chosen recipe")
    parser.add_argument("--why", default=None, help="why it was chosen (with --choose)")
    args = parser.parse_args()
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"trials": []}
    names = args.only or ([] if args.choose else list(CANDIDATES))
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda n: run(n, CANDIDATES[n], args.limit, args.epochs), names))
    record["trials"] = [t for t in record["trials"] if t["name"] not in names] + rows
    record["protocol"] = ("each candidate: the mini preset with the settings shown, trained on the first LIMIT "
                          "Fashion-MNIST train images for EPOCHS epochs (its own warm-up and cosine schedule), "
                          "one torch thread; scored by weighted k-NN (k=20, T=0.07) with the first 10,000 train "
                          "images as bank and the first 2,000 test images as queries")
    if args.choose:
        record["chosen"] = {"name": args.choose, "why": args.why}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{len(rows)} candidates in {(time.perf_counter() - started) / 60:.1f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
