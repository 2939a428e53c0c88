"""Whether removing a method's additions gives back the pre-trained backbone, checked on a freshly built one."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vitcf.model.backbones import create_backbone
from vitcf.model.methods import make_method


@dataclass(frozen=True)
class RevertCheck:
    """What removing a method's additions gives back, checked on a freshly built backbone."""

    label: str
    tensors: int  # backbone tensors compared (the classifier excluded)
    max_abs_difference: float


def revert_checks(backbone: str, seed: int = 0) -> list[RevertCheck]:
    """Apply LoRA r=8 and block expansion p=2, scramble every trainable tensor, remove the additions.

    Compares the backbone's weights (not the classifier, which the new task owns) with the ones it
    started from. Random initial weights suffice: removal is exact or not whatever the values.
    """
    checks = []
    for method in (make_method("lora", r=8), make_method("block_expansion", p=2)):
        torch.manual_seed(seed)
        model = create_backbone(backbone, num_classes=3)
        before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
        adapted = method.apply(model)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for param in adapted.parameters():
                if param.requires_grad:  # "training": every trainable tensor moves far from its start
                    param.add_(torch.randn(param.shape, generator=generator))
        after = method.revert(adapted).state_dict()
        if set(after) - {k for k in after if k.startswith("head.")} != set(before):
            raise AssertionError(f"{method.label}: revert changed the backbone's tensor names")
        worst = max((after[k] - v).abs().max().item() for k, v in before.items())
        checks.append(RevertCheck(method.label, len(before), worst))
    return checks
