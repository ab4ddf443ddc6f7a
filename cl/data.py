"""Data sets as uint8 tensors kept whole on a device.

Every loader returns a :class:`Dataset`: ``images`` uint8 ``(N, C, H, W)``, ``labels``
int64 ``(N,)``, the class names and, where the folder names are WordNet ids, the ids.
Fashion-MNIST is the embedded default: :func:`fetch_fashion_mnist` gets it on a fresh
machine (files already there, the Debian package ``dataset-fashion-mnist``, or
torchvision's download). CIFAR-10/100, STL-10 and ImageFolder trees are read from the
official files when the user has them.

Command line: ``python -m cl.data fetch [--root DIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import os
import pickle
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cl import ROOT, cli, system
from cl.cli import UserError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
NAMES = ("fashion_mnist", "cifar10", "cifar100", "stl10", "imagefolder:<path>")
# images per split of the data sets with fixed splits, so that a config can be checked before loading
SPLIT_SIZES = {
    "fashion_mnist": {"train": 60_000, "test": 10_000},
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
    "stl10": {"train": 5_000, "test": 8_000},
}

CIFAR_URL = {
    10: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    100: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_SIZE = 96

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")

_IDX_DIMS = {0x00000801: 1, 0x00000803: 3}  # magic -> number of dims (uint8 payload)
_GZIP_MAGIC = b"\x1f\x8b"


class DataError(UserError, RuntimeError):
    """A data set is missing, corrupt or mis-specified; the message says what to do."""


@dataclass
class Dataset:
    """A whole data set as tensors: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``.

    ``classes[i]`` names label ``i``; ``wnids`` holds the WordNet id of each class
    where known (ImageFolder trees whose folders are WordNet ids), else None.
    Unlabelled samples (STL-10 ``unlabeled``) have label -1.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    wnids: list[str] | None
    name: str

    def to(self, device) -> "Dataset":
        """The same data set with images and labels on ``device``."""
        return dataclasses.replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        """Number of image channels, 1 or 3."""
        return self.images.shape[1]

    @property
    def size(self) -> int:
        """Image height (images are square)."""
        return self.images.shape[2]

    def of_classes(self, labels: list[int]) -> "Dataset":
        """The samples whose label is in ``labels``; labels keep their values (and ``classes`` its names)."""
        keep = torch.isin(self.labels, torch.tensor(labels, device=self.labels.device))
        return dataclasses.replace(self, images=self.images[keep], labels=self.labels[keep])

    def subset(self, n: int, seed: int) -> "Dataset":
        """``n`` samples drawn at random without replacement, the same ones for the same seed."""
        if not 0 < n <= len(self):
            raise DataError(f"subset of {n} samples from {self.name} ({len(self)} samples): "
                            f"ask for 1..{len(self)}")
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=generator)[:n].to(self.images.device)
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index])


def default_root() -> Path:
    """The data directory: ``$NEGATIVES_DATA``, else ``<repo>/data``."""
    return Path(os.environ.get("NEGATIVES_DATA", ROOT / "data"))


# --------------------------------------------------------------------------- IDX files


def _corrupt(path, why: str) -> DataError:
    return DataError(f"{path} is truncated or corrupt ({why}): delete it and re-run `make data`")


