"""Data sources: the study's image datasets loaded into memory as uint8 tensors (`ImageSet`), and their registry.

The small datasets (Fashion-MNIST, scikit-learn's digits, the glyph domain, CIFAR-10/100) fit in memory,
so they are loaded whole into an `ImageSet` of uint8 images. Keeping them uint8 (4x smaller than float32)
lets a run move a whole dataset to the GPU once and do cropping, flipping, resizing and normalisation
there, batch by batch (`vitcf.engine.batching`), with no DataLoader in the loop.

The image-file datasets (Imagenette, DTD, Food-101, Flowers-102) have images of many sizes: they
are decoded once into an `ImageSet` at DINO's evaluation size and that tensor is cached under
`DATA_ROOT/vitcf-cache/` (delete it to decode again). Otherwise only torchvision's own downloads
write files (under `DATA_ROOT`). A dataset that cannot be obtained raises `DatasetUnavailableError`
at once, saying where it looked, where it would download from and how to supply it, instead of
hanging on a network that is not there. ImageNet-1K is streamed from a folder instead (`vitcf.engine.imagenet`).
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitcf.model.backbones import _unreachable
from vitcf.base.io import atomic_path
from vitcf.engine.glyphs import GlyphConfig

# Read once, at import: monkeypatch `vitcf.engine.sources.DATA_ROOT` (not the variable) to redirect later.
DATA_ROOT = Path(os.environ.get("VITCF_DATA") or "~/.cache/vitcf/data").expanduser()

# Image-file datasets torchvision downloads: their images differ in size, so they are stored in memory
# as DINO's evaluation sees them (bicubic resize of the short side to 256, centre crop 224), and a
# decoded copy is cached under DATA_ROOT/vitcf-cache so later runs skip the JPEG decoding.
# name -> (torchvision class, {our split: its splits, concatenated}, constructor options, where it downloads from)
FOLDER_DATASETS = {
    "imagenette": ("Imagenette", {"train": ("train",), "test": ("val",)}, {"size": "320px"},
                   "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"),
    "dtd": ("DTD", {"train": ("train", "val"), "test": ("test",)}, {"partition": 1},
            "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"),
    "food101": ("Food101", {"train": ("train",), "test": ("test",)}, {},
                "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz"),
    "flowers102": ("Flowers102", {"train": ("train", "val"), "test": ("test",)}, {},
                   "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz"),
}
FOLDER_RESIZE = 256
FOLDER_CROP = 224
DATASETS = ("fashion_mnist", "digits", "glyphs", "cifar10", "cifar100", *FOLDER_DATASETS)
# Each dataset's side in pixels as `load_dataset` gives it.
SIDES = {"fashion_mnist": 28, "digits": 8, "glyphs": GlyphConfig().size, "cifar10": 32, "cifar100": 32,
         **{name: FOLDER_CROP for name in FOLDER_DATASETS}}
SPLITS = ("train", "test")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_ENV = "VITCF_FASHION_MNIST"
# Where Debian's `dataset-fashion-mnist` package puts the gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_PREFIX = {"train": "train", "test": "t10k"}  # the file name prefix of each split

# digits has no official split: a fixed, stratified 70/30 one keeps results comparable across runs.
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be obtained here: its files are missing and cannot be downloaded."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == has no single truth value
class ImageSet:
    """A labelled image dataset held as tensors: uint8 images (N, C, H, W), square, and int64 labels (N,).

    `classes[k]` names label k. The images stay uint8 wherever they live (CPU or GPU); the
    transforms of `vitcf.engine.batching` turn batches into float32 only when they are used.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(
                f"ImageSet {self.name!r}: images must be uint8 of shape (N, C, H, W) with H == W, "
                f"got {images.dtype} of shape {tuple(images.shape)}"
            )
        if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"ImageSet {self.name!r}: labels must be int64 of shape ({images.shape[0]},), "
                f"got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        if labels.device != images.device:
            raise ValueError(
                f"ImageSet {self.name!r}: images are on {images.device} but labels on {labels.device}"
            )
        # Frozen, so the normalised values are written around the dataclass' __setattr__.
        object.__setattr__(self, "images", images.contiguous())
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        """The side length in pixels (images are square)."""
        return self.images.shape[2]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageSet:
        """The images at `indices` (a 1-D integer tensor or sequence), in that order, copied."""
        index = _as_index(indices, len(self)).to(self.device)
        return ImageSet(self.name, self.images[index], self.labels[index], self.classes)

    def to(self, device: torch.device | str) -> ImageSet:
        """The same dataset on `device`; the images stay uint8."""
        return ImageSet(self.name, self.images.to(device), self.labels.to(device), self.classes)


