"""cl: the small shared library behind the negatives study notebooks.

One module per concern; docs/design.md has the map and the loss contract.

* the method: ``data``, ``augment``, ``models``, ``moco`` (MoCo v2), ``losses`` (every
  objective as a function of similarities), ``objectives`` (their registry), ``negatives``
  (Cai et al.'s selections, the in-batch source, MoCHi), ``train`` (config, trainer, steps);
* measuring: ``metrics`` (kNN, linear probe, alignment, uniformity), ``difficulty`` (which
  negatives are hard, over a probe set), ``semantics`` (WordNet similarity of classes),
  ``analysis`` (what notebooks compute on trained runs), ``plots``, ``bench`` (``make bench``);
* running the study: ``study`` (papermill, claims from intervals, the summary), ``pool``
  (runs side by side on a CPU), ``notebook`` (what every notebook does first), ``report``
  (the HTML pages), ``progress``, ``cli`` (one-line errors), ``system`` (Debian packages, glibc).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project: data/, runs/, notebooks/, params/
