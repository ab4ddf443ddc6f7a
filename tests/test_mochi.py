"""MoCHi (Kalantidis et al. 2020): the synthetic negatives as the paper defines them, and the same logits
as training computes them from similarities at hand."""
import pytest
import torch
import torch.nn.functional as F
from test_negatives import LOSSES, unit  # the same unit vectors and losses as the selections' tests

from cl.mochi import draw_mixes, logits, mixed_logits, synthesize

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_mochi_has_no_gradient_even_when_its_inputs_do():
    q = unit(4, 8, 0).requires_grad_(True)
    queue = unit(30, 8, 1).requires_grad_(True)
    assert not synthesize(q, queue, n_hard=5, s=3, s_prime=3).requires_grad
    assert queue.grad is None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mochi_shapes_unit_norm_and_coefficients(dtype, device):
    q, queue = unit(8, 16, 0, device).to(dtype), unit(200, 16, 1, device).to(dtype)
    synthetic, alpha, beta = synthesize(q, queue, n_hard=20, s=64, s_prime=32, return_coefficients=True)
    assert synthetic.shape == (8, 96, 16) and synthetic.dtype == dtype
    torch.testing.assert_close(synthetic.float().norm(dim=-1), torch.ones(8, 96, device=device),
                               rtol=0, atol=1e-2)
    assert alpha.shape == (8, 64) and beta.shape == (8, 32)
    assert ((alpha >= 0) & (alpha < 1)).all() and ((beta >= 0) & (beta < 0.5)).all()
    assert logits(q, synthetic).shape == (8, 96)


def test_mochi_mixes_only_the_hardest():
    # The queue's three hardest negatives for q are e0, e1, e2 (similarity 1/√3); every
    # other key has similarity −0.1/‖·‖ < 0 and a component outside span(e0, e1, e2).
    dim, n_hard = 8, 3
    basis = torch.eye(dim)
    q = F.normalize(basis[0] + basis[1] + basis[2], dim=0)[None]
    others = F.normalize(-0.1 * basis[0] + unit(17, dim, 0).abs() * (torch.arange(dim) >= 3), dim=1)
    queue = torch.cat([others[:5], basis[2:3], others[5:11], basis[0:1], others[11:], basis[1:2]])
    synthetic, alpha, beta = synthesize(q, queue, n_hard, s=50, s_prime=50, return_coefficients=True,
                                   generator=torch.Generator().manual_seed(0))
    assert synthetic[..., 3:].abs().max() < 1e-6  # in the span of the hardest
    pairs, with_query = synthetic[0, :50, :3], synthetic[0, 50:]
    # h ∝ α e_i + (1−α) e_j with i ≠ j: two nonzero coordinates, in the proportion α : 1 − α.
    assert ((pairs > 1e-6).sum(1) == 2).all()
    shares = pairs / pairs.sum(1, keepdim=True)
    assert torch.allclose(shares.max(1).values, torch.maximum(alpha[0], 1 - alpha[0]), atol=1e-5)
    # h′ = normalize(β q + (1−β) e_j) for one of the hardest e_j.
    candidates = F.normalize(beta[0, :, None, None] * q + (1 - beta[0, :, None, None]) * basis[:3], dim=-1)
    assert ((candidates - with_query[:, None, :]).abs().amax(-1) < 1e-6).any(1).all()


def test_mochi_without_synthesis_adds_nothing():
    q, k, queue = unit(6, 8, 0), unit(6, 8, 1), unit(40, 8, 2)
    synthetic = synthesize(q, queue, n_hard=10, s=0, s_prime=0)
    assert synthetic.shape == (6, 0, 8)
    pos, neg = (q * k).sum(1), q @ queue.T
    appended = torch.cat([neg, logits(q, synthetic)], 1)
    assert torch.equal(appended, neg)
    for loss in LOSSES.values():
        assert torch.equal(loss(pos, appended), loss(pos, neg))


def test_mochi_is_reproducible_under_a_generator():
    q, queue = unit(4, 8, 0), unit(40, 8, 1)
    first = synthesize(q, queue, 10, 5, 5, generator=torch.Generator().manual_seed(3))
    again = synthesize(q, queue, 10, 5, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)


@pytest.mark.parametrize(
    "n_hard, s, s_prime, message",
    [(41, 2, 2, "n_hard must be in"), (1, 2, 0, "n_hard must be in"), (5, -1, 0, "must be >= 0")],
)
def test_mochi_bad_arguments_raise(n_hard, s, s_prime, message):
    with pytest.raises(ValueError, match=message):
        synthesize(unit(4, 8, 0), unit(40, 8, 1), n_hard, s, s_prime)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("s, s_prime", [(64, 32), (0, 16), (16, 0), (0, 0)])
def test_mixed_logits_are_the_logits_of_the_synthetic_negatives(s, s_prime, device):
    # Training's closed form against the definition: same draws (same seed), same logits,
    # and the same gradient on q (the synthetic vectors, constants).
    q = unit(8, 16, 0, device).requires_grad_(True)
    queue = unit(300, 16, 1, device)
    synthetic = synthesize(q, queue, 40, s, s_prime, generator=torch.Generator(device).manual_seed(5))
    expected = logits(q, synthetic)
    neg = q @ queue.T
    draw = draw_mixes(neg.detach(), 40, s, s_prime, generator=torch.Generator(device).manual_seed(5))
    got = mixed_logits(q, neg, draw, (queue[draw.first] * queue[draw.second]).sum(-1))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert got.shape == (8, s + s_prime)
    if s + s_prime:
        weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(device)
        (grad_expected,) = torch.autograd.grad((weights * expected).sum(), q)
        (grad_got,) = torch.autograd.grad((weights * got).sum(), q)
        torch.testing.assert_close(grad_got, grad_expected, rtol=0, atol=1e-5)


def test_mochi_draw_takes_pairs_of_distinct_hard_negatives():
    neg = unit(6, 8, 0) @ unit(100, 8, 1).T
    draw = draw_mixes(neg, 7, s=500, s_prime=300, generator=torch.Generator().manual_seed(0))
    hardest = neg.topk(7, dim=1).indices
    for indices in (draw.first, draw.second, draw.partner):
        assert (indices[:, :, None] == hardest[:, None, :]).any(-1).all()  # all from Q̃
    assert (draw.first != draw.second).all()
    assert ((draw.alpha >= 0) & (draw.alpha < 1)).all() and ((draw.beta >= 0) & (draw.beta < 0.5)).all()
    assert draw.first.shape == draw.alpha.shape == (6, 500)
    assert draw.partner.shape == draw.beta.shape == (6, 300)
