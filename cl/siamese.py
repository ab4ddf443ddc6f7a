"""Learning from positives alone: SimSiam (Chen & He 2021) and BYOL (Grill et al. 2020).

Neither has negatives. Both put a predictor h on one branch and keep the other branch from
receiving a gradient; both are what the "elephant in the room" of the negatives study asks
about (notebook 08): without negatives, what keeps the embedding from collapsing?

* SimSiam: the other branch is the same encoder under stop-gradient,
      L = ½ D(p₁, sg(z₂)) + ½ D(p₂, sg(z₁)),   D(p, z) = −cos(p, z),   p = h(f(x)), z = f(x).
* BYOL: the other branch is a momentum average of the encoder (the target), ξ ← τξ + (1 − τ)θ,
      L = ‖p̄₁ − z̄′₂‖² + ‖p̄₂ − z̄′₁‖² = 4 − 2·cos(p₁, z′₂) − 2·cos(p₂, z′₁),   z′ = f_ξ(x),
  with τ raised from its base towards 1 over training by a cosine (``target_schedule``).

``Siamese.forward`` returns ``pos`` (2B,): cos(p₁, sg(t₂)) then cos(p₂, sg(t₁)), the loss
contract's positives with no negatives at all (``cl.losses.negative_cosine`` and
``cl.losses.byol`` read them); ``cl.steps.siamese_step`` is the whole step.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from cl import models


class Siamese(nn.Module):
    """An online encoder f with a predictor h; the target branch is f itself under stop-gradient
    (``momentum=None``: SimSiam) or its momentum average (BYOL)."""

    def __init__(self, encoder: nn.Module, dim: int, hidden: int, momentum: float | None = None):
        super().__init__()
        self.encoder, self.predictor, self.momentum = encoder, models.predictor(dim, hidden), momentum
        self.target = None
        if momentum is not None:
            self.target = copy.deepcopy(encoder)
            for p in self.target.parameters():
                p.requires_grad = False

    @torch.no_grad()
    def momentum_update(self) -> None:
        """BYOL: ξ ← τξ + (1 − τ)θ for the target's parameters; its buffers (BN statistics) are copied."""
        for target, online in zip(self.target.parameters(), self.encoder.parameters()):
            target.mul_(self.momentum).add_(online.detach(), alpha=1 - self.momentum)
        for target, online in zip(self.target.buffers(), self.encoder.buffers()):
            target.copy_(online)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pos (2B,) = [cos(p₁, sg(t₂)), cos(p₂, sg(t₁))] and the normalised online embeddings z (2B, d)."""
        z1, z2 = self.encoder(x1), self.encoder(x2)  # (B, d) each
        p1, p2 = self.predictor(z1), self.predictor(z2)
        if self.target is None:  # SimSiam: the stop-gradient is the whole trick
            t1, t2 = z1.detach(), z2.detach()
        else:  # BYOL: the target network, updated before its forward as MoCo's key encoder
            with torch.no_grad():
                self.momentum_update()
                t1, t2 = self.target(x1), self.target(x2)
        p, t = F.normalize(torch.cat([p1, p2]), dim=1), F.normalize(torch.cat([t2, t1]), dim=1)
        return (p * t).sum(1), F.normalize(torch.cat([z1, z2]), dim=1)
