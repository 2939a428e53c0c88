"""Evaluation: CLS features, DINO's weighted k-NN, classifier accuracy and forgetting.

Forgetting is measured the way DINO measures representation quality: L2-normalised CLS features of
a labelled bank (ImageNet train) vote for the class of each query (ImageNet val) through a
temperature-weighted k-NN. Running the same protocol on the pre-trained and on the fine-tuned
backbone and subtracting gives the drop. A second protocol (`fit_linear_head`) trains a linear head
once on the pre-trained features and re-applies it to the fine-tuned features.

Batches are `(images, labels)` with uint8 images: the caller's `transform` turns a uint8 batch that
is already on the device into the float, normalised model input. Sending uint8 and normalising on
the accelerator moves four times fewer bytes, and lets one code path serve tensors held in memory
as well as a streaming ImageNet loader.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vitcf.base.checks import check_int, check_number
from vitcf.model.backbones import cls_features

KNN_KS = (10, 20, 100, 200)  # DINO's reported k (20 is its headline number)
KNN_TEMPERATURE = 0.07  # DINO's default

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Transform = Callable[[torch.Tensor], torch.Tensor]


# --- running a model over batches ----------------------------------------------------------------

@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put `model` in eval mode, then give every submodule back its own previous mode.

    Restoring per module rather than calling `model.train(previous)` keeps mixed states intact,
    e.g. a training model with some frozen parts deliberately held in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def autocast(device: torch.device):
    """bf16 autocast on CUDA only: on CPU it is slow and would change the features for nothing."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _checked_batch(images: torch.Tensor, labels: torch.Tensor, index: int) -> torch.Tensor:
    """The labels as int64 on the CPU, after checking that the batch is well formed."""
    if images.dim() != 4:
        raise ValueError(f"batch {index}: images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if labels.dim() != 1 or len(labels) != len(images):
        raise ValueError(
            f"batch {index}: labels must have shape ({len(images)},) to match the images, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"batch {index}: labels must be integers, got dtype {labels.dtype}")
    return labels.to(device="cpu", dtype=torch.int64)


def _progress(batches: Batches, total: int | None, progress: bool, desc: str):
    return tqdm(batches, total=total, disable=not progress, desc=desc, unit="batch", leave=False)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    batches: Batches,
    transform: Transform,
    *,
    device: str | torch.device = "cpu",
    total: int | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised CLS features of every image, and the labels: float32 (N, width), int64 (N,), on the CPU.

    `model` runs in eval mode (its previous modes are restored afterwards) and may be a timm ViT or a
    peft wrapper around one, which forwards `forward_features`/`forward_head`. Rows are normalised
    here, in float32, because every consumer (k-NN, linear head) uses cosine geometry, and because
    bf16 features from CUDA autocast are then brought back to float32 in one place. `total` (the
    number of batches) only sizes the progress bar shown when `progress` is set.
    """
    device = torch.device(device)
    features, labels = [], []
    with _eval_mode(model):
        for index, (images, batch_labels) in enumerate(_progress(batches, total, progress, "features")):
            labels.append(_checked_batch(images, batch_labels, index))
            inputs = transform(images.to(device, non_blocking=True))
            with autocast(device):
                batch_features = cls_features(model, inputs)
            features.append(F.normalize(batch_features.float(), dim=1).cpu())
    if not features:
        raise ValueError("extract_features got no batches; the data source is empty")
    return torch.cat(features), torch.cat(labels)


def accuracy(
    model: nn.Module,
    batches: Batches,
    transform: Transform,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> float:
    """Top-1 accuracy, in percent, of `model`'s logits (argmax; ties go to the lowest class index);
    see `top1_correct`."""
    return percent(top1_correct(model, batches, transform, device=device, progress=progress))


def percent(hits: torch.Tensor) -> float:
    """The share of True in a boolean per-query tensor, in percent (an accuracy from its correctness)."""
    return 100.0 * int(hits.sum()) / len(hits)


@torch.no_grad()
def top1_correct(
    model: nn.Module,
    batches: Batches,
    transform: Transform,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Whether `model`'s top-1 class is right for each image, in the batches' order (a boolean CPU tensor).

    Results stay on the device until the end, so a CUDA run does not synchronise on every batch.
    A label outside the logits' range is an error, not a silent miss: it means the head and the
    dataset disagree.
    """
    device = torch.device(device)
    correct = []
    seen = 0
    num_classes = None
    max_label = -1
    with _eval_mode(model):
        for index, (images, batch_labels) in enumerate(_progress(batches, None, progress, "accuracy")):
            batch_labels = _checked_batch(images, batch_labels, index)
            inputs = transform(images.to(device, non_blocking=True))
            with autocast(device):
                logits = model(inputs)
            if logits.dim() != 2 or len(logits) != len(images):
                raise ValueError(
                    f"batch {index}: the model must return logits of shape ({len(images)}, classes), "
                    f"got {tuple(logits.shape)}"
                )
            num_classes = logits.shape[1]
            if len(batch_labels):
                max_label = max(max_label, int(batch_labels.max()))
                if int(batch_labels.min()) < 0:
                    raise ValueError(f"batch {index}: labels must be >= 0, got {int(batch_labels.min())}")
            correct.append(logits.argmax(dim=1) == batch_labels.to(device, non_blocking=True))
            seen += len(images)
    if seen == 0:
        raise ValueError("accuracy got no images; the data source is empty")
    if max_label >= num_classes:
        raise ValueError(f"label {max_label} is out of range for a model with {num_classes} outputs")
    return torch.cat(correct).cpu()


# --- weighted k-NN -------------------------------------------------------------------------------

def _check_ks(ks: int | Sequence[int], bank_size: int) -> tuple[int, ...]:
    if isinstance(ks, int) and not isinstance(ks, bool):
        ks = (ks,)
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one k")
    for k in ks:
        if not isinstance(k, int) or isinstance(k, bool):
            raise ValueError(f"k must be an integer, got {k!r}")
        if not 1 <= k <= bank_size:
            raise ValueError(f"k={k} is out of range: k must satisfy 1 <= k <= bank size ({bank_size})")
    return tuple(dict.fromkeys(ks))  # unique, in the caller's order


def _check_labelled(name: str, features: torch.Tensor, labels: torch.Tensor) -> None:
    if features.dim() != 2:
        raise ValueError(f"{name} features must have shape (N, width), got {tuple(features.shape)}")
    if labels.dim() != 1 or len(labels) != len(features):
        raise ValueError(
            f"{name} labels must have shape ({len(features)},) to match the features, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} labels must be integers, got dtype {labels.dtype}")


def _check_label_range(num_classes: int, **labels: torch.Tensor) -> None:
    for name, values in labels.items():
        if len(values) == 0:
            continue
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} label {bad} is out of range; allowed: 0..{num_classes - 1} (num_classes={num_classes})"
            )


