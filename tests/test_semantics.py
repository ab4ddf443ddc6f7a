"""cl.semantics: WordNet set up from the Debian files, its errors, and the Fashion-MNIST senses."""

import functools
import gzip
import os
import re
from pathlib import Path

import nltk
import pytest
from PIL import Image

from cl import data, semantics
from cl.semantics import WordNetError

DEBIAN_WORDNET = Path(semantics.DEBIAN_WORDNET)
LEXNAMES_MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
needs_debian = pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").is_file(),
                                  reason="Debian WordNet absent (apt-get install wordnet-base wordnet-sense-index)")


@pytest.fixture(autouse=True)
def own_nltk_path(monkeypatch):
    """Each test gets its own copy of nltk.data.path, so no temporary directory stays on it."""
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))


def refuse_download(*args, **kwargs):
    raise AssertionError("nltk.download called although WordNet was already there")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """ensure_wordnet from the Debian files into a temporary NLTK directory, NLTK's download failing."""
    if not (DEBIAN_WORDNET / "data.noun").is_file():
        pytest.skip("Debian WordNet absent (apt-get install wordnet-base wordnet-sense-index)")
    nltk_dir = tmp_path_factory.mktemp("nltk")
    downloads = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nltk.data, "path", list(nltk.data.path))
        patch.setattr(nltk, "download", lambda *args, **kwargs: downloads.append(args) and False)
        root = semantics.ensure_wordnet(nltk_dir)
        yield nltk_dir, root, downloads


def test_lexnames_are_the_45_lexicographer_files():
    assert [number for number, _, _ in semantics.LEXNAMES] == [f"{i:02d}" for i in range(45)]
    categories = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
    for _, name, category in semantics.LEXNAMES:
        assert categories[name.split(".")[0]] == category
    lines = semantics.lexnames_text().splitlines()
    assert lines[0] == "00\tadj.all\t3" and lines[18] == "18\tnoun.person\t1" and lines[44] == "44\tadj.ppl\t3"


@pytest.mark.skipif(not LEXNAMES_MAN_PAGE.is_file(), reason="man page lexnames(5WN) absent")
def test_lexnames_match_the_man_page():
    page = gzip.decompress(LEXNAMES_MAN_PAGE.read_bytes()).decode()
    rows = [line.split("\t") for line in page.splitlines() if re.match(r"\d\d\t", line)]
    assert [(number, name.strip()) for number, name, _ in rows] == \
           [(number, name) for number, name, _ in semantics.LEXNAMES]


def test_installs_from_debian(installed):
    nltk_dir, root, downloads = installed
    assert len(downloads) == 1  # NLTK's downloader was tried first
    assert root == nltk_dir.resolve() / "corpora" / "wordnet"
    assert (root / "lexnames").read_text() == semantics.lexnames_text()
    assert {p.name for p in root.iterdir()} >= set(semantics.READER_FILES)
    assert not any(p.is_symlink() for p in root.iterdir())
    assert not [p for p in (root.parent).iterdir() if p.name.startswith(".wordnet-")]  # no staging left


def test_debian_wordnet_loads_and_has_footwear(installed, monkeypatch):
    nltk_dir, root, _ = installed
    wn = semantics.wordnet(nltk_dir)
    assert wn.synset("dog.n.01").offset() == 2084071
    sandal, sneaker, boot = (wn.synset(name) for name in ("sandal.n.01", "gym_shoe.n.01", "boot.n.01"))
    assert sandal.lowest_common_hypernyms(sneaker) == [wn.synset("shoe.n.01")]
    assert sandal.lowest_common_hypernyms(boot) == [wn.synset("footwear.n.02")]
    assert sneaker.lowest_common_hypernyms(boot) == [wn.synset("footwear.n.02")]
    assert wn.lemma("dog.n.01.dog").count() > 0  # cntlist.rev
    assert wn.synset_from_sense_key("dog%1:05:00::") == wn.synset("dog.n.01")  # index.sense
    assert wn.morphy("geese") == "goose"  # exception lists


def test_fashion_mnist_synsets_form_the_expected_hierarchy(installed):
    nltk_dir, _, _ = installed
    wn = semantics.wordnet(nltk_dir)
    synsets = {name: wn.synset(synset) for name, synset in semantics.FASHION_MNIST_SYNSETS.items()}
    assert set(synsets) == {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

    def meet(a, b):
        return {s.name() for s in synsets[a].lowest_common_hypernyms(synsets[b])}

    footwear, garments = ("Sandal", "Sneaker", "Ankle boot"), ("T-shirt/top", "Pullover", "Coat", "Shirt", "Trouser")
    assert all(wn.synset("footwear.n.02") in synsets[name].closure(lambda s: s.hypernyms()) for name in footwear)
    assert all(meet(a, b) <= {"garment.n.01", "shirt.n.01"} for a in garments for b in garments if a != b)
    assert meet("Dress", "Coat") == {"clothing.n.01"}
    assert wn.synset("container.n.01") in synsets["Bag"].hypernyms()
    assert "sneaker" in synsets["Sneaker"].lemma_names() and "T-shirt" in synsets["T-shirt/top"].lemma_names()


def test_second_call_does_not_download(installed, monkeypatch):
    nltk_dir, root, _ = installed
    monkeypatch.setattr(nltk, "download", refuse_download)
    assert semantics.ensure_wordnet(nltk_dir) == root
    assert nltk.data.path.count(str(nltk_dir.resolve())) == 1


def test_synset_for_wnid(installed):
    wn = semantics.wordnet(installed[0])
    assert semantics.synset_for_wnid("n02084071", wn) == wn.synset("dog.n.01")
    with pytest.raises(WordNetError, match="no noun synset n00000001"):
        semantics.synset_for_wnid("n00000001", wn)
    with pytest.raises(WordNetError, match="expected 'n' and 8 digits"):
        semantics.synset_for_wnid("dog", wn)


def test_image_folder_classes_are_wordnet_names(installed, tmp_path, monkeypatch):
    """cl.data names ImageFolder classes whose folders are WordNet ids by their first lemma."""
    for wnid in ("n02121808", "n02084071"):
        (tmp_path / wnid).mkdir()
        Image.new("RGB", (3, 3)).save(tmp_path / wnid / "0.png")
    monkeypatch.setattr(semantics, "wordnet", functools.partial(semantics.wordnet, installed[0]))
    dataset = data.load_image_folder(tmp_path, 2)
    assert dataset.wnids == ["n02084071", "n02121808"]
    assert dataset.classes == ["dog", "domestic cat"]


def test_missing_wordnet_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk, "download", lambda *args, **kwargs: False)
    (tmp_path / "debian").mkdir()
    monkeypatch.setenv("NEGATIVES_DEBIAN_WORDNET", str(tmp_path / "debian"))
    monkeypatch.setenv("PATH", str(tmp_path / "debian"))  # no apt-get
    with pytest.raises(WordNetError, match="sudo apt-get install wordnet-base wordnet-sense-index"):
        semantics.ensure_wordnet(tmp_path / "nltk")
    assert semantics.main(["fetch", "--dir", str(tmp_path / "nltk")]) == 1


def test_refuses_a_world_writable_directory(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(WordNetError, match="chmod go-w"):
        semantics.ensure_wordnet(shared)


def test_default_nltk_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEGATIVES_NLTK_DATA", str(tmp_path))
    assert semantics.default_nltk_dir() == tmp_path
    monkeypatch.delenv("NEGATIVES_NLTK_DATA")
    assert semantics.default_nltk_dir() == Path(semantics.__file__).resolve().parent.parent / "nltk_data"
