"""The mini preset's commands timed on one GPU: DINO pre-training and one run per method of the core grid.

    python benchmarks/gpu_timings.py [--device cuda] [--pretrain-timeout 240] [--run-timeout 120] [--out FILE]
    python benchmarks/gpu_timings.py --smoke      # a CPU wiring check: smoke preset, one run, no figures

Each command is the project's own, run in a subprocess as a user runs it (`vitcf pretrain --preset mini`,
`vitcf run --preset mini --method ...`), writing into a scratch folder: the shipped weights and the
committed records are never touched (the runs fine-tune the shipped backbone; the pre-training's
weights are thrown away). Recorded per command: its wall time, and from what it writes, the
pre-training's images/s and each run's own timings (training images/s, training and evaluation
seconds). A command cut off by its timeout is recorded as such, with how far it got (the
pre-training's per-epoch checkpoint says how many epochs it finished, in how many seconds).

The JSON document is written atomically to --out (default benchmarks/results/gpu_timings.json;
gpu_timings_smoke.json with --smoke). Exit status: 0 when every command finished, 1 when one failed
or timed out, 2 for bad arguments or no CUDA device (nothing is written then).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vitcf.base import env, io
from vitcf.engine.presets import get_preset

RESULTS = Path(__file__).resolve().parent / "results"
VITCF = [sys.executable, "-m", "vitcf.engine.cli"]


def timed(command: list[str], timeout: float, log) -> dict:
    """Wall seconds of `command` and how it ended ("finished", "failed" or "timed out")."""
    print("$", shlex.join(command), file=log, flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        status = "finished" if done.returncode == 0 else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    return {"command": shlex.join(["vitcf", *command[len(VITCF):]]), "wall_seconds": time.perf_counter() - started,
            "status": status}


def time_pretrain(preset: str, device: str, scratch: Path, timeout: float, extra: list[str], log) -> dict:
    out = scratch / "weights" / f"{preset}.safetensors"
    entry = timed([*VITCF, "pretrain", "--preset", preset, "--device", device, "--out", str(out), "--quiet", *extra],
                  timeout, log)
    card = out.with_suffix(".json")
    if card.is_file():
        c = io.read_json(card)
        entry |= {"epochs": c["config"]["epochs"], "images": c["data"]["images"],
                  "train_seconds": c["train_seconds"], "images_per_second": c["images_per_second"],
                  "knn_k20": c["knn"]["pretrained"].get("20"), "environment": c["environment"]}
    else:  # cut off: the checkpoint of the last finished epoch says how far it got
        resume = out.with_name(out.stem + ".resume.pt")
        if resume.is_file():
            state = torch.load(resume, map_location="cpu", weights_only=False)
            entry |= {"epochs_finished": state["epoch"], "train_seconds": state["seconds"]}
    return entry


def time_runs(preset: str, device: str, scratch: Path, timeout: float, log, limit: int | None = None) -> list[dict]:
    folder = scratch / "results"
    entries = []
    first = {}  # one run per method of the core grid: its first grid point
    for point in get_preset(preset).grid:
        first.setdefault(point.method, point)
    for number, point in enumerate(list(first.values())[:limit]):
        options = [f"--{name}={value}" for name, value in point.hparams.items()]
        entry = timed([*VITCF, "run", "--preset", preset, "--method", point.method, *options, "--seed", "0",
                       "--device", device, "--results-dir", str(folder), "--quiet"], timeout, log)
        entry |= {"method": point.method, "hparams": point.hparams,
                  "includes_baseline": number == 0}  # the first run also probes the un-fine-tuned backbone
        made = sorted(folder.glob(f"{point.method}*_seed0.json"), key=lambda p: p.stat().st_mtime)
        if made and entry["status"] == "finished":
            record = io.read_json(made[-1])
            entry |= {"label": record["label"], "timings": record["timings"],
                      "new_domain_accuracy": record["metrics"]["new_domain_accuracy"]}
        entries.append(entry)
    return entries


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="check the wiring on the CPU with the smoke preset")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (cpu only with --smoke)")
    parser.add_argument("--pretrain-timeout", type=float, default=240.0, help="seconds (default 240)")
    parser.add_argument("--run-timeout", type=float, default=120.0, help="seconds per run (default 120)")
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/results/gpu_timings[_smoke].json)")
    args = parser.parse_args(argv)
    if min(args.pretrain_timeout, args.run_timeout) <= 0:
        parser.error(f"timeouts must be positive seconds, got {args.pretrain_timeout} and {args.run_timeout}")
    if args.smoke:
        args.device = "cpu"
    elif not args.device.startswith("cuda"):
        parser.error(f"--device {args.device!r}: this benchmark times a GPU; allowed: cuda, cuda:N (cpu with --smoke)")
    elif not torch.cuda.is_available():
        print("gpu_timings: no CUDA device here; run it on a GPU machine (or --smoke on a CPU)", file=sys.stderr)
        return 2
    preset = "smoke" if args.smoke else "mini"
    out = args.out or RESULTS / ("gpu_timings_smoke.json" if args.smoke else "gpu_timings.json")
    device = torch.device(args.device)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="vitcf-gpu-") as scratch:
        scratch = Path(scratch)
        extra = ["--epochs", "1", "--set", "limit=256"] if args.smoke else []
        pretrain = time_pretrain(preset, args.device, scratch, args.pretrain_timeout, extra, sys.stderr)
        runs = time_runs(preset, args.device, scratch, args.run_timeout, sys.stderr, limit=1 if args.smoke else None)
    doc = {
        "benchmark": "gpu_timings", "smoke": args.smoke, "date": started, "preset": preset,
        "command": shlex.join(["python", "benchmarks/gpu_timings.py", *argv]),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "environment": env.environment(device),
        "pretrain": pretrain, "runs": runs,
        "note": "each command in a fresh process (start-up and data loading included); the runs fine-tune the "
                "shipped backbone with the preset's protocol, seed 0, into a scratch folder",
    }
    io.write_json(out, doc)
    for entry in (pretrain, *runs):
        print(f"{entry['wall_seconds']:8.1f} s  {entry['status']:<24} {entry['command']}", file=sys.stderr)
    print(f"written to {out}", file=sys.stderr)
    return 0 if all(e["status"] == "finished" for e in (pretrain, *runs)) else 1


if __name__ == "__main__":
    sys.exit(main())
