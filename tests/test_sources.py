"""vitcf.engine.sources: the registry, each loader (IDX files, digits, CIFAR, image-file datasets) and `ImageSet`."""

import gzip
import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import id_set, ids
from vitcf.engine import sources
from vitcf.engine.sources import DATASETS, DatasetUnavailableError, ImageSet, load_dataset, read_idx

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


@pytest.fixture
def offline(monkeypatch):
    """Simulate a machine without a network, and make sure torchvision never tries to download."""
    from torchvision.datasets import CIFAR10, FashionMNIST

    monkeypatch.setattr(sources, "_unreachable", lambda url, timeout=3.0: "simulated: no route to host")

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
    not (sources.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)


@pytest.fixture(scope="module")
def fashion_train():
    with pytest.MonkeyPatch.context() as mp:  # read Debian's files even where the variable is set
        mp.delenv(sources.FASHION_MNIST_ENV, raising=False)
        yield load_dataset("fashion_mnist", "train")


@debian
def test_fashion_mnist_from_debian_files(fashion_train, monkeypatch):
    monkeypatch.delenv(sources.FASHION_MNIST_ENV, raising=False)
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
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path / "env"))
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
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.delenv(sources.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(sources, "DATA_ROOT", tmp_path / "cache")
    arrays = write_fashion_folder(tmp_path / "cache" / "FashionMNIST" / "raw", n=10, suffix="")
    ds = load_dataset("fashion_mnist", "test")
    assert ds.images.shape == (10, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["t10k"][0]))


@pytest.mark.parametrize("download", [True, False])
def test_fashion_mnist_offline_error_says_where_and_how(tmp_path, monkeypatch, offline, download):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setenv(sources.FASHION_MNIST_ENV, str(tmp_path / "no-env"))
    monkeypatch.setattr(sources, "DATA_ROOT", tmp_path / "cache")
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

    monkeypatch.setattr(sources, "_unreachable", lambda url, timeout=3.0: None)

    def failing(self):
        raise URLError("connection reset")

    monkeypatch.setattr(CIFAR10, "download", failing)
    with pytest.raises(DatasetUnavailableError, match="download into .* failed: URLError"):
        load_dataset("cifar10", "test", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# ImageSet


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


# ---------------------------------------------------------------------------------------------
# image-file datasets (Imagenette, DTD, Food-101, Flowers-102): torchvision's copy, decoded and cached


def test_imagenette_is_decoded_as_dino_evaluates_then_cached(fake_imagenette):
    from conftest import IMAGENETTE_WNIDS

    train = load_dataset("imagenette", "train", root=fake_imagenette, download=False)
    test = load_dataset("imagenette", "test", root=fake_imagenette, download=False)  # Imagenette's val split
    side = sources.FOLDER_CROP
    assert train.images.shape == (15, 3, side, side) and train.images.dtype == torch.uint8
    assert len(test) == 6 and train.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert train.classes == tuple(IMAGENETTE_WNIDS.values())
    # The same pixels as DINO's evaluation transform applied by hand to the first file.
    from PIL import Image

    first = sorted((fake_imagenette / "imagenette2-320" / "train" / "n01440764").iterdir())[0]
    assert torch.equal(train.images[0], sources.folder_transform()(Image.open(first)))
    # The cache is what later loads read: with the JPEGs gone, the same tensors come back.
    import shutil

    shutil.rmtree(fake_imagenette / "imagenette2-320")
    again = load_dataset("imagenette", "train", root=fake_imagenette, download=False)
    assert torch.equal(again.images, train.images) and again.classes == train.classes


@pytest.mark.parametrize("name", sorted(sources.FOLDER_DATASETS))
def test_image_file_datasets_offline_name_the_dataset_the_folder_and_the_source(tmp_path, monkeypatch, name):
    monkeypatch.setattr(sources, "_unreachable", lambda url, timeout=3.0: "simulated: no route to host")
    root = tmp_path / "empty"
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset(name, "train", root=root)
    message = str(err.value)
    url = sources.FOLDER_DATASETS[name][3]
    assert repr(name) in message and str(root) in message and url in message and "simulated" in message
    assert not (root / "vitcf-cache").exists()  # nothing half-written