def _as_index(indices: torch.Tensor | Sequence[int], n: int) -> torch.Tensor:
    index = torch.as_tensor(indices)
    if index.numel() == 0:
        index = index.to(torch.int64)
    if index.dim() != 1 or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ValueError(
            f"indices must be a 1-D integer tensor or sequence, got {index.dtype} of shape {tuple(index.shape)}"
        )
    index = index.to(torch.int64)
    if index.numel() and (int(index.min()) < -n or int(index.max()) >= n):
        raise IndexError(f"indices must lie in [0, {n}), got values from {int(index.min())} to {int(index.max())}")
    return index


# ---------------------------------------------------------------------------------------------
# Loading the small datasets


def load_dataset(
    name: str,
    split: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageSet:
    """Load split `split` ("train" or "test") of dataset `name` (one of `DATASETS`) into memory.

    `root` is where to look for the files (Fashion-MNIST: a folder of IDX files, searched before
    the other places; CIFAR: torchvision's root) and where torchvision downloads to; it defaults to
    `DATA_ROOT`. digits ships with scikit-learn and ignores `root` and `download`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; allowed: {', '.join(SPLITS)}")
    if name == "fashion_mnist":
        return _load_fashion_mnist(split, root, download)
    if name == "digits":
        return _load_digits(split)
    if name == "glyphs":
        return _load_glyphs(split)
    if name in FOLDER_DATASETS:
        return _load_folder_dataset(name, split, root, download)
    return _load_cifar(name, split, root, download)


def _load_digits(split: str) -> ImageSet:
    """scikit-learn's 8x8 digits, values 0..16 rescaled to 0..255, in a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=digits.target,
    )
    # Sorted, so each part keeps scikit-learn's original order rather than the shuffle's.
    idx = np.sort(train_idx if split == "train" else test_idx)
    pixels = np.rint(digits.images[idx] * (255 / 16)).astype(np.uint8)
    return ImageSet(
        name="digits",
        images=torch.from_numpy(pixels).unsqueeze(1).contiguous(),
        labels=torch.from_numpy(digits.target[idx].astype(np.int64)),
        classes=tuple(str(d) for d in range(10)),
    )


def _load_glyphs(split: str) -> ImageSet:
    """The glyph domain (`vitcf.engine.glyphs`): characters rendered from the installed typefaces, split by typeface."""
    from vitcf.engine.glyphs import FontsUnavailableError, cached_domain

    try:
        domain = cached_domain()
    except FontsUnavailableError as error:
        raise DatasetUnavailableError(str(error)) from None
    images, labels = domain.splits[split]
    return ImageSet(name="glyphs", images=torch.from_numpy(images).unsqueeze(1).contiguous(),
                    labels=torch.from_numpy(labels), classes=domain.classes)


def _load_fashion_mnist(split: str, root: str | os.PathLike | None, download: bool) -> ImageSet:
    """Fashion-MNIST from the first folder holding its IDX files, else through torchvision."""
    searched = _fashion_mnist_folders(root)
    for folder in searched:
        files = _idx_files(folder, split)
        if files is not None:
            images, labels = (read_idx(path) for path in files)
            return _fashion_mnist_set(images, labels, files)
    target = Path(root) if root is not None else DATA_ROOT
    images, labels = _torchvision_fashion_mnist(split, target, download, searched)
    return _fashion_mnist_set(images, labels, (target, target))


