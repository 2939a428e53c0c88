"""The paper preset's speed on one GPU, measured beside a rebuilt reference pipeline.

    python benchmarks/paper_speed.py [--methods full,top3,...] [--compile] [--skip-reference]
                                     [--steps 50] [--warmup-steps 10] [--out FILE]
    python benchmarks/paper_speed.py --smoke      # a CPU wiring check in seconds; no figures

Everything is measured in one process on one GPU, with random-init weights (speed does not depend
on them) and synthetic data in the real formats, so nothing is downloaded:

1. training images/s and peak memory of each method (full, top-3, linear, LoRA r=8, block expansion
   p=1..4) through the project's own code: `create_backbone` + `make_method(...).apply`, then
   `vitcf.engine.train.finetune` itself on uint8 32x32 images held on the GPU (CIFAR-100's format), at the
   paper preset's batch, crop and normalisation. Warm-up steps are excluded; the timed window is
   bracketed by `torch.cuda.synchronize`;
2. FLOPs per image of each method, counted by `torch.utils.flop_counter.FlopCounterMode` on one real
   training step (`vitcf.engine.train.train_step`), per module, so that the backward pass through a frozen
   prefix (patch embedding and the blocks below the first trainable one) can be seen to be zero;
3. model FLOP utilisation: images/s x training FLOPs per image over the dense bf16 matmul peak
   measured in the same run;
4. the reference pipeline rebuilt from the authors' description: Hugging Face transformers'
   `ViTForImageClassification` of the same shape, a torchvision PIL transform pipeline
   (RandomResizedCrop + flip from 32x32 images) in a 4-worker DataLoader, fp32 with TF32;
5. k-NN feature extraction images/s including JPEG decode: the project's ImageNet loader
   (`vitcf.engine.data.imagenet_batches`, PIL decode in DataLoader workers) over a folder of synthetic
   JPEGs, and, for comparison, a GPU-decode path (`torchvision.io.decode_jpeg(device="cuda")`);
6. the projected wall time of the whole paper grid (10 runs + ImageNet-1K k-NN evaluation).

The JSON document is printed to stdout and written atomically to --out (default
benchmarks/results/paper_speed.json; paper_speed_smoke.json with --smoke); a readable table goes
to stderr. Exit status: 0 when every measured target passes (always with --smoke), 1 when the
benchmark ran but a target failed, 2 for bad arguments or a machine that cannot run it (nothing is
written then). The reference needs `transformers` (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib.util
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.flop_counter as flop_counter
from torch import nn
from tqdm.auto import tqdm

from vitcf.base import env, io
from vitcf.model.backbones import BACKBONES, create_backbone
from vitcf.engine.data import IMAGENET_CROP, IMAGENET_RESIZE, ImageSet, batches, imagenet_batches
from vitcf.engine.evaluate import accuracy, autocast, extract_features
from vitcf.model.methods import make_method
from vitcf.base.paper import PAPER_ROWS
from vitcf.engine.presets import Preset, get_preset
from vitcf.engine.train import TrainConfig, finetune, input_transform, train_step

RESULTS = Path(__file__).resolve().parent / "results"

# The methods this benchmark can time, by the name --methods takes (the paper's rows, in table order).
METHODS: dict[str, tuple[str, dict]] = {
    "full": ("full", {}),
    "top3": ("top_k", {"k": 3}),
    "linear": ("linear", {}),
    "lora_r8": ("lora", {"r": 8}),
    **{f"block_expansion_p{p}": ("block_expansion", {"p": p}) for p in (1, 2, 3, 4)},
}

# Dataset sizes of the paper's protocol (CIFAR-100 fine-tuning, ImageNet-1K k-NN probe).
NUM_CLASSES = 100
CIFAR_SHAPE = (3, 32, 32)
CIFAR100_TRAIN = 50_000
CIFAR100_TEST = 10_000
IMAGENET_TRAIN = 1_281_167
IMAGENET_VAL = 50_000
IMAGENETTE_TRAIN = 9_469  # the paper-lite probe: Imagenette v2 (320 px), train and val splits
IMAGENETTE_VAL = 3_925

# The speed targets.
MFU_TARGET = 0.40
REFERENCE_SPEEDUP_TARGET = 4.0
EVAL_TARGET = 5_000  # images/s, decode included
GRID_HOURS_TARGET = 2.5  # on one H100
LITE_HOURS_TARGET = 1.0  # the paper-lite grid, on one H100

SMOKE = "not applicable (smoke)"


@dataclass(frozen=True)
class Settings:
    """How much of everything is run: the GPU benchmark's sizes, or the CPU smoke check's."""

    preset: str  # the vitcf preset whose protocol is timed ("paper"; "smoke" with --smoke)
    batch_size: int
    warmup_steps: int  # training steps run before the timed window (compilation happens here)
    timed_steps: int
    train_images: int  # uint8 32x32 images on the device: CIFAR-100's train split less the hold-out
    flop_batch: int  # images in the one step whose FLOPs are counted
    matmul_sizes: tuple[int, ...]  # n of the n x n x n matmuls that measure the peak (bf16 on CUDA)
    matmul_seconds: float  # time spent on each size
    eval_batch_size: int
    eval_images: int
    eval_warmup_batches: int  # batches excluded from the timing (worker start-up, decoder init)
    eval_workers: int  # DataLoader workers of the project's ImageNet loader (its default is 8)
    jpeg_pool: int  # distinct synthetic JPEGs; the evaluation cycles through them
    jpeg_sizes: tuple[tuple[int, int], ...]  # (height, width), cycled
    selection_images: int  # images of the selection-accuracy timing (the paper preset holds out 5,000)
    reference_images: int  # CIFAR-100's 50,000 train images, as the authors train on all of them
    reference_workers: int


def gpu_settings(preset: Preset) -> Settings:
    return Settings(
        preset=preset.name, batch_size=preset.batch_size, warmup_steps=10, timed_steps=50,
        train_images=round((1 - preset.holdout_fraction) * CIFAR100_TRAIN), flop_batch=4,
        matmul_sizes=(4096, 8192, 16384), matmul_seconds=1.0,
        eval_batch_size=preset.eval_batch_size, eval_images=40 * preset.eval_batch_size, eval_warmup_batches=4,
        eval_workers=8, jpeg_pool=256,
        # ImageNet's typical shapes; with the content below the files average about 100 KB, like ImageNet's.
        jpeg_sizes=((375, 500), (500, 375), (333, 500), (500, 333), (500, 500), (400, 500)),
        selection_images=round(preset.holdout_fraction * CIFAR100_TRAIN),
        reference_images=CIFAR100_TRAIN, reference_workers=4,
    )


def smoke_settings(preset: Preset) -> Settings:
    return Settings(
        preset=preset.name, batch_size=preset.batch_size, warmup_steps=1, timed_steps=2, train_images=64,
        flop_batch=2, matmul_sizes=(128, 256), matmul_seconds=0.05,
        eval_batch_size=8, eval_images=24, eval_warmup_batches=1, eval_workers=2, jpeg_pool=6,
        jpeg_sizes=((48, 64), (64, 48)), selection_images=32,
        reference_images=64, reference_workers=2,
    )


# --- arguments: every check runs before any work ---------------------------------------------------

def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed: integers >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: integers >= {minimum}")
        return value

    return parse


def _method_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method {', '.join(map(repr, unknown)) or repr(text)}; allowed: {', '.join(METHODS)}"
        )
    if "full" not in names:
        raise argparse.ArgumentTypeError(f"{text!r} lacks 'full': every ratio is taken against full fine-tuning")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="check the wiring on the CPU (micro backbone)")
    parser.add_argument("--methods", type=_method_list, default=list(METHODS),
                        help=f"comma-separated subset of: {', '.join(METHODS)} (default: all; must include full)")
    parser.add_argument("--steps", type=_int_at_least(1), help="timed training steps per method (default 50)")
    parser.add_argument("--warmup-steps", type=_int_at_least(0), help="untimed steps first (default 10)")
    parser.add_argument("--batch-size", type=_int_at_least(1), help="training batch (default: the preset's, 128)")
    parser.add_argument("--eval-images", type=_int_at_least(1), help="images per feature-extraction timing")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward, as TrainConfig does")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the transformers reference")
    parser.add_argument("--reference-attention", choices=("eager", "sdpa"),
                        help="the reference's attention implementation (default: transformers' own default)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/results/paper_speed[_smoke].json)")
    return parser


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Settings, torch.device, str | None]:
    """The settings, the device and why the reference is skipped (None: it runs); exits 2 when the
    arguments or the machine cannot give a meaningful run."""
    preset = get_preset("smoke" if args.smoke else "paper")
    settings = (smoke_settings if args.smoke else gpu_settings)(preset)
    overrides = {"timed_steps": args.steps, "warmup_steps": args.warmup_steps, "batch_size": args.batch_size,
                 "eval_images": args.eval_images}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    settings = replace(settings, train_images=max(settings.train_images, 2 * settings.batch_size))
    warm = settings.eval_warmup_batches * settings.eval_batch_size
    if settings.eval_images <= warm:
        parser.error(f"--eval-images {settings.eval_images} leaves nothing to time: it must be more than the "
                     f"{settings.eval_warmup_batches} warm-up batch(es) of {settings.eval_batch_size} images, "
                     f"i.e. > {warm}")
    out = args.out or RESULTS / ("paper_speed_smoke.json" if args.smoke else "paper_speed.json")
    if out.is_dir():
        parser.error(f"--out {out} is a folder; give a file path")
    args.out = out
    if args.smoke:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        parser.error("no CUDA device here (torch.cuda.is_available() is False): the benchmark needs one GPU; "
                     "run with --smoke for a CPU check of the wiring")
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    skip = None
    if args.skip_reference:
        skip = "skipped: --skip-reference"
    elif importlib.util.find_spec("transformers") is None:
        if not args.smoke:
            parser.error("the reference pipeline needs the 'transformers' package, which is not installed "
                         "(pip install transformers, or pip install -e '.[bench]'); "
                         "or pass --skip-reference to run the rest without it")
        skip = "skipped: the 'transformers' package is not installed"
    return settings, device, skip


# --- small timing helpers --------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    """Peak allocated GPU memory since the last reset; None on the CPU (not tracked there)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def progress_bar(iterable: Iterable, quiet: bool, **kwargs):
    return tqdm(iterable, disable=quiet, leave=False, **kwargs)


