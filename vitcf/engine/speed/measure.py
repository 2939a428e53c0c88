"""Speed measurements on one device: the matmul peak, each method's training through `finetune`, k-NN extraction.

Everything runs with random-init weights (speed does not depend on them) and synthetic data in the
real formats, so nothing is downloaded: uint8 32x32 images held on the device (CIFAR-100's format)
for training and selection, and a folder of synthetic JPEGs in ImageNet's layout for the k-NN
feature extraction, read by the project's loader and, for comparison, decoded on the device.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vitcf.engine.batching import batches
from vitcf.engine.evaluate import accuracy, autocast, extract_features
from vitcf.engine.imagenet import IMAGENET_CROP, IMAGENET_RESIZE, imagenet_batches
from vitcf.engine.presets import Preset
from vitcf.engine.sources import ImageSet
from vitcf.engine.speed.flops import count_flops, frozen_prefix, prefix_backward
from vitcf.engine.train import TrainConfig, finetune, input_transform, train_step
from vitcf.model.backbones import BACKBONES, create_backbone
from vitcf.model.methods import make_method

# The methods this benchmark can time, by the name --methods takes (the paper's rows, in table order).
METHODS: dict[str, tuple[str, dict]] = {
    "full": ("full", {}),
    "top3": ("top_k", {"k": 3}),
    "linear": ("linear", {}),
    "lora_r8": ("lora", {"r": 8}),
    **{f"block_expansion_p{p}": ("block_expansion", {"p": p}) for p in (1, 2, 3, 4)},
}

# CIFAR-100 as the paper fine-tunes on it: its classes, image shape and train split.
NUM_CLASSES = 100
CIFAR_SHAPE = (3, 32, 32)
CIFAR100_TRAIN = 50_000


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
    """The GPU benchmark's sizes for `preset`: its batch, its hold-out, ImageNet-like JPEGs."""
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
    """The CPU smoke check's sizes: a few steps and images, enough to run every measurement once."""
    return Settings(
        preset=preset.name, batch_size=preset.batch_size, warmup_steps=1, timed_steps=2, train_images=64,
        flop_batch=2, matmul_sizes=(128, 256), matmul_seconds=0.05,
        eval_batch_size=8, eval_images=24, eval_warmup_batches=1, eval_workers=2, jpeg_pool=6,
        jpeg_sizes=((48, 64), (64, 48)), selection_images=32,
        reference_images=64, reference_workers=2,
    )


def sync(device: torch.device) -> None:
    """Wait for the work queued on `device` (a CUDA device; the CPU has none queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a fresh peak-memory count on a CUDA `device`, with the cached blocks freed first."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    """Peak allocated GPU memory since the last reset; None on the CPU (not tracked there)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def progress_bar(iterable: Iterable, quiet: bool, **kwargs):
    """`iterable` with a transient tqdm bar, none when `quiet`."""
    return tqdm(iterable, disable=quiet, leave=False, **kwargs)


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


def measure_method(key: str, preset: Preset, settings: Settings, train_set: ImageSet, device: torch.device, *,
                   compile: bool, seed: int, quiet: bool) -> dict:
    """Method `key` of `METHODS` on a fresh random-init backbone: its FLOPs, its frozen prefix's backward
    FLOPs and its `finetune` images/s and peak memory (`compile`: the forward under torch.compile)."""
    name, hparams = METHODS[key]
    method = make_method(name, **hparams)
    config = train_config(preset, settings, name, hparams, compile)
    torch.manual_seed(seed)
    with device:  # build straight on the device: a ViT-B's random init is slow on a CPU
        model = method.apply(create_backbone(preset.backbone, num_classes=NUM_CLASSES))
    model = model.to(device)
    flops = count_training_flops(model, train_set, config, settings, device)
    prefix = prefix_backward(flops, frozen_prefix(model))
    timing = time_finetune(model, train_set, config, settings, device, seed, quiet)
    del model
    if compile:
        torch.compiler.reset()  # compiled graphs hold on to the model; the next method's memory starts clean
    gc.collect()
    return {
        "key": key, "method": name, "hparams": method.hparams, "label": method.label, "lr": config.lr,
        **timing,
        "flops": {k: v for k, v in flops.items() if k != "backward_by_module"},
        "frozen_prefix": prefix,
    }


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


def measure_evaluation(preset: Preset, settings: Settings, device: torch.device, *, seed: int, quiet: bool) -> dict:
    """images/s of k-NN feature extraction from JPEGs (the project's ImageNet loader, and decoding on the
    device) and of the selection accuracy on in-memory images, on a random-init backbone of `preset`."""
    spec = BACKBONES[preset.backbone]
    files = synthetic_jpegs(settings.jpeg_pool, settings.jpeg_sizes, seed)
    torch.manual_seed(seed)
    with device:
        model = create_backbone(preset.backbone, num_classes=NUM_CLASSES)
    model = model.to(device).eval()
    transform = input_transform(spec.img_size, preset.knn_mean, preset.knn_std, spec.in_chans)
    with tempfile.TemporaryDirectory(prefix="paper-speed-") as folder:
        root = write_imagenet_tree(Path(folder), files, settings.eval_images)
        loader = imagenet_batches(root, "train", settings.eval_batch_size, num_workers=settings.eval_workers)
        project = time_extraction(model, loader, transform, device, settings, quiet, total=len(loader))
    gpu = time_extraction(model, decoded_batches(files, settings.eval_images, settings.eval_batch_size, device),
                          transform, device, settings, quiet)
    selection = time_selection(model, preset, settings, device, seed)
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
            "description": f"vitcf.engine.imagenet.imagenet_batches (PIL decode, bicubic resize {IMAGENET_RESIZE}, "
                           f"centre crop {IMAGENET_CROP}, {settings.eval_workers} DataLoader workers) + "
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
