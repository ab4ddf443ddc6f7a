"""The study's primary contrasts: the few comparisons that answer its central question, declared
before their results in ``params/primary.yaml`` and tested together, with Holm's correction.

With about a hundred comparisons in the notebooks, some interval would exclude zero by chance
alone; a verdict read from one of them means little. So the question the study exists for is
asked by at most five contrasts, fixed in advance with their tests, and the family-wise error
of the five is held at ``level`` by Holm's step-down procedure (Holm 1979): sort the m p-values,
p₍₁₎ ≤ … ≤ p₍ₘ₎, and reject H₍ᵢ₎ while p₍ᵢ₎ ≤ level / (m − i + 1); the first that fails stops
it. Equivalently, the adjusted p-value of H₍ᵢ₎ is max_{j ≤ i} min(1, (m − j + 1) p₍ⱼ₎), and a
contrast is rejected when its adjusted p-value is at most ``level``.

Each contrast is a paired difference over seeds, d_s = m_a(s) − m_b(s), with Student's t:

* superiority, H₀: E d = 0 (two-sided): t = d̄ / (s_d / √n), p = 2 P(T_{n−1} ≥ |t|);
* non-inferiority with margin δ > 0, H₀: E d ≤ −δ (one-sided): t = (d̄ + δ) / (s_d / √n),
  p = P(T_{n−1} ≥ t). Rejected: a is not worse than b by δ or more. A margin declared as a share
  σ of another contrast's difference ℓ (what learning adds, measured on the same seeds) is not a
  number known in advance; the test is then on the per-seed combination e_s = d_s + σ ℓ_s,
  H₀: E e ≤ 0, so that the margin's own uncertainty is in the interval.

The intervals shown beside them are the 95 % t intervals of each contrast alone; the adjusted
p-value, not the interval, decides a primary verdict. Like every interval of the study they
cover the seed-to-seed variation of training, not the sampling of the fixed test set
(:func:`test_set_sd` says how large that is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats as scipy_stats

import cl
from cl import cli, data, stats, summary
from cl.cli import UserError

TESTS = ("superiority", "non_inferiority")
FILE = "primary.yaml"


class ContrastError(UserError, ValueError):
    """The file of primary contrasts cannot be read as declared; the message names the file and key."""


@dataclass(frozen=True)
class Contrast:
    """One declared contrast: condition ``a`` minus condition ``b`` under ``test``."""

    name: str
    question: str
    a: str
    b: str
    test: str
    planning_sd: float
    margin_of: str | None = None
    margin_share: float | None = None


@dataclass(frozen=True)
class Family:
    """The declared family: its contrasts, the family-wise ``level``, the ``metric`` that decides and
    the ``notebook`` that measures them."""

    contrasts: tuple[Contrast, ...]
    level: float
    metric: str
    notebook: str = ""

    @property
    def conditions(self) -> list[str]:
        """Every condition a contrast reads, in the order of first mention."""
        return list(dict.fromkeys(name for c in self.contrasts for name in (c.a, c.b)))


def declared(path: Path | None = None) -> Family:
    """The primary contrasts of ``params/primary.yaml`` (or ``path``), checked: at most five, each test
    one of TESTS, a non-inferiority margin that names a superiority contrast declared before it."""
    path = Path(path or cl.PARAMS / FILE)
    if not path.is_file():
        raise ContrastError(f"no file of primary contrasts at {path}")
    raw = cli.load_yaml_file(path) or {}
    problem = lambda why: ContrastError(f"{path}: {why}")
    items = raw.get("contrasts")
    if not isinstance(items, dict) or not 1 <= len(items) <= 5:
        raise problem("contrasts must map one to five names to their declarations")
    contrasts = []
    for name, spec in items.items():
        keys = {"question", "a", "b", "test", "planning_sd"}
        if not isinstance(spec, dict) or not keys <= set(spec):
            raise problem(f"contrast {name!r} needs {', '.join(sorted(keys))}")
        if spec["test"] not in TESTS:
            raise problem(f"contrast {name!r}: test must be one of {', '.join(TESTS)}, not {spec['test']!r}")
        earlier = {c.name: c for c in contrasts}
        if spec["test"] == "non_inferiority":
            of, share = spec.get("margin_of"), spec.get("margin_share")
            if of not in earlier or earlier[of].test != "superiority" or not (share and 0 < share < 1):
                raise problem(f"contrast {name!r}: a non-inferiority margin needs margin_of (a superiority "
                              f"contrast declared before it) and margin_share in (0, 1)")
        contrasts.append(Contrast(name, spec["question"], spec["a"], spec["b"], spec["test"],
                                  float(spec["planning_sd"]), spec.get("margin_of"),
                                  spec.get("margin_share")))
    return Family(tuple(contrasts), float(raw.get("level", 0.05)), raw.get("metric", "knn_top1"),
                  raw.get("notebook", ""))


def superiority_p(values) -> float:
    """Two-sided p-value of the one-sample t test of H₀: E d = 0 on the paired differences ``values``."""
    return _t_p(values, 0.0, two_sided=True)


def non_inferiority_p(values, margin: float) -> float:
    """One-sided p-value of H₀: E d ≤ −margin against E d > −margin (``margin`` > 0)."""
    return _t_p(values, -margin, two_sided=False)


def _t_p(values, null: float, two_sided: bool) -> float:
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0:  # no spread: the mean alone decides
        if two_sided:
            return 0.0 if mean != null else 1.0
        return 0.0 if mean > null else 1.0
    t = (mean - null) / (sd / math.sqrt(n))
    tail = float(scipy_stats.t.sf(abs(t) if two_sided else t, n - 1))
    return min(1.0, 2 * tail) if two_sided else tail


def holm(pvalues: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: max over j ≤ i of min(1, (m − j + 1) p₍ⱼ₎) in
    ascending order of p. A hypothesis is rejected at family-wise level α when its value is ≤ α."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def expected_half_width(sd: float, seeds: int, level: float = 0.95) -> float:
    """The half-width t_{(1+level)/2, n−1} · sd / √n that an interval of ``seeds`` paired seeds is
    expected to have when the per-seed difference has standard deviation ``sd``."""
    return float(scipy_stats.t.ppf((1 + level) / 2, seeds - 1)) * sd / math.sqrt(seeds)


def test_set_sd(accuracy: float, images: int) -> float:
    """The binomial standard deviation, in points, of an accuracy of ``accuracy`` % measured on
    ``images`` test images: what a fresh test set of that size would move it by. The paired
    difference of two methods on the same images moves less (only where they disagree)."""
    p = accuracy / 100
    return 100 * math.sqrt(p * (1 - p) / images)


def margin_combined(results: dict[str, list[dict]], family: Family, c: Contrast) -> list[float]:
    """The per-seed values e_s = d_s + σ ℓ_s a non-inferiority contrast ``c`` is tested on: its
    difference d plus ``margin_share`` σ times the difference ℓ of the contrast ``margin_of``, both on
    the seeds every one of the four conditions ran."""
    of = next(m for m in family.contrasts if m.name == c.margin_of)
    by_seed = lambda name: {r["config"]["seed"]: r["final"][family.metric] for r in results[name]}
    a, b, la, lb = (by_seed(name) for name in (c.a, c.b, of.a, of.b))
    seeds = sorted(set(a) & set(b) & set(la) & set(lb))
    return [a[s] - b[s] + c.margin_share * (la[s] - lb[s]) for s in seeds]


def test_set_sentence(records: list[dict], metric: str = "knn_top1") -> str:
    """What the sampling of the fixed test set would add to a condition's accuracy (its runs'
    ``records``), in one sentence: the binomial ``test_set_sd`` of its mean accuracy."""
    cfg = records[0]["config"]
    images = cfg.get("test_subset") or data.SPLIT_SIZES[cfg["dataset"]]["test"]
    accuracy = sum(r["final"][metric] for r in records) / len(records)
    return (f"an accuracy of {accuracy:.1f} % measured on {images:,} test images would move by "
            f"±{test_set_sd(accuracy, images):.2f} points (one binomial standard deviation) on a fresh test "
            f"set of that size; the intervals do not include it, and the paired difference of two methods "
            f"on the same images moves less (only the images on which they disagree count)")


@dataclass(frozen=True)
class Tested:
    """A contrast tested within its family: its paired difference, the margin of a non-inferiority
    test, its p-value and Holm-adjusted p-value (NaN when its seeds are too few for a claim)."""

    contrast: Contrast
    difference: stats.Difference
    margin: float | None
    p: float
    adjusted: float
    level: float

    @property
    def rejected(self) -> bool:
        return self.difference.claims and self.adjusted <= self.level

    @property
    def verdict(self) -> str:
        """The word the corrected test allows."""
        if not self.difference.claims:
            return f"{stats.plural(self.difference.seeds, 'seed')}, no claim"
        if self.contrast.test == "non_inferiority":
            return (f"not worse by {self.margin:.2f} points or more" if self.rejected
                    else f"not shown to be within {self.margin:.2f} points")
        if not self.rejected:
            return "no difference resolved after correction"
        return "better" if self.difference.mean > 0 else "worse"

    @property
    def sentence(self) -> str:
        """``a − b``: the interval, the p-values and the verdict, in one line."""
        d, c = self.difference, self.contrast
        if not d.claims:
            return f"`{c.a}` − `{c.b}`: {d.text()} kNN points"
        margin = f", margin {self.margin:.2f}" if self.margin is not None else ""
        return (f"`{c.a}` − `{c.b}`: {d.text()} kNN points (95 % interval, {stats.plural(d.seeds, 'seed')}); "
                f"{c.test.replace('_', '-')}{margin}, p = {self.p:.3g}, "
                f"Holm-adjusted p = {self.adjusted:.3g}: "
                f"**{self.verdict}**")


def tested(results: dict[str, list[dict]], family: Family | None = None) -> list[Tested]:
    """Every contrast of ``family`` (the declared one by default) on ``results`` (condition → runs),
    with Holm's correction over those whose seeds allow a claim."""
    family = family or declared()
    missing = [name for name in family.conditions if name not in results]
    if missing:
        raise ValueError(f"the primary contrasts need the conditions {', '.join(missing)}, which have no "
                         f"finished runs")
    differences = {c.name: stats.paired_difference(results, c.a, c.b, family.metric)
                   for c in family.contrasts}
    margins, pvalues = {}, {}
    for c in family.contrasts:
        values = stats.paired_values(results, c.a, c.b, family.metric)
        if c.test == "non_inferiority":
            margins[c.name] = c.margin_share * differences[c.margin_of].mean
            values = margin_combined(results, family, c)
        if differences[c.name].claims:
            pvalues[c.name] = (non_inferiority_p(values, 0.0) if c.test == "non_inferiority"
                               else superiority_p(values))
    adjusted = dict(zip(pvalues, holm(list(pvalues.values()))))
    return [Tested(c, differences[c.name], margins.get(c.name), pvalues.get(c.name, math.nan),
                   adjusted.get(c.name, math.nan), family.level) for c in family.contrasts]