# --- 1. the dense matmul peak ------------------------------------------------------------------------

def measure_peak(device: torch.device, sizes: tuple[int, ...], seconds: float) -> dict:
    """FLOP/s of dense n x n matmuls, each size run for about `seconds`; the peak is the best size.

    bf16 on CUDA, where training runs under bf16 autocast; float32 on the CPU, where it runs in
    float32 (see vitcf.engine.evaluate.autocast), so that a smoke run's utilisation is at least comparable.
    """
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    by_size = {}
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        c = torch.empty(n, n, device=device, dtype=dtype)
        for _ in range(3):
            torch.mm(a, b, out=c)
        sync(device)
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds or done == 0:
            for _ in range(5):
                torch.mm(a, b, out=c)
            done += 5
            sync(device)
        by_size[str(n)] = 2 * n**3 * done / elapsed
        del a, b, c
    return {"dtype": str(dtype).removeprefix("torch."), "flops_per_second_by_size": by_size,
            "flops_per_second": max(by_size.values())}


# --- 2. FLOPs of one training step -----------------------------------------------------------------

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


# --- 3. our training step, through vitcf.engine.train.finetune ------------------------------------------

def synthetic_cifar(n: int, device: torch.device, seed: int) -> ImageSet:
    """`n` random uint8 images of CIFAR's shape with random labels, created on `device`."""
    generator = torch.Generator(device).manual_seed(seed)
    images = torch.randint(0, 256, (n, *CIFAR_SHAPE), dtype=torch.uint8, device=device, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (n,), device=device, generator=generator)
    return ImageSet("synthetic-cifar", images, labels, tuple(map(str, range(NUM_CLASSES))))


