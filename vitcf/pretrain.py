"""DINO self-supervised pre-training of a vitcf backbone, and the provenance card of its weights.

The mini study needs what the paper gets from DINO's released ViT-B/16: a backbone pre-trained
without labels on a domain whose forgetting can be measured later. Here the 12-block mini ViT
learns from Fashion-MNIST train images (labels unused) with DINO (Caron et al., 2021):

    two global and several local crops per image, all made on the device holding the uint8 data
    student (backbone + projection head) sees every crop; the teacher sees the global crops only
    loss: cross-entropy between the centred, sharpened teacher and the student distributions
    teacher = exponential moving average of the student; only the teacher backbone is kept

The loss, the projection head and the momentum update come from `lightly`; the backbone stays the
timm VisionTransformer of `vitcf.backbones`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
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

from . import records
from .backbones import create_backbone, get_spec, weights_dir
from .checkpoints import save_state_dict, sha256
from .data import ImageSet, batches, load_dataset, match_channels, normalize, random_resized_crop_flip
from .evaluate import autocast, extract_features, knn_accuracy
from .methods.base import check_int
from .train import input_transform, lr_factor

QUALITY_K = 20
QUALITY_BAR = 88.0  # weighted k-NN top-1 (k=20, T=0.07, full train bank) the mini backbone must reach


@dataclass(frozen=True)
class PretrainConfig:
    backbone: str
    dataset: str
    epochs: int
    batch_size: int
    base_lr: float = 5e-4  # per 256 images, scaled linearly with the batch (DINO's rule)
    min_lr: float = 1e-6
    warmup_fraction: float = 0.1  # linear learning-rate warm-up over this share of the steps (DINO: 10 of 100 epochs)
    weight_decay: tuple[float, float] = (0.04, 0.4)  # cosine from the first to the second
    teacher_momentum: tuple[float, float] = (0.996, 1.0)
    head_hidden: int = 512
    head_bottleneck: int = 64
    head_out: int = 1024
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.4)
    local_views: int = 6
    local_size: int = 14
    jitter: float = 0.4  # brightness and contrast factors drawn from [1 - jitter, 1 + jitter]
    clip_grad: float = 3.0
    freeze_last_layer_epochs: int = 1
    seed: int = 0
    limit: int | None = None  # train on the first `limit` images only (smoke tests)
    knn_bank: int | None = None  # None: the whole train split is the k-NN memory bank
    knn_queries: int | None = None  # None: the whole test split is scored

    def __post_init__(self):
        for name in ("epochs", "batch_size", "local_size", "head_out"):
            check_int("pretrain", name, getattr(self, name), minimum=1)
        check_int("pretrain", "local_views", self.local_views, minimum=0)
        if not (isinstance(self.warmup_fraction, (int, float)) and 0 <= self.warmup_fraction < 1):
            raise ValueError(f"pretrain: warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")


PRETRAIN_PRESETS = {
    "mini": PretrainConfig(backbone="mini", dataset="fashion_mnist", epochs=100, batch_size=512),
    "smoke": PretrainConfig(
        backbone="micro", dataset="fashion_mnist", epochs=2, batch_size=32, warmup_fraction=0.5, head_hidden=64,
        head_bottleneck=16, head_out=128, local_views=2, local_size=8, limit=128, knn_bank=256, knn_queries=64,
    ),
}


def get_pretrain_config(preset: str, **overrides) -> PretrainConfig:
    try:
        config = PRETRAIN_PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown pre-training preset {preset!r}; allowed: {', '.join(PRETRAIN_PRESETS)}") from None
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
    train_seconds: float
    images_per_second: float  # source images (each giving 2 + local_views crops) per second
    images: int


def pretrain(config: PretrainConfig, *, device: torch.device, progress: bool = True,
             train_set: ImageSet | None = None) -> PretrainResult:
    """Run DINO on `config.dataset`'s train split (labels unused); return the teacher backbone."""
    spec = get_spec(config.backbone)
    if train_set is None:
        train_set = load_dataset(config.dataset, "train")
    if config.limit is not None:
        train_set = train_set.subset(torch.arange(min(config.limit, len(train_set))))
    if len(train_set) < config.batch_size:
        raise ValueError(f"pretrain: batch_size {config.batch_size} exceeds the {len(train_set)} training images")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = DINO(create_backbone(config.backbone, num_classes=0), config).to(device)
    criterion = DINOLoss(
        output_dim=config.head_out, warmup_teacher_temp=config.teacher_temp, teacher_temp=config.teacher_temp,
        warmup_teacher_temp_epochs=0, student_temp=config.student_temp, center_momentum=config.center_momentum,
    ).to(device)
    peak_lr = config.base_lr * config.batch_size / 256
    optimiser = torch.optim.AdamW(_param_groups(nn.ModuleList([model.student, model.student_head])), lr=peak_lr)
    data = train_set.to(device)
    steps_per_epoch = len(data) // config.batch_size
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_fraction * total)
    losses, step = [], 0
    bar = tqdm(total=total, desc="DINO pre-training", disable=not progress, leave=False)
    started = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_loss = torch.zeros((), device=device)
        for images, _ in batches(data, config.batch_size, shuffle=True, generator=generator, drop_last=True):
            lr = max(config.min_lr, peak_lr * lr_factor(step, total, warmup))
            decay = cosine_schedule(step, total, *config.weight_decay)
            optimiser.param_groups[0].update(lr=lr, weight_decay=decay)
            optimiser.param_groups[1].update(lr=lr)
            views = multi_crop(images, config, spec, generator)
            with autocast(device):
                teacher_out = [model.forward_teacher(v).float() for v in views[:2]]
                student_out = [model.forward_student(v).float() for v in views]
                loss = criterion(teacher_out, student_out)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.student.parameters(), config.clip_grad)
            model.student_head.cancel_last_layer_gradients(epoch)
            optimiser.step()
            model.update_teacher(cosine_schedule(step, total, *config.teacher_momentum))
            epoch_loss += loss.detach()
            step += 1
            bar.update(1)
        losses.append(epoch_loss.item() / steps_per_epoch)
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    backbone = model.teacher.eval().cpu()
    return PretrainResult(backbone, losses, seconds, total * config.batch_size / seconds, len(data))


