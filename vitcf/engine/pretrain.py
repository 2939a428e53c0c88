"""DINO self-supervised pre-training of a vitcf backbone, and the provenance card of its weights.

The mini study needs what the paper gets from DINO's released ViT-B/16: a backbone pre-trained
without labels on a domain whose forgetting can be measured later. Here the 12-block mini ViT
learns from Fashion-MNIST train images (labels unused) with DINO (Caron et al., 2021):

    two global and several local crops per image, all made on the device holding the uint8 data
    student (backbone + projection head) sees every crop; the teacher sees the global crops only
    loss: cross-entropy between the centred, sharpened teacher and the student distributions
    teacher = exponential moving average of the student; only the teacher backbone is kept

The loss, the projection head and the momentum update come from `lightly`; the backbone stays the
timm VisionTransformer of `vitcf.model.backbones`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn
from tqdm.auto import tqdm

from vitcf.base import env, io
from vitcf.base.checks import IntRange, NumberRange, Pair, check_fields, check_known, checked
from vitcf.engine import records
from vitcf.model.backbones import create_backbone, get_spec, weights_dir
from vitcf.model.checkpoints import CheckpointError, save_state_dict, sha256
from vitcf.engine.batching import batches, match_channels, normalize, random_resized_crop_flip
from vitcf.engine.sources import ImageSet, load_dataset
from vitcf.engine.evaluate import autocast, extract_features, knn_accuracy
from vitcf.engine.train import DivergedError, input_transform, lr_factor

QUALITY_K = 20
QUALITY_BAR = 85.0  # weighted k-NN top-1 (k=20, T=0.07, full train bank) the mini backbone must reach
QUALITY_STRETCH = 88.0
FALLBACK_MARGIN = 15.0  # below the bar, a backbone ships only this many points above random initialisation


# What DINO's schedules and losses can take, checked for every setting before any compute.
_POSITIVE = IntRange(1)
_UNIT = NumberRange(0.0, 1.0)  # [0, 1]
_BELOW_ONE = NumberRange(0.0, 1.0, high_open=True)  # [0, 1)
_TEMPERATURE = NumberRange(0.0, 10.0, low_open=True)


@dataclass(frozen=True)
class PretrainConfig:
    backbone: str
    dataset: str
    epochs: int = checked(_POSITIVE)
    batch_size: int = checked(_POSITIVE)
    # per 256 images, scaled linearly with the batch (DINO's rule)
    base_lr: float = checked(NumberRange(0.0, 1.0, low_open=True), default=5e-4)
    min_lr: float = checked(_UNIT, default=1e-6)
    # linear learning-rate warm-up over this share of the steps (DINO: 10 of 100 epochs)
    warmup_fraction: float = checked(_BELOW_ONE, default=0.1)
    # cosine from the first to the second
    weight_decay: tuple[float, float] = checked(Pair(NumberRange(0.0, 10.0)), default=(0.04, 0.4))
    teacher_momentum: tuple[float, float] = checked(Pair(_UNIT), default=(0.996, 1.0))
    head_hidden: int = 512
    head_bottleneck: int = 64
    head_out: int = checked(_POSITIVE, default=1024)
    teacher_temp: float = checked(_TEMPERATURE, default=0.04)
    student_temp: float = checked(_TEMPERATURE, default=0.1)
    center_momentum: float = checked(_BELOW_ONE, default=0.9)
    global_scale: tuple[float, float] = checked(Pair(_UNIT), default=(0.4, 1.0))
    local_scale: tuple[float, float] = checked(Pair(_UNIT), default=(0.1, 0.4))
    local_views: int = checked(IntRange(0), default=6)
    local_size: int = checked(_POSITIVE, default=14)
    # brightness and contrast factors drawn from [1 - jitter, 1 + jitter]
    jitter: float = checked(_BELOW_ONE, default=0.4)
    clip_grad: float = checked(NumberRange(0.0, 1e6, low_open=True), default=3.0)
    freeze_last_layer_epochs: int = 1
    seed: int = 0
    limit: int | None = None  # train on the first `limit` images only (smoke tests)
    knn_bank: int | None = None  # None: the whole train split is the k-NN memory bank
    knn_queries: int | None = None  # None: the whole test split is scored
    # the learning curve after every epoch: k-NN with the first train images as bank ...
    curve_bank: int = checked(_POSITIVE, default=10_000)
    curve_queries: int = checked(_POSITIVE, default=2_000)  # ... and the first test images as queries

    def __post_init__(self):
        check_fields(self, "pretrain")


PRETRAIN_PRESETS = {
    # Chosen on the 2-core CPU (vitcf/weights/mini.recipes.json says what was tried and why): 22 epochs
    # at batch 256 take about 75 minutes there.
    "mini": PretrainConfig(backbone="mini", dataset="fashion_mnist", epochs=22, batch_size=256, base_lr=1e-3,
                           teacher_momentum=(0.99, 1.0), local_views=4),
    "smoke": PretrainConfig(
        backbone="micro", dataset="fashion_mnist", epochs=2, batch_size=32, warmup_fraction=0.5, head_hidden=64,
        head_bottleneck=16, head_out=128, local_views=2, local_size=8, limit=128, knn_bank=256, knn_queries=64,
        curve_bank=128, curve_queries=64,
    ),
}


def get_pretrain_config(preset: str, **overrides) -> PretrainConfig:
    check_known("pre-training preset", preset, PRETRAIN_PRESETS)
    config = PRETRAIN_PRESETS[preset]
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"pretrain: unknown setting {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    return dataclasses.replace(config, **overrides)


class DINO(nn.Module):
    """Student and teacher, each a backbone (CLS feature out) with a projection head."""

    def __init__(self, backbone: nn.Module, config: PretrainConfig):
        super().__init__()
        def head() -> DINOProjectionHead:
            with warnings.catch_warnings():  # lightly's head still uses the old weight_norm API
                warnings.simplefilter("ignore", FutureWarning)
                return DINOProjectionHead(backbone.embed_dim, config.head_hidden, config.head_bottleneck,
                                          config.head_out, freeze_last_layer=config.freeze_last_layer_epochs)

        self.student, self.student_head = backbone, head()
        self.teacher = copy.deepcopy(self.student)
        self.teacher_head = head()  # weight-normed layers cannot be deep-copied: copy the state instead
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        deactivate_requires_grad(self.teacher)
        deactivate_requires_grad(self.teacher_head)

    def forward_student(self, x: torch.Tensor) -> torch.Tensor:
        return self.student_head(self.student(x))

    @torch.no_grad()
    def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.teacher(x))

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        update_momentum(self.student, self.teacher, m=momentum)
        update_momentum(self.student_head, self.teacher_head, m=momentum)


def _jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random brightness and contrast per image (the colour part of DINO's augmentation, for grey)."""
    if strength == 0:
        return x
    factors = 1 + strength * (2 * torch.rand(2, x.shape[0], 1, 1, 1, generator=generator) - 1)
    brightness, contrast = factors.to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean * brightness).clamp_(0, 1)


