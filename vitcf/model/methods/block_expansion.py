"""Block expansion (LLaMA Pro, Wu et al. 2024): insert identity-initialised copies of blocks.

The depth is split into p equal groups; after the top block of each group a copy of that block is
inserted with its two residual-branch output layers (`attn.proj` and `mlp.fc2`, weight and bias)
set to zero. A pre-norm block computes x + attn(norm1(x)) and then + mlp(norm2(x)); with both
output layers zero each branch adds exactly 0, so the expanded network computes the same function
as before. Only the copies and the classifier train; removing the copies gives back the
pre-trained network untouched.

Placement "spread" is the paper's (a copy behind each group's top block). Placement "top" is a
variant for comparison: copies of the top p blocks are stacked after the last block, so all new
computation comes after the whole pre-trained network.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from vitcf.base.checks import Choice, IntRange, checked
from vitcf.model.methods.base import Method, classifier, register, train_only

PLACEMENTS = ("spread", "top")


def identity_copy(block: nn.Module) -> nn.Module:
    """A copy of `block` that is an exact identity map (both residual branches output zero)."""
    new = copy.deepcopy(block)
    for layer in (new.attn.proj, new.mlp.fc2):
        nn.init.zeros_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return new


@register
@dataclass(frozen=True)
class BlockExpansion(Method):
    name = "block_expansion"
    family = "block expansion"
    reversible = True
    p: int = checked(IntRange(1), default=1)
    placement: str = checked(Choice(PLACEMENTS), default="spread")

    @property
    def label(self) -> str:
        return f"Block exp. p={self.p}" + ("" if self.placement == "spread" else f" ({self.placement})")

    def inserted_positions(self, depth: int) -> list[int]:
        """Indices, in the expanded stack, of the p copies inserted into a `depth`-block model."""
        if self.placement == "top":
            if self.p > depth:
                raise ValueError(f"block_expansion: p={self.p} exceeds the model's depth; allowed: 1..{depth}")
            return list(range(depth, depth + self.p))
        if depth % self.p:
            allowed = [d for d in range(1, depth + 1) if depth % d == 0]
            raise ValueError(
                f"block_expansion: p={self.p} does not divide the model's depth {depth} into equal groups; "
                f"allowed: {', '.join(map(str, allowed))}"
            )
        group = depth // self.p
        # Copy g follows original block (g+1)*group - 1, which has been shifted by the g earlier copies.
        return [(g + 1) * group + g for g in range(self.p)]

    def apply(self, model: nn.Module) -> nn.Module:
        head = classifier(model)
        depth = len(model.blocks)
        positions = self.inserted_positions(depth)
        blocks, copies = list(model.blocks), []
        if self.placement == "top":  # copies of the top p blocks, in order, after the last one
            copies = [identity_copy(block) for block in blocks[depth - self.p:]]
            blocks += copies
        for pos in positions if self.placement == "spread" else ():
            copies.append(identity_copy(blocks[pos - 1]))
            blocks.insert(pos, copies[-1])
        model.blocks = nn.Sequential(*blocks)
        return train_only(model, *copies, head)

    def revert(self, model: nn.Module) -> nn.Module:
        """Remove the inserted blocks, giving back the original depth and pre-trained blocks."""
        depth = len(model.blocks) - self.p
        if depth < self.p:
            raise ValueError(f"block_expansion: the model has {len(model.blocks)} blocks, too few to hold p={self.p} copies")
        drop = set(self.inserted_positions(depth))
        model.blocks = nn.Sequential(*(b for i, b in enumerate(model.blocks) if i not in drop))
        return model
