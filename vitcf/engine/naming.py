"""Run identity: which settings change a preset's protocol, and the record names and grid keys that follow.

    (method, hparams, seed) -> run_name "lora_r8_seed0"
    + what the run changes from its preset (`overrides`: lr, steps, source size, ...) -> record_name
      "lora_r8_seed0_<hash of the changes>"; a run that changes nothing keeps the plain name
    record name less its seed -> grid_key: which configuration of which grid a record is

Every part of the code that names a run or asks whether a setting is the preset's own goes through
this module, so a record is found under the same name by whoever made it and whoever reads it.
"""

from __future__ import annotations

import hashlib
import json
import re

from vitcf.engine.presets import GridPoint, Preset, get_preset


def config_hash(config: dict) -> str:
    """A short, stable digest of a configuration (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_name(method: str, hparams: dict, seed: int) -> str:
    """A readable file stem: 'lora_r8_seed0', 'top_k_k3_seed1', 'full_seed0'."""
    parts = [method, *(f"{k}{v}" for k, v in sorted(hparams.items())), f"seed{seed}"]
    return "_".join(str(p).replace("/", "-") for p in parts)


def overrides(preset: Preset, method: str, hparams: dict, *, lr: float | None = None, steps: int | None = None,
              source_size: int | None = None) -> dict:
    """Which of a run's learning rate, schedule length and new-domain source size change `preset`'s
    protocol: those given (not None) that differ from what the preset gives the configuration anyway
    (the rate its grid or defaults give `method` with `hparams`, its length, its source size)."""
    given = {"lr": lr, "steps": steps, "source_size": source_size}
    own = {"lr": None if lr is None else preset.schedule_for(method, hparams)[0], "steps": preset.steps,
           "source_size": preset.source_size}
    return {k: v for k, v in given.items() if v is not None and v != own[k]}


def point_overrides(preset: Preset, point: GridPoint) -> dict:
    """What the grid point `point` of `preset` changes from its protocol (see `overrides`)."""
    return overrides(preset, point.method, point.hparams, lr=point.lr, steps=point.steps,
                     source_size=point.source_size)


def record_name(method: str, hparams: dict, seed: int, changes: dict) -> str:
    """A run's record name: the readable `run_name`, plus a hash of what it changes from the preset's
    protocol (`changes`: `overrides`, a paper-faithful selection, an explicit checkpoint), so that a
    changed run never takes a plain name."""
    name = run_name(method, hparams, seed)
    return name + "_" + config_hash(changes) if changes else name


def grid_key(run: str) -> str:
    """A record's name without its seed: which configuration of which grid it is."""
    return re.sub(r"_seed\d+(?=_|$)", "", run)


def grid_keys(preset: str, grid: str = "core") -> set[str]:
    """The record names of `grid`'s points with the seed left out (see `grid_key`)."""
    spec = get_preset(preset)
    return {grid_key(record_name(point.method, point.hparams, 0, point_overrides(spec, point)))
            for point in spec.points(grid)}
