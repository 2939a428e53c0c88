"""Checkpoint I/O: read and write state dicts safely (safetensors, or torch.load with weights_only).

Pickle is never executed: `.safetensors` files are parsed by safetensors, anything else goes through
`torch.load(weights_only=True)`. Every failure names the file and says what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vitcf.base.io import atomic_path

# Containers that training frameworks wrap state dicts in, and prefixes that DataParallel adds.
_CONTAINER_KEYS = ("state_dict", "model")
_PREFIXES = ("module.",)
_LISTED = 8  # how many offending keys an error message names


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: unreadable, truncated or mismatched."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from `path` without executing any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors, pickle and zip errors share no base class
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated, corrupt, or not a state dict): {err}"
        ) from None
    for key in _CONTAINER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _LISTED else "")


def load_into(model: nn.Module, path: str | os.PathLike, *, ignore: tuple[str, ...] = ()) -> None:
    """Load the weights in `path` into `model`, requiring an exact match of keys and shapes.

    Keys starting with a prefix in `ignore` are neither required nor loaded (a pre-trained backbone
    never supplies the fresh classifier: pass ``ignore=("head.",)``).
    """
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(ignore)}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatches: {_listing(wrong_shape)}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match the model; " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def save_tensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write named tensors to a safetensors file atomically; the same tensors give the same bytes.

    `metadata` is stored as one sorted JSON string under the key "vitcf" (`read_metadata` reads it
    back): safetensors writes several metadata keys in hash order, which differs between processes
    and would change the file's sha256.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    header = {"vitcf": json.dumps(metadata, sort_keys=True)} if metadata else None
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=header)
    return Path(path)


def read_metadata(path: str | os.PathLike):
    """The metadata `save_tensors` stored in a safetensors file (None if there is none)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return json.loads((handle.metadata() or {}).get("vitcf", "null"))


def save_state_dict(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write `model`'s weights to a safetensors file atomically (see `save_tensors`)."""
    return save_tensors(model.state_dict(), path, metadata)


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
