"""cl.semantics: WordNet set up from the Debian files, its errors, the class tables and the measures."""

import functools
import gzip
import os
import re
from pathlib import Path

import nltk
import pytest
import torch
from PIL import Image

from cl import data, semantics
from cl.semantics import WordNetError

DEBIAN_WORDNET = Path(semantics.DEBIAN_WORDNET)
LEXNAMES_MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
needs_debian = pytest.mark.skipif(
    not (DEBIAN_WORDNET / "data.noun").is_file(),
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
    assert (lines[0] == "00\tadj.all\t3" and lines[18] == "18\tnoun.person\t1"
            and lines[44] == "44\tadj.ppl\t3")


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

    footwear = ("Sandal", "Sneaker", "Ankle boot")
    garments = ("T-shirt/top", "Pullover", "Coat", "Shirt", "Trouser")
    assert all(wn.synset("footwear.n.02") in synsets[name].closure(lambda s: s.hypernyms())
               for name in footwear)
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


# --------------------------------------------------------------------------- class tables and similarity

# Class -> a hypernym its intended sense has and a wrong sense of the word lacks.
INTENDED_ANCESTOR = {
    ("cifar10", "cat"): "feline.n.01", ("cifar10", "automobile"): "motor_vehicle.n.01",
    ("cifar100", "seal"): "pinniped_mammal.n.01", ("cifar100", "ray"): "fish.n.01",
    ("cifar100", "mouse"): "rodent.n.01", ("cifar100", "apple"): "edible_fruit.n.01",
    ("cifar100", "pear"): "edible_fruit.n.01", ("cifar100", "orange"): "edible_fruit.n.01",
    ("cifar100", "sweet_pepper"): "vegetable.n.01", ("cifar100", "bear"): "carnivore.n.01",
    ("cifar100", "beaver"): "rodent.n.01", ("cifar100", "crab"): "crustacean.n.01",
    ("cifar100", "lobster"): "crustacean.n.01", ("cifar100", "trout"): "fish.n.01",
    ("cifar100", "flatfish"): "fish.n.01", ("cifar100", "dolphin"): "aquatic_mammal.n.01",
    ("cifar100", "whale"): "aquatic_mammal.n.01", ("cifar100", "leopard"): "feline.n.01",
    ("cifar100", "tiger"): "feline.n.01", ("cifar100", "otter"): "carnivore.n.01",
    ("cifar100", "raccoon"): "carnivore.n.01", ("cifar100", "skunk"): "carnivore.n.01",
    ("cifar100", "shrew"): "mammal.n.01", ("cifar100", "turtle"): "reptile.n.01",
    ("cifar100", "bed"): "furniture.n.01", ("cifar100", "table"): "furniture.n.01",
    ("cifar100", "lamp"): "furniture.n.01", ("cifar100", "plate"): "tableware.n.01",
    ("cifar100", "keyboard"): "data_input_device.n.01",
    ("cifar100", "television"): "electronic_equipment.n.01",
    ("cifar100", "tank"): "military_vehicle.n.01", ("cifar100", "castle"): "fortification.n.01",
    ("cifar100", "maple_tree"): "tree.n.01", ("cifar100", "oak_tree"): "tree.n.01",
    ("cifar100", "palm_tree"): "tree.n.01", ("cifar100", "mushroom"): "fungus.n.01",
    ("cifar100", "cloud"): "atmospheric_phenomenon.n.01", ("cifar100", "forest"): "land.n.04",
}
# Words whose first noun sense in WordNet 3.0 is not the class (seal: sealing wax, ray: a beam of light).
FIRST_SENSE_WRONG = ["seal", "ray", "beaver", "dolphin", "lobster", "tiger", "turtle", "whale", "plate",
                     "table", "television", "cloud"]


@pytest.fixture
def wn(installed):
    return semantics.wordnet(installed[0])


def is_under(synset, ancestor) -> bool:
    return ancestor in synset.closure(lambda s: s.hypernyms())


def test_every_table_entry_is_a_distinct_noun_synset_named_canonically(wn):
    sizes = {name: len(table) for name, table in semantics.CLASS_SYNSETS.items()}
    assert sizes == {"fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
    assert {"aquarium_fish", "maple_tree", "sweet_pepper", "lawn_mower", "pickup_truck", "oak_tree",
            "palm_tree", "pine_tree", "willow_tree", "keyboard"} <= set(semantics.CIFAR100_SYNSETS)
    for dataset, table in semantics.CLASS_SYNSETS.items():
        synsets = [wn.synset(name) for name in table.values()]  # raises for a synset WordNet 3.0 lacks
        assert [s.name() for s in synsets] == list(table.values()), dataset  # not an alias such as couch.n.01
        assert all(s.pos() == "n" for s in synsets) and len(set(synsets)) == len(synsets), dataset


def test_fashion_mnist_table_covers_cl_data_classes(wn):
    synsets = semantics.class_synsets("fashion_mnist", data.FASHION_MNIST_CLASSES, wn)
    assert len(set(synsets)) == 10
    assert (synsets[5], synsets[7]) == (wn.synset("sandal.n.01"), wn.synset("gym_shoe.n.01"))


@pytest.mark.parametrize("dataset, name", INTENDED_ANCESTOR)
def test_ambiguous_class_lies_under_its_intended_hypernym(wn, dataset, name):
    synset = wn.synset(semantics.CLASS_SYNSETS[dataset][name])
    assert is_under(synset, wn.synset(INTENDED_ANCESTOR[dataset, name])), synset.definition()


@pytest.mark.parametrize("name", FIRST_SENSE_WRONG)
def test_first_sense_would_be_the_wrong_thing(wn, name):
    ancestor = wn.synset(INTENDED_ANCESTOR["cifar100", name])
    first = wn.synsets(name, pos="n")[0]
    assert not is_under(first, ancestor), first.definition()
    assert semantics.CIFAR100_SYNSETS[name] != first.name()


def test_class_synsets_from_tables_and_wordnet_ids(wn):
    assert semantics.class_synsets("cifar100", ["seal", "ray"], wn) == \
           [wn.synset("seal.n.09"), wn.synset("ray.n.07")]
    assert semantics.class_synsets("imagefolder:imagenet", ["n02084071", "n02121808"], wn) == \
           [wn.synset("dog.n.01"), wn.synset("domestic_cat.n.01")]
    with pytest.raises(WordNetError, match="class 'plane' of cifar10"):
        semantics.class_synsets("cifar10", ["airplane", "plane"], wn)
    with pytest.raises(WordNetError, match="class 'dog' of imagefolder:x.*pass Dataset.wnids"):
        semantics.class_synsets("imagefolder:x", ["n02084071", "dog"], wn)


def test_known_meeting_points_in_wordnet_30(wn):
    sandal, sneaker, boot, trouser = semantics.class_synsets(
        "fashion_mnist", ["Sandal", "Sneaker", "Ankle boot", "Trouser"], wn)
    shoe, footwear, covering = (wn.synset(name) for name in ("shoe.n.01", "footwear.n.02", "covering.n.02"))
    for other, meeting in ((sneaker, shoe), (boot, footwear), (trouser, covering)):
        assert sandal.lowest_common_hypernyms(other) == [meeting]
        assert semantics.lca_depth(sandal, other) == semantics.lca_depth(other, sandal) == meeting.max_depth()
    assert shoe.max_depth() > footwear.max_depth() > covering.max_depth()
    dog, cat = semantics.class_synsets("cifar10", ["dog", "cat"], wn)
    carnivore = wn.synset("carnivore.n.01")
    for a_cat in (cat, wn.synset("domestic_cat.n.01")):
        assert dog.lowest_common_hypernyms(a_cat) == [carnivore]
        assert semantics.lca_depth(dog, a_cat) == carnivore.max_depth()


@pytest.mark.parametrize("measure", semantics.MEASURES)
def test_sandal_is_nearer_sneaker_than_boot_than_trouser(wn, measure):
    similarity = semantics.MEASURES[measure]
    sandal, sneaker, boot, trouser = semantics.class_synsets(
        "fashion_mnist", ["Sandal", "Sneaker", "Ankle boot", "Trouser"], wn)
    assert similarity(sandal, sneaker) > similarity(sandal, boot) > similarity(sandal, trouser)


@pytest.mark.parametrize("measure", semantics.MEASURES)
@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_similarity_matrix_is_symmetric_with_the_self_similarity_on_its_diagonal(wn, dataset, measure):
    synsets = semantics.class_synsets(dataset, list(semantics.CLASS_SYNSETS[dataset]), wn)
    matrix = semantics.similarity_matrix(synsets, measure)
    similarity = semantics.MEASURES[measure]
    both_orders = torch.tensor([[similarity(a, b) for b in synsets] for a in synsets], dtype=torch.float64)
    assert torch.equal(matrix, both_orders) and torch.equal(matrix, matrix.T)
    diagonal = [s.max_depth() for s in synsets] if measure == "lca_depth" else [1.0] * len(synsets)
    assert matrix.diagonal().tolist() == diagonal
    # nothing is as similar to a class as the class itself; a meeting point is no deeper than either class
    off_diagonal = matrix[~torch.eye(len(synsets), dtype=torch.bool)]
    assert (off_diagonal < 1).all() if measure != "lca_depth" else \
        (matrix <= torch.minimum(matrix.diagonal()[:, None], matrix.diagonal()[None, :])).all()


@pytest.mark.parametrize("measure", semantics.MEASURES)
def test_every_class_compared_with_itself(wn, measure):
    """The diagonal of every table, including classes with two parents (apple: edible fruit and pome)."""
    similarity = semantics.MEASURES[measure]
    synsets = [wn.synset(name) for table in semantics.CLASS_SYNSETS.values() for name in table.values()]
    expected = [s.max_depth() if measure == "lca_depth" else 1.0 for s in synsets]
    assert [similarity(s, s) for s in synsets] == expected


def test_wu_palmer_takes_the_deepest_meeting_point_unlike_nltk(wn):
    apple = wn.synset("apple.n.01")
    assert len(apple.hypernyms()) == 2
    assert apple.wup_similarity(apple) < 1 == semantics.wu_palmer(apple, apple)
    # sandal and sneaker: d(shoe) = 8 nodes, one edge from each up to shoe
    sandal, sneaker = wn.synset("sandal.n.01"), wn.synset("gym_shoe.n.01")
    assert semantics.wu_palmer(sandal, sneaker) == pytest.approx(2 * 8 / (1 + 1 + 2 * 8))


def test_unknown_measure_is_refused(wn):
    with pytest.raises(ValueError, match="use one of lca_depth, wu_palmer, path"):
        semantics.similarity_matrix([wn.synset("dog.n.01")], "resnik")
