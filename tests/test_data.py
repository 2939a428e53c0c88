import gzip
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from vitcf.engine import data
from vitcf.engine.data import (
    DATASETS,
    DatasetUnavailableError,
    ImageSet,
    batches,
    check_imagenet,
    holdout_split,
    imagenet_batches,
    load_dataset,
    normalize,
    random_resized_crop_flip,
    read_idx,
    resize,
)

# ---------------------------------------------------------------------------------------------
# helpers


def write_idx(path, array, compress=None):
    """Write `array` (uint8) as an IDX file; gzipped when the name ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + array.tobytes()
    compress = str(path).endswith(".gz") if compress is None else compress
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_fashion_folder(folder, n=20, suffix=".gz", seed=0):
    """A tiny Fashion-MNIST folder (both splits) with random images; returns the train arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        out[prefix] = images, labels
    return out


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


@pytest.fixture
def offline(monkeypatch):
    """Simulate a machine without a network, and make sure torchvision never tries to download."""
    from torchvision.datasets import CIFAR10, FashionMNIST

    monkeypatch.setattr(data, "_unreachable", lambda url, timeout=3.0: "simulated: no route to host")

    def no_download(self):
        raise AssertionError("a download was attempted although the host is unreachable")

    monkeypatch.setattr(CIFAR10, "download", no_download)
    monkeypatch.setattr(FashionMNIST, "download", no_download)


# ---------------------------------------------------------------------------------------------
# names and splits


@pytest.mark.parametrize("name, split", [("mnist", "train"), ("cifar10", "val"), ("digits", "")])
def test_unknown_name_or_split_names_the_allowed_values(name, split):
    with pytest.raises(ValueError) as err:
        load_dataset(name, split)
    message = str(err.value)
    bad = name if name not in DATASETS else split
    assert repr(bad) in message
    allowed = DATASETS if name not in DATASETS else ("train", "test")
    assert all(a in message for a in allowed)


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST and IDX files

debian = pytest.mark.skipif(
    not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)


@pytest.fixture(scope="module")
def fashion_train():
    with pytest.MonkeyPatch.context() as mp:  # read Debian's files even where the variable is set
        mp.delenv(data.FASHION_MNIST_ENV, raising=False)
        yield load_dataset("fashion_mnist", "train")


@debian
def test_fashion_mnist_from_debian_files(fashion_train, monkeypatch):
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    test = load_dataset("fashion_mnist", "test")
    for ds, n in ((fashion_train, 60000), (test, 10000)):
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.images.is_contiguous()
        assert ds.labels.dtype == torch.int64 and len(ds) == n
        assert ds.labels.bincount().tolist() == [n // 10] * 10
        assert (ds.channels, ds.size, ds.num_classes) == (1, 28, 10)
    assert fashion_train.classes[0] == "T-shirt/top" and fashion_train.classes[9] == "Ankle boot"
    # Real photographs on a black background: the full range is used, corners are mostly black.
    assert int(fashion_train.images.max()) == 255 and int(fashion_train.images.min()) == 0
    assert fashion_train.images[:, 0, 0, 0].float().mean() < 5
    assert not torch.equal(fashion_train.images[:10000], test.images)


@debian
def test_fashion_mnist_reads_are_identical(fashion_train):
    again = load_dataset("fashion_mnist", "train")
    assert torch.equal(again.images, fashion_train.images)
    assert torch.equal(again.labels, fashion_train.labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    array = np.random.default_rng(0).integers(0, 256, size=(3, 5, 7), dtype=np.uint8)
    path = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_other_dtype(tmp_path):
    values = np.array([[1, -2], [300000, 4]], dtype=">i4")
    raw = bytes([0, 0, 0x0C, 2]) + np.array([2, 2], dtype=">u4").tobytes() + values.tobytes()
    (tmp_path / "ints").write_bytes(raw)
    out = read_idx(tmp_path / "ints")
    np.testing.assert_array_equal(out, values.astype(np.int32))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda raw: raw[:-10], "truncated"),
        (lambda raw: raw + b"\0", "longer than its header says"),
        (lambda raw: raw[:2], "truncated"),
        (lambda raw: raw[:9], "truncated inside its header"),
        (lambda raw: b"<html>404 Not Found</html>", "not an IDX file"),
        (lambda raw: bytes([0, 0, 0x42, 3]) + raw[4:], "not an IDX file"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, damage, expected):
    raw = (write_idx(tmp_path / "good", np.zeros((4, 3, 3)))).read_bytes()
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(damage(raw))
    with pytest.raises(ValueError, match=expected) as err:
        read_idx(bad)
    assert str(bad) in str(err.value)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.arange(5000) % 10)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated or corrupt gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    from_root = write_fashion_folder(tmp_path / "root", n=20, suffix="", seed=1)
    from_env = write_fashion_folder(tmp_path / "env", n=30, seed=2)
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "env"))
    ds = load_dataset("fashion_mnist", "train", root=tmp_path / "root")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(from_root["train"][0]))
    assert ds.labels.tolist() == from_root["train"][1].tolist()
    # A root without the files is skipped; the environment variable comes next, before Debian's folder.
    ds = load_dataset("fashion_mnist", "test", root=tmp_path / "nothing-here")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(from_env["t10k"][0]))


def test_fashion_mnist_malformed_files_are_reported_not_skipped(tmp_path, monkeypatch):
    write_fashion_folder(tmp_path, n=10)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((10, 27, 27)))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        load_dataset("fashion_mnist", "train", root=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((11, 28, 28)))
    with pytest.raises(ValueError, match="labels of shape"):
        load_dataset("fashion_mnist", "train", root=tmp_path)


def test_fashion_mnist_falls_back_to_torchvision_layout(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(data, "DATA_ROOT", tmp_path / "cache")
    arrays = write_fashion_folder(tmp_path / "cache" / "FashionMNIST" / "raw", n=10, suffix="")
    ds = load_dataset("fashion_mnist", "test")
    assert ds.images.shape == (10, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["t10k"][0]))


@pytest.mark.parametrize("download", [True, False])
def test_fashion_mnist_offline_error_says_where_and_how(tmp_path, monkeypatch, offline, download):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "no-env"))
    monkeypatch.setattr(data, "DATA_ROOT", tmp_path / "cache")
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset("fashion_mnist", "train", download=download)
    message = str(err.value)
    for needed in ("fashion_mnist", "no-debian", "no-env", str(tmp_path / "cache"),
                   "dataset-fashion-mnist", "VITCF_FASHION_MNIST", "train-images-idx3-ubyte"):  # fmt: skip
        assert needed in message
    assert ("unreachable" in message or "simulated" in message) if download else "download=False" in message
    assert not (tmp_path / "cache").exists()  # nothing written


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_split_is_disjoint_stratified_and_deterministic():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1257, 540)
    for ds in (train, test):
        assert ds.images.shape[1:] == (1, 8, 8) and ds.images.dtype == torch.uint8
        assert ds.classes == tuple("0123456789")
    assert int(train.images.max()) == 255
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.cat([train.images, test.images]).unique().tolist()) <= allowed
    # Together the two parts are exactly scikit-learn's 1797 images, each used once.
    full = load_digits()
    pixels = np.rint(full.images * 255 / 16).astype(np.uint8)
    reference = Counter((p.tobytes(), int(t)) for p, t in zip(pixels, full.target))
    ours = Counter(
        (img.numpy().tobytes(), int(lab))
        for ds in (train, test)
        for img, lab in zip(ds.images[:, 0], ds.labels)
    )
    assert ours == reference
    # Stratified: every class holds 30% of its images out, up to rounding.
    total = torch.as_tensor(full.target).bincount()
    assert (test.labels.bincount() - 0.3 * total).abs().max() <= 1
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


# ---------------------------------------------------------------------------------------------
# CIFAR


def write_fake_cifar(root, cifar100=False, per_batch=4):
    """torchvision's on-disk CIFAR layout with tiny batches; image k, channel c, row y, column x holds
    (k + 3 * c + 5 * y + 7 * x) % 256, so a wrong axis order is caught."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR100 if cifar100 else CIFAR10
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    c, y, x = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    label_key = "fine_labels" if cifar100 else "labels"
    k = 0
    for name, _ in cls.train_list + cls.test_list:
        images = np.stack([(i + 3 * c + 5 * y + 7 * x) % 256 for i in range(k, k + per_batch)]).astype(np.uint8)
        batch = {"data": images.reshape(per_batch, 3072), label_key: [i % 3 for i in range(k, k + per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch))
        k += per_batch
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps({cls.meta["key"]: ["cat", "dog", "frog"]}))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_parses_torchvision_layout(tmp_path, monkeypatch, name):
    from torchvision.datasets import CIFAR10, cifar

    # The fake files cannot match torchvision's MD5 sums.
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)
    write_fake_cifar(tmp_path, cifar100=name == "cifar100")
    train = load_dataset(name, "train", root=tmp_path, download=False)
    test = load_dataset(name, "test", root=tmp_path, download=False)
    assert len(train) == (20 if name == "cifar10" else 4) and len(test) == 4
    assert train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous() and train.name == name
    assert train.classes == ("cat", "dog", "frog")
    offset = len(train)  # the test batch follows the training batches in the fake numbering
    assert test.labels.tolist() == [(offset + i) % 3 for i in range(4)]
    c, y, x = 2, 5, 11
    assert train.images[3, c, y, x] == (3 + 3 * c + 5 * y + 7 * x) % 256
    assert test.images[1, c, y, x] == (offset + 1 + 3 * c + 5 * y + 7 * x) % 256


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("download", [True, False])
def test_cifar_offline_error_is_fast_and_helpful(tmp_path, offline, name, download):
    root = tmp_path / "empty"
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset(name, "train", root=root, download=download)
    message = str(err.value)
    assert repr(name) in message and str(root) in message and "cifar-" in message
    assert "simulated: no route to host" in message if download else "download=False" in message
    assert not root.exists()


def test_cifar_failed_download_is_wrapped(tmp_path, monkeypatch):
    from urllib.error import URLError

    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(data, "_unreachable", lambda url, timeout=3.0: None)

    def failing(self):
        raise URLError("connection reset")

    monkeypatch.setattr(CIFAR10, "download", failing)
    with pytest.raises(DatasetUnavailableError, match="download into .* failed: URLError"):
        load_dataset("cifar10", "test", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# ImageSet, holdout_split, batches


def test_imageset_checks_and_moves():
    ds = id_set(10, 3)
    assert (len(ds), ds.num_classes, ds.channels, ds.size) == (10, 3, 1, 2)
    sub = ds.subset([7, 2, 2])
    assert ids(sub) == [7, 2, 2] and sub.labels.tolist() == [1, 2, 2]
    assert ids(ds.subset(torch.tensor([], dtype=torch.long))) == []
    moved = ds.to("cpu")
    assert moved.images.dtype == torch.uint8 and torch.equal(moved.images, ds.images)
    with pytest.raises(ValueError, match="integer"):
        ds.subset(torch.tensor([0.0, 1.0]))
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        ds.subset([10])
    with pytest.raises(ValueError, match="uint8"):
        ImageSet("x", ds.images.float(), ds.labels, ds.classes)
    with pytest.raises(ValueError, match="int64"):
        ImageSet("x", ds.images, ds.labels.int(), ds.classes)
    with pytest.raises(ValueError, match="labels"):
        ImageSet("x", ds.images, ds.labels[:5], ds.classes)


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


# ---------------------------------------------------------------------------------------------
# ImageNet folders

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
    monkeypatch.setenv(data.IMAGENET_ENV, str(imagenet))
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
    monkeypatch.delenv(data.IMAGENET_ENV, raising=False)
    with pytest.raises(ValueError, match="VITCF_IMAGENET"):
        check_imagenet(None)
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        check_imagenet(tmp_path / "nope")
    assert "nope" in str(err.value)
    with pytest.raises(ValueError, match="'test'.*train, val"):
        imagenet_batches(tmp_path, "test", 2)


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


# ---------------------------------------------------------------------------------------------
# image-file datasets (Imagenette, DTD, Food-101, Flowers-102): torchvision's copy, decoded and cached


def test_imagenette_is_decoded_as_dino_evaluates_then_cached(fake_imagenette):
    from conftest import IMAGENETTE_WNIDS

    train = load_dataset("imagenette", "train", root=fake_imagenette, download=False)
    test = load_dataset("imagenette", "test", root=fake_imagenette, download=False)  # Imagenette's val split
    assert train.images.shape == (15, 3, data.FOLDER_CROP, data.FOLDER_CROP) and train.images.dtype == torch.uint8
    assert len(test) == 6 and train.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert train.classes == tuple(IMAGENETTE_WNIDS.values())
    # The same pixels as DINO's evaluation transform applied by hand to the first file.
    from PIL import Image

    first = sorted((fake_imagenette / "imagenette2-320" / "train" / "n01440764").iterdir())[0]
    assert torch.equal(train.images[0], data.folder_transform()(Image.open(first)))
    # The cache is what later loads read: with the JPEGs gone, the same tensors come back.
    import shutil

    shutil.rmtree(fake_imagenette / "imagenette2-320")
    again = load_dataset("imagenette", "train", root=fake_imagenette, download=False)
    assert torch.equal(again.images, train.images) and again.classes == train.classes


@pytest.mark.parametrize("name", sorted(data.FOLDER_DATASETS))
def test_image_file_datasets_offline_name_the_dataset_the_folder_and_the_source(tmp_path, monkeypatch, name):
    monkeypatch.setattr(data, "_unreachable", lambda url, timeout=3.0: "simulated: no route to host")
    root = tmp_path / "empty"
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset(name, "train", root=root)
    message = str(err.value)
    url = data.FOLDER_DATASETS[name][3]
    assert repr(name) in message and str(root) in message and url in message and "simulated" in message
    assert not (root / "vitcf-cache").exists()  # nothing half-written