def multi_crop(images: torch.Tensor, config: PretrainConfig, spec, generator: torch.Generator) -> list[torch.Tensor]:
    """Two global crops at the model's size, then `local_views` small crops; normalised floats."""

    def view(size: int, scale: tuple[float, float]) -> torch.Tensor:
        x = random_resized_crop_flip(images, size, scale=scale, generator=generator)
        return normalize(match_channels(_jitter(x, config.jitter, generator), spec.in_chans), spec.mean, spec.std)

    global_views = [view(spec.img_size, config.global_scale) for _ in range(2)]
    return global_views + [view(config.local_size, config.local_scale) for _ in range(config.local_views)]


def _param_groups(model: nn.Module) -> list[dict]:
    """Weight decay on weight matrices only, not on biases, norms or embeddings' 1-d parameters."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class PretrainResult:
    backbone: nn.Module  # the teacher backbone, in eval mode
    losses: list[float]  # mean loss per epoch
    curve: list[dict]  # after every epoch: {"epoch", "loss", "knn"} with the subset k-NN of the teacher
    train_seconds: float  # optimiser steps only, summed over resumed sessions
    images_per_second: float  # source images (each giving 2 + local_views crops) per second of training
    images: int
    resumed_from: int  # the epoch a checkpoint resumed from (0: a fresh start)


def settings(config: PretrainConfig) -> dict:
    """What a checkpoint must share with the run that resumes it: the configuration and the architecture."""
    return json.loads(json.dumps({"config": dataclasses.asdict(config), "architecture": get_spec(config.backbone).arch}))


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_checkpoint(path: Path, config: PretrainConfig) -> dict:
    """Read a resumable state written by `pretrain`; refuse one made with other settings."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or corrupt files: pickle and zip errors share no base class
        raise CheckpointError(f"cannot read the pre-training checkpoint {path} (delete it to start over): {err}") from None
    if not isinstance(state, dict) or "settings" not in state:
        raise CheckpointError(f"{path} is not a vitcf pre-training checkpoint (delete it to start over)")
    theirs, ours = _flat(state["settings"]), _flat(settings(config))
    differ = [f"{key} {theirs.get(key, 'unset')!r} in the checkpoint, {ours.get(key, 'unset')!r} now"
              for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
    if differ:
        raise CheckpointError(
            f"the pre-training checkpoint {path} was made with other settings: {'; '.join(differ)}. "
            f"Run with the same settings to resume it, or delete it to start over"
        )
    return state


def save_checkpoint(path: Path, state: dict) -> None:
    with io.atomic_path(path) as tmp:
        torch.save(state, tmp)


def curve_sets(config: PretrainConfig, train_set: ImageSet) -> tuple[ImageSet, ImageSet]:
    """The learning curve's k-NN bank (first train images) and queries (first test images)."""
    test = load_dataset(config.dataset, "test")
    return (train_set.subset(torch.arange(min(config.curve_bank, len(train_set)))),
            test.subset(torch.arange(min(config.curve_queries, len(test)))))


def _features_knn(backbone: nn.Module, bank: ImageSet, queries: ImageSet, spec, ks: tuple[int, ...], *,
                  device: torch.device, batch_size: int, progress: bool = False) -> dict[int, float]:
    """Weighted k-NN (T=0.07) of `backbone`'s CLS features, `bank` as memory and `queries` scored."""
    transform = input_transform(spec.img_size, spec.mean, spec.std, spec.in_chans)
    feats = [extract_features(backbone.to(device), batches(ds, batch_size, shuffle=False), transform, device=device,
                              progress=progress) for ds in (bank, queries)]
    return knn_accuracy(*feats[0], *feats[1], ks=ks)


def subset_knn(backbone: nn.Module, bank: ImageSet, queries: ImageSet, spec, *, device: torch.device) -> float:
    """Weighted k-NN (k=QUALITY_K, or the bank size if smaller) of `backbone` on a bank and query subset."""
    k = min(QUALITY_K, len(bank))
    return _features_knn(backbone, bank, queries, spec, (k,), device=device, batch_size=1024)[k]


def pretrain(config: PretrainConfig, *, device: torch.device, progress: bool = True,
             train_set: ImageSet | None = None, checkpoint: str | Path | None = None) -> PretrainResult:
    """Run DINO on `config.dataset`'s train split (labels unused); return the teacher backbone.

    With `checkpoint`, the whole training state (student, teacher, heads, optimiser, loss centre,
    random generators, step, losses, learning curve) is written there atomically after every epoch,
    and an existing file is resumed from, so that a killed run continued with the same settings ends
    with exactly the weights of an uninterrupted one. A checkpoint made with other settings is refused.
    """
    spec = get_spec(config.backbone)
    if train_set is None:
        train_set = load_dataset(config.dataset, "train")
    if config.limit is not None:
        train_set = train_set.subset(torch.arange(min(config.limit, len(train_set))))
    if len(train_set) < config.batch_size:
        raise ValueError(f"pretrain: batch_size {config.batch_size} exceeds the {len(train_set)} training images")
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    state = load_checkpoint(checkpoint, config) if checkpoint is not None and checkpoint.exists() else None
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = DINO(create_backbone(config.backbone, num_classes=0), config).to(device)
    criterion = DINOLoss(
        output_dim=config.head_out, warmup_teacher_temp=config.teacher_temp, teacher_temp=config.teacher_temp,
        warmup_teacher_temp_epochs=0, student_temp=config.student_temp, center_momentum=config.center_momentum,
    ).to(device)
    peak_lr = config.base_lr * config.batch_size / 256
    optimiser = torch.optim.AdamW(_param_groups(nn.ModuleList([model.student, model.student_head])), lr=peak_lr)
    start, losses, curve, seconds = 0, [], [], 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        criterion.load_state_dict(state["criterion"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start, losses, curve, seconds = state["epoch"], list(state["losses"]), list(state["curve"]), state["seconds"]
    data = train_set.to(device)
    bank, queries = curve_sets(config, train_set)
    steps_per_epoch = len(data) // config.batch_size
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_fraction * total)
    step = start * steps_per_epoch
    bar = tqdm(total=total, initial=step, desc="DINO pre-training", disable=not progress, unit="step")
    if curve:
        bar.set_postfix(epoch=start, loss=f"{losses[-1]:.3f}", knn=f"{curve[-1]['knn']:.1f}")
    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        epoch_loss = torch.zeros((), device=device)
        for images, _ in batches(data, config.batch_size, shuffle=True, generator=generator, drop_last=True):
            lr = max(config.min_lr, peak_lr * lr_factor(step, total, warmup))
            decay = cosine_schedule(step, total, *config.weight_decay)
            optimiser.param_groups[0].update(lr=lr, weight_decay=decay)
            optimiser.param_groups[1].update(lr=lr)
            views = multi_crop(images, config, spec, generator)
            with autocast(device):
                # Same-sized views go through the networks as one batch (LayerNorm only: no batch coupling).
                teacher_out = model.forward_teacher(torch.cat(views[:2])).float().chunk(2)
                student_out = list(model.forward_student(torch.cat(views[:2])).float().chunk(2))
                if config.local_views:
                    student_out += model.forward_student(torch.cat(views[2:])).float().chunk(config.local_views)
                loss = criterion(list(teacher_out), student_out)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.student.parameters(), config.clip_grad)
            model.student_head.cancel_last_layer_gradients(epoch)
            optimiser.step()
            model.update_teacher(cosine_schedule(step, total, *config.teacher_momentum))
            epoch_loss += loss.detach()
            step += 1
            bar.update(1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - started
        losses.append(epoch_loss.item() / steps_per_epoch)
        if not math.isfinite(losses[-1]):  # before the checkpoint: the last one written stays the last good epoch
            raise DivergedError(f"pretrain: the DINO loss stopped being finite in epoch {epoch + 1} (mean {losses[-1]}) "
                                f"at base_lr {config.base_lr} (peak {peak_lr:g} for batch {config.batch_size}); "
                                "no weights written; lower base_lr (--set base_lr=...)")
        curve.append({"epoch": epoch + 1, "loss": losses[-1],
                      "knn": subset_knn(model.teacher, bank, queries, spec, device=device)})
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}", knn=f"{curve[-1]['knn']:.1f}")
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "settings": settings(config), "epoch": epoch + 1, "model": model.state_dict(),
                "optimiser": optimiser.state_dict(), "criterion": criterion.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "losses": losses, "curve": curve, "seconds": seconds,
            })
    bar.close()
    backbone = model.teacher.eval().cpu()
    return PretrainResult(backbone, losses, curve, seconds, total * config.batch_size / seconds if seconds else 0.0,
                          len(data), start)


