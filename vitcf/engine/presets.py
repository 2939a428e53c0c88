"""Presets: the whole protocol of a study in one frozen, named object (smoke, mini, paper).

A preset fixes the backbone, the two domains, the input pipeline, the optimiser schedule, the
k-NN probe and the grid of runs. Per-run learning rates live in the grid because the paper's
configs use different rates for different rows (e.g. LoRA r=8 at 0.005 but r=4 and r=16 at 0.05).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vitcf.base.checks import check_known
from vitcf.model.backbones import IMAGENET_MEAN, IMAGENET_STD, get_spec
from vitcf.model.methods import make_method
from vitcf.base.paper import PAPER_BATCH, PAPER_ROWS, PAPER_STEPS
from vitcf.engine.retrieval import InstanceProbe


@dataclass(frozen=True)
class GridPoint:
    method: str
    hparams: dict
    lr: float
    warmup_fraction: float  # warm-up steps as a fraction of the schedule
    steps: int | None = None  # None: the preset's schedule length
    source_size: int | None = None  # None: the new domain at its own resolution (see `Preset.source_size`)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    backbone: str
    pretrained: bool  # False only for the smoke preset (random weights, seconds to run)
    new_domain: str  # a vitcf.engine.sources dataset name
    pretrain_domain: str  # "imagenet" (a local folder) or a vitcf.engine.sources dataset name
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
    # (bank, queries) sizes of the probe taken at `forgetting_steps`, subsets of the final probe's; None: the
    # final probe itself. A smaller curve probe makes dense curves affordable on a CPU.
    curve_probe: tuple[int, int] | None = None
    design: tuple[GridPoint, ...] = ()  # the design space around `grid` (see `design_grid`)
    rates: tuple[GridPoint, ...] = ()  # the learning-rate axis (see `rate_grid`)
    schedule: tuple[GridPoint, ...] = ()  # the schedule-length axis (see `schedule_grid`)
    control: tuple[GridPoint, ...] = ()  # the positive control: runs built to destroy the representation
    resolution: tuple[GridPoint, ...] = ()  # the new domain's resolution as an axis (see `resolution_grid`)
    # The new domain's side in pixels before the input pipeline resizes it to `img_size`: its images are
    # first downsampled to this side (None: used as loaded). A run's override, as its steps are.
    source_size: int | None = None
    # The steps after which the schedule axis probes forgetting: those within each run's schedule.
    long_forgetting_steps: tuple[int, ...] = ()
    # The instance-retrieval probe of the pre-training domain (`vitcf.engine.retrieval`), beside the class-level
    # k-NN; None: none (an ImageNet folder is streamed, not held in memory).
    instance_probe: InstanceProbe | None = None
    # Steps after which a run that probes forgetting also takes the final, full-size probe (the curve
    # probe is smaller): the abstract's claim is about the first ten steps.
    full_probe_steps: tuple[int, ...] = ()
    default_lr: float = 0.005
    default_warmup_fraction: float = 0.05
    eval_batch_size: int = 256

    def schedule_for(self, method: str, hparams: dict) -> tuple[float, int]:
        """(learning rate, warm-up steps) of this configuration: the grid's, else the design
        space's, else the defaults."""
        config = make_method(method, **hparams)
        for point in (*self.grid, *self.design):
            if make_method(point.method, **point.hparams) == config:
                return point.lr, max(1, round(point.warmup_fraction * self.steps))
        return self.default_lr, max(1, round(self.default_warmup_fraction * self.steps))

    def protocol(self) -> dict:
        """The settings a run's measurements depend on: everything but the grids of runs to compare."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in (*GRIDS[1:], "grid", "long_forgetting_steps")
                and not (k == "source_size" and v is None)}  # records at the native resolution read as before

    def points(self, grid: str = "core") -> tuple[GridPoint, ...]:
        """The grid points of `grid`: "core" (the paper's rows), "design" (the design space), "rates"
        (the learning-rate axis), "schedule" (the schedule-length axis), "control" (the positive control)
        or "resolution" (the new domain's source resolution as an axis)."""
        check_known("grid", grid, GRIDS)
        return {"core": self.grid, "design": self.design, "rates": self.rates, "schedule": self.schedule,
                "control": self.control, "resolution": self.resolution}[grid]


GRIDS = ("core", "design", "rates", "schedule", "control", "resolution")
# LoRA ranks per target; q,v (the paper's) also holds r=8, the paper's row.
DESIGN_LORA_RANKS = {"qv": (1, 4, 8, 16, 64), "qkv": (1, 4, 16, 64), "all": (1, 4, 16, 64)}
DESIGN_BLOCK_COPIES = (1, 2, 3, 4)


def design_grid(depth: int, *, width: int | None = None, lr: float = 0.005, expansion_lr: float = 0.05,
                warmup: float = 0.05) -> tuple[GridPoint, ...]:
    """The design space around the paper's rows for a `depth`-block backbone, one learning rate per family.

    LoRA: `DESIGN_LORA_RANKS` on q,v (the paper's), on the fused qkv projection and on every linear
    layer, all at `lr` (the paper's LoRA r=8 rate; its r=4 and r=16 rows use 0.05, so their
    design-space twins are separate runs). Top-k for every k = 1..depth. Block expansion with its
    copies spread (the paper's) or stacked on top, at `expansion_lr` (the paper's block rate).
    Surgical fine-tuning of the first, middle and last block: the extra baseline against forgetting.
    Every point at the paper's 5% warm-up. A rank above the backbone's `width` (the smaller side of
    every adapted layer) is left out: LoRA refuses it.
    """
    points = [GridPoint("lora", {"r": r} if target == "qv" else {"r": r, "target": target}, lr, warmup)
              for target, ranks in DESIGN_LORA_RANKS.items() for r in ranks if width is None or r <= width]
    points += [GridPoint("top_k", {"k": k}, lr, warmup) for k in range(1, depth + 1)]
    points += [GridPoint("block_expansion", {"p": p} if placement == "spread" else {"p": p, "placement": placement},
                         expansion_lr, warmup)
               for placement in ("spread", "top") for p in DESIGN_BLOCK_COPIES if depth % p == 0 or placement == "top"]
    points += [GridPoint("surgical", {"block": b}, lr, warmup) for b in sorted({0, depth // 2, depth - 1})]
    return tuple(points)


def _design(backbone: str) -> tuple[GridPoint, ...]:
    """`design_grid` for a backbone: its depth, and its width as the largest LoRA rank."""
    spec = get_spec(backbone)
    return design_grid(spec.depth, width=spec.arch["embed_dim"])


PAPER_GRID = tuple(GridPoint(r.method, r.hparams, r.lr, r.warmup / PAPER_STEPS) for r in PAPER_ROWS)

# The method families both axes vary: one configuration each, the paper's row of that family.
AXIS_FAMILIES = (("full", {}), ("top_k", {"k": 3}), ("linear", {}), ("lora", {"r": 8}), ("block_expansion", {"p": 2}))
# One common grid of learning rates spanning the paper's two (0.005 and 0.05), about evenly on a log scale.
AXIS_RATES = (0.001, 0.005, 0.015, 0.05)
# Schedule lengths as multiples of the preset's: 300, 1,000 and 3,000 steps for mini (10,000 for full only).
AXIS_STEPS = (300, 1_000, 3_000)
AXIS_FULL_STEPS = (10_000,)


def _paper_row(method: str, hparams: dict) -> GridPoint:
    return next(p for p in PAPER_GRID if p.method == method and p.hparams == hparams)


def rate_grid(rates: tuple[float, ...] = AXIS_RATES) -> tuple[GridPoint, ...]:
    """Every family of `AXIS_FAMILIES` at every rate of `rates`, with the preset's schedule length and
    the warm-up fraction of the family's paper row (so the point at the paper's rate is that row's run)."""
    return tuple(dataclasses.replace(_paper_row(method, hparams), lr=lr)
                 for method, hparams in AXIS_FAMILIES for lr in rates)


def schedule_grid(steps: tuple[int, ...] = AXIS_STEPS, full_steps: tuple[int, ...] = AXIS_FULL_STEPS
                  ) -> tuple[GridPoint, ...]:
    """Every family of `AXIS_FAMILIES` at its paper row's rate and each schedule length of `steps`,
    full fine-tuning also at `full_steps`; longest first, so that a sweep starts its longest run first."""
    points = [dataclasses.replace(_paper_row(method, hparams), steps=n)
              for method, hparams in AXIS_FAMILIES for n in (*steps, *(full_steps if method == "full" else ()))]
    return tuple(sorted(points, key=lambda p: -p.steps))


def resolution_grid(sizes: tuple[int, ...]) -> tuple[GridPoint, ...]:
    """Every family of `AXIS_FAMILIES` at its paper row's rate and schedule, with the new domain downsampled
    to each side of `sizes` before the resize to the input size; the native resolution is the core grid."""
    return tuple(dataclasses.replace(_paper_row(method, hparams), source_size=size)
                 for method, hparams in AXIS_FAMILIES for size in sorted(sizes))


# The positive control: runs built to wreck the pre-trained representation, so the book can show how far
# each probe falls when it is. Full fine-tuning at this multiple of its paper rate, and every block
# re-initialised before full fine-tuning at the paper rate (what is left: the patch embedding).
CONTROL_RATE_FACTOR = 30


def control_grid(depth: int, factor: float = CONTROL_RATE_FACTOR) -> tuple[GridPoint, ...]:
    """Full fine-tuning at `factor` times its paper rate, and the `reinit` of all `depth` blocks at the
    paper rate, both with the paper's full fine-tuning warm-up."""
    full = _paper_row("full", {})
    return (dataclasses.replace(full, lr=full.lr * factor),
            dataclasses.replace(full, method="reinit", hparams={"blocks": depth}))


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
        design=_design("vit_base_patch16_224.dino"),
        rates=rate_grid(),
        resolution=resolution_grid((8, 16)),  # CIFAR-100's 32 px at a quarter and a half
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
        forgetting_steps=(0, 1, 2, 5, 10, 20, 50, 100, 200, 300),
        curve_probe=(2_000, 500),  # a fifth of the final probe: about 1 s per probe on two CPU cores
        design=_design("mini"),
        rates=rate_grid(),
        schedule=schedule_grid(),
        long_forgetting_steps=(0, 1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1_000, 2_000, 3_000, 5_000, 10_000),
        instance_probe=InstanceProbe(),
        full_probe_steps=(0, 1, 2, 5, 10),
        control=control_grid(get_spec("mini").depth),
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
        curve_probe=(200, 50),
        eval_batch_size=128,
        design=_design("micro"),
        rates=rate_grid((0.005, 0.05)),
        schedule=schedule_grid((6, 12), (24,)),
        long_forgetting_steps=(0, 3, 6, 12, 24),
        instance_probe=InstanceProbe(images=40, views=4, bank_views=2, curve_images=20),
        full_probe_steps=(0, 3),
        control=control_grid(get_spec("micro").depth),
        resolution=resolution_grid((4,)),
    ),
}


# The far new domain of the CPU study: the mini backbone fine-tuned on many-class glyphs (`vitcf.engine.glyphs`), as
# DINO is on CIFAR-100; `mini` keeps scikit-learn's digits as the near domain.
PRESETS["mini-glyphs"] = dataclasses.replace(
    PRESETS["mini"],
    name="mini-glyphs",
    description="the offline CPU study on a far, many-class new domain: the mini ViT pre-trained on "
    "Fashion-MNIST, fine-tuned on characters rendered from Debian's typefaces (test typefaces unseen)",
    new_domain="glyphs",
    steps=1_500,
    eval_every=100,
    forgetting_steps=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 1_500),
    full_probe_steps=(1, 2, 5, 10),  # step 0 is the pre-trained network itself: the baseline
    # A third of the schedule, the schedule, twice it; within the axes' hour on two cores, so no longer run.
    schedule=schedule_grid((500, 1_500, 3_000), ()),
    long_forgetting_steps=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 1_500, 2_000, 3_000),
    # The glyphs drawn at 28 px, downsampled to a quarter and a half before the resize back to 28 (blurred
    # as digits' 8 px are); the native 28 px is the core grid.
    resolution=resolution_grid((7, 14)),
)


# The paper's figure covers four more new domains: each has the paper's protocol with that new domain.
PAPER_DOMAINS = ("cifar10", "dtd", "food101", "flowers102")
for _domain in PAPER_DOMAINS:
    PRESETS[f"paper-{_domain}"] = dataclasses.replace(
        PRESETS["paper"], name=f"paper-{_domain}", new_domain=_domain,
        description=f"the paper's protocol with {_domain} as the new domain: DINO ViT-B/16, k-NN on ImageNet-1K (GPU)")

# The real study for readers without ImageNet-1K: everything downloads by itself. Only the probe of
# the pre-training domain shrinks, to Imagenette: 10 ImageNet classes, its train split as the k-NN
# memory bank and its val split as queries, both whole.
PRESETS["paper-lite"] = dataclasses.replace(
    PRESETS["paper"],
    name="paper-lite",
    description="DINO ViT-B/16 fine-tuned on CIFAR-100 with the paper's schedule; forgetting probed by k-NN on "
    "Imagenette (10 ImageNet classes) instead of ImageNet-1K: GPU, downloads only",
    pretrain_domain="imagenette",
    forgetting_steps=(0, 1, 10, 100, 1000),
)


def get_preset(name: str) -> Preset:
    check_known("preset", name, PRESETS)
    return PRESETS[name]
