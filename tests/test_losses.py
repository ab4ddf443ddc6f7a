"""Tests of cl.losses: the equivalences of the contract, hand-computed cases, and
independent reference implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from cl.losses import debiased, hard, info_nce, supcon

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LOSSES = {
    "info_nce": lambda pos, neg: info_nce(pos, neg, 0.2),
    "debiased": lambda pos, neg: debiased(pos, neg, 0.2, 0.1),
    "hard": lambda pos, neg: hard(pos, neg, 0.2, 0.1, 1.0),
}


def similarities(batch=6, n_neg=20, removed=0.3, dim=8, seed=0, device="cpu"):
    """pos (B,), neg (B, K) of real unit vectors, with about `removed` of neg set to -inf
    (never a whole row)."""
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    k = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    queue = F.normalize(torch.randn(n_neg, dim, generator=g), dim=1)
    drop = torch.rand(batch, n_neg, generator=g) < removed
    drop[:, 0] = False
    neg = (q @ queue.T).masked_fill(drop, -math.inf)
    return (q * k).sum(1).to(device), neg.to(device)


def dcl_reference(pos, neg, t, tau_plus, beta=0.0):
    """HCL/DCL written as in the official code, in float64 and linear space, one row
    at a time with the removed entries dropped. pos (B, M)."""
    losses = []
    for p_row, n_row in zip(pos.double(), neg.double()):
        n_row = n_row[torch.isfinite(n_row)]
        n = n_row.numel()
        neg_exp = torch.exp(n_row / t)
        imp = torch.exp(beta * n_row / t)
        reweight = (imp * neg_exp).sum() / imp.mean()
        pos_exp = torch.exp(p_row / t)
        ng = torch.clamp((-tau_plus * n * pos_exp.mean() + reweight) / (1 - tau_plus),
                         min=n * math.exp(-1 / t))
        losses.append(-torch.log(pos_exp / (pos_exp + ng)))
    return torch.stack(losses).mean()


# --- the equivalences of the contract ---------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("t", [0.05, 0.2, 0.5])
def test_debiased_without_prior_is_info_nce(t, device):
    pos, neg = similarities(device=device)
    torch.testing.assert_close(debiased(pos, neg, t, tau_plus=0.0), info_nce(pos, neg, t),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tau_plus", [0.0, 0.01, 0.1, 0.5])
def test_hard_without_tilt_is_debiased(tau_plus, device):
    pos, neg = similarities(device=device)
    expected = debiased(pos, neg, 0.2, tau_plus)
    torch.testing.assert_close(hard(pos, neg, 0.2, tau_plus, beta=0.0), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
def test_removed_entries_count_as_absent(loss):
    pos, neg = similarities(removed=0.5)
    assert not torch.isfinite(neg).all()
    per_row = []
    for i in range(len(pos)):
        finite = torch.isfinite(neg[i])
        per_row.append(loss(pos[i : i + 1], neg[i : i + 1, finite]))
        torch.testing.assert_close(loss(pos[i : i + 1], neg[i : i + 1]), per_row[-1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss(pos, neg), torch.stack(per_row).mean(), rtol=1e-6, atol=1e-6)


# --- hand-computed 2 x 3 cases ----------------------------------------------------------

HAND_POS = torch.tensor([0.8, 0.9])
HAND_NEG = torch.tensor([[0.6, 0.1, -0.3], [-0.9, -0.8, -math.inf]])
HAND_T, HAND_TAU_PLUS = 0.5, 0.1


def test_debiased_hand_computed():
    t, tau = HAND_T, HAND_TAU_PLUS
    # Row 1, N = 3: the estimate is above the clamp.
    pos_exp = math.exp(0.8 / t)  # 4.95303
    neg_sum = math.exp(0.6 / t) + math.exp(0.1 / t) + math.exp(-0.3 / t)  # 5.09033
    estimate = (neg_sum - tau * 3 * pos_exp) / (1 - tau)  # 4.00491
    assert estimate > 3 * math.exp(-1 / t)  # 0.40601
    row1 = -math.log(pos_exp / (pos_exp + estimate))  # 0.592541
    # Row 2, N = 2 (the third negative is removed): the estimate is negative, the clamp binds.
    pos_exp = math.exp(0.9 / t)  # 6.04965
    neg_sum = math.exp(-0.9 / t) + math.exp(-0.8 / t)  # 0.367195
    estimate = (neg_sum - tau * 2 * pos_exp) / (1 - tau)  # -0.936371
    clamp = 2 * math.exp(-1 / t)  # 0.270671
    assert estimate < clamp
    row2 = -math.log(pos_exp / (pos_exp + clamp))  # 0.0437695
    assert (row1 + row2) / 2 == pytest.approx(0.3181552, abs=1e-6)
    assert debiased(HAND_POS, HAND_NEG, t, tau).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)


def test_hard_hand_computed():
    t, tau, beta = HAND_T, HAND_TAU_PLUS, 1.0
    # Row 1, N = 3: imp = e^{β s/t}, reweight = Σ imp·e^{s/t} / mean(imp).
    pos_exp = math.exp(0.8 / t)
    imp = [math.exp(beta * 0.6 / t), math.exp(beta * 0.1 / t), math.exp(beta * -0.3 / t)]
    neg_exp = [math.exp(0.6 / t), math.exp(0.1 / t), math.exp(-0.3 / t)]
    reweight = sum(w * e for w, e in zip(imp, neg_exp)) / (sum(imp) / 3)  # 7.55326
    estimate = (reweight - tau * 3 * pos_exp) / (1 - tau)  # 6.74150
    assert estimate > 3 * math.exp(-1 / t)
    row1 = -math.log(pos_exp / (pos_exp + estimate))  # 0.859121
    # Row 2, N = 2: the clamp binds.
    pos_exp = math.exp(0.9 / t)
    imp = [math.exp(beta * -0.9 / t), math.exp(beta * -0.8 / t)]
    neg_exp = [math.exp(-0.9 / t), math.exp(-0.8 / t)]
    reweight = sum(w * e for w, e in zip(imp, neg_exp)) / (sum(imp) / 2)  # 0.370843
    clamp = 2 * math.exp(-1 / t)
    assert (reweight - tau * 2 * pos_exp) / (1 - tau) < clamp
    row2 = -math.log(pos_exp / (pos_exp + clamp))
    assert (row1 + row2) / 2 == pytest.approx(0.4514454, abs=1e-6)
    assert hard(HAND_POS, HAND_NEG, t, tau, beta).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    # The tilt towards hard negatives raises the loss of row 1 over DCL's.
    assert hard(HAND_POS[:1], HAND_NEG[:1], t, tau, beta) > debiased(HAND_POS[:1], HAND_NEG[:1], t, tau)


def test_info_nce_hand_computed():
    t = HAND_T
    row1 = -math.log(math.exp(0.8 / t) / sum(math.exp(s / t) for s in (0.8, 0.6, 0.1, -0.3)))
    row2 = -math.log(math.exp(0.9 / t) / sum(math.exp(s / t) for s in (0.9, -0.9, -0.8)))
    assert info_nce(HAND_POS, HAND_NEG, t).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)


# --- against the official form, stability, dtypes ---------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("t, tau_plus, beta",
                         [(0.05, 0.1, 1.0), (0.1, 0.3, 0.5), (0.5, 0.1, 2.0), (0.2, 0.6, 0.0)])
def test_hard_and_debiased_match_the_official_form(t, tau_plus, beta, device):
    pos, neg = similarities(batch=16, n_neg=64, device=device)
    expected_hard = dcl_reference(pos[:, None].cpu(), neg.cpu(), t, tau_plus, beta)
    expected_dcl = dcl_reference(pos[:, None].cpu(), neg.cpu(), t, tau_plus)
    torch.testing.assert_close(hard(pos, neg, t, tau_plus, beta).cpu().double(), expected_hard,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(debiased(pos, neg, t, tau_plus).cpu().double(), expected_dcl,
                               rtol=1e-5, atol=1e-6)


def test_small_temperature_is_finite_with_finite_gradients():
    pos, neg = similarities()
    pos.requires_grad_(True)
    neg.requires_grad_(True)
    for t in (0.05, 0.01):
        for loss in (info_nce(pos, neg, t), debiased(pos, neg, t, 0.1), hard(pos, neg, t, 0.1, 1.0)):
            pos.grad = neg.grad = None
            loss.backward()
            assert torch.isfinite(loss)
            assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()
            assert (neg.grad[~torch.isfinite(neg)] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_inputs_are_computed_in_float32(device):
    pos, neg = similarities(device=device)
    pos16, neg16 = pos.bfloat16(), neg.bfloat16()
    for loss in LOSSES.values():
        value = loss(pos16, neg16)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, loss(pos16.float(), neg16.float()))


# --- M > 1 positives --------------------------------------------------------------------


def test_one_positive_as_a_column_is_the_official_form():
    pos, neg = similarities()
    torch.testing.assert_close(debiased(pos[:, None], neg, 0.2, 0.1), debiased(pos, neg, 0.2, 0.1),
                               rtol=0, atol=0)
    torch.testing.assert_close(hard(pos[:, None], neg, 0.2, 0.1, 1.0), hard(pos, neg, 0.2, 0.1, 1.0),
                               rtol=0, atol=0)


def test_several_positives_average_the_per_positive_losses_with_one_ng():
    t, tau = 0.5, 0.2
    pos = torch.tensor([[0.9, 0.3]])
    neg = torch.tensor([[0.2, -0.1, 0.4]])
    neg_sum = math.exp(0.2 / t) + math.exp(-0.1 / t) + math.exp(0.4 / t)
    mean_pos_exp = (math.exp(0.9 / t) + math.exp(0.3 / t)) / 2
    ng = max((neg_sum - tau * 3 * mean_pos_exp) / (1 - tau), 3 * math.exp(-1 / t))
    expected = sum(-math.log(math.exp(p / t) / (math.exp(p / t) + ng)) for p in (0.9, 0.3)) / 2
    assert debiased(pos, neg, t, tau).item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(debiased(pos, neg, t, tau).double(), dcl_reference(pos, neg, t, tau))


def test_several_equal_positives_are_one_positive():
    pos, neg = similarities()
    torch.testing.assert_close(debiased(pos[:, None].expand(-1, 3), neg, 0.2, 0.1),
                               debiased(pos, neg, 0.2, 0.1))


# --- SupCon -----------------------------------------------------------------------------


def embeddings(n=12, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)


def nt_xent(z1, z2, t):
    """SimCLR's NT-Xent, written independently: each view's positive is the other view."""
    z = torch.cat([z1, z2])
    logits = (z @ z.T / t).fill_diagonal_(-math.inf)
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(logits, target)


def supcon_brute_force(z, labels, t, base_t):
    total, anchors = 0.0, 0
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in others)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denominator)
                      for p in positives) / len(positives)
        anchors += 1
    return t / base_t * total / anchors


def test_supcon_with_distinct_labels_is_nt_xent():
    z = embeddings(n=12)
    labels = torch.arange(6).repeat(2)  # two views of six samples, every sample its own class
    torch.testing.assert_close(supcon(z, labels, 0.1), nt_xent(z[:6], z[6:], 0.1))


@pytest.mark.parametrize("t, base_t", [(0.1, None), (0.07, 0.07), (0.5, 0.1)])
def test_supcon_matches_brute_force(t, base_t):
    z = embeddings(n=12)
    labels = torch.tensor([0, 1, 0, 2, 1, 0]).repeat(2)
    expected = supcon_brute_force(z, labels.tolist(), t, t if base_t is None else base_t)
    assert supcon(z, labels, t, base_t).item() == pytest.approx(expected, rel=1e-9)


def test_supcon_leaves_out_anchors_without_positive():
    z = embeddings(n=5)
    labels = torch.tensor([0, 0, 1, 1, 2])  # anchor 4 has no positive
    expected = supcon_brute_force(z, labels.tolist(), 0.2, 0.2)  # skips anchor 4
    assert supcon(z, labels, 0.2).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_supcon_bf16_and_device(device):
    z = embeddings(n=8).float().to(device)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3], device=device)
    value = supcon(z.bfloat16(), labels, 0.1)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, supcon(z.bfloat16().float(), labels, 0.1))


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, n: info_nce(p, n, 0.0), "temperature"),
        (lambda p, n: debiased(p, n, -0.1, 0.1), "temperature"),
        (lambda p, n: debiased(p, n, 0.2, 1.0), "tau_plus"),
        (lambda p, n: hard(p, n, 0.2, -0.1, 1.0), "tau_plus"),
        (lambda p, n: info_nce(p[:3], n, 0.2), "pos must be"),
        (lambda p, n: info_nce(p[:, None], n, 0.2), "pos must be"),
        (lambda p, n: debiased(p, n[0], 0.2, 0.1), "neg must be"),
        (lambda p, n: hard(p[:, None, None], n, 0.2, 0.1, 1.0), "pos must be"),
    ],
)
def test_bad_arguments_raise(call, message):
    pos, neg = similarities()
    with pytest.raises(ValueError, match=message):
        call(pos, neg)


@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
def test_a_row_without_negatives_raises(loss):
    pos, neg = similarities()
    neg[2] = -math.inf
    with pytest.raises(ValueError, match=r"rows \[2\] of neg have no finite negative"):
        loss(pos, neg)


def test_supcon_bad_arguments_raise():
    z = embeddings(n=4)
    with pytest.raises(ValueError, match="labels"):
        supcon(z, torch.tensor([0, 1, 0]), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        supcon(z, torch.tensor([0, 1, 0, 1]), 0.0)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon(z, torch.arange(4), 0.1)


def test_positives_only_is_minimised_by_collapse():
    from cl.losses import positives_only
    collapsed = torch.ones(8)
    spread = torch.rand(8) * 2 - 1
    assert positives_only(collapsed, 0.1) < positives_only(spread, 0.1)
    torch.testing.assert_close(positives_only(collapsed, 0.5), torch.tensor(-2.0))


def test_clamp_binds_exactly_where_the_estimate_is_below_its_floor():
    from cl.losses import clamp_binds
    t, tau_plus = 0.1, 0.1
    neg = torch.full((2, 100), 0.0)
    pos = torch.tensor([0.9, 0.0])  # e^{9}·τ⁺·N dwarfs the mass Σ e^{0} = 100: row 0 clamps
    binds = clamp_binds(pos, neg, t, tau_plus)
    estimate = (100 - tau_plus * 100 * torch.exp(pos / t)) / (1 - tau_plus)
    assert binds.tolist() == (estimate <= 100 * math.exp(-1 / t)).tolist() == [True, False]
    # a clamped row's loss does not depend on its negatives: no gradient reaches them
    neg0 = neg.clone().requires_grad_(True)
    debiased(pos, neg0, t, tau_plus).backward()
    assert neg0.grad[0].abs().max() == 0 and neg0.grad[1].abs().max() > 0
    # τ⁺ = 0 never clamps; HCL with β = 0 clamps where DCL does
    assert not clamp_binds(pos, neg, t, 0.0).any()
    assert torch.equal(clamp_binds(pos, neg, t, tau_plus, beta=0.0), binds)