def _knn_parts(config: PretrainConfig) -> dict[str, ImageSet]:
    parts = {}
    for part, split, size in (("bank", "train", config.knn_bank), ("queries", "test", config.knn_queries)):
        ds = load_dataset(config.dataset, split)
        parts[part] = ds if size is None else ds.subset(torch.arange(min(size, len(ds))))
    return parts


def _ks(bank_size: int) -> tuple[int, ...]:
    return tuple(k for k in (10, 20, 100, 200) if k <= bank_size)


def knn_report(backbone: nn.Module, config: PretrainConfig, *, device: torch.device, progress: bool = False,
               parts: dict[str, ImageSet] | None = None) -> dict:
    """Weighted k-NN accuracy of `backbone` on the pre-training dataset (train bank, test queries);
    `parts` are `_knn_parts(config)`, read here when not given."""
    parts = parts or _knn_parts(config)
    knn = _features_knn(backbone, parts["bank"], parts["queries"], get_spec(config.backbone), _ks(len(parts["bank"])),
                        device=device, batch_size=512, progress=progress)
    return {"knn": knn, "bank": len(parts["bank"]), "queries": len(parts["queries"])}


def pixel_knn_report(config: PretrainConfig, parts: dict[str, ImageSet] | None = None) -> dict:
    """The same k-NN on raw pixels: each image at the model's input size and normalisation, flattened."""
    parts = parts or _knn_parts(config)
    spec = get_spec(config.backbone)
    transform = input_transform(spec.img_size, spec.mean, spec.std, spec.in_chans)
    pixels = {name: (torch.cat([transform(x).flatten(1) for x, _ in batches(ds, 4096, shuffle=False)]), ds.labels)
              for name, ds in parts.items()}
    return {"knn": knn_accuracy(*pixels["bank"], *pixels["queries"], ks=_ks(len(parts["bank"]))),
            "bank": len(parts["bank"]), "queries": len(parts["queries"])}


def default_output(config: PretrainConfig) -> Path:
    spec = get_spec(config.backbone)
    if spec.shipped is not None and config.limit is None:
        return weights_dir() / spec.shipped
    return records.RESULTS_ROOT / "pretrain" / f"{config.backbone}.safetensors"


def checkpoint_path(out: Path) -> Path:
    """Where the resumable training state of the weights `out` is kept until they are written."""
    return out.with_name(out.stem + ".resume.pt")


def recipes_path(out: Path) -> Path:
    """The record of the recipe search behind the weights `out` (benchmarks/pretrain_recipes.py), if any."""
    return out.with_name(out.stem + ".recipes.json")


def quality_verdict(pretrained: float | None, random_init: float | None, *, full_protocol: bool) -> dict:
    """The card's verdict: the bar (85%), the stretch (88%), and the fallback (15 points over random init)."""
    met = pretrained is not None and full_protocol and pretrained >= QUALITY_BAR
    fallback = (pretrained is not None and random_init is not None and full_protocol
                and pretrained >= random_init + FALLBACK_MARGIN)
    return {"k": QUALITY_K, "min_accuracy": QUALITY_BAR, "stretch_accuracy": QUALITY_STRETCH, "met": met,
            "stretch_met": met and pretrained >= QUALITY_STRETCH,
            "fallback_margin": FALLBACK_MARGIN, "fallback_met": fallback,
            "shippable": met or fallback}


def run_pretraining(config: PretrainConfig, *, out: str | Path | None = None, device: torch.device,
                    progress: bool = True) -> dict:
    """Pre-train, write the weights (safetensors) and their provenance card (JSON) beside them.

    The training state is checkpointed after every epoch beside the output (`<name>.resume.pt`), and
    the same call after a crash resumes from it; it is removed once the weights and card are written.
    """
    wall_started = time.perf_counter()
    out = Path(out) if out is not None else default_output(config)
    if out.suffix != ".safetensors":
        raise ValueError(f"pretrain: the output must be a .safetensors file, got {out}")
    spec = get_spec(config.backbone)
    resume = checkpoint_path(out)
    result = pretrain(config, device=device, progress=progress, checkpoint=resume)
    parts = _knn_parts(config)  # read once: the backbone, random initialisation and the pixels are scored on them
    pretrained = knn_report(result.backbone, config, device=device, progress=progress, parts=parts)
    torch.manual_seed(config.seed)
    random_init = knn_report(create_backbone(config.backbone, num_classes=0).eval(), config, device=device,
                             parts=parts)
    pixels = pixel_knn_report(config, parts)
    save_state_dict(result.backbone, out, metadata={"backbone": config.backbone, "dataset": config.dataset})
    full = config.knn_bank is None and config.knn_queries is None and config.limit is None
    recipes = recipes_path(out)
    card = {
        "backbone": config.backbone,
        "architecture": {k: v for k, v in spec.arch.items()},
        "input": {
            "size": spec.img_size, "channels": spec.in_chans, "mean": list(spec.mean), "std": list(spec.std),
            "format": f"uint8 images scaled to [0, 1], resized to {spec.img_size}x{spec.img_size} (bilinear, "
                      f"antialiased), normalised per channel as (x - mean) / std; output: the CLS token after "
                      f"the final LayerNorm ({spec.arch['embed_dim']} values; the model has no classifier)",
        },
        "data": {"dataset": config.dataset, "split": "train", "images": result.images, "labels_used": False},
        "config": dataclasses.asdict(config),
        "seed": config.seed,
        "loss_per_epoch": result.losses,
        "learning_curve": {
            "protocol": f"after every epoch, the teacher's weighted k-NN (k={min(QUALITY_K, config.curve_bank)}, "
                        f"T=0.07): bank the first {config.curve_bank} train images, queries the first "
                        f"{config.curve_queries} test images",
            "epochs": result.curve,
        },
        "train_seconds": result.train_seconds,
        "wall_seconds": None,  # filled in below: everything but writing the card
        "resumed_from_epoch": result.resumed_from,
        "images_per_second": result.images_per_second,
        "knn": {
            "protocol": f"weighted k-NN on CLS features after the final norm, T=0.07; bank: {pretrained['bank']} "
                        f"train images, queries: {pretrained['queries']} test images",
            "pretrained": pretrained["knn"],
            "random_init": random_init["knn"],
            "raw_pixels": pixels["knn"],
        },
        "quality_bar": quality_verdict(pretrained["knn"].get(QUALITY_K), random_init["knn"].get(QUALITY_K),
                                       full_protocol=full),
        "recipe_search": io.read_json(recipes) if recipes.is_file() else None,
        "weights": {"file": out.name, "sha256": sha256(out), "bytes": out.stat().st_size},
        "environment": env.environment(device),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    card["wall_seconds"] = time.perf_counter() - wall_started  # this call only (see resumed_from_epoch)
    io.write_json(out.with_suffix(".json"), card)
    resume.unlink(missing_ok=True)
    return card
