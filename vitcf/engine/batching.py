"""Batching: held-out splits and minibatches of an `ImageSet`, and the batch transforms that run on its device.

Every transform takes uint8 batches (B, C, H, W) wherever they live, CPU or GPU, and gives float32 in
[0, 1] (or normalised): cropping, flipping, resizing and normalisation happen batch by batch on the
device that holds the images, with no DataLoader in the loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from vitcf.base.checks import check_int
from vitcf.engine.sources import SIDES, ImageSet

MIN_SOURCE_SIZE = 2  # the smallest side a dataset may be downsampled to (`at_source_size`)


# ---------------------------------------------------------------------------------------------
# Splitting and batching


def holdout_split(ds: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split `ds` into (train_part, holdout_part), holding out about `fraction` of every class.

    Stratified per class: round(fraction * n_c) images of class c go to the holdout, but at least
    one and at most n_c - 1 whenever n_c >= 2, so that every class with two or more images is seen
    in both parts (a class with a single image stays in train_part). The draw depends only on
    `seed` and the labels; both parts keep the order of `ds`.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in the open interval (0, 1), got {fraction!r}")
    labels = ds.labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    in_holdout = torch.zeros(len(ds), dtype=torch.bool)
    for c in torch.unique(labels).tolist():  # sorted, so the draws happen in a fixed order
        members = torch.nonzero(labels == c).flatten()
        n = len(members)
        k = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        in_holdout[members[torch.randperm(n, generator=generator)[:k]]] = True
    return ds.subset(torch.nonzero(~in_holdout).flatten()), ds.subset(torch.nonzero(in_holdout).flatten())


def batches(
    ds: ImageSet,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images_uint8, labels) minibatches by indexing ds (which may already live on a GPU).

    One pass is one epoch: every image appears once (all but the last incomplete batch with
    `drop_last`). With `shuffle`, the order is a permutation drawn from `generator` (on its own
    device, then moved to the data), so a seeded generator gives the same batches every time.
    Arguments are checked here, at the call, not at the first `next()`.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(ds)
    if shuffle:
        device = generator.device if generator is not None else "cpu"
        order = torch.randperm(n, generator=generator, device=device).to(ds.device)
    else:
        order = None
    return _batches(ds, batch_size, order, drop_last)


def _batches(ds: ImageSet, batch_size: int, order: torch.Tensor | None, drop_last: bool):
    n = len(ds)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:  # contiguous slices: views, no copy
            yield ds.images[start : start + batch_size], ds.labels[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            yield ds.images[index], ds.labels[index]


# ---------------------------------------------------------------------------------------------
# Batch transforms (any device)


def check_source_size(name: str, size: int | None) -> None:
    """Raise ValueError unless `size` is None or a side `at_source_size` can bring dataset `name` down to."""
    if size is None:
        return
    side = SIDES[name]
    check_int(f"source size for {name} (its images are {side} px; leave it out for them as they are)", size,
              MIN_SOURCE_SIZE, side - 1)


def at_source_size(ds: ImageSet, size: int | None, chunk: int = 1024) -> ImageSet:
    """`ds` with every image downsampled to (size, size) (bilinear with antialiasing, back to uint8), as a
    lower-resolution source of the same images; the input pipeline then upsamples it to the model's size.
    None, or the set's own side, returns `ds` itself."""
    if size is None or size == ds.size:
        return ds
    _check_size(size)
    if size > ds.size:
        raise ValueError(f"at_source_size only downsamples: {ds.name} is {ds.size} px, asked for {size}")
    small = torch.cat([resize(ds.images[i:i + chunk], size).mul_(255).round_().to(torch.uint8)
                       for i in range(0, len(ds), chunk)])
    return ImageSet(ds.name, small, ds.labels, ds.classes)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1]; floating input is taken to be in [0, 1] already."""
    if images.dim() != 4:
        raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if images.dtype.is_floating_point:
        return images.float()
    raise ValueError(f"images must be uint8 (0..255) or floating (0..1), got {images.dtype}")


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch to (size, size): float32 in [0, 1], bilinear with antialiasing."""
    _check_size(size)
    x = F.interpolate(_to_float(images), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0, 1)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey images fed to an RGB model are repeated over its channels (a view, no copy)."""
    return x.expand(-1, channels, -1, -1) if x.shape[1] == 1 and channels != 1 else x


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel, for x of shape (B, C, H, W) or (C, H, W) and len(mean) == len(std) == C."""
    if x.dim() not in (3, 4):
        raise ValueError(f"expected (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    channels = x.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean and std need one value per channel ({channels}), got {len(mean)} and {len(std)}"
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {tuple(std)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"normalize expects floating images in [0, 1] (see resize), got {x.dtype}")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


def random_resized_crop_flip(
    images: torch.Tensor,
    size: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A random crop of each image, resized to (size, size), flipped horizontally with probability 0.5.

    Input: a uint8 batch (B, C, H, W) on any device (floating input is taken to be in [0, 1]).
    Output: float32 (B, C, size, size) in [0, 1]. Per image, like torchvision's RandomResizedCrop:
    the box's area is a fraction of the image's drawn uniformly from `scale`, its log aspect ratio
    (w/h) uniformly from log(`ratio`), its position uniformly among those that fit. All images are
    done in one vectorised call (one affine matrix per image, `affine_grid` + bilinear
    `grid_sample`); the flip is a negative x scale. Random numbers come from `generator` (on its
    own device, e.g. a seeded CPU generator for GPU images), so a seed fixes the result.

    Where it differs from torchvision:
    - no rejection loop (10 attempts, then a centre crop): a box wider or taller than the image is
      clamped to the image's width or height instead, which skews its aspect ratio;
    - box sizes and positions are continuous, not rounded to whole pixels;
    - the box is resampled by plain bilinear interpolation, without antialiasing, so a box much
      larger than `size` aliases (torchvision resizes with antialiasing). The study's crops are
      upsampled (32 px images to 224, 28 to 28), where the two agree.
    """
    _check_size(size)
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {tuple(scale)}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must be (lo, hi) with 0 < lo <= hi, got {tuple(ratio)}")
    x = _to_float(images)
    b, _, h, w = x.shape
    device = generator.device if generator is not None else "cpu"
    u = torch.rand(b, 5, generator=generator, device=device, dtype=torch.float64).cpu()
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * (h * w)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    box_w = torch.sqrt(area * aspect).clamp(max=w)
    box_h = torch.sqrt(area / aspect).clamp(max=h)
    left = (w - box_w) * u[:, 2]
    top = (h - box_h) * u[:, 3]
    mirror = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones(b, dtype=torch.float64)
    # affine_grid maps output coordinates in [-1, 1] (pixel edges, align_corners=False) to input
    # ones: x_in = sx * x_out + tx, where sx is the box's share of the width and tx its centre.
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = mirror * box_w / w
    theta[:, 0, 2] = (2 * left + box_w) / w - 1
    theta[:, 1, 1] = box_h / h
    theta[:, 1, 2] = (2 * top + box_h) / h - 1
    theta = theta.to(device=x.device, dtype=torch.float32)
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    # "border": bilinear taps half a pixel beyond the box edge repeat the edge, as interpolate does.
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0, 1)
