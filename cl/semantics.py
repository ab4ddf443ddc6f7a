"""WordNet through NLTK: setting it up on any machine, and class names to synsets.

:func:`ensure_wordnet` makes WordNet 3.0 loadable as an NLTK corpus under a private
directory (``<repo>/nltk_data``, or ``$NEGATIVES_NLTK_DATA``): from NLTK's downloader,
or else from the Debian packages ``wordnet-base`` and ``wordnet-sense-index``, laid out
the way NLTK expects. :func:`wordnet` returns the loaded reader.

Command line: ``python -m cl.semantics fetch [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import stat
import sys
import tempfile
import warnings
from pathlib import Path

import nltk
from nltk.corpus.reader import CorpusReader, WordNetCorpusReader
from nltk.corpus.util import LazyCorpusLoader

from cl.data import apt_install

REPO_ROOT = Path(__file__).resolve().parent.parent
DEBIAN_WORDNET = "/usr/share/wordnet"
DEBIAN_PACKAGES = ["wordnet-base", "wordnet-sense-index"]
# The WordNet licence, shipped by Debian as the package's copyright file; NLTK's wn.license() reads LICENSE.
DEBIAN_LICENSE = Path("/usr/share/doc/wordnet-base/copyright")

# WordNet's 45 lexicographer files, as in lexnames(5WN): number, name, syntactic
# category (1 noun, 2 verb, 3 adjective, 4 adverb). Debian does not ship the
# `lexnames` file that NLTK's reader needs, so it is written from this list.
LEXNAMES = [
    ("00", "adj.all", 3), ("01", "adj.pert", 3), ("02", "adv.all", 4),
    ("03", "noun.Tops", 1), ("04", "noun.act", 1), ("05", "noun.animal", 1),
    ("06", "noun.artifact", 1), ("07", "noun.attribute", 1), ("08", "noun.body", 1),
    ("09", "noun.cognition", 1), ("10", "noun.communication", 1), ("11", "noun.event", 1),
    ("12", "noun.feeling", 1), ("13", "noun.food", 1), ("14", "noun.group", 1),
    ("15", "noun.location", 1), ("16", "noun.motive", 1), ("17", "noun.object", 1),
    ("18", "noun.person", 1), ("19", "noun.phenomenon", 1), ("20", "noun.plant", 1),
    ("21", "noun.possession", 1), ("22", "noun.process", 1), ("23", "noun.quantity", 1),
    ("24", "noun.relation", 1), ("25", "noun.shape", 1), ("26", "noun.state", 1),
    ("27", "noun.substance", 1), ("28", "noun.time", 1), ("29", "verb.body", 2),
    ("30", "verb.change", 2), ("31", "verb.cognition", 2), ("32", "verb.communication", 2),
    ("33", "verb.competition", 2), ("34", "verb.consumption", 2), ("35", "verb.contact", 2),
    ("36", "verb.creation", 2), ("37", "verb.emotion", 2), ("38", "verb.motion", 2),
    ("39", "verb.perception", 2), ("40", "verb.possession", 2), ("41", "verb.social", 2),
    ("42", "verb.stative", 2), ("43", "verb.weather", 2), ("44", "adj.ppl", 3),
]

# Fashion-MNIST class -> WordNet 3.0 noun sense. Footwear (sandal, gym shoe, boot) meets
# at footwear.n.02, the garments at garment.n.01 or clothing.n.01; the bag is a container.
FASHION_MNIST_SYNSETS = {
    "T-shirt/top": "jersey.n.03",  # "a close-fitting pullover shirt"; lemmas jersey, T-shirt, tee shirt
    "Trouser": "trouser.n.01",
    "Pullover": "pullover.n.01",  # "a sweater that is put on by pulling it over the head"
    "Dress": "dress.n.01",
    "Coat": "coat.n.01",
    "Sandal": "sandal.n.01",
    "Shirt": "shirt.n.01",
    "Sneaker": "gym_shoe.n.01",  # lemmas gym shoe, sneaker, tennis shoe
    "Bag": "bag.n.04",  # handbag, "a container used for carrying money and small personal items"
    "Ankle boot": "boot.n.01",
}

# The files NLTK's WordNet reader opens; all but `lexnames` come with WordNet itself.
READER_FILES = WordNetCorpusReader._FILES
DEBIAN_FILES = tuple(name for name in READER_FILES if name != "lexnames")


class WordNetError(RuntimeError):
    """WordNet cannot be made available or does not load; the message says what to do."""


def default_nltk_dir() -> Path:
    """NLTK data directory of the project: ``$NEGATIVES_NLTK_DATA``, else ``<repo>/nltk_data``."""
    return Path(os.environ.get("NEGATIVES_NLTK_DATA", REPO_ROOT / "nltk_data"))


def lexnames_text() -> str:
    """The ``lexnames`` file: one ``NN<tab>name<tab>category`` line per lexicographer file."""
    return "".join(f"{number}\t{name}\t{category}\n" for number, name, category in LEXNAMES)


def _private_dir(directory: Path) -> Path:
    """Create ``directory`` (mode 0700) if needed; refuse one that others can write to, as NLTK does."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise WordNetError(f"NLTK will not use {directory}: it is group- or world-writable. "
                           f"Run `chmod go-w {directory}` and try again")
    return directory.resolve()


def _on_nltk_path(directory: Path) -> None:
    """Put ``directory`` first on ``nltk.data.path`` unless it is there already."""
    if str(directory) not in nltk.data.path:
        nltk.data.path.insert(0, str(directory))


def _installed() -> Path | None:
    """A complete WordNet corpus on ``nltk.data.path`` (a directory or NLTK's wordnet.zip), or None."""
    try:
        pointer = nltk.data.find("corpora/wordnet")
    except LookupError:
        return None
    if hasattr(pointer, "zipfile"):
        return Path(pointer.zipfile.filename)
    root = Path(pointer.path)
    return root if all((root / name).is_file() for name in READER_FILES) else None


@functools.lru_cache(maxsize=None)
def _reader(root: Path) -> WordNetCorpusReader:
    """The WordNet reader over ``root`` (a corpus directory or wordnet.zip), built once per root.

    The multilingual part is attached lazily, as ``nltk.corpus.wordnet`` does.
    """
    omw = LazyCorpusLoader("omw-2.0", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
    corpus = nltk.data.ZipFilePathPointer(str(root), "wordnet/") if root.suffix == ".zip" else str(root)
    return WordNetCorpusReader(corpus, omw)


def _verify(root: Path) -> None:
    """Raise WordNetError unless WordNet at ``root`` loads and knows dog.n.01."""
    try:
        _reader(root).synset("dog.n.01")
    except (OSError, LookupError, ValueError, AssertionError) as error:
        raise WordNetError(f"WordNet in {root} does not load ({type(error).__name__}: {error}): "
                           f"delete {root} and run `python -m cl.semantics fetch`") from None


def _nltk_download(nltk_dir: Path) -> bool:
    """NLTK's own downloader (needs the internet); True if it installed WordNet."""
    return bool(nltk.download("wordnet", download_dir=str(nltk_dir), quiet=True, raise_on_error=False))


def _copy_private(source: Path, target: Path) -> None:
    """Copy a file readable by all, writable by its owner only (NLTK refuses anything looser).

    A copy, not a symlink: NLTK will not follow a link out of the corpus directory.
    """
    shutil.copyfile(source, target)
    target.chmod(0o644)


def _from_debian(nltk_dir: Path) -> bool:
    """Lay the Debian WordNet 3.0 files out as ``nltk_dir/corpora/wordnet``; False if there are none.

    Installs the Debian packages first when they are missing and apt-get is usable.
    The corpus is assembled beside its final place and renamed into it, so an
    interrupted run leaves no half-built corpus.
    """
    debian = Path(os.environ.get("NEGATIVES_DEBIAN_WORDNET", DEBIAN_WORDNET))

    def complete() -> bool:
        return all((debian / name).is_file() for name in DEBIAN_FILES)

    if not complete() and not (apt_install(DEBIAN_PACKAGES) and complete()):
        return False
    corpora = nltk_dir / "corpora"
    corpora.mkdir(mode=0o700, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora))
    for name in DEBIAN_FILES:
        _copy_private(debian / name, staging / name)
    (staging / "lexnames").write_text(lexnames_text())
    (staging / "lexnames").chmod(0o644)
    if DEBIAN_LICENSE.is_file():
        _copy_private(DEBIAN_LICENSE, staging / "LICENSE")
    target = corpora / "wordnet"
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return True