def train_config(preset: Preset, settings: Settings, method: str, hparams: dict, compile: bool) -> TrainConfig:
    """The paper preset's fine-tuning config, run for warm-up + timed steps + one more.

    The learning rate is the grid's; warm-up is off (the rate does not change the cost of a step).
    The only selection evaluation comes after the extra last step, outside the timed window.
    """
    spec = BACKBONES[preset.backbone]
    steps = settings.warmup_steps + settings.timed_steps + 1
    return TrainConfig(
        steps=steps, batch_size=settings.batch_size, lr=preset.schedule_for(method, hparams)[0], warmup_steps=0,
        eval_every=steps, img_size=spec.img_size, mean=preset.finetune_mean, std=preset.finetune_std,
        in_chans=spec.in_chans, crop_scale=preset.crop_scale, momentum=preset.momentum,
        weight_decay=preset.weight_decay, eval_batch_size=settings.eval_batch_size, compile=compile,
    )


def count_training_flops(model: nn.Module, train_set: ImageSet, config: TrainConfig, settings: Settings,
                         device: torch.device) -> dict:
    """FLOPs of one `train_step` (the step `finetune` runs) and of its forward pass alone."""
    images, labels = train_set.images[: settings.flop_batch], train_set.labels[: settings.flop_batch]
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    transform = input_transform(config.img_size, config.mean, config.std, config.in_chans)
    model.train()

    def forward():
        with autocast(device):
            return model(transform(images))

    def step():
        train_step(model, optimiser, images, labels, config, device=device, generator=torch.Generator())

    return count_flops(forward, step, settings.flop_batch)


def time_finetune(model: nn.Module, train_set: ImageSet, config: TrainConfig, settings: Settings,
                  device: torch.device, seed: int, quiet: bool) -> dict:
    """images/s of `finetune` itself between the end of the warm-up and the last timed step.

    `on_step` runs after every update, so it brackets exactly the timed steps; the selection
    evaluation after the extra final step falls outside.
    """
    first, last = settings.warmup_steps, settings.warmup_steps + settings.timed_steps
    marks = {}

    def on_step(step: int, _model: nn.Module) -> None:
        if step in (first, last):
            sync(device)
            marks[step] = time.perf_counter()
        if step == last:
            marks["peak"] = peak_bytes(device)

    selection = ImageSet("selection", train_set.images[: config.eval_batch_size],
                         train_set.labels[: config.eval_batch_size], train_set.classes)
    reset_peak(device)
    finetune(model, train_set, selection, config, device=device, generator=torch.Generator().manual_seed(seed),
             progress=not quiet, on_step=on_step)
    seconds = marks[last] - marks[first]
    return {
        "images_per_second": settings.timed_steps * settings.batch_size / seconds,
        "step_seconds": seconds / settings.timed_steps,
        "timed_seconds": seconds,
        "peak_memory_bytes": marks["peak"],
    }


def measure_method(key: str, preset: Preset, settings: Settings, train_set: ImageSet, device: torch.device,
                   args: argparse.Namespace) -> dict:
    name, hparams = METHODS[key]
    method = make_method(name, **hparams)
    config = train_config(preset, settings, name, hparams, args.compile)
    torch.manual_seed(args.seed)
    with device:  # build straight on the device: a ViT-B's random init is slow on a CPU
        model = method.apply(create_backbone(preset.backbone, num_classes=NUM_CLASSES))
    model = model.to(device)
    flops = count_training_flops(model, train_set, config, settings, device)
    prefix = prefix_backward(flops, frozen_prefix(model))
    timing = time_finetune(model, train_set, config, settings, device, args.seed, args.quiet)
    del model
    if args.compile:
        torch.compiler.reset()  # compiled graphs hold on to the model; the next method's memory starts clean
    gc.collect()
    return {
        "key": key, "method": name, "hparams": method.hparams, "label": method.label, "lr": config.lr,
        **timing,
        "flops": {k: v for k, v in flops.items() if k != "backward_by_module"},
        "frozen_prefix": prefix,
    }


# --- 4. the reference pipeline ---------------------------------------------------------------------

