"""LoRA (Hu et al., 2022) through Hugging Face peft, on the attention query and value projections.

timm fuses the query, key and value projections into one `attn.qkv` Linear (out = 3 x width). The
reference method adapts q and v only, so for target "qv" each fused layer is first replaced by
`SplitQKV`: three Linears holding exact copies of the q, k and v slices, whose outputs are
concatenated back. peft then wraps `qkv.q` and `qkv.v` with ordinary LoRA layers. Merging or
unloading fuses the three back into one Linear, giving back timm's architecture.

Target "qkv" is a second, different variant: one adapter on the whole fused layer (its B matrix is
r x 3*width, so it also adapts the keys and couples q, k and v through a shared A). Target "all"
adapts every linear layer of every block: the fused qkv, the attention output and both MLP layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from vitcf.base.checks import Choice, IntRange, NumberRange, checked
from vitcf.model.methods.base import Method, classifier, register

if TYPE_CHECKING:
    from peft import PeftModel

TARGETS = {
    "qv": r".*blocks\.\d+\.attn\.qkv\.(q|v)",  # the paper's reference: query and value only
    "qkv": r".*blocks\.\d+\.attn\.qkv",  # one adapter on timm's fused projection
    "all": r".*blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)",  # every linear layer of every block
}


class SplitQKV(nn.Module):
    """A fused qkv Linear as three Linears with exact copies of its slices; same function."""

    def __init__(self, fused: nn.Linear):
        super().__init__()
        width = fused.out_features // 3
        bias = fused.bias is not None
        parts = []
        for i in range(3):
            part = nn.Linear(fused.in_features, width, bias=bias, device=fused.weight.device, dtype=fused.weight.dtype)
            with torch.no_grad():
                part.weight.copy_(fused.weight[i * width:(i + 1) * width])
                if bias:
                    part.bias.copy_(fused.bias[i * width:(i + 1) * width])
            part.requires_grad_(fused.weight.requires_grad)
            parts.append(part)
        self.q, self.k, self.v = parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)

    def fuse(self) -> nn.Linear:
        """One Linear equal to the three (after any LoRA merge into q or v)."""
        q, k, v = self.q, self.k, self.v
        fused = nn.Linear(q.in_features, 3 * q.out_features, bias=q.bias is not None,
                          device=q.weight.device, dtype=q.weight.dtype)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
            if q.bias is not None:
                fused.bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
        fused.requires_grad_(q.weight.requires_grad)
        return fused


def split_qkv(model: nn.Module) -> nn.Module:
    for block in model.blocks:
        block.attn.qkv = SplitQKV(block.attn.qkv)
    return model


def fuse_qkv(model: nn.Module) -> nn.Module:
    for block in model.blocks:
        if isinstance(block.attn.qkv, SplitQKV):
            block.attn.qkv = block.attn.qkv.fuse()
    return model


@register
@dataclass(frozen=True)
class LoRA(Method):
    """Low-rank adapters W + (alpha/r) B A with B = 0 at init; the classifier trains too."""

    name = "lora"
    family = "LoRA"
    reversible = True
    r: int = checked(IntRange(1), default=8)
    # None: alpha = r (scale 1), as in the paper's configs
    alpha: float | None = checked(NumberRange(0.0, low_open=True), default=None, default_text="r")
    dropout: float = checked(NumberRange(0.0, 1.0, high_open=True), default=0.0)
    target: str = checked(Choice(tuple(TARGETS)), default="qv")

    def __post_init__(self):
        super().__post_init__()
        if self.alpha is None:
            object.__setattr__(self, "alpha", self.r)

    @property
    def label(self) -> str:
        suffix = "" if self.target == "qv" else f" ({self.target})"
        return f"LoRA r={self.r}{suffix}"

    def apply(self, model: nn.Module) -> PeftModel:
        from peft import LoraConfig, get_peft_model  # imported here: peft (with transformers) costs seconds

        head = classifier(model)
        if self.target == "qv":
            split_qkv(model)
        self.check_rank(model)
        config = LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            bias="none",
            target_modules=TARGETS[self.target],
        )
        peft_model = get_peft_model(model, config)  # freezes everything but the adapters
        head.requires_grad_(True)
        return peft_model

    def check_rank(self, model: nn.Module) -> None:
        """A rank above an adapted layer's smaller side adds parameters and no expressiveness (and a huge
        one exhausts memory before training starts): refused, naming the largest rank allowed."""
        pattern = re.compile(TARGETS[self.target])
        sides = [min(m.in_features, m.out_features) for name, m in model.named_modules()
                 if isinstance(m, nn.Linear) and pattern.fullmatch(name)]
        if not sides:
            raise ValueError(f"{self.name}: target {self.target!r} matches no linear layer of this backbone")
        if self.r > min(sides):
            raise ValueError(f"{self.name}: r must be at most {min(sides)} (the smaller side of the adapted layers "
                             f"for target {self.target!r}), got {self.r}")

    def merge(self, model: PeftModel) -> nn.Module:
        """Fold the adapters into the weights: a plain timm ViT computing the adapted function."""
        return fuse_qkv(model.merge_and_unload())

    def revert(self, model: PeftModel) -> nn.Module:
        """Drop the adapters: the pre-trained weights exactly, with the trained classifier."""
        return fuse_qkv(model.unload())
