"""Fine-tuning: SGD with momentum on a per-step cosine schedule with linear warm-up.

The trainer knows nothing about methods: it optimises whatever has `requires_grad`. Augmentation
runs on the device that holds the uint8 images, so a GPU is never starved by a CPU pipeline. The
model is evaluated on a selection split every `eval_every` steps, and the best trainable state is
restored at the end (model selection).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from vitcf.base.checks import check_int, check_number
from vitcf.engine.batching import batches, match_channels, normalize, random_resized_crop_flip, resize
from vitcf.engine.sources import ImageSet
from vitcf.engine.evaluate import accuracy, autocast


MAX_LR = 10  # far above any rate that trains (the paper's largest is 0.05); beyond it float32 steps overflow


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    eval_every: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    momentum: float = 0.9
    weight_decay: float = 0.0
    eval_batch_size: int = 256
    compile: bool = False  # torch.compile the training forward pass (worth it on a GPU)

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "img_size"):
            check_int(f"training: {name}", getattr(self, name))
        check_int("training: warmup_steps", self.warmup_steps, 0, self.steps)
        check_number("training: lr", self.lr, 0, MAX_LR, low_open=True)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base rate at `step`: linear from 0 over `warmup` steps, then a cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def input_transform(img_size: int, mean, std, in_chans: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Evaluation input: plain resize to the model's size, grey to RGB if needed, normalise."""

    def transform(images: torch.Tensor) -> torch.Tensor:
        return normalize(match_channels(resize(images, img_size), in_chans), mean, std)

    return transform


class DivergedError(RuntimeError):
    """Training stopped because the loss stopped being finite: nothing of the run is recorded."""


@dataclass
class TrainResult:
    best_step: int
    best_selection_accuracy: float
    history: list[dict] = field(default_factory=list)  # {"step", "loss", "lr", "selection_accuracy"?}
    train_seconds: float = 0.0  # optimisation only: selection and on_step evaluations excluded
    images_per_second: float = 0.0


def train_step(
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimiser: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device,
    generator: torch.Generator,
) -> torch.Tensor:
    """One update on a uint8 batch: augment where the batch lives, forward (bf16 on CUDA), backward, step.

    Returns the loss as a tensor: reading its value waits for the device, so that is left to the
    caller. A function of its own so that benchmarks can count and time exactly this step.
    """
    inputs = random_resized_crop_flip(images, config.img_size, scale=config.crop_scale, generator=generator)
    inputs = normalize(match_channels(inputs, config.in_chans), config.mean, config.std)
    with autocast(device):
        loss = nn.functional.cross_entropy(forward(inputs), labels)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss


def finetune(
    model: nn.Module,
    train_set: ImageSet,
    selection_set: ImageSet,
    config: TrainConfig,
    *,
    device: torch.device,
    generator: torch.Generator,
    progress: bool = True,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model`'s trainable parameters; return with the best state (by selection accuracy) loaded.

    `on_step(step, model)` is called before the first update (step 0) and after every update; it may
    evaluate the model (e.g. forgetting over steps) and must leave it as it found it.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("training: the model has no trainable parameters")
    optimiser = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: lr_factor(step, config.steps, config.warmup_steps)
    )
    evaluate_input = input_transform(config.img_size, config.mean, config.std, config.in_chans)
    train_set, selection_set = train_set.to(device), selection_set.to(device)

    def select() -> float:
        return accuracy(model, batches(selection_set, config.eval_batch_size, shuffle=False), evaluate_input, device=device)

    def trainable_state() -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    forward = torch.compile(model) if config.compile else model  # evaluation stays eager
    result = TrainResult(best_step=0, best_selection_accuracy=-1.0)
    best_state = trainable_state()
    if on_step is not None:
        on_step(0, model)
    model.train()
    step, started, excluded = 0, time.perf_counter(), 0.0  # excluded: time spent evaluating
    bar = tqdm(total=config.steps, desc="fine-tuning", disable=not progress, leave=False)
    while step < config.steps:
        for images, labels in batches(train_set, config.batch_size, shuffle=True, generator=generator, drop_last=True):
            loss = train_step(forward, optimiser, images, labels, config, device=device, generator=generator)
            entry = {"step": step + 1, "loss": loss.item(), "lr": schedule.get_last_lr()[0]}
            if not math.isfinite(entry["loss"]):
                bar.close()
                raise DivergedError(f"training diverged: the loss is {entry['loss']} at step {entry['step']} of "
                                    f"{config.steps} (learning rate {entry['lr']:g} there, base rate {config.lr:g}); "
                                    "no record is written. A smaller --lr usually trains.")
            schedule.step()
            step += 1
            evaluating = time.perf_counter()
            if step % config.eval_every == 0 or step == config.steps:
                entry["selection_accuracy"] = select()
                if entry["selection_accuracy"] > result.best_selection_accuracy:
                    result.best_step, result.best_selection_accuracy = step, entry["selection_accuracy"]
                    best_state = trainable_state()
            result.history.append(entry)
            if on_step is not None:
                on_step(step, model)
            model.train()
            excluded += time.perf_counter() - evaluating
            bar.update(1)
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
            if step == config.steps:
                break
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.train_seconds = time.perf_counter() - started - excluded
    result.images_per_second = config.steps * config.batch_size / result.train_seconds
    with torch.no_grad():
        named = dict(model.named_parameters())
        for name, value in best_state.items():
            named[name].copy_(value)
    model.eval()
    return result
