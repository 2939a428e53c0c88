"""Standard fine-tuning: all weights, the top k blocks, one chosen block, or the classifier alone."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vitcf.base.checks import IntRange, checked
from vitcf.model.methods.base import Method, classifier, register, train_only


@register
@dataclass(frozen=True)
class Full(Method):
    """Every parameter trains: embeddings, all blocks, the final norm and the classifier."""

    name = "full"
    family = "standard"

    @property
    def label(self) -> str:
        return "Full"

    def apply(self, model: nn.Module) -> nn.Module:
        classifier(model)
        return model.requires_grad_(True)


@register
@dataclass(frozen=True)
class TopK(Method):
    """The last k transformer blocks and the classifier train; the final LayerNorm stays frozen,
    as in the reference implementation (it sits after the blocks but is not one of them)."""

    name = "top_k"
    family = "standard"
    k: int = checked(IntRange(1), default=3)

    @property
    def label(self) -> str:
        return f"Top-{self.k}"

    def apply(self, model: nn.Module) -> nn.Module:
        depth = len(model.blocks)
        if self.k > depth:
            raise ValueError(f"top_k: k={self.k} exceeds the model's depth; allowed: 1..{depth}")
        return train_only(model, *model.blocks[depth - self.k:], classifier(model))


@register
@dataclass(frozen=True)
class Linear(Method):
    """Only the new classifier trains (a linear probe on frozen features)."""

    name = "linear"
    family = "standard"

    @property
    def label(self) -> str:
        return "Linear"

    def apply(self, model: nn.Module) -> nn.Module:
        return train_only(model, classifier(model))


@register
@dataclass(frozen=True)
class Surgical(Method):
    """One transformer block (0-based index `block`) and the classifier train: surgical fine-tuning
    (Lee et al., 2023), which adapts the single part of the network a shift calls for."""

    name = "surgical"
    family = "standard"
    block: int = checked(IntRange(0), default=0)

    @property
    def label(self) -> str:  # blocks counted from 1, as every page of the book counts them
        return f"Surgical block {self.block + 1}"

    def apply(self, model: nn.Module) -> nn.Module:
        depth = len(model.blocks)
        if self.block >= depth:
            raise ValueError(f"surgical: block={self.block} is not a block of this model; allowed: 0..{depth - 1}")
        return train_only(model, model.blocks[self.block], classifier(model))


@register
@dataclass(frozen=True)
class Reinit(Method):
    """The positive control, not a fine-tuning method: the top `blocks` transformer blocks are
    re-initialised (timm's ViT initialisation, from the run's seed), then every parameter trains as in
    full fine-tuning. With every block re-initialised, the backbone keeps only its patch embedding of
    pre-training: it shows how low a probe falls when what pre-training taught is gone."""

    name = "reinit"
    family = "control"
    blocks: int = checked(IntRange(1), default=12)

    @property
    def label(self) -> str:
        return f"Re-init {self.blocks} blocks"

    def apply(self, model: nn.Module) -> nn.Module:
        depth = len(model.blocks)
        if self.blocks > depth:
            raise ValueError(f"reinit: blocks={self.blocks} exceeds the model's depth; allowed: 1..{depth}")
        classifier(model)
        with torch.no_grad():
            for block in model.blocks[depth - self.blocks:]:
                for module in block.modules():
                    if isinstance(module, nn.Linear):
                        nn.init.trunc_normal_(module.weight, std=0.02)
                        if module.bias is not None:
                            nn.init.zeros_(module.bias)
                    elif isinstance(module, nn.LayerNorm):
                        module.reset_parameters()
        return model.requires_grad_(True)