def read_idx(path) -> torch.Tensor:
    """Read an IDX file of uint8 (magic 0x801: vector, 0x803: images), gzipped or not.

    Gzip is recognised by its magic bytes, whatever the file is called.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise _corrupt(path, f"bad gzip: {error}") from None
    if len(raw) < 4:
        raise _corrupt(path, f"{len(raw)} bytes, shorter than the IDX magic number")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_DIMS:
        expected = " or ".join(f"{m:#010x}" for m in _IDX_DIMS)
        raise _corrupt(path, f"magic number {magic:#010x} is not {expected}")
    header = 4 + 4 * _IDX_DIMS[magic]
    if len(raw) < header:
        raise _corrupt(path, "header cut short")
    dims = [int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise _corrupt(path, f"{len(raw)} bytes where the header {dims} says {expected}")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy())


def _find_idx(root: Path, stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def _has_fashion_mnist(root: Path) -> bool:
    return all(_find_idx(root, stem) for stems in FASHION_MNIST_FILES.values() for stem in stems)


def _check_split(split: str, splits) -> None:
    if split not in splits:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(splits)}")


def load_fashion_mnist(root, split: str) -> Dataset:
    """Fashion-MNIST ``train`` (60k) or ``test`` (10k) from the IDX files in ``root``: images
    (N, 1, 28, 28)."""
    _check_split(split, FASHION_MNIST_FILES)
    root = Path(root)
    paths = [_find_idx(root, stem) for stem in FASHION_MNIST_FILES[split]]
    if None in paths:
        raise DataError(f"Fashion-MNIST {split} files are not in {root}: "
                        f"run `python -m cl.data fetch --root {root}`")
    images, labels = (read_idx(path) for path in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise _corrupt(paths[0], f"images {tuple(images.shape)} do not match labels {tuple(labels.shape)}")
    return Dataset(images.unsqueeze(1), labels.long(), list(FASHION_MNIST_CLASSES), None, "fashion_mnist")


# --------------------------------------------------------------------------- Fashion-MNIST fetching


def _fashion_mnist_dir(root: Path) -> Path | None:
    """Where the four Fashion-MNIST files already are: ``root`` or torchvision's ``root/FashionMNIST/raw``."""
    for place in (root, root / "FashionMNIST" / "raw"):
        if _has_fashion_mnist(place):
            return place
    return None


def _link_debian_files(debian: Path, root: Path) -> None:
    """Symlink the Debian package's four files into ``root``, replacing stale entries."""
    root.mkdir(parents=True, exist_ok=True)
    for stems in FASHION_MNIST_FILES.values():
        for stem in stems:
            source = _find_idx(debian, stem)
            target = root / source.name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(source)


def _torchvision_download(root: Path) -> str | None:
    """Download with torchvision into ``root/FashionMNIST/raw``; None on success, else why it failed."""
    import torchvision  # only where a data set is downloaded: keeps it out of every start-up

    try:
        torchvision.datasets.FashionMNIST(str(root), download=True)
    except (OSError, RuntimeError) as error:  # what torchvision raises when no mirror answers
        return " ".join(f"{type(error).__name__}: {error}".split())
    return None


def fetch_fashion_mnist(root=None) -> Path:
    """Make the four Fashion-MNIST IDX files available under ``root``; return their directory.

    Tries, in order: files already there (no download); the Debian package's files
    (``$NEGATIVES_DEBIAN_FMNIST``, default ``/usr/share/datasets/fashion-mnist``),
    symlinked into ``root``; torchvision's download; ``apt-get install
    dataset-fashion-mnist`` when running as root. Prints the source it used.
    """
    root = Path(root) if root is not None else default_root()
    found = _fashion_mnist_dir(root)
    if found is not None:
        return found
    debian = Path(os.environ.get("NEGATIVES_DEBIAN_FMNIST", DEBIAN_FASHION_MNIST))
    if _has_fashion_mnist(debian):
        _link_debian_files(debian, root)
        print(f"Fashion-MNIST: linked the Debian package's files from {debian} into {root}")
        return root
    failure = _torchvision_download(root)
    if failure is None:
        print(f"Fashion-MNIST: downloaded with torchvision into {root / 'FashionMNIST' / 'raw'}")
        return root / "FashionMNIST" / "raw"
    if system.apt_install(["dataset-fashion-mnist"]) and _has_fashion_mnist(debian):
        _link_debian_files(debian, root)
        print(f"Fashion-MNIST: installed the Debian package dataset-fashion-mnist, linked into {root}")
        return root
    raise DataError(
        f"Fashion-MNIST is not in {root} and could not be fetched (torchvision: {failure}; "
        f"no Debian files in {debian}). Either connect to the internet and re-run, "
        "or `sudo apt-get install dataset-fashion-mnist`, "
        f"or put the four IDX files ({', '.join(s for p in FASHION_MNIST_FILES.values() for s in p)}, "
        f"gzipped or not) in {root}."
    )


# --------------------------------------------------------------------------- CIFAR, STL-10


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            return pickle.load(file, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"{path} is truncated or corrupt ({error}): "
                        "delete it and extract the archive again") from None


def load_cifar(root, num_classes: int, split: str) -> Dataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from the official python pickles: images (N, 3, 32, 32)."""
    if num_classes not in CIFAR_URL:
        raise DataError(f"CIFAR has 10 or 100 classes, not {num_classes}")
    _check_split(split, ("train", "test"))
    root = Path(root)
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta, names_key, labels_key = "batches.meta", b"label_names", b"labels"
    else:
        folder = root / "cifar-100-python"
        batches, meta, names_key, labels_key = [split], "meta", b"fine_label_names", b"fine_labels"
    missing = [name for name in [*batches, meta] if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-{num_classes} files {', '.join(missing)} are not in {folder}: download "
            f"{CIFAR_URL[num_classes]} and extract it into {root}"
        )
    parts = [_unpickle(folder / name) for name in batches]
    try:
        images = np.concatenate([np.asarray(part[b"data"], np.uint8) for part in parts])
        images = images.reshape(-1, 3, 32, 32)
        labels = np.concatenate([np.asarray(part[labels_key], np.int64) for part in parts])
        classes = [name.decode() for name in _unpickle(folder / meta)[names_key]]
    except (KeyError, ValueError) as error:
        raise DataError(f"{folder} does not hold the official CIFAR-{num_classes} python batches "
                        f"({error!r}): "
                        f"extract {CIFAR_URL[num_classes]} into {root} again") from None
    return Dataset(torch.from_numpy(images), torch.from_numpy(labels), classes, None, f"cifar{num_classes}")


def load_stl10(root, split: str) -> Dataset:
    """STL-10 ``train``, ``test`` or ``unlabeled`` (label -1) from the official binaries: images
    (N, 3, 96, 96)."""
    _check_split(split, ("train", "test", "unlabeled"))
    folder = Path(root) / "stl10_binary"
    needed = [f"{split}_X.bin", "class_names.txt"] + ([] if split == "unlabeled" else [f"{split}_y.bin"])
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise DataError(f"STL-10 files {', '.join(missing)} are not in {folder}: download {STL10_URL} "
                        f"and extract it into {root}")
    pixels = np.fromfile(folder / f"{split}_X.bin", np.uint8)
    if pixels.size % (3 * STL10_SIZE * STL10_SIZE):
        raise DataError(f"{folder / f'{split}_X.bin'} is truncated: delete it and extract {STL10_URL} again")
    # Stored column-major per channel: transpose H and W, as torchvision does.
    images = np.ascontiguousarray(pixels.reshape(-1, 3, STL10_SIZE, STL10_SIZE).transpose(0, 1, 3, 2))
    if split == "unlabeled":
        labels = np.full(len(images), -1, np.int64)
    else:
        labels = np.fromfile(folder / f"{split}_y.bin", np.uint8).astype(np.int64) - 1
        if len(labels) != len(images):
            raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels; "
                            f"extract {STL10_URL} again")
    classes = (folder / "class_names.txt").read_text().split()
    return Dataset(torch.from_numpy(images), torch.from_numpy(labels), classes, None, "stl10")


# --------------------------------------------------------------------------- ImageFolder


def _read_image(path: Path, size: int) -> np.ndarray:
    """An image file as (3, size, size) uint8: shorter side scaled to ``size``, centre crop, RGB."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # only image folders read image files

    try:
        with Image.open(path) as image:
            square = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"cannot decode image {path} ({error}): delete or replace it") from None
    return np.asarray(square).transpose(2, 0, 1)


def _wordnet_names(wnids: list[str]) -> list[str]:
    """Human class names for WordNet ids (first lemma), or the ids themselves without WordNet."""
    from cl import semantics  # WordNet (nltk) for an image folder only: out of every run's start-up
    try:
        wordnet = semantics.wordnet()
    except semantics.WordNetError as error:
        print(f"class names are WordNet ids ({error})")
        return list(wnids)
    return [semantics.synset_for_wnid(wnid, wordnet).lemma_names()[0].replace("_", " ") for wnid in wnids]


def load_image_folder(root, size: int) -> Dataset:
    """An ImageFolder tree ``root/<class>/<image>``: classes in sorted folder order, RGB (N, 3, size, size).

    When every folder name is a WordNet id (``n\\d{8}``, as in ImageNet) the ids are
    kept in ``wnids`` and the class names are their first WordNet lemma.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: "
                        "give the directory holding one folder per class")
    folders = sorted(entry for entry in root.iterdir() if entry.is_dir())
    files = {
        folder.name: sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        for folder in folders
    }
    empty = [name for name, paths in files.items() if not paths]
    if not folders or empty:
        raise DataError(f"{root} needs one folder per class, each holding images "
                        f"({', '.join(IMAGE_EXTENSIONS)}); empty: {', '.join(empty) or root.name}")
    names = [folder.name for folder in folders]
    images = np.stack([_read_image(path, size) for name in names for path in files[name]])
    labels = np.concatenate([np.full(len(files[name]), label, np.int64) for label, name in enumerate(names)])
    from cl.semantics import WNID  # as in _wordnet_names
    wnids = names if all(WNID.fullmatch(name) for name in names) else None
    classes = _wordnet_names(wnids) if wnids else names
    return Dataset(torch.from_numpy(images), torch.from_numpy(labels), classes, wnids,
                   f"imagefolder:{root.name}")


# --------------------------------------------------------------------------- entry point


def _download(root: Path, folder: str, torchvision_name: str) -> Path:
    """Let torchvision download an archive into ``root`` when ``root/folder`` is missing.

    Needs internet; when it fails the loader's own error says where to put the files.
    """
    if not (root / folder).is_dir():
        import torchvision  # only where a data set is downloaded: keeps it out of every start-up
        try:
            getattr(torchvision.datasets, torchvision_name)(str(root), download=True)
        except (OSError, RuntimeError) as error:
            print(f"torchvision could not download {torchvision_name}: {error}", file=sys.stderr)
    return root


def load(name: str, split: str, root=None, device="cpu", image_size: int | None = None) -> Dataset:
    """Load data set ``name`` (one of :data:`NAMES`) on ``device``; ``root`` defaults to :func:`default_root`.

    ``imagefolder:<path>`` reads ``<path>/<split>`` and needs ``image_size``; the other
    data sets have a fixed size, which ``image_size`` may only repeat. Fashion-MNIST is
    fetched first when missing.
    """
    root = Path(root) if root is not None else default_root()
    if name.startswith("imagefolder:"):
        if image_size is None:
            raise DataError(f"{name}: pass image_size (e.g. 64 or 224) to resize the images to")
        folder = Path(name.removeprefix("imagefolder:")) / split
        if not folder.is_dir():
            raise DataError(f"{folder} does not exist: {name} needs one subfolder per split "
                            "(e.g. train/ and val/), each with one folder per class")
        return load_image_folder(folder, image_size).to(device)
    loaders = {
        "fashion_mnist": lambda: load_fashion_mnist(fetch_fashion_mnist(root), split),
        "cifar10": lambda: load_cifar(_download(root, "cifar-10-batches-py", "CIFAR10"), 10, split),
        "cifar100": lambda: load_cifar(_download(root, "cifar-100-python", "CIFAR100"), 100, split),
        "stl10": lambda: load_stl10(_download(root, "stl10_binary", "STL10"), split),
    }
    if name not in loaders:
        raise DataError(f"unknown data set {name!r}: use one of {', '.join(NAMES)}")
    dataset = loaders[name]()
    if image_size is not None and image_size != dataset.size:
        raise DataError(f"{name} images are {dataset.size} px: "
                        f"drop image_size={image_size} or set it to {dataset.size}")
    return dataset.to(device)


def main(argv=None) -> int:
    """``python -m cl.data fetch [--root DIR]``: fetch Fashion-MNIST; exit 1 with the reason on failure."""
    return cli.run_main(_main, argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m cl.data", description="Fetch the embedded data set.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="make Fashion-MNIST available (see fetch_fashion_mnist)")
    fetch.add_argument("--root", type=Path, default=None,
                       help="data directory (default: $NEGATIVES_DATA or <repo>/data)")
    args = parser.parse_args(argv)
    print(fetch_fashion_mnist(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
