"""Wall time of `vitcf pretrain --preset mini` on this machine, against its targets (60 min; at most 2 h).

    python benchmarks/pretrain_budget.py [--run] [--card FILE] [--out FILE]

By default it reads the figures the command itself measured and wrote into the weights' card
(default: the shipped vitcf/weights/mini.json): the wall time of the call, the training seconds,
images per second and the machine. With `--run` it first runs the command into a temporary folder
(the shipped weights are left alone) and reads that card. Writes the summary as JSON (default:
benchmarks/results/pretrain_budget.json), which the book's reproducibility chapter reads. On CUDA
the same command trains in bf16 autocast; nothing requires it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS, LIMIT_SECONDS = 60 * 60, 2 * 60 * 60


def summarise(card: dict, source: str) -> dict:
    wall = card.get("wall_seconds") or card["train_seconds"]
    return {
        "command": "vitcf pretrain --preset mini",
        "card": source,
        "epochs": card["config"]["epochs"],
        "batch_size": card["config"]["batch_size"],
        "images": card["data"]["images"],
        "wall_seconds": round(wall, 1),
        "train_seconds": round(card["train_seconds"], 1),
        "images_per_second": round(card["images_per_second"], 1),
        "resumed_from_epoch": card.get("resumed_from_epoch", 0),
        "target_seconds": TARGET_SECONDS,
        "limit_seconds": LIMIT_SECONDS,
        "within_target": wall <= TARGET_SECONDS,
        "within_limit": wall <= LIMIT_SECONDS,
        "knn_k20": card["knn"]["pretrained"].get("20", card["knn"]["pretrained"].get(20)),
        "environment": card["environment"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run the command now (into a temporary folder)")
    parser.add_argument("--card", type=Path, default=REPO / "vitcf" / "weights" / "mini.json")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pretrain_budget.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vitcf-pretrain-budget-") as tmp:
        card_path = args.card
        if args.run:
            out = Path(tmp) / "mini.safetensors"
            vitcf = Path(sys.executable).with_name("vitcf")
            subprocess.run([str(vitcf), "pretrain", "--preset", "mini", "--out", str(out)], check=True)
            card_path = out.with_suffix(".json")
        if not card_path.is_file():
            raise SystemExit(f"pretrain_budget: no card at {card_path}; run `vitcf pretrain --preset mini` or --run")
        card = json.loads(card_path.read_text())
        source = "a run made by this script" if args.run else str(card_path)
        summary = summarise(card, source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"vitcf pretrain --preset mini: {summary['wall_seconds'] / 60:.1f} min wall "
          f"({summary['images_per_second']:.0f} images/s while training) on {summary['environment']['hardware']}; "
          f"target 60 min {'met' if summary['within_target'] else 'NOT met'}, "
          f"limit 2 h {'met' if summary['within_limit'] else 'NOT met'}; record: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
