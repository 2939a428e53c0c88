"""The instance-retrieval probe: seeded views of pre-training-domain images, each image its own class.

A class-level k-NN with ten classes can stay high while a representation loses most of what
pre-training taught it: ten clusters are easy to keep apart. Instance retrieval, the kind of
evaluation DINO reports besides k-NN (copy detection, image retrieval), asks for more: a view of an
image must find the other views of the *same* image among thousands of others. Each of `images`
source images gets `views` random affine warps (rotation, scale, shift, seeded); the first
`bank_views` of each are the memory bank, the rest are queries, and a query is right when the
weighted k-NN vote names its source image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vitcf.base.checks import check_int
from vitcf.engine.sources import ImageSet


@dataclass(frozen=True)
class InstanceProbe:
    """How the instance-retrieval probe is made; every field goes into a run's protocol."""

    images: int = 1_000  # source images (each its own class), drawn from the pre-training test split
    views: int = 10  # warped views of each
    bank_views: int = 5  # the first views of each image are the memory bank, the rest the queries
    rotation: float = 15.0  # degrees, uniform in +-rotation
    scale: tuple[float, float] = (0.8, 1.1)  # zoom, uniform
    shift: float = 0.12  # translation as a fraction of the side, uniform in +-shift on each axis
    seed: int = 0
    curve_images: int = 250  # source images of the smaller probe taken during training

    def __post_init__(self) -> None:
        for name in ("images", "views", "bank_views", "curve_images"):
            check_int(f"InstanceProbe.{name}", getattr(self, name))
        if not 1 <= self.bank_views < self.views:
            raise ValueError(f"InstanceProbe.bank_views must lie in [1, views - 1] = [1, {self.views - 1}], "
                             f"got {self.bank_views}")
        if self.curve_images > self.images:
            raise ValueError(f"InstanceProbe.curve_images ({self.curve_images}) exceeds images ({self.images})")


def _warps(n: int, config: InstanceProbe, generator: torch.Generator) -> torch.Tensor:
    """`n` random affine matrices (n, 2, 3) in the normalised coordinates of `affine_grid`."""
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(config.rotation)
    low, high = config.scale
    zoom = low + torch.rand(n, generator=generator) * (high - low)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * config.shift * 2  # the side spans 2 units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output -> input sampling: the inverse zoom
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def instance_views(source: ImageSet, config: InstanceProbe) -> tuple[ImageSet, ImageSet]:
    """(bank, queries): `config.images` images of `source` in a seeded random order, each warped
    `config.views` times; labels are the source image's index, so instances 0..m-1 are a smaller probe."""
    if len(source) < config.images:
        raise ValueError(f"the instance probe needs {config.images} source images; {source.name!r} has {len(source)}")
    generator = torch.Generator().manual_seed(config.seed)
    chosen = torch.randperm(len(source), generator=generator)[: config.images]
    images = source.images[chosen].float()  # (N, C, H, W)
    n, views = config.images, config.views
    repeated = images.repeat_interleave(views, dim=0)  # image-major: image i's views are rows i*views ...
    theta = _warps(n * views, config, generator)
    grid = F.affine_grid(theta, list(repeated.shape), align_corners=False)
    warped = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = warped.round().clamp(0, 255).to(torch.uint8)
    labels = torch.arange(n).repeat_interleave(views)
    view = torch.arange(views).repeat(n)
    classes = tuple(str(int(i)) for i in chosen)  # the source index of each instance
    name = f"{source.name}-instances"
    in_bank = view < config.bank_views
    return (ImageSet(name, warped[in_bank], labels[in_bank], classes),
            ImageSet(name, warped[~in_bank], labels[~in_bank], classes))


def first_instances(views: ImageSet, count: int) -> ImageSet:
    """The views of instances 0..count-1 only: the smaller probe taken during training."""
    return views.subset(torch.nonzero(views.labels < count).flatten())
