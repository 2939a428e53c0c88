import os

import nbformat
import pytest
import torch

import vitcf
from vitcf.engine.sources import ImageSet
from vitcf.engine.sweep import NOTEBOOK

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: more threads than cores makes torch's CPU kernels spin and crawl.
    torch.set_num_threads(1)


@pytest.fixture
def micro():
    """A fresh, seeded 12-block micro ViT with a 10-way head, and a batch of its inputs."""

    def make(num_classes: int = 10, seed: int = 0):
        torch.manual_seed(seed)
        return vitcf.create_backbone("micro", num_classes=num_classes).eval()

    return make


@pytest.fixture
def images():
    spec = vitcf.BACKBONES["micro"]
    return torch.randn(4, spec.in_chans, spec.img_size, spec.img_size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def one_thread_kernels(monkeypatch):
    """Kernels and jobs inherit the environment: under xdist, one torch thread each, like the workers."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def failing_notebook(tmp_path):
    """The real notebook with one cell added after the parameters that fails LoRA runs only."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(
        'if method == "lora":\n    raise RuntimeError("injected failure for " + method)'))
    path = tmp_path / "failing.ipynb"
    nbformat.write(nb, path)
    return path


IMAGENETTE_WNIDS = {"n01440764": "tench", "n02102040": "English springer", "n03000684": "chain saw"}


@pytest.fixture
def fake_imagenette(tmp_path):
    """A data root holding torchvision's Imagenette (320 px) layout: three of its classes, JPEGs of
    random sizes (5 train and 2 val images per class), so the real loader and cache run offline."""
    import numpy as np
    from PIL import Image

    root, rng = tmp_path / "data", np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 2)):
        for wnid in IMAGENETTE_WNIDS:
            folder = root / "imagenette2-320" / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = rng.integers(160, 360, size=2)
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG")
    return root


def id_set(n, num_classes, labels=None):
    """An ImageSet whose image i carries its index i in pixels (0, 0) and (0, 1), for tracking."""
    ids = torch.arange(n)
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = ids % 256
    images[:, 0, 0, 1] = ids // 256
    labels = ids % num_classes if labels is None else torch.as_tensor(labels, dtype=torch.int64)
    return ImageSet("ids", images, labels, tuple(str(c) for c in range(num_classes)))


def ids(ds):
    return (ds.images[:, 0, 0, 0].long() + 256 * ds.images[:, 0, 0, 1].long()).tolist()
