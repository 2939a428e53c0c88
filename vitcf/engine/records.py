"""Run records: one JSON file per run, written atomically, with everything needed to trust it.

A record holds the fully resolved configuration, the exact trainable count, the metrics, timings,
the device, library versions and the git commit. It is written to a temporary file and renamed into
place, so a crash leaves either the whole record or none; a write that fails (disk full, read-only
folder) leaves the previous file as it was and raises `RecordWriteError` naming the file and the cause.
Files get the permissions of the user's umask, like any file the user writes.

A record is trusted only once it is valid (`check`): it parses, carries this code's schema version
where its kind has one, and holds every field the book reads (`REQUIRED`). `scan` sorts a folder's
records into valid ones and invalid ones with the reason; `move_aside` keeps an invalid record under
`invalid/` beside it, never deleting it, so the run can be made again.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from collections.abc import Callable
from pathlib import Path

import torch

from vitcf.model.checkpoints import atomic_path

REPO = Path(__file__).resolve().parents[2]  # the checkout records are made in and read from
# Where runs write by default: the checkout's results/ (where the book reads), from whatever folder a
# command starts; an installed package without a checkout writes under the current folder.
RESULTS_ROOT = REPO / "results" if (REPO / "_toc.yml").is_file() else Path("results")


def portable(path: str | os.PathLike) -> str:
    """`path` as a record stores it: relative to the repository when it lies inside it (so a record
    reads the same on every machine), else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO).as_posix()
    except ValueError:
        return str(resolved)


def located(path: str | os.PathLike) -> Path:
    """A path read from a record: a relative one is relative to the repository (`portable`)."""
    path = Path(path)
    return path if path.is_absolute() else REPO / path
# The run record's format version (the record's "schema" key; vitcf.engine.study writes it). A record of
# another version is invalid: the book would misread it.
SCHEMA = 1
INVALID_DIR = "invalid"  # where `move_aside` keeps invalid records, inside their folder
# The fields the book reads, per kind of record (dotted paths into nested objects). A record lacking
# one cannot be shown, so it is invalid. "schema" is checked where a kind carries it (see `check`).
REQUIRED = {
    "run": ("schema", "run", "preset", "method", "family", "label", "hparams", "seed", "trainable_params",
            "config.selection", "config.train.lr", "metrics.new_domain_accuracy", "metrics.knn",
            "metrics.knn_baseline", "metrics.linear_head.after", "metrics.linear_head.baseline",
            "timings.train_seconds", "timings.eval_seconds", "timings.total_seconds", "timings.images_per_second",
            "environment.hardware"),
    "baseline": ("key", "preset", "width", "num_classes", "bank_size", "query_size", "knn", "linear_head"),
    "analysis": ("analysis", "run", "preset", "method", "family", "label", "hparams", "seed", "baseline.knn"),
    "card": ("backbone", "architecture", "seed", "config.epochs", "config.batch_size", "data.images", "data.dataset",
             "environment.hardware", "environment.git_commit", "train_seconds", "images_per_second",
             "quality_bar.k", "quality_bar.met", "quality_bar.min_accuracy", "knn.pretrained", "knn.random_init",
             "knn.protocol", "weights.file", "weights.bytes", "weights.sha256", "created_at"),
}
# Each analysis's own results (vitcf.engine.analyses).
ANALYSIS_REQUIRED = {"reversibility": ("states",), "interpolation": ("points",)}
# What the book computes with must also be of the right type: a number that is not one would pass the
# presence check above and fail (or mislead) only when a page draws it. Types: "percent" (a finite
# number in [0, 100]), "nonnegative" (finite, >= 0), "count" (an integer >= 0), "scores" (k -> percent, at
# least one), "text".
TYPED = {
    "run": {"run": "text", "preset": "text", "method": "text", "family": "text", "label": "text", "seed": "count",
            "trainable_params": "count", "config.train.lr": "nonnegative", "metrics.new_domain_accuracy": "percent",
            "metrics.knn": "scores", "metrics.knn_baseline": "scores", "metrics.linear_head.after": "percent",
            "metrics.linear_head.baseline": "percent", "timings.train_seconds": "nonnegative",
            "timings.eval_seconds": "nonnegative", "timings.total_seconds": "nonnegative",
            "timings.images_per_second": "nonnegative"},
    "baseline": {"preset": "text", "width": "count", "num_classes": "count", "bank_size": "count",
                 "query_size": "count", "knn": "scores", "linear_head": "percent"},
    "analysis": {"run": "text", "label": "text", "seed": "count", "baseline.knn": "scores"},
    "card": {},
}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _type_problem(value, kind: str) -> str | None:
    """Why `value` is not of the record field type `kind` (see TYPED), or None."""
    if kind == "text":
        return None if isinstance(value, str) else f"{value!r} is not text"
    if kind == "count":
        return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else \
            f"{value!r} is not an integer >= 0"
    if kind == "nonnegative":
        return None if _finite(value) and value >= 0 else f"{value!r} is not a finite number >= 0"
    if kind == "percent":
        return None if _finite(value) and 0 <= value <= 100 else f"{value!r} is not a percentage in [0, 100]"
    if kind == "scores":
        if not isinstance(value, dict) or not value:
            return f"{value!r} is not a mapping of k to a percentage"
        bad = {k: v for k, v in value.items() if _type_problem(v, "percent")}
        return f"{bad!r} are not percentages in [0, 100]" if bad else None
    raise ValueError(f"unknown field type {kind!r}")