def knn_accuracy(
    bank_features: torch.Tensor,
    bank_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    *,
    ks: int | Sequence[int] = KNN_KS,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """DINO's weighted k-NN: top-1 accuracy (percent) per k; see `knn_correct` for the rule."""
    correct = knn_correct(bank_features, bank_labels, query_features, query_labels, ks=ks,
                          temperature=temperature, num_classes=num_classes, chunk_size=chunk_size)
    return {k: percent(hits) for k, hits in correct.items()}


def knn_correct(
    bank_features: torch.Tensor,
    bank_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    *,
    ks: int | Sequence[int] = KNN_KS,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, torch.Tensor]:
    """DINO's weighted k-NN: whether each query's predicted class is right, per k (boolean CPU tensors
    in the queries' order; their mean is the top-1 accuracy).

    Similarity is the cosine (rows are L2-normalised here; already-normalised rows are unchanged up to
    rounding). Each query keeps its max(ks) most similar bank items; neighbour j votes for its label
    with weight exp(s_j / T), and for each k the votes of the k nearest are summed and the argmax class
    is the prediction (ties go to the lowest class index).

    Two implementation choices, neither of which changes a prediction:
    - weights are exp((s_j - s_1) / T), DINO's weights divided by a per-query constant: all vote
      ratios are the same, but small temperatures can no longer overflow float32;
    - votes are added one neighbour rank at a time, nearest first, so the sums are formed in the same
      order whatever the chunking or device (CUDA's scatter-add would add in arbitrary order).

    Queries are processed `chunk_size` at a time; the largest temporary is chunk_size x len(bank)
    similarities (4 bytes each), so lower `chunk_size` for a large bank. The work runs on the bank's
    device: pass CUDA tensors to run it there. `num_classes` defaults to max label + 1 over bank and
    queries.
    """
    _check_labelled("bank", bank_features, bank_labels)
    _check_labelled("query", query_features, query_labels)
    if bank_features.shape[1] != query_features.shape[1]:
        raise ValueError(
            f"feature widths differ: bank {bank_features.shape[1]}, query {query_features.shape[1]}"
        )
    if len(query_features) == 0:
        raise ValueError("knn_correct got no queries")
    ks = _check_ks(ks, len(bank_features))
    check_number("temperature", temperature, 0.0, low_open=True)
    check_int("chunk_size", chunk_size)
    if num_classes is None:
        num_classes = max(int(bank_labels.max()), int(query_labels.max())) + 1
    check_int("num_classes", num_classes)
    _check_label_range(num_classes, bank=bank_labels, query=query_labels)

    device = bank_features.device
    bank = F.normalize(bank_features.float(), dim=1)
    bank_labels = bank_labels.to(device=device, dtype=torch.int64)
    max_k = max(ks)
    correct: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, len(query_features), chunk_size):
        queries = F.normalize(query_features[start:start + chunk_size].to(device).float(), dim=1)
        targets = query_labels[start:start + chunk_size].to(device)
        similarity, index = (queries @ bank.T).topk(max_k, dim=1)  # sorted, nearest first
        weights = ((similarity - similarity[:, :1]) / temperature).exp()
        for k, predictions in zip(ks, _weighted_votes(weights, bank_labels[index], ks, num_classes)):
            correct[k].append((predictions == targets).cpu())
    return {k: torch.cat(parts) for k, parts in correct.items()}


