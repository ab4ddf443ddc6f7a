"""How a number becomes a claim: intervals over seeds, paired differences, verdicts, and the
sentences that word them.

One interval type, :class:`Interval`: a mean and its two-sided Student t interval over ``n``
values (seeds, or timing rounds). A :class:`Difference` is the interval of a paired
difference a − b over the seeds both conditions ran; its interval decides the word (better,
worse, or no difference resolved), kNN decides and the linear probe stands beside it. Below
``MIN_SEEDS`` values nothing is claimed and the text says so. Notebooks word their
conclusions with these functions; they do not assemble verdicts themselves.

The intervals cover the seed-to-seed variation of training only: every run is evaluated on
the same fixed test set, whose sampling they do not cover.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats as scipy_stats

MIN_SEEDS = 3  # a claim needs at least this many seeds on each side
# the words a difference (a − b) earns when its interval lies above 0 and below 0: accuracy is better
# higher; alignment (a distance) and the uniformity loss are better lower (Wang & Isola 2020)
VERDICT_WORDS = {"alignment": ("higher (worse)", "lower (better)"),
                 "uniformity": ("higher (worse)", "lower (better)")}
UNRESOLVED = "no difference resolved at this budget"
METRICS = ("knn_top1", "linear_top1", "alignment", "uniformity")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n word`` with the plural when n ≠ 1: ``plural(1, "seed")`` is "1 seed", 3 gives "3 seeds"."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def listing(items) -> str:
    """Items in words: "a", "a and b", "a, b and c"; "none" when there are none."""
    items = [str(item) for item in items]
    if not items:
        return "none"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def bullets(items: dict[str, str]) -> str:
    """Markdown bullets, one per item: ``* **label**: text``."""
    return "\n".join(f"* **{label}**: {text}" for label, text in items.items())


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values and its two-sided Student t interval at ``level``,

        mean ± t_{(1+level)/2, n−1} · sd / √n,

    ``low`` and ``high`` NaN below MIN_SEEDS values (too few for a claim)."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def claims(self) -> bool:
        """Whether the interval may carry a claim: at least ``MIN_SEEDS`` values."""
        return self.n >= MIN_SEEDS

    def text(self, digits: int = 2, unit: str = "") -> str:
        """``+mean [+low, +high]``, or ``+mean (n seeds, no claim)`` when it claims nothing."""
        if not self.claims:
            return f"{self.mean:+.{digits}f}{unit} ({plural(self.n, 'seed')}, no claim)"
        if math.isnan(self.low) or math.isnan(self.high):  # a statistic undefined on some values
            return f"{self.mean:+.{digits}f}{unit} (no interval: undefined on some of the {self.n} values)"
        return f"{self.mean:+.{digits}f}{unit} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def word(self, positive: str, negative: str, same: str = UNRESOLVED) -> str:
        """``positive`` when the interval lies above 0, ``negative`` below, ``same`` when it holds 0;
        with too few values (or an undefined interval), that it claims nothing."""
        if not self.claims:
            return f"{plural(self.n, 'seed')}, no claim"
        if math.isnan(self.low) or math.isnan(self.high):
            return "no claim"
        return positive if self.low > 0 else negative if self.high < 0 else same

    def words(self, positive: str, negative: str, digits: int = 3) -> str:
        """The interval and its word: ``+0.401 [+0.365, +0.438]: positive``."""
        if not self.claims:
            return self.text(digits)
        return f"{self.text(digits)}: {self.word(positive, negative, 'no effect resolved at this budget')}"

    def __str__(self) -> str:
        return self.text()


def t_interval(values, level: float = 0.95) -> Interval:
    """The mean of ``values`` and its two-sided Student t interval at ``level``."""
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    if n < MIN_SEEDS:
        return Interval(mean, math.nan, math.nan, n, level)
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    half = float(scipy_stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


@dataclass(frozen=True)
class Difference:
    """A paired comparison of two conditions over seeds: condition ``a`` minus ``b`` in ``metric``,
    with the :class:`Interval` of the per-seed differences."""

    a: str
    b: str
    metric: str
    interval: Interval

    mean = property(lambda self: self.interval.mean)
    low = property(lambda self: self.interval.low)
    high = property(lambda self: self.interval.high)
    seeds = property(lambda self: self.interval.n)
    claims = property(lambda self: self.interval.claims)

    def verdict(self, better: str | None = None, worse: str | None = None, same: str = UNRESOLVED) -> str:
        """The word the interval allows: ``better`` when it lies above 0, ``worse`` below 0,
        ``same`` when it contains 0; a comparison of fewer than MIN_SEEDS seeds claims nothing.
        The words default to the metric's (``VERDICT_WORDS``: a lower distance is better)."""
        above, below = VERDICT_WORDS.get(self.metric, ("better", "worse"))
        above, below = above if better is None else better, below if worse is None else worse
        return self.interval.word(above, below, same)

    def at_least(self, margin: float) -> bool:
        """True when the interval's lower end is above ``margin`` (``-1``: "nearly as good",
        within one point); never true without enough seeds."""
        return self.claims and self.low > margin

    def text(self, digits: int = 2) -> str:
        return self.interval.text(digits)

    def sentence(self, beside: Difference | None = None, digits: int = 2) -> str:
        """The difference, its verdict, and the comparison ``beside`` it (the linear probe's, say):
        ``+2.47 [+2.27, +2.68] (better, exploratory; linear +1.18 [+0.17, +2.18])``. Every such
        verdict is exploratory, an interval read alone: the study's primary verdicts, tested together
        with a correction, are :mod:`cl.primary`'s and worded there."""
        name = _SHORT.get(beside.metric, beside.metric) if beside else ""
        if not self.claims:  # the comparison beside claims nothing either: its mean alone
            extra = f"; {name} {beside.mean:+.{digits}f}" if beside else ""
            return f"{self.mean:+.{digits}f} ({plural(self.seeds, 'seed')}, no claim{extra})"
        extra = f"; {name} {beside.text(digits)}" if beside else ""
        return f"{self.text(digits)} ({self.verdict()}, exploratory{extra})"

    def __str__(self) -> str:
        return self.text()