class SyntheticCIFAR(torch.utils.data.Dataset):
    """CIFAR in the form torchvision's CIFAR100 dataset gives it: 32x32 RGB PIL images, int labels."""

    def __init__(self, n: int, seed: int, transform: Callable):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.labels = rng.integers(0, NUM_CLASSES, n)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def reference_model(backbone: str, attention: str | None) -> nn.Module:
    """transformers' ViTForImageClassification with our backbone's shape (ViT-B/16: 768 wide, 12
    blocks of 12 heads, MLP 3072, 224 px in 16 px patches), random init, 100 classes."""
    from transformers import ViTConfig, ViTForImageClassification

    arch = BACKBONES[backbone].arch
    extra = {"attn_implementation": attention} if attention else {}
    config = ViTConfig(
        hidden_size=arch["embed_dim"], num_hidden_layers=arch["depth"], num_attention_heads=arch["num_heads"],
        intermediate_size=int(arch["embed_dim"] * arch["mlp_ratio"]), image_size=arch["img_size"],
        patch_size=arch["patch_size"], num_channels=arch.get("in_chans", 3), num_labels=NUM_CLASSES,
        qkv_bias=arch["qkv_bias"], **extra,
    )
    return ViTForImageClassification(config)


def reference_step(model: nn.Module, optimiser: torch.optim.Optimizer, images: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
    """A plain fp32 PyTorch training step, as in the authors' setup."""
    loss = F.cross_entropy(model(pixel_values=images).logits, labels)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss


@contextlib.contextmanager
def tf32() -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions inside; the previous settings come back after."""
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def _endless(loader: Iterable) -> Iterator:
    """Batches epoch after epoch (each epoch restarts the workers, as in an ordinary training loop)."""
    while True:
        yield from loader


def measure_reference(preset: Preset, settings: Settings, device: torch.device, args: argparse.Namespace) -> dict:
    from torchvision import transforms

    spec = BACKBONES[preset.backbone]
    torch.manual_seed(args.seed)
    model = reference_model(preset.backbone, args.reference_attention).to(device).train()
    transform = transforms.Compose([
        transforms.RandomResizedCrop(spec.img_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.5,) * 3, (0.5,) * 3),
    ])  # fmt: skip
    loader = torch.utils.data.DataLoader(
        SyntheticCIFAR(settings.reference_images, args.seed, transform), batch_size=settings.batch_size,
        shuffle=True, num_workers=settings.reference_workers, pin_memory=device.type == "cuda", drop_last=True,
    )
    optimiser = torch.optim.SGD(model.parameters(), lr=preset.default_lr, momentum=preset.momentum)
    batches_seen = _endless(loader)
    with tf32(), contextlib.closing(batches_seen):  # closing it stops the workers
        sample = torch.randn(settings.flop_batch, 3, spec.img_size, spec.img_size, device=device)
        sample_labels = torch.zeros(settings.flop_batch, dtype=torch.int64, device=device)
        flops = count_flops(lambda: model(pixel_values=sample),
                            lambda: reference_step(model, optimiser, sample, sample_labels), settings.flop_batch)
        reset_peak(device)
        warmup, timed = settings.warmup_steps, settings.timed_steps
        for step in progress_bar(range(warmup + timed), args.quiet, desc="reference", unit="step"):
            if step == warmup:
                sync(device)
                started = time.perf_counter()
            images, labels = next(batches_seen)
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            reference_step(model, optimiser, images, labels).item()  # logging the loss, as training scripts do
        sync(device)
        seconds = time.perf_counter() - started
    return {
        "model": "transformers.ViTForImageClassification (random init)",
        "transformers": metadata.version("transformers"),
        "attn_implementation": model.config._attn_implementation,
        "input_pipeline": f"torchvision PIL transforms (RandomResizedCrop {spec.img_size}, flip, ToTensor, "
                          f"Normalize) in a DataLoader with {settings.reference_workers} workers",
        "precision": "fp32 with TF32 matmuls and convolutions",
        "workers": settings.reference_workers,
        "images_per_second": timed * settings.batch_size / seconds,
        "step_seconds": seconds / timed,
        "timed_seconds": seconds,
        "peak_memory_bytes": peak_bytes(device),
        "flops": {k: v for k, v in flops.items() if k != "backward_by_module"},
    }


# --- 5. evaluation ---------------------------------------------------------------------------------

def synthetic_jpegs(count: int, sizes: tuple[tuple[int, int], ...], seed: int) -> list[torch.Tensor]:
    """JPEG files (quality 90) as uint8 byte tensors: smooth random colour fields with fine noise,
    which compress to about ImageNet's file sizes (pure noise would decode slower, flat colour faster)."""
    from torchvision.io import encode_jpeg

    generator = torch.Generator().manual_seed(seed)
    files = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        coarse = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=generator)
        image = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        image = image + 0.06 * torch.randn(1, 3, h, w, generator=generator)
        files.append(encode_jpeg(image.clamp(0, 1).mul(255).round().to(torch.uint8)[0], quality=90))
    return files


def write_imagenet_tree(root: Path, files: list[torch.Tensor], count: int) -> Path:
    """An ImageNet-layout folder (train/ and val/, two class folders) of `count` train images,
    hard links to the pool files where the file system allows it."""
    pool = root / "pool"
    pool.mkdir()
    paths = []
    for i, data in enumerate(files):
        paths.append(pool / f"{i}.JPEG")
        paths[-1].write_bytes(data.numpy().tobytes())
    for split, n in (("train", count), ("val", 2)):
        for c in range(2):
            (root / split / f"n{c:08d}").mkdir(parents=True)
        for i in range(n):
            target = root / split / f"n{i % 2:08d}" / f"{i:07d}.JPEG"
            try:
                os.link(paths[i % len(paths)], target)
            except OSError:
                target.write_bytes(paths[i % len(paths)].read_bytes())
    return root


