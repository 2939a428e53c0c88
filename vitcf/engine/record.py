"""The run record, typed: one dataclass per JSON object of a run's record, the one statement of its fields.

    RunRecord (the run: names, hparams, seed, trainable count)
      .config  RunConfig   (the resolved protocol, schedule, selection, starting weights)
      .metrics Metrics     (new-domain accuracy, every probe of the pre-training domain)
               .linear_head LinearHead, .instance InstanceScores
      .timings Timings, .environment Environment

`vitcf.engine.study.execute` builds a record from these classes and writes `to_dict()`; a record read
back is trusted once `from_dict` accepts it: every field the book reads is there (a record lacking one
cannot be shown) and every field present is of its type (a number that is not one would pass a presence
check and fail, or mislead, only when a page draws it). Each field's type is one of `TYPES`, a record
class (a nested object), and may be optional (absent from older records) or nullable (JSON null).
Keys a class does not name are left alone: the book reads records as dicts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from vitcf.base.checks import IntRange, NumberRange


class _Absent:
    """The value of an optional field a record does not hold (left out of `to_dict`)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


class RecordFieldError(ValueError):
    """A record lacks fields it must hold, or holds one of the wrong type; the message names them."""


def type_problem(value, kind: str) -> str | None:
    """Why `value` is not of the record field type `kind` (one of `TYPES`), or None."""
    if kind not in TYPES:
        raise ValueError(f"unknown field type {kind!r}; allowed: {', '.join(TYPES)}")
    return TYPES[kind](value)


def _scores(value) -> str | None:
    if not isinstance(value, dict) or not value:
        return f"{value!r} is not a mapping of k to a percentage"
    bad = {k: v for k, v in value.items() if type_problem(v, "percent")}
    return f"{bad!r} are not percentages in [0, 100]" if bad else None


# The field types: each says why a value is not of it, or None. "percent" is a finite number in
# [0, 100], "nonnegative" finite and >= 0, "count" an integer >= 0, "scores" k -> percent (at least one).
TYPES = {
    "text": lambda v: None if isinstance(v, str) else f"{v!r} is not text",
    "count": lambda v: None if IntRange(0).admits(v) else f"{v!r} is not an integer >= 0",
    "number": lambda v: None if NumberRange(-math.inf).admits(v) else f"{v!r} is not a finite number",
    "nonnegative": lambda v: None if NumberRange(0).admits(v) else f"{v!r} is not a finite number >= 0",
    "percent": lambda v: None if NumberRange(0, 100).admits(v) else f"{v!r} is not a percentage in [0, 100]",
    "scores": _scores,
    "flag": lambda v: None if isinstance(v, bool) else f"{v!r} is not true or false",
    "mapping": lambda v: None if isinstance(v, dict) else f"{v!r} is not an object",
    "list": lambda v: None if isinstance(v, list) else f"{v!r} is not a list",
}


def typed(kind: str | type, *, optional: bool = False, nullable: bool = False,
          keys: dict[str, str] | None = None) -> Any:
    """A record field of type `kind` (one of `TYPES`, or a record class for a nested object).

    `optional`: a record may lack it (absent from records made before it existed); `nullable`: it may
    be null; `keys`: the keys a "mapping" must hold, each with its type.
    """
    spec = {"kind": kind, "optional": optional, "nullable": nullable, "keys": keys or {}}
    return dataclasses.field(default=ABSENT, metadata=spec) if optional else dataclasses.field(metadata=spec)


def required(cls: type, where: str = "") -> list[str]:
    """The dotted paths of every field a record of class `cls` must hold."""
    paths = []
    for spec in dataclasses.fields(cls):
        meta = spec.metadata
        if not meta["optional"]:
            paths += _required_under(meta, where + spec.name)
    return paths


def _required_under(meta, path: str) -> list[str]:
    """The dotted paths a field at `path` stands for: its own, or those of the object it holds."""
    if isinstance(meta["kind"], type):
        return required(meta["kind"], path + ".")
    return [f"{path}.{key}" for key in meta["keys"]] or [path]


def _missing(cls: type, data: dict, where: str = "") -> list[str]:
    """The dotted paths of the fields `data` must hold and lacks."""
    missing = []
    for spec in dataclasses.fields(cls):
        meta, path = spec.metadata, where + spec.name
        value = data.get(spec.name, ABSENT)
        if value is ABSENT:
            missing += [] if meta["optional"] else _required_under(meta, path)
        elif isinstance(meta["kind"], type) and isinstance(value, dict):
            missing += _missing(meta["kind"], value, path + ".")
        elif meta["keys"] and isinstance(value, dict):
            missing += [f"{path}.{key}" for key in meta["keys"] if key not in value]
    return missing


def _build(cls: type, data: dict, where: str = ""):
    """A `cls` of `data` (whose fields are all there), its fields checked in order; the first of the
    wrong type raises `RecordFieldError` naming it."""
    values = {}
    for spec in dataclasses.fields(cls):
        meta, path = spec.metadata, where + spec.name
        value = data.get(spec.name, ABSENT)
        if value is ABSENT or (value is None and meta["nullable"]):
            values[spec.name] = value
            continue
        kind = meta["kind"]
        if isinstance(kind, type):
            if not isinstance(value, dict):
                raise RecordFieldError(f"field {path}: {value!r} is not an object")
            value = _build(kind, value, path + ".")
        elif (found := type_problem(value, kind)) is not None:
            raise RecordFieldError(f"field {path}: {found}")
        for key, key_kind in meta["keys"].items():
            if (found := type_problem(value[key], key_kind)) is not None:
                raise RecordFieldError(f"field {path}.{key}: {found}")
        values[spec.name] = value
    return cls(**values)


