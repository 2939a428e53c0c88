"""The reference pipeline rebuilt from the authors' description, timed like ours: transformers' ViT, PIL transforms.

Hugging Face transformers' `ViTForImageClassification` of the backbone's shape, fed by a torchvision
PIL transform pipeline (RandomResizedCrop + flip from 32x32 images) in a DataLoader, trained in fp32
with TF32. Needs the `transformers` package (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitcf.engine.presets import Preset
from vitcf.engine.speed.flops import count_flops
from vitcf.engine.speed.measure import NUM_CLASSES, Settings, peak_bytes, progress_bar, reset_peak, sync
from vitcf.model.backbones import BACKBONES


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


def measure_reference(preset: Preset, settings: Settings, device: torch.device, *, seed: int, attention: str | None,
                      quiet: bool) -> dict:
    """The reference's training images/s, step time, peak memory and FLOPs, timed as ours are
    (`attention`: transformers' attention implementation, None for its default)."""
    from torchvision import transforms

    spec = BACKBONES[preset.backbone]
    torch.manual_seed(seed)
    model = reference_model(preset.backbone, attention).to(device).train()
    transform = transforms.Compose([
        transforms.RandomResizedCrop(spec.img_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.5,) * 3, (0.5,) * 3),
    ])  # fmt: skip
    loader = torch.utils.data.DataLoader(
        SyntheticCIFAR(settings.reference_images, seed, transform), batch_size=settings.batch_size,
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
        for step in progress_bar(range(warmup + timed), quiet, desc="reference", unit="step"):
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