_SHORT = {"linear_top1": "linear", "knn_top1": "kNN"}


def paired_difference(results: dict[str, list[dict]], a: str, b: str, metric: str = "knn_top1",
                      level: float = 0.95) -> Difference:
    """Condition ``a`` minus condition ``b`` over the seeds both ran, paired by seed:

        d_s = m_a(s) − m_b(s),   mean ± t_{(1+level)/2, n−1} · sd(d) / √n.

    Pairing removes what a seed does to both runs (the same initialisation, data order and
    augmentations). A bootstrap over three seeds would be degenerate (ten distinct resamples),
    which is why the interval is Student's t.
    """
    return Difference(a, b, metric, t_interval(paired_values(results, a, b, metric), level))


def paired_values(results: dict[str, list[dict]], a: str, b: str, metric: str = "knn_top1") -> list[float]:
    """The per-seed differences m_a(s) − m_b(s) over the seeds both conditions ran, in seed order."""
    by_seed = lambda name: {r["config"]["seed"]: r["final"][metric] for r in results[name]}
    va, vb = by_seed(a), by_seed(b)
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        raise ValueError(f"{a!r} and {b!r} share no seed: nothing to pair")
    return [va[s] - vb[s] for s in seeds]


def compared(results: dict[str, list[dict]], a: str, b: str) -> str:
    """``a − b`` in kNN points with its verdict, the linear probe's difference beside it."""
    return paired_difference(results, a, b).sentence(paired_difference(results, a, b, "linear_top1"))


def differences(results: dict[str, list[dict]], pairs: list[tuple[str, str]],
                metrics=("knn_top1", "linear_top1")) -> pd.DataFrame:
    """A table of paired differences (a − b) with their 95 % intervals and the word each allows
    (``VERDICT_WORDS`` for the metrics that are better lower); kNN decides the word of a claim,
    the linear probe stands beside it."""
    rows = []
    for a, b in pairs:
        row = {"comparison": f"{a} − {b}"}
        for m in metrics:
            d = paired_difference(results, a, b, m)
            row[f"{m} difference"] = str(d)
            row[f"{m} verdict"] = d.verdict()
        rows.append(row)
    return pd.DataFrame(rows).set_index("comparison")