_LIBRARIES = ("vitcf", "torch", "torchvision", "timm", "peft", "numpy")


def config_hash(config: dict) -> str:
    """A short, stable digest of a configuration (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_name(method: str, hparams: dict, seed: int) -> str:
    """A readable file stem: 'lora_r8_seed0', 'top_k_k3_seed1', 'full_seed0'."""
    parts = [method, *(f"{k}{v}" for k, v in sorted(hparams.items())), f"seed{seed}"]
    return "_".join(str(p).replace("/", "-") for p in parts)


class RecordWriteError(OSError):
    """A record could not be written (disk full, read-only folder, ...): the message names the file
    and the cause; the previous file, if any, is as it was, and no partial file is left."""


class InvalidRecordError(ValueError):
    """A record exists but cannot be trusted: it does not parse, has another schema version, or lacks
    a field the book reads. `path` and `reason` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"invalid record {self.path}: {reason}")


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write `data` as JSON atomically: temp file in the same folder, fsync, rename.

    Raises `RecordWriteError` (an OSError with the same errno) naming `path` when the write fails.
    """
    try:
        text = json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    except ValueError as err:  # NaN or an infinity: JSON has no such number, and a browser rejects the file
        raise ValueError(f"cannot write {path}: {err} ({_non_finite(data)}); nothing was written") from None
    try:
        with atomic_path(path) as tmp, open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except RecordWriteError:
        raise
    except OSError as err:
        cause = err.strerror or str(err)
        raise RecordWriteError(err.errno or errno.EIO, f"cannot write {path}: {cause} (errno {err.errno}); "
                               f"the previous file, if any, is unchanged") from err
    return Path(path)


def _non_finite(data, where: str = "") -> str:
    """The dotted path of the first NaN or infinite number in `data`, for the error message."""
    if isinstance(data, float) and not math.isfinite(data):
        return f"{where or 'the value'} is {data}"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return ""


def check_writable(folder: str | os.PathLike) -> None:
    """Fail now, naming `folder`, when records cannot be written there: before any compute is spent."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vitcf-write-check-"):
            pass
    except OSError as err:
        raise RecordWriteError(err.errno or errno.EACCES, f"cannot write records in {folder}: "
                               f"{err.strerror or err} (errno {err.errno}); nothing was computed") from err