def _timed(source: Iterable, warmup_batches: int, marks: dict, device: torch.device) -> Iterator:
    """Pass batches through, starting the clock when batch `warmup_batches` is asked for (the
    consumer has finished the ones before it), and counting the images after that."""
    iterator = iter(source)
    for index in range(sys.maxsize):
        if index == warmup_batches:
            sync(device)
            marks["start"] = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        if index >= warmup_batches:
            marks["images"] += len(batch[0])
        yield batch


def time_extraction(model: nn.Module, source: Iterable, transform, device: torch.device, settings: Settings,
                    quiet: bool, total: int | None = None) -> dict:
    """images/s of `vitcf.engine.evaluate.extract_features` over `source`, after its warm-up batches."""
    marks = {"images": 0}
    reset_peak(device)
    extract_features(model, _timed(source, settings.eval_warmup_batches, marks, device), transform,
                     device=device, total=total, progress=not quiet)
    seconds = time.perf_counter() - marks["start"]  # features come back to the CPU: the device is done
    return {"images": marks["images"], "seconds": seconds, "images_per_second": marks["images"] / seconds,
            "peak_memory_bytes": peak_bytes(device)}


def decoded_batches(files: list[torch.Tensor], count: int, batch_size: int, device: torch.device) -> Iterator:
    """uint8 (B, 3, 224, 224) batches decoded on `device` (nvJPEG on CUDA), resized (short side 256,
    bicubic) and centre-cropped there: DINO's k-NN preprocessing without a CPU in the way."""
    from torchvision.io import decode_jpeg
    from torchvision.transforms.v2 import functional as TF

    for start in range(0, count, batch_size):
        data = [files[i % len(files)] for i in range(start, min(start + batch_size, count))]
        images = decode_jpeg(data, device=device)
        crops = [TF.center_crop(TF.resize(image, IMAGENET_RESIZE, interpolation=TF.InterpolationMode.BICUBIC,
                                          antialias=True), IMAGENET_CROP) for image in images]
        yield torch.stack(crops), torch.zeros(len(crops), dtype=torch.int64)


def time_selection(model: nn.Module, preset: Preset, settings: Settings, device: torch.device, seed: int) -> dict:
    """images/s of `vitcf.engine.evaluate.accuracy` on uint8 32x32 images on the device (the selection and
    test-split evaluations of a run: no decode, resized to the model's input on the device)."""
    spec = BACKBONES[preset.backbone]
    data = synthetic_cifar(settings.selection_images, device, seed)
    transform = input_transform(spec.img_size, preset.finetune_mean, preset.finetune_std, spec.in_chans)
    first = slice(0, settings.eval_batch_size)
    warm = ImageSet("warm-up", data.images[first], data.labels[first], data.classes)
    accuracy(model, batches(warm, settings.eval_batch_size, shuffle=False), transform, device=device)
    sync(device)
    started = time.perf_counter()
    accuracy(model, batches(data, settings.eval_batch_size, shuffle=False), transform, device=device)
    seconds = time.perf_counter() - started  # accuracy reads its count back: the device is done
    return {"images": len(data), "seconds": seconds, "images_per_second": len(data) / seconds}


def measure_evaluation(preset: Preset, settings: Settings, device: torch.device, args: argparse.Namespace) -> dict:
    spec = BACKBONES[preset.backbone]
    files = synthetic_jpegs(settings.jpeg_pool, settings.jpeg_sizes, args.seed)
    torch.manual_seed(args.seed)
    with device:
        model = create_backbone(preset.backbone, num_classes=NUM_CLASSES)
    model = model.to(device).eval()
    transform = input_transform(spec.img_size, preset.knn_mean, preset.knn_std, spec.in_chans)
    with tempfile.TemporaryDirectory(prefix="paper-speed-") as folder:
        root = write_imagenet_tree(Path(folder), files, settings.eval_images)
        loader = imagenet_batches(root, "train", settings.eval_batch_size, num_workers=settings.eval_workers)
        project = time_extraction(model, loader, transform, device, settings, args.quiet, total=len(loader))
    gpu = time_extraction(model, decoded_batches(files, settings.eval_images, settings.eval_batch_size, device),
                          transform, device, settings, args.quiet)
    selection = time_selection(model, preset, settings, device, args.seed)
    del model
    gc.collect()
    shapes = [settings.jpeg_sizes[i % len(settings.jpeg_sizes)] for i in range(len(files))]
    return {
        "jpegs": {
            "distinct_files": len(files), "quality": 90,
            "mean_bytes": sum(f.numel() for f in files) / len(files),
            "mean_pixels": sum(h * w for h, w in shapes) / len(shapes),
            "note": "read from the page cache: a cold ImageNet on disk may read slower",
        },
        "project_pipeline": {
            "description": f"vitcf.engine.data.imagenet_batches (PIL decode, bicubic resize {IMAGENET_RESIZE}, centre "
                           f"crop {IMAGENET_CROP}, {settings.eval_workers} DataLoader workers) + "
                           "vitcf.engine.evaluate.extract_features",
            "workers": settings.eval_workers, **project,
        },
        "gpu_decode": {
            "description": f"torchvision.io.decode_jpeg on {device.type} (batched), resize {IMAGENET_RESIZE} + "
                           f"centre crop {IMAGENET_CROP} on the device, + vitcf.engine.evaluate.extract_features; "
                           "not the project's loader today",
            **gpu,
        },
        "selection": {"description": "vitcf.engine.evaluate.accuracy on uint8 32x32 images on the device", **selection},
    }


