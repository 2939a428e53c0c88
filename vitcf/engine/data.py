"""Data: the study's image datasets as uint8 tensors, batching, and on-device augmentation.

The small datasets (Fashion-MNIST, scikit-learn's digits, CIFAR-10/100) fit in memory, so they are
loaded whole into an `ImageSet` of uint8 images. Keeping them uint8 (4x smaller than float32) lets
a run move a whole dataset to the GPU once and do cropping, flipping, resizing and normalisation
there, batch by batch, with no DataLoader in the loop. The same code runs on the CPU.

ImageNet-1K (the pre-training domain, used for the forgetting measurement) is too large for that:
`imagenet_batches` streams it from an ImageFolder tree with DINO's k-NN evaluation preprocessing.

The image-file datasets (Imagenette, DTD, Food-101, Flowers-102) have images of many sizes: they
are decoded once into an `ImageSet` at DINO's evaluation size and that tensor is cached under
`DATA_ROOT/vitcf-cache/` (delete it to decode again). Otherwise only torchvision's own downloads
write files (under `DATA_ROOT`). A dataset that cannot be obtained raises `DatasetUnavailableError`
at once, saying where it looked, where it would download from and how to supply it, instead of
hanging on a network that is not there.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vitcf.model.backbones import _unreachable
from vitcf.base.io import atomic_path
from vitcf.engine.glyphs import GlyphConfig

# Read once, at import: monkeypatch `vitcf.engine.data.DATA_ROOT` (not the variable) to redirect later.
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
MIN_SOURCE_SIZE = 2  # the smallest side a dataset may be downsampled to (`at_source_size`)
SPLITS = ("train", "test")
IMAGENET_SPLITS = ("train", "val")

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

IMAGENET_ENV = "VITCF_IMAGENET"
# DINO's k-NN evaluation preprocessing (eval_knn.py): bicubic resize of the short side, centre crop.
IMAGENET_RESIZE = 256
IMAGENET_CROP = 224
_LISTED = 8  # how many offending names an error message lists


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be obtained here: its files are missing and cannot be downloaded."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == has no single truth value
class ImageSet:
    """A labelled image dataset held as tensors: uint8 images (N, C, H, W), square, and int64 labels (N,).

    `classes[k]` names label k. The images stay uint8 wherever they live (CPU or GPU); the
    transforms below turn batches into float32 only when they are used.
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
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SOURCE_SIZE <= size < side:
        raise ValueError(f"source size must be an integer in [{MIN_SOURCE_SIZE}, {side - 1}] for {name} "
                         f"(its images are {side} px; leave it out for them as they are), got {size!r}")


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


# ---------------------------------------------------------------------------------------------
# ImageNet-1K, streamed from an ImageFolder tree


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
