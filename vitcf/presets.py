"""Presets: the whole protocol of a study in one frozen, named object (smoke, mini, paper).

A preset fixes the backbone, the two domains, the input pipeline, the optimiser schedule, the
k-NN probe and the grid of runs. Per-run learning rates live in the grid because the paper's
configs use different rates for different rows (e.g. LoRA r=8 at 0.005 but r=4 and r=16 at 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass

from .backbones import IMAGENET_MEAN, IMAGENET_STD
from .methods import make_method
from .paper import PAPER_BATCH, PAPER_ROWS, PAPER_STEPS


@dataclass(frozen=True)
class GridPoint:
    method: str
    hparams: dict
    lr: float
    warmup_fraction: float  # warm-up steps as a fraction of the schedule


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    backbone: str
    pretrained: bool  # False only for the smoke preset (random weights, seconds to run)
    new_domain: str  # a vitcf.data dataset name
    pretrain_domain: str  # "imagenet" (a local folder) or a vitcf.data dataset name
    img_size: int
    finetune_mean: tuple[float, ...]  # input normalisation while fine-tuning
    finetune_std: tuple[float, ...]
    knn_mean: tuple[float, ...]  # input normalisation of the k-NN probe (the backbone's own)
    knn_std: tuple[float, ...]
    steps: int
    batch_size: int
    eval_every: int  # validation interval for model selection
    grid: tuple[GridPoint, ...]
    holdout_fraction: float = 0.1
    crop_scale: tuple[float, float] = (0.08, 1.0)
    momentum: float = 0.9
    weight_decay: float = 0.0
    knn_bank: int | None = None  # None: the whole pre-training train split
    knn_queries: int | None = None  # None: the whole pre-training test split
    knn_ks: tuple[int, ...] = (10, 20, 100, 200)
    forgetting_steps: tuple[int, ...] = ()  # steps after which every run also probes the pre-training domain
    default_lr: float = 0.005
    default_warmup_fraction: float = 0.05
    eval_batch_size: int = 256

    def schedule_for(self, method: str, hparams: dict) -> tuple[float, int]:
        """(learning rate, warm-up steps) of this configuration: the grid's, else the defaults."""
        config = make_method(method, **hparams)
        lr, fraction = self.default_lr, self.default_warmup_fraction
        for point in self.grid:
            if make_method(point.method, **point.hparams) == config:
                lr, fraction = point.lr, point.warmup_fraction
        return lr, max(1, round(fraction * self.steps))


PAPER_GRID = tuple(GridPoint(r.method, r.hparams, r.lr, r.warmup / PAPER_STEPS) for r in PAPER_ROWS)
_HALF = (0.5, 0.5, 0.5)

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        description="the paper's protocol: DINO ViT-B/16, CIFAR-100 at 224 px, k-NN on ImageNet-1K (GPU)",
        backbone="vit_base_patch16_224.dino",
        pretrained=True,
        new_domain="cifar100",
        pretrain_domain="imagenet",
        img_size=224,
        finetune_mean=_HALF,
        finetune_std=_HALF,
        knn_mean=IMAGENET_MEAN,
        knn_std=IMAGENET_STD,
        steps=PAPER_STEPS,
        batch_size=PAPER_BATCH,
        eval_every=500,
        grid=PAPER_GRID,
    ),
    "mini": Preset(
        name="mini",
        description="the offline CPU study: the mini ViT pre-trained on Fashion-MNIST, fine-tuned on "
        "scikit-learn's handwritten digits",
        backbone="mini",
        pretrained=True,
        new_domain="digits",
        pretrain_domain="fashion_mnist",
        img_size=28,
        finetune_mean=(0.5,),
        finetune_std=(0.5,),
        knn_mean=(0.5,),
        knn_std=(0.5,),
        steps=300,
        batch_size=64,
        eval_every=50,
        grid=PAPER_GRID,
        knn_bank=10_000,
        knn_queries=2_000,
        crop_scale=(0.5, 1.0),
        forgetting_steps=(1, 10, 100),  # each probe costs about 5 s on two CPU cores; step 0 is the baseline
    ),
    "smoke": Preset(
        name="smoke",
        description="seconds-long wiring check: random micro ViT, tiny subsets",
        backbone="micro",
        pretrained=False,
        new_domain="digits",
        pretrain_domain="fashion_mnist",
        img_size=16,
        finetune_mean=_HALF,
        finetune_std=_HALF,
        knn_mean=_HALF,
        knn_std=_HALF,
        steps=6,
        batch_size=16,
        eval_every=3,
        grid=PAPER_GRID,
        knn_bank=400,
        knn_queries=100,
        knn_ks=(10, 20),
        forgetting_steps=(0, 3, 6),
        eval_batch_size=128,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}") from None