def _fashion_mnist_folders(root: str | os.PathLike | None) -> list[Path]:
    """The folders searched for IDX files, in order: `root`, $VITCF_FASHION_MNIST, Debian's."""
    folders = [Path(root)] if root is not None else []
    if os.environ.get(FASHION_MNIST_ENV):
        folders.append(Path(os.environ[FASHION_MNIST_ENV]).expanduser())
    folders.append(DEBIAN_FASHION_MNIST)
    return folders


def _idx_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of `split` in `folder`, plain or gzipped; None if either is absent."""
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        stem = f"{_IDX_PREFIX[split]}-{kind}-ubyte"
        path = next((folder / n for n in (stem, stem + ".gz") if (folder / n).is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


def _fashion_mnist_set(images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, files) -> ImageSet:
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"Fashion-MNIST files {files[0]} and {files[1]} hold images of shape {tuple(images.shape)} and "
            f"labels of shape {tuple(labels.shape)}; expected (N, 28, 28) and (N,)"
        )
    if labels.numel() and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"Fashion-MNIST labels in {files[1]} go up to {int(labels.max())}; expected 0..9")
    return ImageSet(
        name="fashion_mnist",
        images=images.to(torch.uint8).unsqueeze(1).contiguous(),
        labels=labels.to(torch.int64),
        classes=FASHION_MNIST_CLASSES,
    )


def _torchvision_fashion_mnist(split: str, target: Path, download: bool, searched: list[Path]):
    """Fashion-MNIST as torchvision stores it under `target`, downloading it there if allowed."""
    from torchvision.datasets import FashionMNIST

    how = (
        f"looked for {_IDX_PREFIX[split]}-images-idx3-ubyte[.gz] and {_IDX_PREFIX[split]}-labels-idx1-ubyte[.gz] "
        f"in {', '.join(map(str, searched))} and for torchvision's copy under {target / 'FashionMNIST' / 'raw'}. "
        f"To supply them: install Debian's dataset-fashion-mnist package (files in {DEBIAN_FASHION_MNIST}), "
        f"or set {FASHION_MNIST_ENV} to a folder holding the four IDX files, or pass root=FOLDER"
    )
    train = split == "train"
    dataset = _torchvision_dataset(lambda get: FashionMNIST(str(target), train=train, download=get), "fashion_mnist",
                                   target, split, download, how, FashionMNIST.mirrors[0])
    return dataset.data, dataset.targets


def _load_cifar(name: str, split: str, root: str | os.PathLike | None, download: bool) -> ImageSet:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    target = Path(root) if root is not None else DATA_ROOT
    how = (
        f"looked in {target / cls.base_folder}. To supply it: load it once where {cls.url} can be reached "
        f"(torchvision downloads it into {target}; pass root=FOLDER or set VITCF_DATA to choose another), "
        f"or fetch {cls.filename} elsewhere and unpack it in {target}"
    )
    dataset = _torchvision_dataset(lambda get: cls(str(target), train=split == "train", download=get), name, target,
                                   split, download, how, cls.url)
    images = torch.from_numpy(np.asarray(dataset.data, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(name, images, torch.as_tensor(dataset.targets, dtype=torch.int64), tuple(dataset.classes))


def _torchvision_dataset(make: Callable[[bool], object], name: str, target: Path, split: str, download: bool,
                         how: str, url: str):
    """`make(download)`, a torchvision dataset under `target`, downloading only if its host answers.

    torchvision's downloader opens URLs with no timeout, so offline it can hang or fail deep inside;
    the files already on disk are tried first, then the host is probed with a short timeout. A
    download shows torchvision's progress bar; an archive already downloaded whole (its checksum
    holds) is reused, a partial one is fetched again.
    """
    try:
        return make(False)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        pass
    if not download:
        raise DatasetUnavailableError(f"dataset {name!r} ({split}) is not on disk and download=False: {how}")
    reason = _unreachable(url)
    if reason is None:
        try:
            return make(True)
        except Exception as err:  # URL, HTTP, checksum and archive errors share no base class
            reason = f"the download into {target} (from {url}) failed: {type(err).__name__}: {err}"
    else:
        reason = f"cannot download it into {target} (from {url}): {reason}"
    raise DatasetUnavailableError(f"dataset {name!r} ({split}) is unavailable; {reason}; {how}")


def _load_folder_dataset(name: str, split: str, root: str | os.PathLike | None, download: bool) -> ImageSet:
    """An image-file dataset (`FOLDER_DATASETS`) at FOLDER_CROP px: from the cache, else decoded from
    torchvision's copy under `root` (downloaded there if allowed) and cached."""
    import torchvision.datasets

    class_name, splits, options, url = FOLDER_DATASETS[name]
    target = Path(root) if root is not None else DATA_ROOT
    cache = target / "vitcf-cache" / f"{name}-{split}-{FOLDER_CROP}px.pt"
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        return ImageSet(name, saved["images"], saved["labels"], tuple(saved["classes"]))
    cls = getattr(torchvision.datasets, class_name)
    how = (f"looked for torchvision's {class_name} files under {target}. To supply them: load it once where {url} "
           f"can be reached (torchvision downloads it into {target}; pass root=FOLDER or set VITCF_DATA to choose "
           f"another), or unpack that archive in {target}")
    parts = [_torchvision_dataset(lambda get, part=part: cls(str(target), split=part, download=get, **options),
                                  name, target, part, download, how, url) for part in splits[split]]
    images, labels = zip(*(_decode_all(part, f"{name} {split}") for part in parts))
    classes = tuple(c if isinstance(c, str) else c[0] for c in getattr(parts[0], "classes", ()))  # Imagenette: tuples
    images, labels = torch.cat(images), torch.cat(labels)
    if not classes:
        classes = tuple(str(i) for i in range(int(labels.max()) + 1))
    with atomic_path(cache) as tmp:  # creates vitcf-cache/ if needed
        torch.save({"images": images, "labels": labels, "classes": list(classes)}, tmp)
    return ImageSet(name, images, labels, classes)


