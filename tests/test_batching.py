"""vitcf.engine.batching: held-out splits, minibatches, and the batch transforms on any device."""

import pytest
import torch

from conftest import id_set, ids
from vitcf.engine.batching import (batches, holdout_split, match_channels, normalize, random_resized_crop_flip,
                                   resize)
from vitcf.engine.sources import ImageSet

# ---------------------------------------------------------------------------------------------
# holdout_split, batches


def test_holdout_split_is_stratified_disjoint_and_seeded():
    # Class 0: 50 images, class 1: 20, class 2: 2, class 3: 1.
    labels = [0] * 50 + [1] * 20 + [2] * 2 + [3]
    ds = id_set(len(labels), 4, labels)
    train, held = holdout_split(ds, 0.2, seed=3)
    assert sorted(ids(train) + ids(held)) == list(range(len(labels)))  # a partition
    assert held.labels.bincount(minlength=4).tolist() == [10, 4, 1, 0]
    assert train.labels.bincount(minlength=4).tolist() == [40, 16, 1, 1]
    assert ids(train) == sorted(ids(train)) and ids(held) == sorted(ids(held))  # order of ds kept
    # Each image keeps its label.
    assert all(ds.labels[i] == lab for i, lab in zip(ids(held), held.labels.tolist()))
    again = holdout_split(ds, 0.2, seed=3)[1]
    assert ids(again) == ids(held)
    assert ids(holdout_split(ds, 0.2, seed=4)[1]) != ids(held)


def test_holdout_split_keeps_every_class_on_both_sides_for_extreme_fractions():
    ds = id_set(30, 3)  # 10 per class
    for fraction in (0.01, 0.99):
        train, held = holdout_split(ds, fraction, seed=0)
        assert set(train.labels.tolist()) == set(held.labels.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_holdout_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        holdout_split(id_set(10, 2), fraction, seed=0)


def test_batches_cover_each_index_once_per_epoch():
    ds = id_set(103, 5)
    generator = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        order = []
        for images, labels in batches(ds, 10, shuffle=True, generator=generator):
            assert images.dtype == torch.uint8 and len(images) == len(labels) <= 10
            batch_ids = ids(ImageSet("b", images, labels, ds.classes))
            assert labels.tolist() == [i % 5 for i in batch_ids]  # images and labels stay paired
            order += batch_ids
        assert sorted(order) == list(range(103))
        epochs.append(order)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(103))
    # Same seed, same batches.
    replay = [ids(ImageSet("b", x, y, ds.classes)) for x, y in
              batches(ds, 10, shuffle=True, generator=torch.Generator().manual_seed(0))]  # fmt: skip
    assert sum(replay, []) == epochs[0]


def test_batches_in_order_and_drop_last():
    ds = id_set(25, 2)
    sizes = [len(x) for x, _ in batches(ds, 10, shuffle=False)]
    assert sizes == [10, 10, 5]
    assert sum((ids(ImageSet("b", x, y, ds.classes)) for x, y in batches(ds, 10, shuffle=False)), []) == list(
        range(25)
    )
    assert [len(x) for x, _ in batches(ds, 10, shuffle=True, drop_last=True)] == [10, 10]
    with pytest.raises(ValueError, match="batch_size"):
        batches(ds, 0, shuffle=False)  # raised at the call, not at the first next()


# ---------------------------------------------------------------------------------------------
# transforms


@pytest.fixture
def batch():
    return torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_random_resized_crop_flip_shape_range_and_seed(batch):
    out = random_resized_crop_flip(batch, 24, generator=torch.Generator().manual_seed(1))
    assert out.shape == (6, 3, 24, 24) and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    same = random_resized_crop_flip(batch, 24, generator=torch.Generator().manual_seed(1))
    other = random_resized_crop_flip(batch, 24, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, same) and not torch.equal(out, other)
    # Crops differ from image to image.
    twins = random_resized_crop_flip(batch[:1].expand(6, -1, -1, -1), 24, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(twins[0], twins[1])


@pytest.mark.parametrize("size", [20, 40, 33])
def test_full_box_without_flip_is_a_resize(batch, size):
    out = random_resized_crop_flip(batch, size, scale=(1, 1), ratio=(1, 1), flip=False)
    torch.testing.assert_close(out, resize(batch, size), atol=1e-5, rtol=0)
    if size == 20:
        torch.testing.assert_close(out, batch.float() / 255, atol=1e-6, rtol=0)


def test_flip_mirrors_each_image(batch):
    images = batch.repeat(4, 1, 1, 1)  # 24 distinct-ish images, 6 different ones
    out = random_resized_crop_flip(images, 20, scale=(1, 1), ratio=(1, 1), generator=torch.Generator().manual_seed(0))
    plain = images.float() / 255
    flipped = plain.flip(-1)
    is_plain = [torch.allclose(o, p, atol=1e-6) for o, p in zip(out, plain)]
    is_flipped = [torch.allclose(o, f, atol=1e-6) for o, f in zip(out, flipped)]
    assert all(a != b for a, b in zip(is_plain, is_flipped))  # each is exactly one of the two
    assert 3 <= sum(is_flipped) <= 21  # about half flipped (24 fair coins)


def test_crop_box_follows_scale_and_ratio():
    # Channel 0 ramps along x, channel 1 along y, by 4 grey levels per pixel.
    ramp = torch.arange(64, dtype=torch.uint8) * 4
    image = torch.stack([ramp.expand(64, 64), ramp[:, None].expand(64, 64)]).unsqueeze(0).repeat(8, 1, 1, 1)
    # area 1/4 of 64x64 with w/h = 4: a 64 x 16 box; on a 32 x 32 output one step is 2 px in x, 0.5 px in y.
    generator = torch.Generator().manual_seed(0)
    out = random_resized_crop_flip(image, 32, scale=(0.25, 0.25), ratio=(4, 4), generator=generator)
    dx = out[:, 0, :, 2:-2].diff(dim=-1)
    dy = out[:, 1, 2:-2, :].diff(dim=-2)
    step = 4 / 255
    torch.testing.assert_close(dx.abs(), torch.full_like(dx, 2 * step), atol=1e-5, rtol=0)
    torch.testing.assert_close(dy, torch.full_like(dy, 0.5 * step), atol=1e-5, rtol=0)
    assert out[:, 0].diff(dim=-2).abs().max() < 1e-6 and out[:, 1].diff(dim=-1).abs().max() < 1e-6
    # A square box of 1/4 the area: half the image's side, at a position inside the image.
    out = random_resized_crop_flip(image, 32, scale=(0.25, 0.25), ratio=(1, 1), flip=False,
                                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    dx = out[:, 0, :, 2:-2].diff(dim=-1)
    torch.testing.assert_close(dx, torch.full_like(dx, step), atol=1e-5, rtol=0)
    starts = out[:, 0, 0, 0] * 255 / 4  # x of the first sample, in input pixels
    assert starts.min() >= 0 and starts.max() <= 32
    assert starts.std() > 1  # positions vary


def test_random_resized_crop_flip_rejects_bad_arguments(batch):
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop_flip(batch, 8, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="ratio"):
        random_resized_crop_flip(batch, 8, ratio=(0, 1))
    with pytest.raises(ValueError, match="size"):
        random_resized_crop_flip(batch, 0)


def test_resize_is_antialiased_and_keeps_constants():
    constant = torch.full((2, 1, 24, 24), 51, dtype=torch.uint8)
    out = resize(constant, 7)
    assert out.shape == (2, 1, 7, 7) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full_like(out, 0.2))
    # A one-pixel checkerboard shrunk 3x: antialiasing averages it; plain bilinear would pick 0s and 1s.
    yy, xx = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    board = (((yy + xx) % 2) * 255).to(torch.uint8)[None, None]
    small = resize(board, 8)
    assert 0.3 < float(small.min()) and float(small.max()) < 0.7


def test_normalize_per_channel():
    x = torch.ones(2, 3, 4, 4) * torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    out = normalize(x, (0.5, 0.5, 0.5), (0.5, 0.25, 0.25))
    torch.testing.assert_close(out[:, :, 0, 0], torch.tensor([[0.0, -1.0, 2.0]] * 2))
    torch.testing.assert_close(normalize(x[0], (0.5,) * 3, (0.5,) * 3), (x[0] - 0.5) / 0.5)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(x, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="positive"):
        normalize(x, (0.5,) * 3, (0.5, 0.0, 0.5))


def test_match_channels_repeats_grey_for_a_colour_model_as_a_view():
    grey = torch.rand(2, 1, 4, 4)
    rgb = match_channels(grey, 3)
    assert rgb.shape == (2, 3, 4, 4) and rgb.data_ptr() == grey.data_ptr()  # a view: no copy
    assert all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    colour = torch.rand(2, 3, 4, 4)
    assert match_channels(colour, 3) is colour and match_channels(grey, 1) is grey


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_data_with_a_cpu_generator_matches_cpu(batch):
    ds = id_set(50, 5).to("cuda")
    got = [ids(ImageSet("b", x, y, ds.classes)) for x, y in
           batches(ds, 8, shuffle=True, generator=torch.Generator().manual_seed(0))]  # fmt: skip
    want = [ids(ImageSet("b", x, y, ("",) * 5)) for x, y in
            batches(ds.to("cpu"), 8, shuffle=True, generator=torch.Generator().manual_seed(0))]  # fmt: skip
    assert got == want
    on_gpu = random_resized_crop_flip(batch.cuda(), 24, generator=torch.Generator().manual_seed(0))
    on_cpu = random_resized_crop_flip(batch, 24, generator=torch.Generator().manual_seed(0))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=0)
    torch.testing.assert_close(resize(batch.cuda(), 7).cpu(), resize(batch, 7), atol=1e-4, rtol=0)