class _Record:
    """What every record class does: read itself from a dict, checked, and give its dict form."""

    @classmethod
    def from_dict(cls, data: object):
        """The record `data` (parsed JSON) holds; `RecordFieldError` naming the fields it lacks, or the
        first one of the wrong type."""
        if not isinstance(data, dict):
            raise RecordFieldError(f"holds a JSON {type(data).__name__}, not an object")
        missing = _missing(cls, data)
        if missing:
            raise RecordFieldError(f"lacks field(s) the book reads: {', '.join(missing)}")
        return _build(cls, data)

    def to_dict(self) -> dict:
        """The record as JSON holds it: fields in their order, optional ones it lacks left out."""
        out = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not ABSENT:
                out[spec.name] = value.to_dict() if isinstance(value, _Record) else value
        return out


@dataclass(frozen=True, kw_only=True)
class RunConfig(_Record):
    """What the run was: its preset's protocol, its schedule, how it selected its checkpoint, its start."""

    preset: dict = typed("mapping", optional=True)  # `Preset.protocol()` with the run's overrides
    train: dict = typed("mapping", keys={"lr": "nonnegative"})  # the `TrainConfig`, as a dict
    selection: str = typed("text")
    backbone_weights: dict = typed("mapping", optional=True)  # `study.weights_source`
    paper_faithful: bool = typed("flag", optional=True)
    forgetting_steps: list = typed("list", optional=True)
    curve_probe: dict | None = typed("mapping", optional=True, nullable=True)  # {"bank", "queries"} sizes
    new_domain_data: dict | None = typed("mapping", optional=True, nullable=True)  # a generated domain's provenance


@dataclass(frozen=True, kw_only=True)
class LinearHead(_Record):
    """The linear-head probe: the head fitted on the pre-trained features, before and after; and a head
    re-fitted on the run's own bank features."""

    baseline: float = typed("percent")
    after: float = typed("percent")
    refit: float = typed("percent", optional=True)


@dataclass(frozen=True, kw_only=True)
class InstanceScores(_Record):
    """The instance-retrieval probe per k, before and after."""

    baseline: dict = typed("scores")
    after: dict = typed("scores")


@dataclass(frozen=True, kw_only=True)
class Metrics(_Record):
    """What the run measured: the new domain's accuracy and every probe of the pre-training domain."""

    new_domain_accuracy: float = typed("percent")
    selection_accuracy: float = typed("number", optional=True)
    best_step: int = typed("count", optional=True)
    knn: dict = typed("scores")  # k -> percent after fine-tuning
    knn_baseline: dict = typed("scores")  # k -> percent of the pre-trained backbone
    forgetting: dict = typed("mapping", optional=True)  # `evaluate.forgetting`
    linear_head: LinearHead = typed(LinearHead)
    instance: InstanceScores = typed(InstanceScores, optional=True)  # absent where the preset has no such probe
    knn_over_steps: list = typed("list", optional=True)
    full_probe_over_steps: list = typed("list", optional=True)
    drift: dict = typed("mapping", optional=True)  # linear CKA per block (`vitcf.engine.drift`)
    correct: dict = typed("mapping", optional=True)  # per-query correctness, packed (`uncertainty.pack`)


@dataclass(frozen=True, kw_only=True)
class Timings(_Record):
    """How long the run took, in seconds, and its training throughput."""

    train_seconds: float = typed("nonnegative")
    images_per_second: float = typed("nonnegative")
    eval_seconds: float = typed("nonnegative")
    total_seconds: float = typed("nonnegative")


@dataclass(frozen=True, kw_only=True)
class Environment(_Record):
    """Where and with what the run happened (`vitcf.base.env.environment`)."""

    device: str = typed("text", optional=True)
    hardware: str = typed("text")
    python: str = typed("text", optional=True)
    versions: dict = typed("mapping", optional=True)
    git_commit: str | None = typed("text", optional=True, nullable=True)
    finished_at: str = typed("text", optional=True)


@dataclass(frozen=True, kw_only=True)
class RunRecord(_Record):
    """One fine-tuning run's record (`vitcf.engine.study.execute`)."""

    schema: int = typed("count")
    run: str = typed("text")
    preset: str = typed("text")
    method: str = typed("text")
    family: str = typed("text")
    label: str = typed("text")
    hparams: dict = typed("mapping")
    seed: int = typed("count")
    trainable_params: int = typed("count")
    config: RunConfig = typed(RunConfig)
    metrics: Metrics = typed(Metrics)
    timings: Timings = typed(Timings)
    environment: Environment = typed(Environment)
    checkpoint: str | None = typed("text", optional=True, nullable=True)  # the kept weights (--keep-checkpoint)
    history: list = typed("list", optional=True)  # loss entries and selection evaluations
