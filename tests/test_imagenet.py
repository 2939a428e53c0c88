"""vitcf.engine.imagenet: the ImageNet folder check and its streamed batches with DINO's preprocessing."""

import pytest
import torch
from PIL import Image

from vitcf.engine import imagenet as imagenet_folder
from vitcf.engine.imagenet import check_imagenet, imagenet_batches

SYNSETS = ("n00000001", "n00000002", "n00000003")
COLOURS = ((255, 0, 0), (0, 200, 0), (10, 20, 250))


@pytest.fixture
def imagenet(tmp_path):
    """A tiny ImageNet tree: 3 classes, 2 images each (a large and a small one) per split."""
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for synset, colour in zip(SYNSETS, COLOURS):
            folder = root / split / synset
            folder.mkdir(parents=True)
            Image.new("RGB", (300, 260), colour).save(folder / "a.png")
            # The first class's small image is grayscale (white), as a few ImageNet JPEGs are.
            small = Image.new("L", (50, 40), 255) if synset == SYNSETS[0] else Image.new("RGB", (50, 40), colour)
            small.save(folder / "b.png")
    return root


def test_imagenet_good_folder_streams_dino_preprocessing(imagenet, monkeypatch):
    assert check_imagenet(imagenet) == imagenet
    monkeypatch.setenv(imagenet_folder.IMAGENET_ENV, str(imagenet))
    loader = imagenet_batches(None, "val", 4, num_workers=0)
    got = list(loader)
    assert [tuple(x.shape) for x, _ in got] == [(4, 3, 224, 224), (2, 3, 224, 224)]
    assert all(x.dtype == torch.uint8 for x, _ in got)
    images = torch.cat([x for x, _ in got])
    labels = torch.cat([y for _, y in got])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    expected = torch.tensor([COLOURS[0], (255, 255, 255), COLOURS[1], COLOURS[1], COLOURS[2], COLOURS[2]])
    centre = images[:, :, 112, 112].int()
    assert (centre - expected).abs().max() <= 1  # grayscale is converted to RGB


def test_imagenet_limit_takes_every_nth_image(imagenet):
    loader = imagenet_batches(imagenet, "train", 8, num_workers=2, limit=3)
    (images, labels), = list(loader)
    assert images.shape == (3, 3, 224, 224) and labels.tolist() == [0, 1, 2]
    assert len(list(imagenet_batches(imagenet, "train", 8, num_workers=0, limit=100))[0][1]) == 6


def test_imagenet_missing_val(imagenet):
    import shutil

    shutil.rmtree(imagenet / "val")
    with pytest.raises(FileNotFoundError, match="no val/ folder") as err:
        check_imagenet(imagenet)
    assert str(imagenet) in str(err.value)


def test_imagenet_mismatched_classes(imagenet):
    import shutil

    shutil.rmtree(imagenet / "val" / SYNSETS[2])
    (imagenet / "val" / "n09999999").mkdir()
    with pytest.raises(ValueError) as err:
        imagenet_batches(imagenet, "val", 2)  # checked at the call
    message = str(err.value)
    assert "val/ has 3 class folders, train/ has 3" in message
    assert f"missing in val: {SYNSETS[2]}" in message and "missing in train: n09999999" in message


def test_imagenet_empty_and_flat_folders(tmp_path, imagenet):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(ValueError, match="has no class folders"):
        check_imagenet(empty)
    Image.new("RGB", (8, 8)).save(empty / "train" / "x.JPEG")
    with pytest.raises(ValueError, match="holds images directly"):
        check_imagenet(empty)
    for path in (imagenet / "val" / SYNSETS[1]).iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=f"without images: {SYNSETS[1]}"):
        check_imagenet(imagenet)


def test_imagenet_root_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(imagenet_folder.IMAGENET_ENV, raising=False)
    with pytest.raises(ValueError, match="VITCF_IMAGENET"):
        check_imagenet(None)
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        check_imagenet(tmp_path / "nope")
    assert "nope" in str(err.value)
    with pytest.raises(ValueError, match="'test'.*train, val"):
        imagenet_batches(tmp_path, "test", 2)
