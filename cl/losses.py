"""Every objective of the study as a pure function of similarities.

The contract (docs/design.md) that makes the methods comparable and testable::

    pos: (B,)   cosine similarity of each query with its positive key
    neg: (B, K) cosine similarity of each query with each negative; -inf = removed
    t:   temperature;  N_i = number of finite entries of row i

A removed negative (``-inf``) contributes ``e^{-inf} = 0`` to every sum and is not
counted in ``N_i``, so a loss on a row with removed entries equals the loss on the
row without them; this is what lets the selections of ``cl.negatives`` compose with
every loss here.

Inputs may be bf16 or float32 on any device; the losses are computed in (at least)
float32, in log space, so that ``e^{s/t}`` neither overflows nor underflows even for
small temperatures.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def info_nce(pos: Tensor, neg: Tensor, t: float) -> Tensor:
    """InfoNCE, the MoCo loss: cross-entropy over ``[pos, neg] / t`` with target 0,

        L = −log( e^{pos/t} / (e^{pos/t} + Σ_k e^{neg_k/t}) ),

    averaged over the batch. Notebook 00 derives it; notebook 02 selects its negatives.
    """
    pos, neg, _ = _validated(pos, neg, t)
    logits = torch.cat([pos[:, None], neg], dim=1) / t
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def debiased(pos: Tensor, neg: Tensor, t: float, tau_plus: float) -> Tensor:
    """Debiased contrastive loss, DCL (Chuang et al. 2020), the official estimator:

        Ng = max( (Σ_i e^{s(u_i)/t} − τ⁺·N·(1/M)Σ_j e^{s(v_j)/t}) / (1 − τ⁺),  N·e^{−1/t} )
        L  = −log( e^{pos/t} / (e^{pos/t} + Ng) )

    with N = N_i, the finite negatives of the row, and τ⁺ the class prior.
    τ⁺ = 0 gives back ``info_nce``.

    ``pos`` is (B,) for the official form (M = 1) or (B, M) for M positives per query
    (the paper's semi-supervised form). With M positives the τ⁺ term uses the mean
    (1/M)Σ_j e^{s(v_j)/t}, and the loss is the mean over the M positives of
    −log( e^{s(v_j)/t} / (e^{s(v_j)/t} + Ng) ), every one with the row's single Ng;
    (B, 1) is the same as (B,). Notebook 03 explains and trains it.
    """
    pos, neg, n = _validated(pos, neg, t, several_positives=True)
    _check_tau_plus(tau_plus)
    log_negative_mass = torch.logsumexp(neg / t, dim=1)  # log Σ_i e^{s(u_i)/t}
    return _debiased_loss(pos / t, log_negative_mass, n, t, tau_plus)


def hard(pos: Tensor, neg: Tensor, t: float, tau_plus: float, beta: float) -> Tensor:
    """Hard negative sampling, HCL (Robinson et al. 2021), the official estimator:

        imp_i    = e^{β·s(u_i)/t}
        reweight = Σ_i imp_i·e^{s(u_i)/t} / ((1/N)Σ_i imp_i)
        Ng       = max( (reweight − τ⁺·N·e^{pos/t}) / (1 − τ⁺),  N·e^{−1/t} )
        L        = −log( e^{pos/t} / (e^{pos/t} + Ng) )

    β multiplies the temperature-scaled similarity and the weights are self-normalised
    by their mean over the row's N finite negatives, as in the official code. β = 0
    gives back ``debiased`` exactly. ``pos`` may be (B, M) as in ``debiased``. Notebook 04.
    """
    pos, neg, n = _validated(pos, neg, t, several_positives=True)
    _check_tau_plus(tau_plus)
    return _debiased_loss(pos / t, _log_reweighted_mass(neg, t, beta, n), n, t, tau_plus)


def clamp_binds(pos: Tensor, neg: Tensor, t: float, tau_plus: float, beta: float | None = None) -> Tensor:
    """(B,) bool: the rows where DCL's (``beta=None``) or HCL's estimate of the true
    negatives' mass falls to its floor, ``(mass − τ⁺·N·e^{pos/t}) / (1 − τ⁺) ≤ N·e^{−1/t}``.

    On such a row Ng is the constant N·e^{−1/t}: the loss still pulls the positive in but
    pushes no negative away. The training loop records the share of clamped rows per epoch
    (notebooks 03 and 04 read it), so the claim "the clamp binds" is measured, not argued.
    """
    with torch.no_grad():
        pos, neg, n = _validated(pos, neg, t, several_positives=True)
        _check_tau_plus(tau_plus)
        mass = torch.logsumexp(neg / t, dim=1) if beta is None else _log_reweighted_mass(neg, t, beta, n)
        log_estimate, log_floor = _log_estimate_and_floor(pos / t, mass, n, t, tau_plus)
        return log_estimate <= log_floor


def _log_reweighted_mass(neg, t, beta, n):
    """HCL's log( Σ_i imp_i·e^{s_i/t} / ((1/N)Σ_i imp_i) ), imp_i = e^{β·s_i/t}, over finite entries."""
    logits = neg / t
    # log imp, with removed negatives kept at weight 0 (β·(−inf) would be nan for β = 0).
    log_importance = torch.where(torch.isfinite(neg), beta * logits, -math.inf)
    log_mean_importance = torch.logsumexp(log_importance, dim=1) - torch.log(n)
    return torch.logsumexp(log_importance + logits, dim=1) - log_mean_importance


def positives_only(pos: Tensor, t: float) -> Tensor:
    """The objective without negatives: pull each query to its positive, L = −E[pos]/t.

    It is minimised by mapping every image to the same point (pos = 1 for all pairs):
    the trivial solution that negatives exist to prevent (notebook 00 shows the collapse).
    """
    _check_temperature(t)
    return -_at_least_float32(pos).mean() / t


def negative_cosine(pos: Tensor) -> Tensor:
    """SimSiam's loss (Chen & He 2021, eq. 1-2): the mean of D = −cos(p, sg(z)) over both views,

        L = ½ D(p₁, sg(z₂)) + ½ D(p₂, sg(z₁)),

    from ``pos`` (2B,), the cosines of each prediction with the other view's stop-gradient
    embedding (``cl.siamese.Siamese``). Minimum −1. Notebook 08.
    """
    return -_at_least_float32(pos).mean()


def byol(pos: Tensor) -> Tensor:
    """BYOL's loss (Grill et al. 2020, eq. 2 and the symmetrised total L + L̃): the squared distance
    of the normalised prediction and target, ‖p̄ − z̄′‖² = 2 − 2·cos(p, z′), for each view, summed
    over the two views and averaged over the batch,

        L = (2 − 2·cos(p₁, z′₂)) + (2 − 2·cos(p₂, z′₁)) = 4 − 4·mean(pos),

    ``pos`` (2B,) as in ``negative_cosine``, against the momentum target. Minimum 0. Notebook 08.
    """
    return 4 - 4 * _at_least_float32(pos).mean()


def supcon(z: Tensor, labels: Tensor, t: float, base_t: float | None = None) -> Tensor:
    """Supervised contrastive loss L_out (Khosla et al. 2020, eq. 2):

        L_out = mean_i −(1/|P(i)|) Σ_{p∈P(i)} log( e^{z_i·z_p/t} / Σ_{a≠i} e^{z_i·z_a/t} )

    over ``z`` (n_views·B, d), L2-normalised rows (every view of every sample), and
    ``labels`` (n_views·B,). P(i) are the other rows with i's label (its other views
    included). Scaled by t / base_t as the official code does (base_t defaults to t:
    factor 1).

    Anchors with no positive (a label seen once, only possible with a single view) are
    left out of the mean; the official code counts them as zero loss instead. With
    ≥ 2 views every anchor has a positive and the two agree. Notebook 06.
    """
    base_t = t if base_t is None else base_t
    _check_temperature(t)
    _check_temperature(base_t, name="base_t")
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(
            f"supcon needs z of shape (n, d) and labels of shape (n,); "
            f"got z {tuple(z.shape)} and labels {tuple(labels.shape)}"
        )
    z = _at_least_float32(z)
    is_self = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = (z @ z.T / t).masked_fill(is_self, -math.inf)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    is_positive = (labels[:, None] == labels[None, :]) & ~is_self
    n_positives = is_positive.sum(dim=1)
    has_positive = n_positives > 0
    if not has_positive.any():
        raise ValueError("supcon: no anchor has a positive (every label occurs once); pass ≥ 2 views")
    sum_log_prob_positives = torch.where(is_positive, log_prob, 0.0).sum(dim=1)
    mean_log_prob_positives = sum_log_prob_positives[has_positive] / n_positives[has_positive]
    return -(t / base_t) * mean_log_prob_positives.mean()


def _debiased_loss(pos_logits, log_negative_mass, n, t, tau_plus):
    """The debiasing that DCL and HCL share, in log space:

        Ng = max( (mass − τ⁺·N·(1/M)Σ_j e^{pos_j/t}) / (1 − τ⁺),  N·e^{−1/t} )
        L  = mean_{i,j} −log( e^{pos_ij/t} / (e^{pos_ij/t} + Ng_i) )

    ``pos_logits`` (B, M) = pos / t, ``log_negative_mass`` (B,) = log mass, ``n`` (B,) = N.
    """
    log_ng = torch.maximum(*_log_estimate_and_floor(pos_logits, log_negative_mass, n, t, tau_plus))
    return (torch.logaddexp(pos_logits, log_ng[:, None]) - pos_logits).mean()


def _log_estimate_and_floor(pos_logits, log_negative_mass, n, t, tau_plus):
    """log of DCL's estimate (mass − τ⁺·N·(1/M)Σ_j e^{pos_j/t}) / (1 − τ⁺) (−inf where it is
    not positive) and log of its floor N·e^{−1/t}, both (B,)."""
    log_mean_pos = torch.logsumexp(pos_logits, dim=1) - math.log(pos_logits.shape[1])
    log_correction = torch.log(tau_plus * n) + log_mean_pos  # −inf when τ⁺ = 0
    log_estimate = _log_subtract_exp(log_negative_mass, log_correction) - math.log1p(-tau_plus)
    return log_estimate, torch.log(n) - 1 / t


def _log_subtract_exp(log_a, log_b):
    """log(e^{log_a} − e^{log_b}) where it is positive, −inf elsewhere (there the clamp
    of ``_debiased_loss`` takes over); exactly log_a when log_b = −inf."""
    positive = log_a > log_b
    # Off the positive branch use a gap of −inf so that log1p stays finite, and so do its gradients.
    gap = torch.where(positive, log_b - log_a, -math.inf)
    return torch.where(positive, log_a + torch.log1p(-torch.exp(gap)), -math.inf)


def _validated(pos, neg, t, several_positives=False):
    """Check the contract; return pos ((B, M) when several_positives) and neg in at least
    float32, and N_i, the finite entries per row, as a float (B,)."""
    _check_temperature(t)
    if neg.dim() != 2:
        raise ValueError(f"neg must be (B, K), got shape {tuple(neg.shape)}")
    pos_dims = (1, 2) if several_positives else (1,)
    if pos.dim() not in pos_dims or pos.shape[0] != neg.shape[0]:
        expected = "(B,) or (B, M)" if several_positives else "(B,)"
        raise ValueError(
            f"pos must be {expected} with B = neg.shape[0] = {neg.shape[0]}, got shape {tuple(pos.shape)}"
        )
    n = torch.isfinite(neg).sum(dim=1)
    if (n == 0).any():
        empty = torch.nonzero(n == 0).flatten().tolist()
        raise ValueError(f"rows {empty[:10]} of neg have no finite negative; keep at least one per row")
    pos = _at_least_float32(pos)
    if several_positives and pos.dim() == 1:
        pos = pos[:, None]
    return pos, _at_least_float32(neg), n.to(pos.dtype)


def _check_temperature(t, name="temperature t"):
    if not t > 0:
        raise ValueError(f"{name} must be > 0, got {t}")


def _check_tau_plus(tau_plus):
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus is a class prior and must be in [0, 1), got {tau_plus}")


def _at_least_float32(x):
    return x.to(torch.promote_types(x.dtype, torch.float32))
