"""Encoders and heads: shapes, the CIFAR stem, errors."""
import pytest
import torch

from cl import models


def test_small_cnn_and_head_shapes():
    enc = models.build_encoder("small_cnn", 1, 8, "mlp", 16, 32)
    x = torch.randn(4, 1, 28, 28)
    assert enc.features(x).shape == (4, 64) and enc(x).shape == (4, 16)
    assert isinstance(enc.head[0], torch.nn.Linear) and enc.head[0].out_features == 32


def test_resnet18_has_the_cifar_stem():
    net = models.resnet18(3)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_split_bn_is_used_when_asked():
    enc = models.build_encoder("small_cnn", 1, 4, "linear", 8, 0, bn_splits=4)
    assert any(isinstance(m, models.SplitBatchNorm) for m in enc.modules())
    assert isinstance(enc.head, torch.nn.Linear)


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        models.build_encoder("vgg", 1, 4, "mlp", 8, 16)
    with pytest.raises(ValueError, match="unknown head 'deep'"):
        models.head(8, 4, 8, kind="deep")