def _weighted_votes(weights: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...], num_classes: int):
    """For each k in `ks` (its order), the argmax class of the summed votes of the k nearest."""
    votes = torch.zeros(len(weights), num_classes, dtype=weights.dtype, device=weights.device)
    predictions = {}
    for rank in range(max(ks)):
        # one vote per row: no two additions hit the same cell, so the result is deterministic
        votes.scatter_add_(1, labels[:, rank:rank + 1], weights[:, rank:rank + 1])
        if rank + 1 in ks:
            predictions[rank + 1] = votes.argmax(dim=1)
    return [predictions[k] for k in ks]


# --- forgetting ----------------------------------------------------------------------------------

def forgetting(baseline: dict[int, float], after: dict[int, float]) -> dict[int, dict[str, float]]:
    """Per k: the accuracies before and after, the drop in percentage points, and the drop relative to before.

    A positive drop is forgetting; a negative one means the fine-tuned features got better. The
    relative drop is a fraction of the baseline (0 when the baseline is 0, where it is undefined).
    """
    if set(baseline) != set(after):
        only_baseline = sorted(set(baseline) - set(after))
        only_after = sorted(set(after) - set(baseline))
        raise ValueError(
            f"baseline and after must have the same ks; only in baseline: {only_baseline}, only in after: {only_after}"
        )
    result = {}
    for k, b in baseline.items():
        a = after[k]
        drop = b - a
        result[k] = {"baseline": b, "after": a, "drop": drop, "relative_drop": drop / b if b != 0 else 0.0}
    return result


# --- linear head on frozen features --------------------------------------------------------------

def fit_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> nn.Linear:
    """A linear classifier (width -> num_classes) fitted by full-batch Adam on fixed features.

    The features are frozen and unaugmented, so the problem is plain multinomial logistic regression:
    convex and small. Full-batch steps then have no sampling noise, which makes the fit depend only on
    the data and `seed` (the initialisation), and cost a fixed, predictable `epochs` passes over the
    data (one step per pass). Adam is used rather than L-BFGS because its cost per step is fixed (no
    line search) and it copes with unit-norm features whose logits need large weights; the learning
    rate follows a cosine decay to 0 so the last steps settle instead of oscillating. `weight_decay`
    adds (weight_decay / 2) * ||W||^2 (weights, not bias) to the mean cross-entropy; without it the
    weights of (nearly) separable classes keep growing and the head overfits (on synthetic clustered
    features, 1e-4 generalised better than 0 or 1e-3).

    Fit and evaluate it on the L2-normalised CLS features of `extract_features`, through
    `linear_head_accuracy`: the head expects normalised features, so attaching it as the model's own
    classifier (which sees un-normalised pre-logits) would not compute the same thing.
    """
    _check_labelled("training", features, labels)
    if len(features) == 0:
        raise ValueError("fit_linear_head got no training features")
    check_int("num_classes", num_classes)
    check_int("epochs", epochs)
    check_number("lr", lr, 0.0, low_open=True)
    check_number("weight_decay", weight_decay, 0.0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    _check_label_range(num_classes, training=labels)

    features = features.float()
    labels = labels.to(device=features.device, dtype=torch.int64)
    head = nn.Linear(features.shape[1], num_classes, device=features.device)
    generator = torch.Generator(device=features.device).manual_seed(seed)
    bound = 1.0 / math.sqrt(features.shape[1])  # nn.Linear's default init, drawn from our generator
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)

    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    with torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(head(features), labels)
            if weight_decay:
                loss = loss + 0.5 * weight_decay * head.weight.pow(2).sum()
            loss.backward()
            optimizer.step()
            schedule.step()
    return head.requires_grad_(False)


def linear_head_accuracy(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (percent) of `head` on `features` (argmax; ties go to the lowest class index)."""
    return percent(linear_head_correct(head, features, labels))


@torch.no_grad()
def linear_head_correct(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether `head`'s top-1 class is right for each row of `features` (a boolean CPU tensor)."""
    _check_labelled("evaluation", features, labels)
    if len(features) == 0:
        raise ValueError("linear_head_correct got no features")
    if features.shape[1] != head.in_features:
        raise ValueError(f"feature width {features.shape[1]} does not match the head's input width {head.in_features}")
    _check_label_range(head.out_features, evaluation=labels)
    device = head.weight.device
    correct = []
    for start in range(0, len(features), 8192):  # bounds the logits tensor for many classes
        logits = head(features[start:start + 8192].to(device).float())
        correct.append((logits.argmax(dim=1) == labels[start:start + 8192].to(device)).cpu())
    return torch.cat(correct)