# --- 6. the paper grid's wall time -----------------------------------------------------------------

def _config_key(method: str, hparams: dict) -> str:
    return make_method(method, **hparams).label


def _project_runs(methods: list[dict], evaluation: dict, preset: Preset, knn_images: int,
                  knn_rates: dict[str, float], probes_per_run: int) -> tuple[list[dict], list[str]]:
    """Per paper row of `preset`: seconds of training, selection, test and k-NN probing at the measured
    rates (rows not timed here are returned by label in the second list)."""
    by_config = {_config_key(m["method"], m["hparams"]): m for m in methods}
    full = by_config[_config_key("full", {})]
    selections = preset.steps // preset.eval_every
    selection_images = round(preset.holdout_fraction * CIFAR100_TRAIN)
    select_rate = evaluation["selection"]["images_per_second"]
    rows, missing = [], []
    for row in PAPER_ROWS:
        label = _config_key(row.method, row.hparams)
        measured, timed_as = by_config.get(label), label
        if measured is None and row.method == "lora":  # the rank only sizes LoRA's small adapter matmuls
            timed_as = _config_key("lora", {"r": 8})
            measured = by_config.get(timed_as)
        if measured is None:
            missing.append(label)
            continue
        slower = measured["flops"]["forward_per_image"] / full["flops"]["forward_per_image"]
        rows.append({
            "run": label, "timed_as": timed_as,
            "train_seconds": preset.steps * preset.batch_size / measured["images_per_second"],
            "selection_seconds": selections * selection_images * slower / select_rate,
            "test_seconds": CIFAR100_TEST * slower / select_rate,
            "knn_seconds": {name: probes_per_run * knn_images * slower / rate for name, rate in knn_rates.items()},
        })
    return rows, missing


def project_grid(methods: list[dict], evaluation: dict, preset: Preset) -> dict:
    """Seconds for the ten paper runs and the baseline probe at the measured rates.

    Per run: 10,000 training steps of 128 images; a selection evaluation every `eval_every` steps
    on the held-out split; the test split once; the k-NN probe over all of ImageNet-1K (train as
    the bank, val as queries). Once: the k-NN probe of the pre-trained backbone. Evaluations of a
    deeper model (block expansion) are slowed by its forward-FLOP ratio to the 12-block one.
    """
    knn_images = IMAGENET_TRAIN + IMAGENET_VAL
    eval_rates = {"project_pipeline": evaluation["project_pipeline"]["images_per_second"],
                  "gpu_decode": evaluation["gpu_decode"]["images_per_second"]}
    rows, missing = _project_runs(methods, evaluation, preset, knn_images, eval_rates, probes_per_run=1)
    if missing:
        return {"projected": False, "reason": f"not timed here: {', '.join(missing)}"}
    selections = preset.steps // preset.eval_every
    selection_images = round(preset.holdout_fraction * CIFAR100_TRAIN)
    baseline = {name: knn_images / rate for name, rate in eval_rates.items()}
    common = sum(r["train_seconds"] + r["selection_seconds"] + r["test_seconds"] for r in rows)
    totals = {name: common + baseline[name] + sum(r["knn_seconds"][name] for r in rows) for name in eval_rates}
    return {
        "projected": True,
        "runs": rows,
        "baseline_knn_seconds": baseline,
        "total_seconds": totals["project_pipeline"],
        "gpu_hours": totals["project_pipeline"] / 3600,
        "gpu_hours_with_gpu_decode": totals["gpu_decode"] / 3600,
        "includes": [
            f"{len(rows)} runs x {preset.steps:,} steps x {preset.batch_size} images at each method's measured rate "
            "(LoRA r=4 and r=16 at r=8's)",
            f"{selections} selection evaluations per run on the {selection_images:,}-image hold-out and one "
            f"{CIFAR100_TEST:,}-image test evaluation, at the measured accuracy() rate",
            f"a k-NN probe per run and one of the pre-trained backbone, each over {IMAGENET_TRAIN:,} + "
            f"{IMAGENET_VAL:,} ImageNet JPEGs at the measured project-pipeline rate (gpu_hours_with_gpu_decode: "
            "at the GPU-decode rate)",
            "evaluations of block-expanded models slowed by their forward-FLOP ratio to the 12-block model",
        ],
        "excludes": [
            f"the k-NN search itself (a {IMAGENET_VAL:,} x {IMAGENET_TRAIN:,} similarity product per probe) and "
            "the linear-head probe",
            "loading CIFAR-100, building models, writing records; reading a cold ImageNet from disk",
        ],
    }


