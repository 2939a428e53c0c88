"""Run records: one JSON file per run, written atomically (`vitcf.base.io`), with everything needed to trust it.

A record holds the fully resolved configuration, the exact trainable count, the metrics, timings,
the device, library versions and the git commit. A run record's fields are stated once, as the typed
`vitcf.engine.record.RunRecord`; the other kinds' fields the book reads are listed here (`REQUIRED`).

A record is trusted only once it is valid (`check`): it parses, carries this code's schema version
where its kind has one, and holds every field the book reads, each of its type. `scan` sorts a folder's
records into valid ones and invalid ones with the reason; `move_aside` keeps an invalid record under
`invalid/` beside it, never deleting it, so the run can be made again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from vitcf.base import io
from vitcf.engine.record import RecordFieldError, RunRecord, type_problem

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
# The fields the book reads, per kind of record other than a run's (`RunRecord` states those): dotted
# paths into nested objects. A record lacking one cannot be shown, so it is invalid. "schema" is
# checked where a kind carries it (see `check`).
REQUIRED = {
    "baseline": ("key", "preset", "width", "num_classes", "bank_size", "query_size", "knn", "linear_head"),
    "analysis": ("analysis", "run", "preset", "method", "family", "label", "hparams", "seed", "baseline.knn"),
    "card": ("backbone", "architecture", "seed", "config.epochs", "config.batch_size", "data.images", "data.dataset",
             "environment.hardware", "environment.git_commit", "train_seconds", "images_per_second",
             "quality_bar.k", "quality_bar.met", "quality_bar.min_accuracy", "knn.pretrained", "knn.random_init",
             "knn.protocol", "weights.file", "weights.bytes", "weights.sha256", "created_at"),
}
# Each analysis's own results (vitcf.engine.analyses).
ANALYSIS_REQUIRED = {"reversibility": ("states",), "interpolation": ("points",)}
# What the book computes with must also be of the right type (`vitcf.engine.record.TYPES`).
TYPED = {
    "baseline": {"preset": "text", "width": "count", "num_classes": "count", "bank_size": "count",
                 "query_size": "count", "knn": "scores", "linear_head": "percent"},
    "analysis": {"run": "text", "label": "text", "seed": "count", "baseline.knn": "scores"},
    "card": {},
}
KINDS = ("run", *REQUIRED)


class InvalidRecordError(ValueError):
    """A record exists but cannot be trusted: it does not parse, has another schema version, or lacks
    a field the book reads. `path` and `reason` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"invalid record {self.path}: {reason}")


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
    """Why `record` (parsed JSON) of `kind` cannot be trusted, or None when it is valid: a run record
    through `RunRecord.from_dict`, another kind through its `REQUIRED` and `TYPED` fields."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; allowed: {', '.join(KINDS)}")
    if not isinstance(record, dict):
        return f"holds a JSON {type(record).__name__}, not an object"
    if "schema" in record or kind == "run":
        if record.get("schema") != SCHEMA:
            return f"schema version {record.get('schema')!r}, this code reads version {SCHEMA}"
    if kind == "run":
        try:
            RunRecord.from_dict(record)
        except RecordFieldError as err:
            return str(err)
        return None
    required = REQUIRED[kind] + (ANALYSIS_REQUIRED.get(record.get("analysis"), ()) if kind == "analysis" else ())
    missing = _missing(record, required)
    if missing:
        return f"lacks field(s) the book reads: {', '.join(missing)}"
    for field, expected in TYPED[kind].items():
        if (found := type_problem(_at(record, field), expected)) is not None:
            return f"field {field}: {found}"
    return None


def check(path: str | os.PathLike, kind: str | None = None) -> dict:
    """The record at `path`, once valid (see `problem`); `InvalidRecordError` naming the file and the
    reason otherwise. `kind` defaults to `kind_of(path)`; FileNotFoundError if there is no file."""
    try:
        record = io.read_json(path)
    except io.InvalidJSONError as err:
        raise InvalidRecordError(path, err.reason) from None
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