def findings(results: dict[str, list[dict]], family: Family | None = None) -> str:
    """The primary verdicts as Markdown bullets, one per contrast: its question, then its sentence."""
    return "\n".join(f"* **{t.contrast.question}** {t.sentence}" for t in tested(results, family))


def study_findings(rows: pd.DataFrame, scale: str, notebook_link: str) -> str | None:
    """The study's findings as Markdown, from a summary's ``rows`` (``summary.csv``): what was tested and
    at which schedule (linking the notebook that measured it at ``notebook_link``), then each primary
    verdict (:func:`findings`). None while a primary condition has no finished run. The README's
    findings and the report's are this text."""
    family = declared()
    results = summary.results_from_rows(rows)
    if any(name not in results for name in family.conditions):
        return None
    moco = results[family.contrasts[0].a]
    head = (f"The study's primary contrasts ({len(family.contrasts)}, declared in `params/primary.yaml` "
            f"before their results; Holm's correction at a family-wise {family.level:.0%}), "
            f"at the {scale} scale: {stats.plural(moco[0]['config']['epochs'], 'epoch')}, "
            f"{stats.plural(len(moco), 'seed')}, kNN top-1 on the test set, paired by seed. Measured in "
            f"[{family.notebook}]({notebook_link}), which also checks each verdict at a longer schedule and "
            f"shows the controls beside it.")
    return head + "\n\n" + findings(results, family)


