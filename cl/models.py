"""Encoders and heads.

* ``small_cnn``: a 4-block CNN for 28 px grayscale images, sized to train on two CPU cores.
* ``resnet18``: ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool), for GPUs.
* ``head``: the projection head (MoCo v2's 2-layer MLP, MoCo v1's linear one, BYOL's MLP with
  batch norm on its hidden layer, SimSiam's with batch norm after both layers);
  ``predictor``: their prediction head.

Batch norm may be ``SplitBatchNorm``: the MoCo CIFAR demo's way to imitate the
per-GPU BN of multi-GPU training on one device (each split of the batch is normalised
with its own statistics), which together with a shuffled key batch stops the model from
"cheating" through BN statistics.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed on ``num_splits`` chunks of the batch."""

    def __init__(self, num_features: int, num_splits: int, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        if n % self.num_splits:
            raise ValueError(f"batch of {n} cannot be split into {self.num_splits} BN groups")
        running_mean = self.running_mean.repeat(self.num_splits)
        running_var = self.running_var.repeat(self.num_splits)
        out = F.batch_norm(
            x.reshape(-1, c * self.num_splits, h, w), running_mean, running_var,
            self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
            True, self.momentum, self.eps).reshape(n, c, h, w)
        self.running_mean.copy_(running_mean.view(self.num_splits, c).mean(0))
        self.running_var.copy_(running_var.view(self.num_splits, c).mean(0))
        return out


def _norm(bn_splits: int):
    return (lambda c: SplitBatchNorm(c, bn_splits)) if bn_splits > 1 else nn.BatchNorm2d


def small_cnn(in_channels: int = 1, width: int = 32, bn_splits: int = 1) -> nn.Sequential:
    """Four conv-BN-ReLU blocks (width, 2w, 4w, 8w), max-pool between them, global average pool.

    Output dimension ``8 * width``. At width 32 it has 0.39 M parameters.
    """
    norm = _norm(bn_splits)

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), norm(o), nn.ReLU(inplace=True)]

    w = width
    net = nn.Sequential(
        *block(in_channels, w), nn.MaxPool2d(2),
        *block(w, 2 * w), nn.MaxPool2d(2),
        *block(2 * w, 4 * w), nn.MaxPool2d(2),
        *block(4 * w, 8 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.out_dim = 8 * w
    return net


def resnet18(in_channels: int = 3, bn_splits: int = 1) -> nn.Module:
    """ResNet-18 with the CIFAR stem (as in the MoCo CIFAR demo); output dimension 512."""
    net = torchvision.models.resnet18(num_classes=1, norm_layer=_norm(bn_splits))
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 512
    return net


def head(in_dim: int, out_dim: int = 128, hidden: int | None = 512, kind: str = "mlp") -> nn.Module:
    """Projection head: ``mlp`` = Linear-ReLU-Linear (MoCo v2), ``linear`` = one Linear (MoCo v1)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp_bn":  # BYOL's projector: batch norm on the hidden layer
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                             nn.Linear(hidden, out_dim))
    if kind == "mlp_bn_out":  # SimSiam's CIFAR projector: batch norm after both layers, the last not affine
        return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                             nn.ReLU(inplace=True), nn.Linear(hidden, out_dim, bias=False),
                             nn.BatchNorm1d(out_dim, affine=False))
    raise ValueError(f"unknown head {kind!r}: use 'mlp', 'mlp_bn', 'mlp_bn_out' or 'linear'")


def predictor(dim: int, hidden: int) -> nn.Module:
    """The predictor h of SimSiam and BYOL: Linear-BN-ReLU-Linear, dim → hidden → dim (a bottleneck
    when hidden < dim, as SimSiam's 2048 → 512 → 2048)."""
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim))


class Encoder(nn.Module):
    """Backbone + projection head. ``features`` is what kNN and the linear probe evaluate.

    With ``bf16`` the encoder computes under bf16 autocast, and its outputs come back as
    float32: everything after it (normalisation, similarities, selection, losses) runs in
    float32, so no two similarities tie at bf16's resolution (8 bits of mantissa).
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module, bf16: bool = False):
        super().__init__()
        self.backbone, self.head, self.bf16 = backbone, projector, bf16

    def _autocast(self, x: torch.Tensor):
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            return self.backbone(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            return self.head(self.backbone(x)).float()


def build_encoder(arch: str, in_channels: int, width: int, head_kind: str, dim: int,
                  hidden: int, bn_splits: int = 1) -> Encoder:
    """The encoder a config names (``arch`` in ``small_cnn``, ``resnet18``)."""
    if arch == "small_cnn":
        backbone = small_cnn(in_channels, width, bn_splits)
    elif arch == "resnet18":
        backbone = resnet18(in_channels, bn_splits)
    else:
        raise ValueError(f"unknown arch {arch!r}: use 'small_cnn' or 'resnet18'")
    return Encoder(backbone, head(backbone.out_dim, dim, hidden, head_kind))
