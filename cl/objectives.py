"""The objectives a run can train with: one registry, read by the config's validation, the
training step and the benchmark.

An objective is a loss of :mod:`cl.losses` and what it needs from the step: where its
negatives may come from (the MoCo queue, or the other views of the batch as in SimCLR),
whether it reads a row of negatives (then every selection of :mod:`cl.negatives` and
MoCHi's synthetic columns apply to it), whether it reads labels, and, for DCL and HCL,
when its estimator sits at its floor.

**Adding a loss** is one pure function in ``cl/losses.py`` (its equation in the docstring,
its equivalences tested) and one entry here; the config accepts its name, the step calls
it, ``make bench`` times it and ``tests/test_objectives.py`` runs one step of it. See
docs/design.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch

from cl import losses

SOURCES = ("queue", "batch", "none")  # none: no negatives at all (SimSiam, BYOL)


class Similarities(NamedTuple):
    """What a step hands its objective: the loss contract's ``pos`` (B,) and ``neg`` (B, N), with
    -inf for removed negatives (docs/design.md), the normalised embeddings ``z`` of the queries
    (B, d) and their ``labels`` (B,). For the batch source B counts both views (2·batch)."""
    pos: torch.Tensor
    neg: torch.Tensor
    z: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class Objective:
    """A loss and what it needs from the step."""
    loss: Callable[[Any, Similarities], torch.Tensor]  # (the run's cl.config.Config, the step's similarities)
    sources: tuple[str, ...] = ("queue", "batch")  # where its negatives may come from
    row: bool = True  # reads the row of negatives: selections and MoCHi apply to it
    # (cfg, pos, neg) -> (B,) bool: the rows where the estimator sits at its floor (DCL, HCL)
    clamp: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # model parts beyond the encoder: "predictor" (SimSiam, BYOL), "momentum_target" (BYOL)
    parts: tuple[str, ...] = ()
    several_positives: bool = False  # takes pos (B, M): M positives per anchor (DCL's semi-supervised form)


OBJECTIVES: dict[str, Objective] = {
    # InfoNCE (van den Oord et al. 2018; MoCo, SimCLR): notebooks 00-02
    "info_nce": Objective(lambda cfg, s: losses.info_nce(s.pos, s.neg, cfg.t)),
    # without negatives the embedding collapses: notebook 00
    "positives_only": Objective(lambda cfg, s: losses.positives_only(s.pos, cfg.t), row=False),
    # debiased contrastive learning (Chuang et al. 2020, eq. 6): notebook 03
    "debiased": Objective(lambda cfg, s: losses.debiased(s.pos, s.neg, cfg.t, cfg.tau_plus),
                          clamp=lambda cfg, pos, neg: losses.clamp_binds(pos, neg, cfg.t, cfg.tau_plus),
                          several_positives=True),
    # hard negative sampling (Robinson et al. 2021, eq. 5): notebook 04
    "hard": Objective(
        lambda cfg, s: losses.hard(s.pos, s.neg, cfg.t, cfg.tau_plus, cfg.beta),
        clamp=lambda cfg, pos, neg: losses.clamp_binds(pos, neg, cfg.t, cfg.tau_plus, cfg.beta),
        several_positives=True),
    # SimSiam (Chen & He 2021): a predictor and a stop-gradient, no negatives: notebook 08
    "simsiam": Objective(lambda cfg, s: losses.negative_cosine(s.pos), sources=("none",), row=False,
                         parts=("predictor",)),
    # BYOL (Grill et al. 2020): a predictor and a momentum target, no negatives: notebook 08
    "byol": Objective(lambda cfg, s: losses.byol(s.pos), sources=("none",), row=False,
                      parts=("predictor", "momentum_target")),
    # supervised contrastive (Khosla et al. 2020, L^sup_out, eq. 2): every same-class view is a positive
    "supcon": Objective(lambda cfg, s: losses.supcon(s.z, s.labels, cfg.t), sources=("batch",), row=False),
}


def get(name: str) -> Objective:
    """The objective registered as ``name``; an unknown name raises (never a fallback)."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"no objective {name!r}: registered are {', '.join(OBJECTIVES)}") from None


def config_problem(loss: str, source: str, select: str, mixing: bool, positives: int = 1) -> str | None:
    """What keeps objective ``loss`` from running, if anything: its negatives must come from a
    ``source`` it accepts, only an objective that reads a row of negatives can have them
    selected (``select``) or MoCHi's appended (``mixing``), and only one that takes several
    positives can have ``positives`` > 1 (extra views of the anchor's image, in the batch step)."""
    objective = get(loss)
    if positives > 1 and not (objective.several_positives and source == "batch"):
        several = [name for name, o in OBJECTIVES.items() if o.several_positives]
        return (f"positives={positives} needs an objective that takes several positives "
                f"({' or '.join(several)}) with source='batch'; {loss} with source={source!r} takes one")
    if source not in objective.sources:
        return (f"{loss} takes its negatives from {' or '.join(objective.sources)}: "
                f"use source='{objective.sources[0]}'")
    if not objective.row and (select != "all" or mixing):
        return (f"{loss} has no row of negatives to select from or append to: "
                "use select='all' and no MoCHi")
    return None
