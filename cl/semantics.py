"""WordNet through NLTK: setting it up on any machine, class names to synsets, class similarity.

:func:`ensure_wordnet` makes WordNet 3.0 loadable as an NLTK corpus under a private
directory (``<repo>/nltk_data``, or ``$NEGATIVES_NLTK_DATA``): from NLTK's downloader,
or else from the Debian packages ``wordnet-base`` and ``wordnet-sense-index``, laid out
the way NLTK expects. :func:`wordnet` returns the loaded reader.

:func:`class_synsets` gives each class of a data set its noun synset: from explicit
tables for Fashion-MNIST, CIFAR-10 and CIFAR-100, from the WordNet id for ImageNet-style
folders. :func:`similarity_matrix` compares the classes pairwise under one of
:data:`MEASURES`: the depth of their lowest common hypernym, Wu & Palmer (1994), or
path similarity. Three measures, so that a finding about semantically close negatives
(the question of Cai et al. 2020, "Are all negatives created equal in contrastive
instance discrimination?") can be checked not to hang on the choice of one.

Command line: ``python -m cl.semantics fetch [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import nltk
import torch
from nltk.corpus.reader import CorpusReader, WordNetCorpusReader
from nltk.corpus.reader.wordnet import Synset
from nltk.corpus.util import LazyCorpusLoader

from cl import ROOT, cli, system
from cl.cli import UserError

WNID = re.compile(r"n\d{8}")  # an ImageNet class: a WordNet noun synset's offset

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

# Class name -> WordNet 3.0 noun synset, chosen by reading the glosses, never by taking a word's
# first sense: for nearly a third of CIFAR-100's names the first noun sense is not what the images show
# ("seal" is first sealing wax, "ray" a beam of light, "tiger" a fierce person). Each entry
# carries (the start of) its gloss, and the first sense where that one is wrong.

# Fashion-MNIST: footwear (sandal, gym shoe, boot) meets at footwear.n.02, the garments at
# garment.n.01 or clothing.n.01; the bag is a container.
FASHION_MNIST_SYNSETS = {
    "T-shirt/top": "jersey.n.03",  # "a close-fitting pullover shirt"; lemmas jersey, T-shirt, tee shirt
    "Trouser": "trouser.n.01",  # "a garment extending from the waist to the knee or ankle"
    "Pullover": "pullover.n.01",  # "a sweater that is put on by pulling it over the head"
    "Dress": "dress.n.01",  # "a one-piece garment for a woman; has skirt and bodice"
    "Coat": "coat.n.01",  # "an outer garment that has sleeves and covers the body from shoulder down"
    "Sandal": "sandal.n.01",  # "a shoe consisting of a sole fastened by straps to the foot"
    "Shirt": "shirt.n.01",  # "a garment worn on the upper half of the body"
    "Sneaker": "gym_shoe.n.01",  # "a canvas shoe with a pliable rubber sole"; lemmas gym shoe, sneaker
    "Bag": "bag.n.04",  # handbag: "a container used for carrying money and small personal items"
    "Ankle boot": "boot.n.01",  # "footwear that covers the whole foot and lower leg"; no ankle-boot synset
}

# CIFAR-10, in the data set's label order.
CIFAR10_SYNSETS = {
    "airplane": "airplane.n.01",  # "an aircraft that has a fixed wing"
    "automobile": "car.n.01",  # "a motor vehicle with four wheels"
    "bird": "bird.n.01",  # "warm-blooded egg-laying vertebrates characterized by feathers"
    # "feline mammal ... domestic cats; wildcats"; domestic_cat.n.01 would also be a domestic_animal.n.01,
    # two steps from dog.n.01 on WordNet's graph, which only the path measure would see.
    "cat": "cat.n.01",
    "deer": "deer.n.01",  # "distinguished from Bovidae by the male's having solid deciduous antlers"
    "dog": "dog.n.01",  # "a member of the genus Canis"
    "frog": "frog.n.01",  # "any of various tailless stout-bodied amphibians"
    "horse": "horse.n.01",  # "solid-hoofed herbivorous quadruped domesticated since prehistoric times"
    "ship": "ship.n.01",  # "a vessel that carries passengers or freight"
    "truck": "truck.n.01",  # "an automotive vehicle suitable for hauling"
}

# CIFAR-100's 100 fine labels, spelt as in the data set's meta file (which torchvision reads).
CIFAR100_SYNSETS = {
    "apple": "apple.n.01",  # "fruit with red or yellow or green skin" (apple.n.02 is the tree)
    "aquarium_fish": "fish.n.01",  # no aquarium-fish synset; the images show many species of fish
    "baby": "baby.n.01",  # "a very young child (birth to 1 year)"
    "bear": "bear.n.01",  # "massive plantigrade carnivorous or omnivorous mammals"
    "beaver": "beaver.n.07",  # "large semiaquatic rodent" (first sense: its fur)
    "bed": "bed.n.01",  # "a piece of furniture that provides a place to sleep"
    "bee": "bee.n.01",  # "any of numerous hairy-bodied insects"
    "beetle": "beetle.n.01",  # "insect having biting mouthparts and front wings modified to form horny ..."
    "bicycle": "bicycle.n.01",  # "a wheeled vehicle that has two wheels and is moved by foot pedals"
    "bottle": "bottle.n.01",  # "a glass or plastic vessel used for storing drinks or other liquids"
    "bowl": "bowl.n.01",  # "a round vessel that is open at the top"
    "boy": "male_child.n.01",  # "a youthful male person"
    "bridge": "bridge.n.01",  # "a structure that allows people or vehicles to cross an obstacle"
    "bus": "bus.n.01",  # "a vehicle carrying many passengers; used for public transport"
    "butterfly": "butterfly.n.01",  # "diurnal insect typically having a slender body"
    "camel": "camel.n.01",  # "cud-chewing mammal used as a draft or saddle animal in desert regions"
    "can": "can.n.01",  # "airtight sealed metal container for food or drink"
    "castle": "castle.n.02",  # "a large building ... fortified against attack" (first sense: palace.n.01)
    "caterpillar": "caterpillar.n.01",  # "a wormlike ... larva of a butterfly or moth"
    "cattle": "cattle.n.01",  # "domesticated bovine animals as a group"
    "chair": "chair.n.01",  # "a seat for one person, with a support for the back"
    "chimpanzee": "chimpanzee.n.01",  # "intelligent somewhat arboreal ape of equatorial African forests"
    "clock": "clock.n.01",  # "a timepiece that shows the time of day"
    "cloud": "cloud.n.02",  # "a visible mass of water or ice particles" (first sense: smoke or dust too)
    "cockroach": "cockroach.n.01",  # "any of numerous chiefly nocturnal insects"
    "couch": "sofa.n.01",  # "an upholstered seat for more than one person"
    "crab": "crab.n.01",  # "decapod having eyes on short stalks" (crab.n.05 is its flesh as food)
    "crocodile": "crocodile.n.01",  # "large voracious aquatic reptile having a long snout"
    "cup": "cup.n.01",  # "a small open container usually used for drinking"
    "dinosaur": "dinosaur.n.01",  # "any of numerous extinct terrestrial reptiles of the Mesozoic era"
    "dolphin": "dolphin.n.02",  # "small toothed whales with a beaklike snout" (first sense: dolphinfish)
    "elephant": "elephant.n.01",  # "five-toed pachyderm"
    "flatfish": "flatfish.n.02",  # "fishes having flattened bodies" (first sense: their flesh as food)
    "forest": "forest.n.02",  # "land that is covered with trees and shrubs", a scene like plain and sea
    "fox": "fox.n.01",  # "alert carnivorous mammal with pointed muzzle and ears and a bushy tail"
    "girl": "female_child.n.01",  # "a youthful female person", as boy (first sense: "a young woman")
    "hamster": "hamster.n.01",  # "short-tailed Old World burrowing rodent with large cheek pouches"
    "house": "house.n.01",  # "a dwelling that serves as living quarters for one or more families"
    "kangaroo": "kangaroo.n.01",  # "any of several herbivorous leaping marsupials"
    "keyboard": "computer_keyboard.n.01",  # "a data input device for computers" (first: any keyboard)
    "lamp": "lamp.n.02",  # "furniture holding one or more electric light bulbs" (first: any light source)
    "lawn_mower": "lawn_mower.n.01",  # "garden tool for mowing grass on lawns"
    "leopard": "leopard.n.02",  # "large feline of African and Asian forests" (first sense: its pelt)
    "lion": "lion.n.01",  # "large gregarious predatory feline of Africa and India"
    "lizard": "lizard.n.01",  # "relatively long-bodied reptile with usually two pairs of legs"
    "lobster": "lobster.n.02",  # "edible marine crustaceans" (first sense: its flesh)
    "man": "man.n.01",  # "an adult person who is male"
    "maple_tree": "maple.n.02",  # "trees or shrubs of the genus Acer" (first sense: maple wood)
    "motorcycle": "motorcycle.n.01",  # "a motor vehicle with two wheels and a strong frame"
    "mountain": "mountain.n.01",  # "a land mass that projects well above its surroundings"
    "mouse": "mouse.n.01",  # "any of numerous small rodents" (mouse.n.04 is the pointing device)
    "mushroom": "mushroom.n.02",  # "mushrooms and related fleshy fungi (including toadstools ...)"
    "oak_tree": "oak.n.02",  # "a deciduous tree of the genus Quercus" (first sense: oak wood)
    "orange": "orange.n.01",  # "round yellow to orange fruit of any of several citrus trees"
    "orchid": "orchid.n.01",  # "plants of the orchid family usually having flowers of unusual shapes"
    "otter": "otter.n.02",  # "freshwater carnivorous mammal having webbed and clawed feet" (first: its fur)
    "palm_tree": "palm.n.03",  # "any plant of the family Palmae" (first sense: of the hand)
    "pear": "pear.n.01",  # "sweet juicy gritty-textured fruit" (pear.n.02 is the tree)
    "pickup_truck": "pickup.n.01",  # "a light truck with an open body and low sides and a tailboard"
    "pine_tree": "pine.n.01",  # "a coniferous tree"
    "plain": "plain.n.01",  # "extensive tract of level open land"
    "plate": "plate.n.04",  # "dish on which food is served" (first sense: baseball's home plate)
    "poppy": "poppy.n.01",  # "annual or biennial or perennial herbs having showy flowers"
    "porcupine": "porcupine.n.01",  # "relatively large rodents with sharp erectile bristles"
    "possum": "opossum.n.02",  # "nocturnal arboreal marsupial having a naked prehensile tail"
    "rabbit": "rabbit.n.01",  # "burrowing animals of the family Leporidae having long ears"
    "raccoon": "raccoon.n.02",  # "an omnivorous nocturnal mammal" (first sense: its fur)
    "ray": "ray.n.07",  # "cartilaginous fishes having horizontally flattened bodies" (first: a beam)
    "road": "road.n.01",  # "an open way (generally public) for travel or transportation"
    "rocket": "rocket.n.01",  # "any vehicle self-propelled by a rocket engine"
    "rose": "rose.n.01",  # "any of many shrubs of the genus Rosa that bear roses"
    "sea": "sea.n.01",  # "a division of an ocean or a large body of salt water"
    "seal": "seal.n.09",  # "marine mammals that come on shore to breed" (first sense: sealing wax)
    "shark": "shark.n.01",  # "any of numerous elongate mostly marine carnivorous fishes"
    "shrew": "shrew.n.02",  # "small mouselike mammal with a long snout" (first sense: a nagging woman)
    "skunk": "skunk.n.04",  # "American musteline mammal" (first sense: a contemptible person)
    "skyscraper": "skyscraper.n.01",  # "a very tall building with many stories"
    "snail": "snail.n.01",  # "freshwater or marine or terrestrial gastropod mollusk"
    "snake": "snake.n.01",  # "limbless scaly elongate reptile"
    "spider": "spider.n.01",  # "predatory arachnid with eight legs"
    "squirrel": "squirrel.n.01",  # "a kind of arboreal rodent having a long bushy tail"
    "streetcar": "streetcar.n.01",  # "a wheeled vehicle that runs on rails and is propelled by electricity"
    "sunflower": "sunflower.n.01",  # "any plant of the genus Helianthus having large flower heads"
    "sweet_pepper": "sweet_pepper.n.02",  # "large mild crisp ... capsicum peppers" (first sense: the plant)
    "table": "table.n.02",  # "a piece of furniture having a smooth flat top" (first sense: a table of data)
    "tank": "tank.n.01",  # "an enclosed armored military vehicle"
    "telephone": "telephone.n.01",  # "electronic equipment that converts sound into electrical signals"
    "television": "television_receiver.n.01",  # "receives television signals" (first sense: broadcasting)
    "tiger": "tiger.n.02",  # "large feline of forests in most of Asia" (first sense: a fierce person)
    "tractor": "tractor.n.01",  # "a wheeled vehicle with large wheels; used in farming"
    "train": "train.n.01",  # "a line of railway cars coupled together and drawn by a locomotive"
    "trout": "trout.n.02",  # "game and food fishes of cool fresh waters" (first sense: their flesh)
    "tulip": "tulip.n.01",  # "any of numerous perennial bulbous herbs"
    "turtle": "turtle.n.02",  # "aquatic and land reptiles having a bony shell" (first sense: a turtleneck)
    "wardrobe": "wardrobe.n.01",  # "a tall piece of furniture that provides storage space for clothes"
    "whale": "whale.n.02",  # "the larger cetacean mammals" (first sense: a very large person)
    "willow_tree": "willow.n.01",  # "any of numerous deciduous trees and shrubs of the genus Salix"
    "wolf": "wolf.n.01",  # "any of various predatory carnivorous canine mammals"
    "woman": "woman.n.01",  # "an adult female person"
    "worm": "worm.n.01",  # "any of numerous relatively small elongated soft-bodied animals"
}

# Data set name (as cl.data names it) -> its table.
CLASS_SYNSETS = {
    "fashion_mnist": FASHION_MNIST_SYNSETS,
    "cifar10": CIFAR10_SYNSETS,
    "cifar100": CIFAR100_SYNSETS,
}

# The files NLTK's WordNet reader opens; all but `lexnames` come with WordNet itself.
READER_FILES = WordNetCorpusReader._FILES
DEBIAN_FILES = tuple(name for name in READER_FILES if name != "lexnames")


class WordNetError(UserError, RuntimeError):
    """WordNet cannot be made available, does not load, or has no synset for a class or id.

    The message says what to do.
    """


def default_nltk_dir() -> Path:
    """NLTK data directory of the project: ``$NEGATIVES_NLTK_DATA``, else ``<repo>/nltk_data``."""
    return Path(os.environ.get("NEGATIVES_NLTK_DATA", ROOT / "nltk_data"))


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
    """NLTK's own downloader (needs the internet); True if it installed WordNet. Its error lines
    (printed even when quiet) are kept back: a failure is followed by the Debian fallback's own line."""
    return bool(nltk.download("wordnet", download_dir=str(nltk_dir), quiet=True, raise_on_error=False,
                              print_error_to=io.StringIO()))


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

    if not complete() and not (system.apt_install(DEBIAN_PACKAGES) and complete()):
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