def project_lite(methods: list[dict], evaluation: dict, preset: Preset) -> dict:
    """Seconds for the `paper-lite` grid: the paper's runs at `preset`'s schedule, each probing the whole
    of Imagenette (in memory at 224 px, so at the in-memory accuracy() rate) after training and at
    every forgetting step, and one baseline probe; plus the longest schedule within the target."""
    knn_images = IMAGENETTE_TRAIN + IMAGENETTE_VAL
    rate = evaluation["selection"]["images_per_second"]
    probes = 1 + len(preset.forgetting_steps)
    rows, missing = _project_runs(methods, evaluation, preset, knn_images, {"in_memory": rate}, probes)
    if missing:
        return {"projected": False, "reason": f"not timed here: {', '.join(missing)}"}
    baseline = knn_images / rate
    train = sum(r["train_seconds"] for r in rows)
    fixed = baseline + sum(r["test_seconds"] + r["knn_seconds"]["in_memory"] for r in rows)
    per_step = (train + sum(r["selection_seconds"] for r in rows)) / preset.steps  # both grow with the schedule
    total = fixed + per_step * preset.steps
    return {
        "projected": True,
        "preset": preset.name,
        "steps": preset.steps,
        "runs": rows,
        "baseline_knn_seconds": baseline,
        "total_seconds": total,
        "gpu_hours": total / 3600,
        "steps_within_target": max(0, int((LITE_HOURS_TARGET * 3600 - fixed) / per_step)),
        "includes": [
            f"{len(rows)} runs x {preset.steps:,} steps x {preset.batch_size} images at each method's measured rate",
            f"selection every {preset.eval_every} steps and one test evaluation, as for the paper grid",
            f"{probes} k-NN probes per run (after training and at steps {', '.join(map(str, preset.forgetting_steps))}) "
            f"and one baseline probe, each over Imagenette's {IMAGENETTE_TRAIN:,} + {IMAGENETTE_VAL:,} images at the "
            "measured in-memory rate",
        ],
        "excludes": ["downloading and decoding CIFAR-100 and Imagenette once (cached afterwards)",
                     "the k-NN search and the linear-head probe (small at 9,469 x 3,925)"],
    }


# --- targets ---------------------------------------------------------------------------------------

def judge(doc: dict) -> list[dict]:
    """Each target of the issue with its measured value and pass / fail (or why it has none)."""
    methods, projection = doc["methods"], doc["projection"]
    full = next(m for m in methods if m["key"] == "full")
    slowest = min(methods, key=lambda m: m["speed_vs_full"])
    prefixes = [m["frozen_prefix"]["back_propagated"] for m in methods]
    eval_rate = doc["evaluation"]["project_pipeline"]["images_per_second"]
    speedup, hours = full.get("vs_reference"), projection.get("gpu_hours")
    lite = doc.get("projection_lite", {})
    lite_hours = lite.get("gpu_hours")
    unmeasured = {  # why a target has no figure, where it can lack one
        "full_vs_reference": doc["reference"].get("reason"),
        "frozen_prefix_not_backpropagated": "the FLOP counter did not see a prefix module run",
        "paper_grid_gpu_hours": projection.get("reason"),
        "paper_lite_grid_gpu_hours": lite.get("reason", "no paper-lite projection in this document"),
    }
    targets = [
        ("full_mfu", "full fine-tuning model FLOP utilisation >= 40%", MFU_TARGET, full["mfu"],
         full["mfu"] >= MFU_TARGET),
        ("full_vs_reference", "full fine-tuning >= 4x the reference pipeline's images/s",
         REFERENCE_SPEEDUP_TARGET, speedup, None if speedup is None else speedup >= REFERENCE_SPEEDUP_TARGET),
        ("no_method_slower_than_full", "every method's images/s >= full fine-tuning's (the slowest shown)", 1.0,
         {"method": slowest["key"], "speed_vs_full": slowest["speed_vs_full"]}, slowest["speed_vs_full"] >= 1.0),
        ("frozen_prefix_not_backpropagated", "no backward FLOPs inside any method's frozen prefix", 0.0,
         {m["key"]: m["frozen_prefix"]["backward_flops_per_image"] for m in methods},
         None if None in prefixes else not any(prefixes)),
        ("evaluation_images_per_second", "k-NN feature extraction >= 5,000 images/s including JPEG decode "
         "(the project's loader)", EVAL_TARGET, eval_rate, eval_rate >= EVAL_TARGET),
        ("paper_grid_gpu_hours", "the whole paper grid <= 2.5 GPU-hours on one H100", GRID_HOURS_TARGET,
         hours, None if hours is None else hours <= GRID_HOURS_TARGET),
        ("paper_lite_grid_gpu_hours", "the whole paper-lite grid <= 1 GPU-hour on one H100", LITE_HOURS_TARGET,
         lite_hours, None if lite_hours is None else lite_hours <= LITE_HOURS_TARGET),
    ]
    judged = []
    for name, description, target, measured, passed in targets:
        if doc["smoke"]:
            status = SMOKE
        elif passed is None:
            status = f"not measured ({unmeasured[name]})"
        else:
            status = "pass" if passed else "fail"
        entry = {"name": name, "description": description, "target": target, "measured": measured, "status": status}
        if name.endswith("grid_gpu_hours") and not doc["smoke"] and "H100" not in (doc["gpu"] or ""):
            entry["note"] = f"measured on {doc['gpu']}; the target is stated for an H100"
        judged.append(entry)
    return judged


# --- output ----------------------------------------------------------------------------------------

def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.1f}"