def folder_transform():
    """PIL image -> uint8 (3, FOLDER_CROP, FOLDER_CROP): DINO's evaluation resize and centre crop."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Lambda(_rgb),
        transforms.Resize(FOLDER_RESIZE, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(FOLDER_CROP),
        transforms.PILToTensor(),
    ])


def _rgb(image):  # a module-level function: worker processes may have to pickle the transform
    return image.convert("RGB")


def _decode_all(dataset, desc: str, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of a torchvision dataset through `folder_transform`, decoded in worker processes."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    dataset.transform = folder_transform()
    workers = min(8, os.cpu_count() or 1)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers if len(dataset) > batch_size else 0)
    images, labels = [], []
    for batch, target in tqdm(loader, desc=f"decoding {desc}", unit="batch"):
        images.append(batch)
        labels.append(torch.as_tensor(target, dtype=torch.int64))
    return torch.cat(images).contiguous(), torch.cat(labels)


# IDX type codes (the third byte of the magic number) and the big-endian dtypes they stand for.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzipped or not), checking its header against its size.

    Layout: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32
    sizes and the data. Any mismatch raises ValueError naming the file and what is wrong.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise ValueError(f"IDX file {path} is a truncated or corrupt gzip file: {err}") from None
    if len(raw) < 4:
        raise ValueError(f"IDX file {path} is truncated: {len(raw)} bytes, shorter than the 4-byte magic number")
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file: magic number {raw[:4].hex()} (expected 0000TTDD with type code TT "
            f"in {', '.join(f'{c:02x}' for c in _IDX_DTYPES)} and DD >= 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header ({len(raw)} of {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        state = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {path} is {state}: its header promises dims {dims} of {dtype.name}, "
            f"{expected} data bytes, but it holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