def class_synsets(dataset: str, classes: Sequence[str],
                  wn: WordNetCorpusReader | None = None) -> list[Synset]:
    """The noun synset of each class of ``dataset`` (a name from cl.data, e.g. ``'cifar100'``).

    Classes are looked up in the data set's table in :data:`CLASS_SYNSETS`; a data set
    without a table (an ImageFolder tree) must name its classes by WordNet ids, as
    ImageNet does: pass ``Dataset.wnids`` there, not the human names.
    """
    wn = wn if wn is not None else wordnet()
    table = CLASS_SYNSETS.get(dataset)
    if table is None:
        not_ids = [name for name in classes if not WNID.fullmatch(name)]
        if not_ids:
            raise WordNetError(f"no synset known for class {not_ids[0]!r} of {dataset}: tables exist for "
                               f"{', '.join(CLASS_SYNSETS)}; other data sets need WordNet ids as class "
                               "names (e.g. ImageNet's 'n02084071'), so pass Dataset.wnids")
        return [synset_for_wnid(name, wn) for name in classes]
    unknown = [name for name in classes if name not in table]
    if unknown:
        raise WordNetError(f"no synset known for class {unknown[0]!r} of {dataset}: it is not in "
                           f"cl.semantics.CLASS_SYNSETS[{dataset!r}]; check its spelling there")
    return [wn.synset(table[name]) for name in classes]