def knn_report(backbone: nn.Module, config: PretrainConfig, *, device: torch.device, progress: bool = False) -> dict:
    """Weighted k-NN accuracy of `backbone` on the pre-training dataset (train bank, test queries)."""
    spec = get_spec(config.backbone)
    transform = input_transform(spec.img_size, spec.mean, spec.std, spec.in_chans)
    parts = {}
    for part, split, size in (("bank", "train", config.knn_bank), ("queries", "test", config.knn_queries)):
        ds = load_dataset(config.dataset, split)
        if size is not None:
            ds = ds.subset(torch.arange(min(size, len(ds))))
        parts[part] = extract_features(backbone.to(device), batches(ds, 512, shuffle=False), transform,
                                       device=device, progress=progress)
    ks = tuple(k for k in (10, 20, 100, 200) if k <= len(parts["bank"][1]))
    return {"knn": knn_accuracy(*parts["bank"], *parts["queries"], ks=ks),
            "bank": len(parts["bank"][1]), "queries": len(parts["queries"][1])}


def default_output(config: PretrainConfig) -> Path:
    spec = get_spec(config.backbone)
    if spec.shipped is not None and config.limit is None:
        return weights_dir() / spec.shipped
    return records.RESULTS_ROOT / "pretrain" / f"{config.backbone}.safetensors"


def run_pretraining(config: PretrainConfig, *, out: str | Path | None = None, device: torch.device,
                    progress: bool = True) -> dict:
    """Pre-train, write the weights (safetensors) and their provenance card (JSON) beside them."""
    out = Path(out) if out is not None else default_output(config)
    if out.suffix != ".safetensors":
        raise ValueError(f"pretrain: the output must be a .safetensors file, got {out}")
    spec = get_spec(config.backbone)
    result = pretrain(config, device=device, progress=progress)
    pretrained = knn_report(result.backbone, config, device=device, progress=progress)
    torch.manual_seed(config.seed)
    random_init = knn_report(create_backbone(config.backbone, num_classes=0).eval(), config, device=device)
    save_state_dict(result.backbone, out, metadata={"backbone": config.backbone, "dataset": config.dataset})
    quality = pretrained["knn"].get(QUALITY_K)
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
        "train_seconds": result.train_seconds,
        "images_per_second": result.images_per_second,
        "knn": {
            "protocol": f"weighted k-NN on CLS features, T=0.07; bank: {pretrained['bank']} train images, "
                        f"queries: {pretrained['queries']} test images",
            "pretrained": pretrained["knn"],
            "random_init": random_init["knn"],
        },
        "quality_bar": {"k": QUALITY_K, "min_accuracy": QUALITY_BAR,
                        "met": quality is not None and quality >= QUALITY_BAR and config.knn_bank is None},
        "weights": {"file": out.name, "sha256": sha256(out), "bytes": out.stat().st_size},
        "environment": records.environment(device),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    records.write_json(out.with_suffix(".json"), card)
    return card