def ensure_wordnet(nltk_dir=None) -> Path:
    """Make WordNet 3.0 loadable by NLTK and return where it is (a directory or wordnet.zip).

    ``nltk_dir`` (default :func:`default_nltk_dir`) goes first on ``nltk.data.path``.
    If a complete WordNet is already on that path, returns at once. Otherwise tries
    NLTK's downloader, then the Debian files (``$NEGATIVES_DEBIAN_WORDNET``, default
    ``/usr/share/wordnet``; ``apt-get install wordnet-base wordnet-sense-index`` as root
    when missing), checks that dog.n.01 loads and prints the source it used.
    """
    nltk_dir = _private_dir(Path(nltk_dir) if nltk_dir is not None else default_nltk_dir())
    _on_nltk_path(nltk_dir)
    root = _installed()
    if root is not None:
        return root
    if _nltk_download(nltk_dir):
        source = "NLTK's downloader"
    elif _from_debian(nltk_dir):
        source = "the Debian packages " + " and ".join(DEBIAN_PACKAGES)
    else:
        raise WordNetError(
            f"WordNet is not in {nltk_dir} and could not be fetched. Either connect to the internet "
            f"and run `python -m cl.semantics fetch`, or `sudo apt-get install {' '.join(DEBIAN_PACKAGES)}` "
            "and run it again, or set NEGATIVES_NLTK_DATA to an NLTK data directory that has corpora/wordnet."
        )
    root = _installed()
    if root is None:
        raise WordNetError(f"{source} left no complete WordNet under {nltk_dir}: delete "
                           f"{nltk_dir / 'corpora'} and run `python -m cl.semantics fetch`")
    _verify(root)
    print(f"WordNet: installed from {source} into {root}")
    return root


def wordnet(nltk_dir=None) -> WordNetCorpusReader:
    """The loaded WordNet reader (like ``nltk.corpus.wordnet``), after :func:`ensure_wordnet`.

    One reader per corpus location per process, so only the first call pays the load.
    """
    root = ensure_wordnet(nltk_dir)
    _verify(root)
    return _reader(root)


def synset_for_wnid(wnid: str, wn: WordNetCorpusReader | None = None):
    """The noun synset of a WordNet id such as ImageNet's ``'n02084071'`` (dog.n.01)."""
    if len(wnid) != 9 or wnid[0] != "n" or not wnid[1:].isdigit():
        raise WordNetError(f"{wnid!r} is not a WordNet noun id: expected 'n' and 8 digits, e.g. 'n02084071'")
    wn = wn if wn is not None else wordnet()
    with warnings.catch_warnings():  # NLTK warns and returns None for an unknown offset; we raise instead
        warnings.simplefilter("ignore", UserWarning)
        synset = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
    if synset is None:
        raise WordNetError(f"no noun synset {wnid} in WordNet 3.0: check the id "
                           "(ImageNet folder names are WordNet 3.0 ids)")
    return synset


def main(argv=None) -> int:
    """``python -m cl.semantics fetch [--dir DIR]``: set up WordNet; exit 1 with the reason on failure."""
    parser = argparse.ArgumentParser(prog="python -m cl.semantics", description="Set up WordNet for NLTK.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="make WordNet loadable (see ensure_wordnet)")
    fetch.add_argument("--dir", type=Path, default=None,
                       help="NLTK data directory (default: $NEGATIVES_NLTK_DATA or <repo>/nltk_data)")
    args = parser.parse_args(argv)
    try:
        print(wordnet(args.dir).root)
    except WordNetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
