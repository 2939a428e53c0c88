"""Schematic figures of the methods, drawn from the code that implements them.

The block-expansion panel takes the inserted positions from `BlockExpansion.inserted_positions`,
and the trainable colouring from each method's real trainable set, so the picture cannot drift
from what the package does.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyBboxPatch

from vitcf.model.backbones import create_backbone
from vitcf.model.methods import make_method

FROZEN, TRAINED, NEW = "#d9d9d9", "#e4572e", "#f3a712"


def _block_states(method: str, hparams: dict, backbone: str) -> list[str]:
    """Per block of the adapted model: 'frozen', 'trained' (all weights) or 'adapted' (LoRA)."""
    config = make_method(method, **hparams)
    with torch.device("meta"):
        model = config.apply(create_backbone(backbone, num_classes=10))
    states = []
    for name, block in model.named_modules():
        if name.removeprefix("base_model.model.").count(".") == 1 and name.split(".")[-2] == "blocks":
            params = [p for n, p in block.named_parameters() if "lora_" not in n]
            if any("lora_" in n for n, _ in block.named_parameters()):
                states.append("adapted")
            elif all(p.requires_grad for p in params):
                states.append("trained")
            else:
                states.append("frozen")
    return states


def _stack(ax, title: str, states: list[str], inserted: set[int]) -> None:
    colours = {"frozen": FROZEN, "trained": TRAINED, "adapted": FROZEN}
    for i, state in enumerate(states):
        face = NEW if i in inserted else colours[state]
        width = 0.6 if state == "adapted" else 0.8
        ax.add_patch(FancyBboxPatch((0.1, i), width, 0.8, boxstyle="round,pad=0.02", fc=face, ec="black", lw=0.6))
        label = "copy (zero-init)" if i in inserted else f"block {i - sum(j < i for j in inserted) + 1}"
        ax.text(0.1 + width / 2, i + 0.4, label, ha="center", va="center", fontsize=7)
        if state == "adapted":  # the trained low-rank pair beside the frozen q and v projections
            ax.add_patch(FancyBboxPatch((0.74, i), 0.16, 0.8, boxstyle="round,pad=0.02", fc=NEW, ec="black", lw=0.6))
            ax.text(0.82, i + 0.4, "BA", ha="center", va="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.3, len(states) + 0.1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def methods_figure(backbone: str = "micro") -> plt.Figure:
    """Full, top-3, LoRA and block expansion (p=2) side by side: what each one trains."""
    panels = [("Full", "full", {}), ("Top-3", "top_k", {"k": 3}), ("LoRA r=8", "lora", {"r": 8}),
              ("Block expansion p=2", "block_expansion", {"p": 2})]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 5.2))
    for ax, (title, method, hparams) in zip(axes, panels):
        states = _block_states(method, hparams, backbone)
        inserted = set()
        if method == "block_expansion":
            inserted = set(make_method(method, **hparams).inserted_positions(len(states) - hparams["p"]))
        _stack(ax, title, states, inserted)
    handles = [plt.Rectangle((0, 0), 1, 1, fc=c, ec="black", lw=0.6) for c in (FROZEN, TRAINED, NEW)]
    fig.legend(handles, ["frozen (pre-trained)", "trained (pre-trained start)",
                         "trained (new; identity at start: zeroed outputs, LoRA's B = 0)"],
               loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("What each method trains (input at the bottom; every method also trains a new classifier)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig
