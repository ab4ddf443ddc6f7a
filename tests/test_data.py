"""cl.data: every reader on small files of the real formats, and Fashion-MNIST fetching."""

import gzip
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cl import data, semantics
from cl.data import DataError

DEBIAN_FMNIST = Path(data.DEBIAN_FASHION_MNIST)


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in IDX format: magic 0x0000080<ndim>, big-endian dims, payload."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_fashion_mnist(folder: Path, n: int = 6, gz: bool = True) -> dict:
    """The four Fashion-MNIST files with random content; returns the arrays by split."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, (images_stem, labels_stem) in data.FASHION_MNIST_FILES.items():
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / (images_stem + suffix), images, gz)
        write_idx(folder / (labels_stem + suffix), labels, gz)
        arrays[split] = images, labels
    return arrays


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No internet for torchvision, no apt-get, an empty Debian Fashion-MNIST directory."""
    def no_internet(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no internet")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_internet)
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    debian = tmp_path / "debian-fmnist"
    debian.mkdir()
    monkeypatch.setenv("NEGATIVES_DEBIAN_FMNIST", str(debian))
    return debian


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("shape", [(7,), (5, 3, 4)])
def test_read_idx_round_trip(tmp_path, gz, shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    # No .gz in the name: gzip is recognised by its magic bytes.
    path = write_idx(tmp_path / "file-idx-ubyte", array, gz)
    result = data.read_idx(path)
    assert result.dtype == torch.uint8
    assert np.array_equal(result.numpy(), array)


@pytest.mark.parametrize("cut", [slice(None, -10), slice(None, 10), slice(None, 2)])
def test_read_idx_truncated(tmp_path, cut):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8))[cut]))
    with pytest.raises(DataError, match="delete it and re-run `make data`") as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)) + b"junk")
    with pytest.raises(DataError, match=r"17 bytes where the header \[5\] says 13"):
        data.read_idx(path)


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + bytes(12))  # float32 vector
    with pytest.raises(DataError, match="magic number 0x00000d01"):
        data.read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    good = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    path.write_bytes(good[:12] + b"\xff" * 20 + good[32:])
    with pytest.raises(DataError, match="bad gzip"):
        data.read_idx(path)


# --------------------------------------------------------------------------- CIFAR, STL-10


def dump(path: Path, obj) -> None:
    with open(path, "wb") as file:
        pickle.dump(obj, file)


def cifar_images(rng, n):
    return rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def test_load_cifar10(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(2)
    batches = {f"data_batch_{i}": (cifar_images(rng, 2), [i, i + 1]) for i in range(1, 6)}
    batches["test_batch"] = (cifar_images(rng, 3), [9, 0, 4])
    for name, (rows, labels) in batches.items():
        dump(folder / name, {b"batch_label": name.encode(), b"data": rows, b"labels": labels})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
             b"truck"]
    dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})

    train = data.load_cifar(tmp_path, 10, "train")
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert np.array_equal(train.images[2].numpy(), batches["data_batch_2"][0][0].reshape(3, 32, 32))
    test = data.load_cifar(tmp_path, 10, "test")
    assert test.labels.dtype == torch.int64 and test.labels.tolist() == [9, 0, 4]
    assert test.classes[0] == "airplane" and len(test.classes) == 10 and test.name == "cifar10"


def test_load_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(3)
    rows = cifar_images(rng, 4)
    dump(folder / "train", {b"data": rows, b"fine_labels": [99, 0, 50, 7], b"coarse_labels": [1, 2, 3, 4]})
    dump(folder / "test", {b"data": cifar_images(rng, 1), b"fine_labels": [3], b"coarse_labels": [0]})
    dump(folder / "meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                           b"coarse_label_names": [b"x"] * 20})
    train = data.load_cifar(tmp_path, 100, "train")
    assert train.labels.tolist() == [99, 0, 50, 7]
    assert np.array_equal(train.images.reshape(4, -1).numpy(), rows)
    assert len(train.classes) == 100 and train.classes[99] == "class99"


def test_load_cifar_missing_says_where(tmp_path):
    with pytest.raises(DataError, match="cifar-10-python.tar.gz") as error:
        data.load("cifar10", "train", root=tmp_path)
    assert str(tmp_path) in str(error.value)


def test_load_stl10_transposes_column_major(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)
    images[0, 0, 0, :] = 255  # a white top row in the red channel of the first image
    # The official files store each channel column-major.
    (folder / "train_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
    (folder / "train_y.bin").write_bytes(bytes([1, 10]))
    (folder / "unlabeled_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
    (folder / "class_names.txt").write_text(
        "airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n")

    train = data.load_stl10(tmp_path, "train")
    assert train.images.shape == (2, 3, 96, 96)
    assert torch.equal(train.images, torch.from_numpy(images))
    assert (train.images[0, 0, 0, :] == 255).all()
    assert train.labels.tolist() == [0, 9] and train.classes[9] == "truck"
    assert data.load_stl10(tmp_path, "unlabeled").labels.tolist() == [-1, -1]


def test_load_stl10_truncated(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "test_X.bin").write_bytes(bytes(3 * 96 * 96 + 5))
    (folder / "test_y.bin").write_bytes(bytes([1]))
    (folder / "class_names.txt").write_text("a\n")
    with pytest.raises(DataError, match="truncated"):
        data.load_stl10(tmp_path, "test")


# --------------------------------------------------------------------------- ImageFolder


@pytest.fixture
def wnid_tree(tmp_path):
    """Two WordNet-id classes of tiny images: dog (n02084071) and domestic cat (n02121808)."""
    root = tmp_path / "imagenet" / "train"
    colours = {"n02084071": [(255, 0, 0), (0, 255, 0)], "n02121808": [(0, 0, 255)]}
    for wnid, fills in colours.items():
        (root / wnid).mkdir(parents=True)
        for i, fill in enumerate(fills):
            Image.new("RGB", (12, 8), fill).save(root / wnid / f"{i}.png")
    (root / "n02121808" / "notes.txt").write_text("not an image")
    return root


def check_tree(dataset):
    assert dataset.images.shape == (3, 3, 4, 4) and dataset.images.dtype == torch.uint8
    assert dataset.labels.tolist() == [0, 0, 1]
    assert dataset.images[0, 0].eq(255).all() and dataset.images[0, 1:].eq(0).all()
    assert dataset.images[2, 2].eq(255).all()
    assert dataset.wnids == ["n02084071", "n02121808"]


def test_image_folder_without_wordnet_keeps_ids(wnid_tree, monkeypatch):
    """With WordNet, classes are its names: tests/test_semantics.py checks that."""
    def unavailable(*args):
        raise semantics.WordNetError("no WordNet here")

    monkeypatch.setattr(semantics, "wordnet", unavailable)
    dataset = data.load(f"imagefolder:{wnid_tree.parent}", "train", image_size=4)
    check_tree(dataset)
    assert dataset.classes == dataset.wnids
    assert dataset.name == "imagefolder:train"


def test_image_folder_plain_names_and_grey_images(tmp_path, monkeypatch):
    def not_wanted(*args):
        raise AssertionError("WordNet looked up although not every folder is a WordNet id")

    monkeypatch.setattr(semantics, "wordnet", not_wanted)
    for name in ("n02084071", "cats"):
        (tmp_path / name).mkdir()
        Image.new("L", (5, 9), 200).save(tmp_path / name / "x.jpg")
    dataset = data.load_image_folder(tmp_path, 6)
    assert dataset.classes == ["cats", "n02084071"] and dataset.wnids is None
    assert dataset.images.shape == (2, 3, 6, 6) and dataset.channels == 3 and dataset.size == 6
    assert (dataset.images.int() - 200).abs().max() <= 2  # JPEG


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="one subfolder per split"):
        data.load(f"imagefolder:{tmp_path}", "val", image_size=8)
    (tmp_path / "val" / "empty_class").mkdir(parents=True)
    with pytest.raises(DataError, match="empty: empty_class"):
        data.load(f"imagefolder:{tmp_path}", "val", image_size=8)
    with pytest.raises(DataError, match="pass image_size"):
        data.load(f"imagefolder:{tmp_path}", "val")


# --------------------------------------------------------------------------- Fashion-MNIST fetching


def test_fetch_from_debian_files(tmp_path, offline):
    arrays = write_fashion_mnist(offline)
    root = tmp_path / "data"
    assert data.fetch_fashion_mnist(root) == root
    assert all((root / name).is_symlink() for name in os.listdir(offline))
    dataset = data.load("fashion_mnist", "test", root=root)
    assert dataset.images.shape == (6, 1, 28, 28)
    assert np.array_equal(dataset.images[:, 0].numpy(), arrays["test"][0])
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == arrays["test"][1].tolist()
    assert dataset.classes == data.FASHION_MNIST_CLASSES


def test_fetch_is_idempotent(tmp_path, offline, monkeypatch):
    root = tmp_path / "data"
    write_fashion_mnist(root, gz=False)

    def must_not_download(*args, **kwargs):
        raise AssertionError("fetch tried to download files that were already there")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", must_not_download)
    assert data.fetch_fashion_mnist(root) == root
    assert data.fetch_fashion_mnist(root) == root


def test_fetch_with_torchvision(tmp_path, offline, monkeypatch):
    def download(root, download):
        write_fashion_mnist(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", download)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert data.fetch_fashion_mnist(tmp_path / "data") == raw
    # Found again where torchvision put it, without a second download.
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", None)
    assert data.fetch_fashion_mnist(tmp_path / "data") == raw


def test_fetch_with_apt_get_updates_once_install_fails(tmp_path, offline, monkeypatch):
    """A fake apt-get whose first install fails until `update` has run, then creates the files."""
    seed = tmp_path / "package-files"
    write_fashion_mnist(seed)
    log = tmp_path / "apt.log"
    fake = Path(os.environ["PATH"]) / "apt-get"
    fake.write_text(
        "#!/bin/sh\nPATH=/usr/bin:/bin\n"
        f'echo "$*" >> {log}\n'
        f'if [ "$1" = update ]; then touch {tmp_path}/updated; exit 0; fi\n'
        f"[ -e {tmp_path}/updated ] || exit 100\n"
        f"cp {seed}/* {offline}/\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    root = tmp_path / "data"
    assert data.fetch_fashion_mnist(root) == root
    calls = log.read_text().splitlines()
    assert [call.split()[0] for call in calls] == ["install", "update", "install"]
    assert calls[0].endswith("dataset-fashion-mnist")
    assert len(data.load_fashion_mnist(root, "train")) == 6


def test_fetch_missing_everywhere_explains_both_ways(tmp_path, offline, capsys):
    root = tmp_path / "data"
    with pytest.raises(DataError) as error:
        data.fetch_fashion_mnist(root)
    message = str(error.value)
    assert "internet" in message and "sudo apt-get install dataset-fashion-mnist" in message
    assert str(root) in message and "t10k-labels-idx1-ubyte" in message
    assert data.main(["fetch", "--root", str(root)]) == 1
    assert "sudo apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_cli_fetch(tmp_path, offline, capsys):
    write_fashion_mnist(offline)
    assert data.main(["fetch", "--root", str(tmp_path / "data")]) == 0
    assert str(tmp_path / "data") in capsys.readouterr().out


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEGATIVES_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    monkeypatch.delenv("NEGATIVES_DATA")
    assert data.default_root() == Path(data.__file__).resolve().parent.parent / "data"


# --------------------------------------------------------------------------- load, Dataset


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError, match="unknown data set 'mnist'") as error:
        data.load("mnist", "train")
    for name in ("fashion_mnist", "cifar10", "cifar100", "stl10", "imagefolder:"):
        assert name in str(error.value)


def test_unknown_split(tmp_path):
    write_fashion_mnist(tmp_path)
    with pytest.raises(DataError, match="use one of train, test"):
        data.load_fashion_mnist(tmp_path, "val")


def test_image_size_of_fixed_size_set(tmp_path, offline):
    write_fashion_mnist(offline)
    with pytest.raises(DataError, match="images are 28 px"):
        data.load("fashion_mnist", "train", root=tmp_path, image_size=32)


def make_dataset(n=50):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return data.Dataset(images, torch.arange(n) % 10, [str(i) for i in range(10)], None, "toy")


def test_subset_is_deterministic():
    dataset = make_dataset()
    a, b, c = dataset.subset(20, seed=0), dataset.subset(20, seed=0), dataset.subset(20, seed=1)
    assert len(a) == 20 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    assert len(set(a.images[:, 0, 0, 0].tolist())) == 20  # without replacement
    assert torch.equal(a.labels, a.images[:, 0, 0, 0].long() % 10)  # images and labels stay paired
    with pytest.raises(DataError, match="ask for 1..50"):
        dataset.subset(51, seed=0)


def test_dataset_to_and_properties():
    dataset = make_dataset().to("cpu")
    assert len(dataset) == 50 and dataset.channels == 1 and dataset.size == 2
    assert dataset.images.device.type == "cpu" and dataset.name == "toy"


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    dataset = data.load_fashion_mnist(DEBIAN_FMNIST, "test")
    assert dataset.images.shape == (10000, 1, 28, 28) and dataset.images.dtype == torch.uint8
    assert torch.bincount(dataset.labels).tolist() == [1000] * 10
    assert len(dataset.classes) == 10