def plan(family: Family, seeds: int) -> pd.DataFrame:
    """The declared family as a table, before any result: each contrast's test and margin, its
    planning standard deviation, the half-width its interval is expected to have with ``seeds``
    seeds, at 95 % and at Holm's strictest step (level / m, two-sided), and the |t| that step needs."""
    m = len(family.contrasts)
    strictest = 1 - family.level / m
    return pd.DataFrame([{
        "contrast": c.name, "a − b": f"{c.a} − {c.b}", "test": c.test.replace("_", "-"),
        "margin": f"{c.margin_share:g} × ({c.margin_of})" if c.margin_of else "",
        "planning sd": c.planning_sd,
        f"expected ± at 95 %, {seeds} seeds": round(expected_half_width(c.planning_sd, seeds), 2),
        f"expected ± at {strictest:.0%}": round(expected_half_width(c.planning_sd, seeds, strictest), 2),
        "|t| needed at Holm's first step": round(float(scipy_stats.t.ppf((1 + strictest) / 2, seeds - 1)), 2)
        if seeds > 1 else math.nan}
        for c in family.contrasts]).set_index("contrast")


def check(results: dict[str, list[dict]], primary_results: list[Tested], renamed,
          family: Family) -> pd.DataFrame:
    """Whether each primary verdict holds in another setting (a longer schedule), read as a check, not
    a second corrected family: each contrast's conditions renamed by ``renamed`` (name → name in that
    setting) and compared by an interval of that comparison alone. A superiority verdict holds when
    the 95 % interval lies on the verdict's side of 0; a non-inferiority one when the one-sided 95 %
    bound (the 90 % interval's lower end) of the combined values ``margin_combined`` lies above 0.
    A contrast without a primary verdict has nothing to hold."""
    moved = {name: results[renamed(name)] for name in family.conditions}
    rows = []
    for t in primary_results:
        c = t.contrast
        d = stats.paired_difference(moved, c.a, c.b, t.difference.metric)
        if c.test == "non_inferiority":
            bound = stats.t_interval(margin_combined(moved, family, c), level=0.90)
            word = f"one-sided bound {bound.low:+.2f} of d + margin" if bound.claims else "no claim"
            holds = bound.claims and bound.low > 0
        else:
            word = d.verdict()
            holds = d.claims and (d.low > 0 if t.difference.mean > 0 else d.high < 0)
        verdict = ("yes" if holds else "no") if t.rejected and d.claims else (
            "no primary verdict" if d.claims else "no claim")
        rows.append({"contrast": c.name, "primary verdict": t.verdict,
                     "a − b": f"{renamed(c.a)} − {renamed(c.b)}", "difference": d.text(), "word": word,
                     "verdict holds": verdict})
    return pd.DataFrame(rows).set_index("contrast")
