"""Representation drift: where in the network fine-tuning changed what the backbone computes.

For each of the pre-trained backbone's blocks, the residual stream after that block is compared
between the pre-trained and the fine-tuned model, on the same pre-training-domain images, with
linear CKA (Kornblith et al., 2019): 1 means the two representations agree up to a rotation and
isotropic scaling, lower values mean fine-tuning changed them. Each image is represented by the
mean of its tokens.

Block expansion inserts blocks; the stream "after pre-trained block i" is then read after the copy
inserted behind it, if any, i.e. just before pre-trained block i + 1, so the same depth of the
pre-trained network is compared whatever a method inserted.
"""

from __future__ import annotations

import math

from collections.abc import Iterable

import torch
from torch import nn

from vitcf.engine.evaluate import autocast

DRIFT_IMAGES = 1000  # pre-training-domain images per comparison: CKA is stable well below this


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two (N, D) representations of the same N examples (float64, centred here)."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs (N, D) matrices with the same N, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka needs at least 2 examples, got {x.shape[0]}")
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = (y.T @ x).square().sum()
    norms = (x.T @ x).square().sum().sqrt() * (y.T @ y).square().sum().sqrt()
    return float(cross / norms) if norms > 0 else float("nan")


def _vit(model: nn.Module) -> nn.Module:
    """The timm VisionTransformer inside a peft wrapper (or the model itself)."""
    inner = getattr(getattr(model, "base_model", None), "model", None)
    return inner if inner is not None and hasattr(inner, "blocks") else model


def stream_positions(model: nn.Module, inserted: Iterable[int] = ()) -> list[int]:
    """For each pre-trained block, the index in `model.blocks` after which its stream is read."""
    blocks = len(_vit(model).blocks)
    inserted = set(inserted)
    originals = [i for i in range(blocks) if i not in inserted]
    return [(originals[j + 1] - 1 if j + 1 < len(originals) else blocks - 1) for j in range(len(originals))]


def block_streams(model: nn.Module, images: torch.Tensor, positions: list[int]) -> list[torch.Tensor]:
    """The token-mean residual stream after each block in `positions`, for a batch of inputs."""
    vit = _vit(model)
    captured: dict[int, torch.Tensor] = {}
    hooks = [vit.blocks[i].register_forward_hook(
        lambda module, args, output, i=i: captured.__setitem__(i, output.float().mean(dim=1)))
        for i in sorted(set(positions))]
    try:
        model.forward_features(images)
    finally:
        for hook in hooks:
            hook.remove()
    return [captured[i] for i in positions]


def drift(pretrained: nn.Module, tuned: nn.Module, batches, transform, *, inserted: Iterable[int] = (),
          device: torch.device, limit: int = DRIFT_IMAGES) -> dict:
    """Linear CKA per pre-trained block between `pretrained` and `tuned` on up to `limit` images.

    `inserted` lists the positions of blocks the method added to `tuned` (block expansion).
    Returns {"cka_per_block": [...], "images": n, "representation": what was compared}.
    """
    base_positions = list(range(len(_vit(pretrained).blocks)))
    tuned_positions = stream_positions(tuned, inserted)
    if len(tuned_positions) != len(base_positions):
        raise ValueError(f"drift: the fine-tuned model has {len(tuned_positions)} pre-trained blocks, "
                         f"the pre-trained one {len(base_positions)}; pass the inserted block positions")
    before = [[] for _ in base_positions]
    after = [[] for _ in base_positions]
    seen = 0
    modes = pretrained.training, tuned.training
    pretrained.eval(), tuned.eval()
    try:
        with torch.no_grad():
            for images, _ in batches:
                inputs = transform(images[: limit - seen].to(device))
                with autocast(device):
                    for store, model, positions in ((before, pretrained, base_positions), (after, tuned, tuned_positions)):
                        for row, stream in zip(store, block_streams(model, inputs, positions)):
                            row.append(stream.float().cpu())
                seen += len(inputs)
                if seen >= limit:
                    break
    finally:
        pretrained.train(modes[0]), tuned.train(modes[1])
    if seen < 2:
        raise ValueError(f"drift: needs at least 2 images, the data gave {seen}")
    # A block whose output is constant has no CKA: None (JSON's null), never NaN, which a record cannot hold.
    ckas = [linear_cka(torch.cat(b), torch.cat(a)) for b, a in zip(before, after)]
    return {"cka_per_block": [value if math.isfinite(value) else None for value in ckas],
            "images": seen, "representation": "token mean of the residual stream after each pre-trained block"}