def mean_std(results: dict[str, list[dict]], columns=METRICS) -> pd.DataFrame:
    """A table of final metrics over seeds: mean, std and n per condition (std is NaN for one seed)."""
    rows = []
    for name, records in results.items():
        finals = pd.DataFrame([r["final"] for r in records])[list(columns)]
        row = {"condition": name, "seeds": len(records)}
        for c in columns:
            row[c] = finals[c].mean()
            row[c + " std"] = finals[c].std() if len(records) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("condition")


def formatted(table: pd.DataFrame, columns=METRICS, digits: int = 2) -> pd.DataFrame:
    """``mean ± std`` strings of a ``mean_std`` table, for display (± is the std over seeds)."""
    out = pd.DataFrame(index=table.index)
    out["seeds"] = table["seeds"]
    for c in columns:
        out[c] = [f"{m:.{digits}f}" + ("" if pd.isna(s) else f" ± {s:.{digits}f}")
                  for m, s in zip(table[c], table[c + " std"])]
    return out


def against_reported(d: Difference, reported: str, higher: str = "higher", lower: str = "lower",
                     table: pd.DataFrame | None = None, digits: int = 3) -> str:
    """A difference a − b set against the direction a paper reported for it (``reported``: "higher" or
    "lower", a's value against b's): the difference, the side its interval resolves in the words
    ``higher`` or ``lower``, and whether the paper saw that side. With ``table`` (``mean_std``), b's
    and a's means first:

        0.512 → 0.530, +0.018 [+0.010, +0.026] (larger: less aligned, as the paper reports)

    Below MIN_SEEDS seeds it claims nothing and says so."""
    if reported not in ("higher", "lower"):
        raise ValueError(f"reported must be 'higher' or 'lower', got {reported!r}")
    means = ""
    if table is not None:
        means = f"{table.loc[d.b, d.metric]:.{digits}f} → {table.loc[d.a, d.metric]:.{digits}f}, "
    if not d.claims:
        return means + d.text(digits)
    agree = {side: "as the paper reports" if side == reported else "unlike the paper"
             for side in ("higher", "lower")}
    word = d.verdict(better=f"{higher}, {agree['higher']}", worse=f"{lower}, {agree['lower']}")
    return f"{means}{d.text(digits)} ({word})"


_UNITS = {"knn_top1": " %", "linear_top1": " %"}
_GEOMETRY = ("alignment", "uniformity")  # worded with 3 decimals, accuracies with 2


def measured(table: pd.DataFrame, name: str, metrics=("knn_top1",)) -> str:
    """A condition's means from a ``mean_std`` table, in words, with the std over seeds where there
    are several: ``kNN 80.12 ± 0.31 % and alignment 0.512 ± 0.004 (3 seeds)``, or
    ``kNN 80.12 % (1 seed)``."""
    row = table.loc[name]

    def one(metric: str) -> str:
        digits = 3 if metric in _GEOMETRY else 2
        std = "" if pd.isna(row[f"{metric} std"]) else f" ± {row[f'{metric} std']:.{digits}f}"
        return f"{_SHORT.get(metric, metric)} {row[metric]:.{digits}f}{std}{_UNITS.get(metric, '')}"

    return f"{listing(one(m) for m in metrics)} ({plural(int(row['seeds']), 'seed')})"


def shares(values: dict[str, float], digits: int = 1) -> str:
    """Named shares in [0, 1] as percentages, in words: ``{"DCL": 0.9, "HCL": 0.25}`` gives
    "DCL 90.0 % and HCL 25.0 %"."""
    return listing(f"{label} {100 * value:.{digits}f} %" for label, value in values.items())