def lca_depth(a: Synset, b: Synset) -> int:
    """Depth of the lowest common hypernym: max over h in H(a) ∩ H(b) of depth(h).

    H(s) is s with all its hypernyms; depth(h) is the number of edges on the *longest*
    hypernym path from h up to entity.n.01 (NLTK's ``max_depth``). That depth grows
    strictly from a synset to each of its hyponyms, so the deepest common hypernym is a
    lowest one (NLTK's ``lowest_common_hypernyms`` ranks by the same depth).
    lca_depth(a, a) = depth(a).
    """
    return max(h.max_depth() for h in a.common_hypernyms(b))


def wu_palmer(a: Synset, b: Synset) -> float:
    """Wu & Palmer (1994): 2 d(c) / (n(a, c) + n(b, c) + 2 d(c)), in (0, 1], 1 for a = b.

    c is a lowest common hypernym of a and b as in :func:`lca_depth` (the deepest by the
    longest root path; among ties, the one nearest to a and b), d(c) = depth(c) + 1 its
    depth counted in nodes and n(x, c) the fewest edges from x up to c. NLTK's
    ``wup_similarity`` ranks common hypernyms by their *shortest* root path instead,
    which for a synset with two parents can pick one of its own hypernyms: there
    wup(apple.n.01, apple.n.01) = 20/22, not 1.
    """
    depth = lca_depth(a, b) + 1
    steps = min(a.shortest_path_distance(c) + b.shortest_path_distance(c)
                for c in a.lowest_common_hypernyms(b))
    return 2 * depth / (steps + 2 * depth)


