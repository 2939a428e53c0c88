"""ImageNet-1K (the pre-training domain, used for the forgetting measurement), streamed from an ImageFolder tree.

Too large to hold in memory like the other datasets (`vitcf.engine.sources`), it is read with DINO's
k-NN evaluation preprocessing by a DataLoader, after `check_imagenet` has checked the folder's layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

IMAGENET_SPLITS = ("train", "val")
IMAGENET_ENV = "VITCF_IMAGENET"
# DINO's k-NN evaluation preprocessing (eval_knn.py): bicubic resize of the short side, centre crop.
IMAGENET_RESIZE = 256
IMAGENET_CROP = 224
_LISTED = 8  # how many offending names an error message lists


def check_imagenet(root: str | os.PathLike | None = None) -> Path:
    """Check that `root` (default: $VITCF_IMAGENET) is an ImageNet tree before any work starts.

    Expected: root/train/ and root/val/, each with one sub-folder per class (synset names such as
    n01440764) holding images, and the same class folders in both. The official validation archive
    is flat (50,000 files and a label file); it must be sorted into class folders first, the layout
    DINO's eval_knn.py reads. Returns the root as a Path.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if root is None:
        if not os.environ.get(IMAGENET_ENV):
            raise ValueError(f"no ImageNet folder given: pass root=PATH or set {IMAGENET_ENV}")
        root = os.environ[IMAGENET_ENV]
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet root {root} does not exist or is not a folder")
    classes = {}
    for split in IMAGENET_SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageNet root {root} has no {split}/ folder (expected train/ and val/)")
        classes[split] = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
        if not classes[split]:
            flat = _has_image(folder, IMG_EXTENSIONS)
            hint = " (it holds images directly: sort them into one folder per class)" if flat else ""
            raise ValueError(f"{folder} has no class folders{hint}; expected one sub-folder per synset")
    train, val = set(classes["train"]), set(classes["val"])
    if train != val:
        problems = [f"val/ has {len(val)} class folders, train/ has {len(train)}"]
        if train - val:
            problems.append(f"missing in val: {_listing(sorted(train - val))}")
        if val - train:
            problems.append(f"missing in train: {_listing(sorted(val - train))}")
        raise ValueError(f"ImageNet root {root}: " + "; ".join(problems))
    for split in IMAGENET_SPLITS:
        empty = [c for c in classes[split] if not _has_image(root / split / c, IMG_EXTENSIONS)]
        if empty:
            raise ValueError(f"{root / split} has class folders without images: {_listing(empty)}")
    return root


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def _has_image(folder: Path, extensions: tuple[str, ...]) -> bool:
    """Whether `folder` holds at least one image file; stops at the first (a class has ~1300)."""
    with os.scandir(folder) as entries:
        return any(e.name.lower().endswith(extensions) and e.is_file() for e in entries)


def imagenet_batches(
    root: str | os.PathLike | None,
    split: str,
    batch_size: int,
    *,
    num_workers: int = 8,
    limit: int | None = None,
):
    """Stream ImageNet split `split` ("train" or "val") as (uint8 images (B, 3, 224, 224), int64 labels).

    Preprocessing is DINO's k-NN evaluation: bicubic resize of the short side to 256, centre crop
    224, no normalisation (done later on the device, like the other datasets). Labels index the
    sorted synset folders, as in torchvision's ImageFolder. `limit` keeps at most `limit` images:
    every n-th one of the sorted file list with n = len // limit, starting at the first, which
    spreads the subset evenly over the classes (the files are ordered by class) and is the same
    on every call -- a smaller, deterministic k-NN memory bank.

    Returns a DataLoader (re-iterable, with len()) in file order, no shuffling. The folder is
    checked by `check_imagenet` first, at the call.
    """
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if split not in IMAGENET_SPLITS:
        raise ValueError(f"unknown ImageNet split {split!r}; allowed: {', '.join(IMAGENET_SPLITS)}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    root = check_imagenet(root)
    transform = transforms.Compose([
        transforms.Resize(IMAGENET_RESIZE, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(IMAGENET_CROP),
        transforms.PILToTensor(),
    ])  # fmt: skip
    dataset = ImageFolder(str(root / split), transform=transform)
    if limit is not None and limit < len(dataset):
        step = len(dataset) // limit
        dataset = Subset(dataset, range(0, step * limit, step))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