def read_json(path: str | os.PathLike) -> dict:
    """A JSON file's content; a file that does not parse raises `InvalidRecordError` naming it."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidRecordError(path, f"not valid JSON ({err}; {len(text.encode())} bytes, truncated?)") from None


def kind_of(path: str | os.PathLike) -> str:
    """The kind of record a file holds, from its place: "baseline", "analysis" (under analyses/) or
    "run". A weights card is never guessed (a run kept with --keep-checkpoint has weights beside it
    too): pass kind="card"."""
    path = Path(path)
    if path.name == "baseline.json":
        return "baseline"
    if path.parent.name == "analyses":
        return "analysis"
    return "run"


_ABSENT = object()


def _at(record: object, field: str):
    """The value at the dotted path `field` of `record`, or `_ABSENT`."""
    for part in field.split("."):
        if not isinstance(record, dict) or part not in record:
            return _ABSENT
        record = record[part]
    return record


def _missing(record: dict, fields: tuple[str, ...]) -> list[str]:
    return [field for field in fields if _at(record, field) is _ABSENT]


def problem(record: object, kind: str = "run") -> str | None:
    """Why `record` (parsed JSON) of `kind` cannot be trusted, or None when it is valid."""
    if kind not in REQUIRED:
        raise ValueError(f"unknown record kind {kind!r}; allowed: {', '.join(REQUIRED)}")
    if not isinstance(record, dict):
        return f"holds a JSON {type(record).__name__}, not an object"
    if "schema" in record or kind == "run":
        if record.get("schema") != SCHEMA:
            return f"schema version {record.get('schema')!r}, this code reads version {SCHEMA}"
    required = REQUIRED[kind] + (ANALYSIS_REQUIRED.get(record.get("analysis"), ()) if kind == "analysis" else ())
    missing = _missing(record, required)
    if missing:
        return f"lacks field(s) the book reads: {', '.join(missing)}"
    for field, expected in TYPED[kind].items():
        if (found := _type_problem(_at(record, field), expected)) is not None:
            return f"field {field}: {found}"
    return None


def check(path: str | os.PathLike, kind: str | None = None) -> dict:
    """The record at `path`, once valid (see `problem`); `InvalidRecordError` naming the file and the
    reason otherwise. `kind` defaults to `kind_of(path)`; FileNotFoundError if there is no file."""
    record = read_json(path)
    reason = problem(record, kind or kind_of(path))
    if reason is not None:
        raise InvalidRecordError(path, reason)
    return record


def scan(folder: str | os.PathLike, kind: str = "run") -> tuple[list[dict], list[tuple[Path, str]]]:
    """The records of `kind` in `folder` by file name: (valid records, [(path, reason)] of invalid ones).

    Run records are `<folder>/*.json` less the baseline and failed runs' `.error.json` files; analysis
    records are `<folder>/*.json` of an analyses folder. Hidden temp files and the records moved
    aside under `invalid/` are not looked at. Never raises for a bad record; a missing folder is empty.
    """
    folder = Path(folder)
    valid: list[dict] = []
    invalid: list[tuple[Path, str]] = []
    if not folder.is_dir():
        return valid, invalid
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith(".") or path.name.endswith(".error.json"):
            continue
        if kind == "run" and path.name == "baseline.json":
            continue
        try:
            valid.append(check(path, kind))
        except InvalidRecordError as err:
            invalid.append((path, err.reason))
        except OSError as err:  # vanished or unreadable between listing and reading
            invalid.append((path, f"cannot be read ({err.strerror or err})"))
    return valid, invalid


def read_records(folder: str | os.PathLike) -> list[dict]:
    """Every valid run record in `folder`, by name (see `scan`, which also names the invalid ones)."""
    return scan(folder, "run")[0]


def move_aside(path: str | os.PathLike, reason: str) -> Path:
    """Keep the invalid record at `path` as `<folder>/invalid/<stem>.<UTC time>.json` (never deleted),
    with the reason beside it in `<same>.reason.txt`; return where it went."""
    path = Path(path)
    aside_dir = path.parent / INVALID_DIR
    aside_dir.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = aside_dir / f"{path.stem}.{stamp}{path.suffix}"
    os.replace(path, aside)
    try:
        aside.with_name(aside.name + ".reason.txt").write_text(f"{path}: {reason}\n")
    except OSError:
        pass  # the record is kept either way; the reason was reported by the caller
    return aside


def existing(path: str | os.PathLike, kind: str | None = None,
             on_invalid: Callable[[str], None] | None = None) -> dict | None:
    """The valid record at `path`, or None: there is none, or it was invalid and has been moved aside
    (`move_aside`; `on_invalid` gets a message naming it, the reason and where it went). For code
    that skips work whose record exists (`vitcf run`, `vitcf analyse`): an invalid one is made again."""
    try:
        return check(path, kind)
    except FileNotFoundError:
        return None
    except InvalidRecordError as err:
        aside = move_aside(path, err.reason)
        if on_invalid is not None:
            on_invalid(f"{err}; moved aside to {aside}")
        return None


def git_commit() -> str | None:
    """The checkout's commit, suffixed '-dirty' when tracked files differ; None outside git."""
    root = Path(__file__).resolve().parents[2]
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
