import os

import pytest
import torch

import vitcf

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