def table(doc: dict) -> str:
    lines = [f"paper_speed on {doc['gpu'] or doc['environment']['hardware']}"
             + (" -- SMOKE: wiring check only, no meaningful figures" if doc["smoke"] else ""),
             f"{doc['peak']['dtype']} matmul peak: {doc['peak']['flops_per_second'] / 1e12:.3g} TFLOP/s", "",
             f"{'method':<18}{'img/s':>9}{'step ms':>9}{'GiB':>6}{'fwd GF':>8}{'train GF':>9}{'bwd/full':>9}"
             f"{'MFU':>7}{'vs full':>8}{'vs ref':>8}  prefix back-propagated"]
    for m in doc["methods"]:
        ref = "-" if m.get("vs_reference") is None else f"{m['vs_reference']:.2f}x"
        lines.append(
            f"{m['label']:<18}{m['images_per_second']:>9.1f}{1000 * m['step_seconds']:>9.1f}"
            f"{_gib(m['peak_memory_bytes']):>6}"
            f"{m['flops']['forward_per_image'] / 1e9:>8.3g}{m['flops']['train_per_image'] / 1e9:>9.3g}"
            f"{m['flops']['backward_vs_full']:>9.3f}{100 * m['mfu']:>6.1f}%{m['speed_vs_full']:>7.2f}x{ref:>8}  "
            f"{ {True: 'YES', False: 'no', None: 'unknown'}[m['frozen_prefix']['back_propagated']]}")
    ref = doc["reference"]
    if "images_per_second" in ref:
        lines.append(f"{'reference full':<18}{ref['images_per_second']:>9.1f}{1000 * ref['step_seconds']:>9.1f}"
                     f"{_gib(ref['peak_memory_bytes']):>6}{ref['flops']['forward_per_image'] / 1e9:>8.3g}"
                     f"{ref['flops']['train_per_image'] / 1e9:>9.3g}{'':>9}{100 * ref['mfu']:>6.1f}%")
    else:
        lines.append(f"reference: {ref['reason']}")
    ev = doc["evaluation"]
    lines += ["", f"k-NN features, project loader: {ev['project_pipeline']['images_per_second']:.0f} img/s; "
                  f"GPU decode: {ev['gpu_decode']['images_per_second']:.0f} img/s; "
                  f"selection accuracy: {ev['selection']['images_per_second']:.0f} img/s"]
    projection = doc["projection"]
    if projection["projected"]:
        lines.append(f"paper grid projected: {projection['gpu_hours']:.2f} GPU-hours "
                     f"({projection['gpu_hours_with_gpu_decode']:.2f} with GPU decode)")
    else:
        lines.append(f"paper grid not projected: {projection['reason']}")
    lite = doc["projection_lite"]
    if lite["projected"]:
        lines.append(f"paper-lite grid projected: {lite['gpu_hours']:.2f} GPU-hours at {lite['steps']:,} steps "
                     f"(within {LITE_HOURS_TARGET:g} h: up to {lite['steps_within_target']:,} steps)")
    lines += ["", "targets:"] + [f"  {t['status']:<24} {t['description']}: measured {_brief(t['measured'])}"
                                  for t in doc["targets"]]
    return "\n".join(lines)


def _brief(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_brief(v)}" for k, v in value.items())
    return str(value)


# --- main ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    settings, device, reference_skipped = resolve(args, parser)
    preset = get_preset(settings.preset)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    # --- the peak, then our methods ----------------------------------------------------------------
    peak = measure_peak(device, settings.matmul_sizes, settings.matmul_seconds)
    train_set = synthetic_cifar(settings.train_images, device, args.seed)
    methods = [measure_method(key, preset, settings, train_set, device, args)
               for key in progress_bar(args.methods, args.quiet, desc="methods", unit="method")]
    del train_set
    full = next(m for m in methods if m["key"] == "full")
    for m in methods:
        m["flops"]["backward_vs_full"] = m["flops"]["backward_per_image"] / full["flops"]["backward_per_image"]
        m["flops"]["train_vs_forward"] = m["flops"]["train_per_image"] / m["flops"]["forward_per_image"]
        m["mfu"] = m["images_per_second"] * m["flops"]["train_per_image"] / peak["flops_per_second"]
        m["speed_vs_full"] = m["images_per_second"] / full["images_per_second"]
        m["no_slower_than_full"] = m["speed_vs_full"] >= 1.0

    # --- the reference, then evaluation ----------------------------------------------------------
    if reference_skipped:
        reference = {"reason": reference_skipped}
    else:
        reference = measure_reference(preset, settings, device, args)
        reference["mfu"] = (reference["images_per_second"] * reference["flops"]["train_per_image"]
                            / peak["flops_per_second"])
        for m in methods:  # ours per method against the authors' default, full fine-tuning
            m["vs_reference"] = m["images_per_second"] / reference["images_per_second"]
    evaluation = measure_evaluation(preset, settings, device, args)

    doc = {
        "benchmark": "paper_speed",
        "smoke": args.smoke,
        "date": started,
        "command": shlex.join(["python", "benchmarks/paper_speed.py", *argv]),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "environment": env.environment(device),
        "settings": {**asdict(settings), "backbone": preset.backbone, "compile": args.compile,
                     "weights": "random init (speed does not depend on the weights)",
                     "data": "synthetic uint8 images of CIFAR's shape (3, 32, 32), random labels"},
        "peak": peak,
        "methods": methods,
        "reference": reference,
        "evaluation": evaluation,
        "projection": project_grid(methods, evaluation, get_preset("paper")),  # the paper's, even when smoke
        "projection_lite": project_lite(methods, evaluation, get_preset("paper-lite")),
    }
    doc["targets"] = judge(doc)
    io.write_json(args.out, doc)
    print(table(doc), file=sys.stderr)
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    print(f"written to {args.out}", file=sys.stderr)
    return 0 if args.smoke or all(t["status"] != "fail" for t in doc["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
