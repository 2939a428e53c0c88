"""Run records: one JSON file per run, written atomically, with everything needed to trust it.

A record holds the fully resolved configuration, the exact trainable count, the metrics, timings,
the device, library versions and the git commit. It is written to a temporary file and renamed into
place, so a crash leaves either the whole record or none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from .checkpoints import atomic_path

RESULTS_ROOT = Path("results")
_LIBRARIES = ("vitcf", "torch", "torchvision", "timm", "peft", "numpy")


def config_hash(config: dict) -> str:
    """A short, stable digest of a configuration (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_name(method: str, hparams: dict, seed: int) -> str:
    """A readable file stem: 'lora_r8_seed0', 'top_k_k3_seed1', 'full_seed0'."""
    parts = [method, *(f"{k}{v}" for k, v in sorted(hparams.items())), f"seed{seed}"]
    return "_".join(str(p).replace("/", "-") for p in parts)


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write `data` as JSON atomically: temp file in the same folder, fsync, rename."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def read_records(folder: str | os.PathLike) -> list[dict]:
    """Every run record in `folder`, by name: the baseline, failed runs' `.error.json` files and
    hidden temp files are excluded."""
    paths = sorted(Path(folder).glob("*.json"))
    return [read_json(p) for p in paths if p.name != "baseline.json" and not p.name.endswith(".error.json")]


def git_commit() -> str | None:
    """The checkout's commit, suffixed '-dirty' when tracked files differ; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """Where and with what a run happened."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{_cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return {
        "device": str(device),
        "hardware": hardware,
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": git_commit(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def records_frame(runs: list[dict], k: int = 20) -> "pandas.DataFrame":
    """One row per run record, the columns the book's tables and plots use.

    `k` picks the k-NN neighbourhood reported as the pre-training-domain accuracy (DINO's headline
    k is 20); every k is still available in the `knn_<k>` columns.
    """
    import pandas as pd

    rows = []
    for record in runs:
        metrics = record["metrics"]
        knn = {int(key): value for key, value in metrics["knn"].items()}
        base = {int(key): value for key, value in metrics["knn_baseline"].items()}
        if k not in knn:
            raise ValueError(f"record {record['run']} has no k-NN result for k={k}; it has k in {sorted(knn)}")
        row = {
            "run": record["run"], "preset": record["preset"], "method": record["method"],
            "family": record["family"], "label": record["label"],
            "hparams": json.dumps(record["hparams"], sort_keys=True), "seed": record["seed"],
            "trainable_params": record["trainable_params"],
            "new_domain_accuracy": metrics["new_domain_accuracy"],
            "pretrain_knn": knn[k], "pretrain_knn_baseline": base[k],
            "drop": base[k] - knn[k], "relative_drop": (base[k] - knn[k]) / base[k] if base[k] else 0.0,
            "linear_head_after": metrics["linear_head"]["after"],
            "linear_head_baseline": metrics["linear_head"]["baseline"],
            "selection": record["config"]["selection"],
            "train_seconds": record["timings"]["train_seconds"],
            "images_per_second": record["timings"]["images_per_second"],
        }
        row.update({f"knn_{key}": value for key, value in knn.items()})
        rows.append(row)
    return pd.DataFrame(rows)