def share_interval(values, reference: float | None = None, of: str = "", digits: int = 0) -> str:
    """Shares in [0, 1], one per seed, as percentages: their mean and 95 % t interval, and where the
    interval lies against ``reference`` (a share; ``of`` names it):

        62 % [55 %, 70 %] over 3 seeds, above the 10 % of the whole queue

    ("above", "below", or "not resolved from"); below MIN_SEEDS seeds it claims nothing and says so."""
    interval = t_interval(values)
    percent = lambda x: f"{round(100 * x, digits) + 0.0:.{digits}f} %"  # + 0.0: no "-0 %"
    if not interval.claims:
        text = f"{percent(interval.mean)} ({plural(interval.n, 'seed')}, no claim)"
    else:
        bounds = f"[{percent(interval.low)}, {percent(interval.high)}]"
        text = f"{percent(interval.mean)} {bounds} over {interval.n} seeds"
    if reference is None:
        return text
    side = "against" if not interval.claims else "above" if interval.low > reference else (
        "below" if interval.high < reference else "not resolved from")
    return f"{text}, {side} the {percent(reference)}" + (f" of {of}" if of else "")


def margin_shown(d: Difference, margin: float) -> str:
    """Whether ``d`` shows a − b > ``margin`` (``Difference.at_least``: its interval's lower end above
    it; ``margin=-1``: within one point, "nearly as good"), in words: "shown (lower end −0.42 >
    −1)", "not shown (lower end −1.80 ≤ −1)"; below MIN_SEEDS seeds it claims nothing and says so."""
    if not d.claims:
        return f"{plural(d.seeds, 'seed')}, no claim"
    if d.at_least(margin):
        return f"shown (lower end {d.low:+.2f} > {margin:+g})"
    return f"not shown (lower end {d.low:+.2f} ≤ {margin:+g})"


def against_goal(value: float, goal: float, unit: str = "", digits: int = 2,
                 lower_is_better: bool = False) -> str:
    """One measurement set against a goal fixed in advance, and whether it meets it (at least ``goal``,
    or at most with ``lower_is_better``): ``83.40 % (goal 85.00 %: not met)``. One value, no interval:
    it reports a run, it claims nothing about the method."""
    met = value <= goal if lower_is_better else value >= goal
    return f"{value:.{digits}f}{unit} (goal {goal:.{digits}f}{unit}: {'met' if met else 'not met'})"


NEARLY_FULL = -1.0  # "nearly full accuracy": the accuracy interval's lower end above −1 point


def cost_text(cost: Interval, digits: int = 2) -> str:
    """A step's cost over the plain step, the :class:`Interval` of per-round time ratios
    (``cl.bench.step_costs``): ``0.62× [0.60, 0.64]``; ``0.62× (2 rounds, no claim)`` with too few rounds."""
    if not cost.claims:
        return f"{cost.mean:.{digits}f}× ({plural(cost.n, 'round')}, no claim)"
    return f"{cost.mean:.{digits}f}× [{cost.low:.{digits}f}, {cost.high:.{digits}f}]"


def saved_share(cost: Interval) -> str:
    """What a step saves of the plain step, 1 − cost: ``38.0 % [36.0 %, 40.0 %] of a step`` when the
    cost interval lies below 1; otherwise that no share is resolved, with the cost itself."""
    if cost.claims and cost.high < 1:
        return f"{1 - cost.mean:.1%} [{1 - cost.high:.1%}, {1 - cost.low:.1%}] of a step"
    return f"no share of a step resolved ({cost_text(cost, 3)} the plain step)"


