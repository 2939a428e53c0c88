"""FLOP accounting: FLOPs per image of a forward pass and of a training step, per module, and the frozen prefix.

`torch.utils.flop_counter.FlopCounterMode` counts one real step; the backward FLOPs of each module
(step minus forward) show whether a method's frozen prefix (the patch embedding and the blocks below
the first trainable one) is back-propagated at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
import torch.utils.flop_counter as flop_counter
from torch import nn


def _cpu_attention_formulas() -> dict:
    """FlopCounterMode counts the CUDA attention kernels but not the CPU one: count it the same way."""
    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    mapping = {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", forward),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", backward)):
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            mapping[op] = formula
    return mapping


def _module_flops(counter: flop_counter.FlopCounterMode) -> dict[str, int]:
    """FLOPs per module path ('blocks.3'), the root's class name stripped; 'Global' for the total."""
    flops = {}
    for name, ops in counter.get_flop_counts().items():
        path = name if name == "Global" else name.partition(".")[2] or name
        flops[path] = sum(ops.values())
    return flops


def count_flops(forward: Callable[[], object], step: Callable[[], object], batch: int) -> dict:
    """FLOPs per image of `forward()` and of `step()` (forward, backward, update) on a `batch`-image
    batch, with the backward FLOPs of every module (step minus forward)."""
    mapping = _cpu_attention_formulas()
    with flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counted:
        forward()
    forward_flops = _module_flops(counted)
    with flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counted:
        step()
    step_flops = _module_flops(counted)
    return {
        "forward_per_image": forward_flops["Global"] / batch,
        "train_per_image": step_flops["Global"] / batch,
        "backward_per_image": (step_flops["Global"] - forward_flops["Global"]) / batch,
        "backward_by_module": {name: (step_flops.get(name, 0) - value) / batch
                               for name, value in forward_flops.items() if name != "Global"},
    }


_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)(?:\.|$)")
_EMBEDDING = re.compile(r"(?:^|\.)(patch_embed|cls_token|pos_embed|reg_token)(?:\.|$)")


def frozen_prefix(model: nn.Module) -> list[str]:
    """Paths of the modules that run before any trainable tensor is used: the patch embedding and
    the blocks below the first one that trains ([] when an embedding parameter trains)."""
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if any(_EMBEDDING.search(name) for name in trainable):
        return []
    modules = dict(model.named_modules())
    blocks = next(n for n, m in modules.items() if re.fullmatch(r"(.*\.)?blocks", n) and isinstance(m, nn.Sequential))
    patch = next(name for name in modules if re.fullmatch(r"(.*\.)?patch_embed", name))
    first = min((int(m.group(1)) for name in trainable if (m := _BLOCK.search(name))), default=len(modules[blocks]))
    return [patch, *(f"{blocks}.{i}" for i in range(first))]


def prefix_backward(flops: dict, prefix: list[str]) -> dict:
    """The backward FLOPs counted inside the frozen prefix: zero when it is not back-propagated.

    Only meaningful if the counter attributes backward FLOPs to modules at all (some module, at
    least the classifier, must show them) and saw every prefix module run; otherwise None.
    """
    by_module = flops["backward_by_module"]
    attributed = any(value > 0 for value in by_module.values())
    total = sum(by_module.get(name, 0.0) for name in prefix)
    known = attributed and all(name in by_module for name in prefix)
    return {"modules": prefix, "backward_flops_per_image": total, "back_propagated": total > 0 if known else None}