def path(a: Synset, b: Synset) -> float:
    """Path similarity: 1 / (1 + n(a, b)), in (0, 1], 1 for a = b.

    n(a, b) is the fewest edges from a up to a common hypernym and down to b
    (NLTK's ``Synset.path_similarity``).
    """
    return a.path_similarity(b)


MEASURES = {"lca_depth": lca_depth, "wu_palmer": wu_palmer, "path": path}


def similarity_matrix(synsets: Sequence[Synset], measure: str) -> torch.Tensor:
    """S[i, j] = measure(synsets[i], synsets[j]), a measure named in :data:`MEASURES`; (C, C) float64.

    The measures are symmetric, so each pair is computed once and S is symmetric by
    construction; the diagonal is each synset compared with itself.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}: use one of {', '.join(MEASURES)}")
    similarity = MEASURES[measure]
    matrix = torch.zeros(len(synsets), len(synsets), dtype=torch.float64)
    for i, a in enumerate(synsets):
        for j in range(i, len(synsets)):
            matrix[i, j] = matrix[j, i] = similarity(a, synsets[j])
    return matrix


def main(argv=None) -> int:
    """``python -m cl.semantics fetch [--dir DIR]``: set up WordNet; exit 1 with the reason on failure."""
    return cli.run_main(_main, argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m cl.semantics", description="Set up WordNet for NLTK.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="make WordNet loadable (see ensure_wordnet)")
    fetch.add_argument("--dir", type=Path, default=None,
                       help="NLTK data directory (default: $NEGATIVES_NLTK_DATA or <repo>/nltk_data)")
    args = parser.parse_args(argv)
    print(wordnet(args.dir).root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