@dataclass(frozen=True)
class Leverage:
    """What a design buys against the plain queue, from two intervals: ``accuracy``, its kNN
    difference from the plain queue (paired over seeds), and ``cost``, its step time over the
    plain step (over interleaved timing rounds).

    It **buys accuracy** when the accuracy interval lies above 0; it **saves work** when the cost
    interval lies below 1 and the accuracy interval's lower end lies above ``margin`` (nearly full
    accuracy); otherwise it **helps neither**. Below MIN_SEEDS seeds it claims nothing."""

    accuracy: Difference
    cost: Interval
    margin: float = NEARLY_FULL

    @property
    def kind(self) -> str:
        """``buys accuracy``, ``saves work``, ``helps neither`` or ``no claim``."""
        d, c = self.accuracy, self.cost
        if not d.claims:
            return "no claim"
        if d.low > 0:
            return "buys accuracy"
        if c.high < 1 and d.at_least(self.margin):
            return "saves work"
        return "helps neither"

    @property
    def helps(self) -> bool:
        """Whether it buys accuracy or saves work."""
        return self.kind in ("buys accuracy", "saves work")

    def sentence(self) -> str:
        """The verdict with the intervals behind it: ``saves work: 38.0 % [..] of a step at nearly
        full accuracy, -0.20 [-0.60, +0.20]``."""
        d, cost = self.accuracy, f"{cost_text(self.cost)} the plain step"
        return {"no claim": f"{d.sentence()} at {cost}",
                "buys accuracy": f"buys accuracy: {d.text()} at {cost}",
                "saves work": f"saves work: {saved_share(self.cost)} at nearly full accuracy, {d.text()}",
                "helps neither": f"helps neither: {d.text()} ({d.verdict()}) at {cost}"}[self.kind]


def helping(leverages: dict[str, Leverage], group: str) -> str:
    """Which designs of a group help (buy accuracy or save work: :class:`Leverage`), in a sentence:
    ``Of the mined queues, a and b help.``, or that none does; with too few seeds, that it claims nothing."""
    seeds = min(lever.accuracy.seeds for lever in leverages.values())
    if seeds < MIN_SEEDS:
        return f"{plural(seeds, 'seed')}: no claim."
    helpers = [name for name, lever in leverages.items() if lever.helps]
    if helpers:
        return f"Of {group}, {listing(helpers)} help{'s' if len(helpers) == 1 else ''}."
    return (f"None of {group} helps: none is both cheaper and nearly as accurate, and none is more "
            "accurate than the plain queue.")


def clearing(gains: dict[str, Interval], differences: list[Difference], bar: str, bar_level: float) -> str:
    """Which conditions are resolved above a bar, and which differences between them are resolved,
    in a sentence. ``gains``: each condition's interval of its per-seed gain over the bar (kNN
    points); ``differences``: the comparisons between the conditions; ``bar_level``: the bar's own
    kNN top-1 (%), named when no condition clears it. Below MIN_SEEDS seeds it claims nothing."""
    seeds = min(gain.n for gain in gains.values())
    if seeds < MIN_SEEDS:
        return f"{plural(seeds, 'seed')}: no claim."
    above = [name for name, gain in gains.items() if gain.low > 0]
    apart = [f"{d.a} − {d.b} ({d.verdict()})" for d in differences if d.low > 0 or d.high < 0]
    first = (f"{listing(above)} clear{'s' if len(above) == 1 else ''} {bar}" if above else
             f"no condition is resolved above {bar} (its own kNN top-1: {bar_level:.2f} %)")
    second = (f"resolved between them: {listing(apart)}" if apart else
              f"no difference between them is resolved{'' if above else ' either'}, so this comparison "
              "does not tell them apart at this budget")
    return f"{first}; {second}."


def answer(results: dict[str, list[dict]], parts: dict[str, tuple[str, str] | str]) -> str:
    """An answer made of labelled parts, in one line: a part ``(a, b)`` is :func:`compared` (or
    ``not run at this scale`` when ``results`` lacks either), a string part is shown as it is
    (a sentence already worded by this module): ``label: +2.47 [..] (better; ..); label: ...``."""
    def part(value):
        if isinstance(value, str):
            return value
        a, b = value
        return compared(results, a, b) if a in results and b in results else "not run at this scale"
    return "; ".join(f"{label}: {part(value)}" for label, value in parts.items())


def answers(results: dict[str, list[dict]], questions: dict[str, dict[str, tuple[str, str] | str]]) -> str:
    """Markdown bullets, one per question, each answered by :func:`answer` from its labelled parts."""
    return bullets({question: answer(results, parts) for question, parts in questions.items()})
