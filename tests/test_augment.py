"""Tests of cl.augment against torchvision's reference implementations."""

from dataclasses import replace

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from cl.augment import (
    AugmentConfig,
    TwoViews,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    apply_params,
    blur_kernel_size,
    default_config,
    gaussian_blur,
    random_resized_crop,
    sample_params,
    to_float,
)


def images(batch, channels, side=28, seed=0):
    """A random uint8 batch (B, C, side, side)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, side, side), generator=g, dtype=torch.uint8)


def smooth_images(batch, channels, side=28, seed=0):
    """A uint8 batch with spatial structure (upsampled noise), so crops and flips matter."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, 7, 7, generator=g)
    fine = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    return (fine * 255).round().to(torch.uint8)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def plain(size, **changes):
    """Config with every augmentation off and identity normalisation."""
    base = AugmentConfig(size=size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                         grayscale_p=0.0, blur_p=0.0, mean=(0.0,), std=(1.0,))
    return replace(base, **changes)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [20, 28, 36])
def test_shapes_and_dtype(channels, size):
    x = images(6, channels)
    first, second = TwoViews(replace(AugmentConfig(size=size), blur_p=0.5), channels)(x, gen(0))
    for view in (first, second):
        assert view.shape == (6, channels, size, size)
        assert view.dtype == torch.float32
        assert torch.isfinite(view).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_outputs_in_unit_range_with_identity_normalisation(channels):
    cfg = AugmentConfig(size=24, jitter_p=1.0, brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5,
                        mean=(0.0,), std=(1.0,))
    first, second = TwoViews(cfg, channels)(images(64, channels), gen(1))
    out = torch.cat([first, second])
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() == 1.0  # strong brightness saturates some pixels: the clamp is active


@pytest.mark.parametrize("name,channels", [("fashion_mnist", 1), ("cifar10", 3)])
def test_views_differ_and_samples_get_different_parameters(name, channels):
    x = smooth_images(1, channels).expand(16, -1, -1, -1).contiguous()  # 16 identical images
    first, second = TwoViews(default_config(name, 28), channels)(x, gen(2))
    assert not torch.allclose(first, second)
    flat = first.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(16, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all()  # every pair of samples was augmented differently


def test_parameters_are_per_sample():
    cfg = AugmentConfig(size=28)
    p = sample_params(256, cfg, 3, gen(3), "cpu", (28, 28))
    assert p["boxes"].unique(dim=0).shape[0] > 100
    assert 0.35 < p["flip"].float().mean() < 0.65
    jittered = p["brightness"] != 1.0
    assert 0.7 < jittered.float().mean() < 0.9
    assert (p["brightness"][jittered].unique().numel() == jittered.sum())
    assert 0.1 < p["grayscale"].float().mean() < 0.3
    blurred = p["sigma"] > 0
    assert 0.4 < blurred.float().mean() < 0.6
    assert ((p["sigma"][blurred] >= 0.1) & (p["sigma"][blurred] <= 2.0)).all()


def test_grayscale_batches_get_identity_rgb_parameters():
    p = sample_params(64, AugmentConfig(size=28, jitter_p=1.0), 1, gen(4), "cpu", (28, 28))
    assert (p["saturation"] == 1.0).all() and (p["hue"] == 0.0).all() and not p["grayscale"].any()
    assert (p["brightness"] != 1.0).all()


def test_boxes_inside_image_with_requested_area_and_ratio():
    cfg = AugmentConfig(size=32, crop_scale=(0.2, 0.6), crop_ratio=(0.5, 2.0))
    top, left, h, w = sample_params(2000, cfg, 3, gen(5), "cpu", (40, 50))["boxes"].unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 50).all()
    assert (h == h.round()).all() and (w == w.round()).all() and (top == top.round()).all()
    area = h * w / (40 * 50)
    assert area.min() > 0.17 and area.max() < 0.64  # scale range up to pixel rounding
    ratio = w / h
    assert ratio.min() > 0.45 and ratio.max() < 2.2


def test_box_fallback_matches_torchvision_central_crop():
    # No box of area 1 and aspect 2 fits a square image: torchvision falls back to a central crop.
    cfg = AugmentConfig(size=28, crop_scale=(1.0, 1.0), crop_ratio=(2.0, 2.0))
    boxes = sample_params(8, cfg, 1, gen(6), "cpu", (28, 28))["boxes"]
    expected = T.RandomResizedCrop.get_params(torch.zeros(1, 28, 28), scale=[1.0, 1.0], ratio=[2.0, 2.0])
    assert (boxes == torch.tensor(expected, dtype=boxes.dtype)).all()


def test_same_seed_reproduces_and_other_seed_differs():
    augment = TwoViews(default_config("cifar10", 28), 3)
    x = images(8, 3)
    a1, a2 = augment(x, gen(7))
    b1, b2 = augment(x, gen(7))
    c1, _ = augment(x, gen(8))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.allclose(a1, c1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 36])
def test_full_box_crop_equals_evaluation_transform(channels, size):
    x = images(5, channels)
    out = TwoViews(plain(size), channels).view(x, gen(9))
    assert torch.allclose(out, to_float(x, plain(size)), atol=1e-5)


def test_flip_equals_horizontally_flipped_image():
    x = smooth_images(5, 3)
    out = TwoViews(plain(28, flip_p=1.0), 3).view(x, gen(10))
    assert torch.allclose(out, to_float(x, plain(28)).flip(-1), atol=1e-5)
    assert not torch.allclose(out, to_float(x, plain(28)), atol=1e-2)


def test_crop_of_known_boxes_matches_torchvision_resized_crop():
    x = smooth_images(4, 3, side=40).float() / 255
    boxes = torch.tensor([[0, 0, 40, 40], [3, 5, 20, 20], [10, 2, 30, 24], [12, 15, 28, 25]],
                         dtype=torch.float32)
    out = random_resized_crop(x, boxes, 20)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        expected = TF.resized_crop(x[i], top, left, h, w, [20, 20], antialias=False)
        assert torch.allclose(out[i], expected, atol=1e-5), i


def test_flipped_crop_is_the_mirrored_crop():
    x = smooth_images(2, 1, side=40).float() / 255
    boxes = torch.tensor([[3, 5, 20, 30], [0, 10, 40, 30]], dtype=torch.float32)
    flipped = random_resized_crop(x, boxes, 16, torch.tensor([True, True]))
    assert torch.allclose(flipped, random_resized_crop(x, boxes, 16).flip(-1), atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("ours,theirs", [(adjust_brightness, TF.adjust_brightness),
                                         (adjust_contrast, TF.adjust_contrast)])
def test_brightness_and_contrast_match_torchvision(channels, ours, theirs):
    x = images(6, channels).float() / 255
    factors = torch.tensor([0.0, 0.3, 0.8, 1.0, 1.2, 1.7])
    out = ours(x, factors)
    for i, factor in enumerate(factors.tolist()):
        assert torch.allclose(out[i], theirs(x[i], factor), atol=1e-5), factor


def test_saturation_matches_torchvision():
    x = images(6, 3).float() / 255
    factors = torch.tensor([0.0, 0.3, 0.8, 1.0, 1.2, 1.7])
    out = adjust_saturation(x, factors)
    for i, factor in enumerate(factors.tolist()):
        assert torch.allclose(out[i], TF.adjust_saturation(x[i], factor), atol=1e-5), factor


def test_hue_matches_torchvision():
    x = images(6, 3).float() / 255
    x[0, :, :4, :4] = 0.5  # gray pixels: hue undefined, must stay unchanged
    shifts = torch.tensor([-0.5, -0.2, -0.05, 0.0, 0.1, 0.5])
    out = adjust_hue(x, shifts)
    for i, shift in enumerate(shifts.tolist()):
        assert torch.allclose(out[i], TF.adjust_hue(x[i], shift), atol=1e-5), shift
    assert not torch.allclose(out[1], x[1], atol=1e-2)


@pytest.mark.parametrize("channels", [1, 3])
def test_gaussian_blur_matches_torchvision(channels):
    x = images(4, channels, side=32).float() / 255
    sigmas = torch.tensor([0.1, 0.7, 1.3, 2.0])
    kernel = blur_kernel_size(32)
    out = gaussian_blur(x, sigmas)
    for i, sigma in enumerate(sigmas.tolist()):
        expected = TF.gaussian_blur(x[i], [kernel, kernel], [sigma, sigma])
        assert torch.allclose(out[i], expected, atol=1e-5), sigma


def test_gaussian_blur_with_larger_kernel_and_zero_sigma():
    x = images(3, 3, side=64).float() / 255
    sigmas = torch.tensor([0.0, 1.0, 2.0])
    out = gaussian_blur(x, sigmas, kernel_size=7)
    assert torch.allclose(out[0], x[0], atol=1e-6)  # sigma 0: unchanged
    for i in (1, 2):
        assert torch.allclose(out[i], TF.gaussian_blur(x[i], [7, 7], [sigmas[i].item()] * 2), atol=1e-5)


def test_blur_kernel_size_is_odd_tenth_of_side():
    assert [blur_kernel_size(s) for s in (28, 32, 96, 224)] == [3, 3, 9, 23]


def test_grayscale_and_blur_are_applied():
    cfg = plain(28, grayscale_p=1.0, blur_p=1.0, blur_sigma=(2.0, 2.0))
    x = images(4, 3)
    out = apply_params(x, sample_params(4, cfg, 3, gen(11), "cpu", (28, 28)), cfg)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    gray = TF.rgb_to_grayscale(x.float() / 255, num_output_channels=3)
    assert torch.allclose(out, TF.gaussian_blur(gray, [3, 3], [2.0, 2.0]), atol=1e-5)


def test_normalisation_uses_config_mean_and_std():
    cfg = default_config("cifar10", 28)
    x = images(2, 3)
    out = to_float(x, cfg)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    assert torch.allclose(out * std + mean, x.float() / 255, atol=1e-6)


def test_default_configs():
    fmnist = default_config("fashion_mnist", 28)
    assert fmnist.mean == (0.2860,) and fmnist.std == (0.3530,)
    assert fmnist.blur_p == 0.0 and fmnist.brightness > 0 and fmnist.contrast > 0
    for name in ("cifar10", "cifar100", "stl10", "imagenet"):
        cfg = default_config(name, 32)
        assert len(cfg.mean) == 3 and cfg.blur_p == 0.5 and cfg.grayscale_p == 0.2 and cfg.hue == 0.1
    with pytest.raises(ValueError, match="unknown data set"):
        default_config("mnist", 28)


@pytest.mark.parametrize("changes,message", [
    (dict(flip_p=1.5), "flip_p"),
    (dict(jitter_p=-0.1), "jitter_p"),
    (dict(crop_scale=(0.0, 1.0)), "crop_scale"),
    (dict(crop_scale=(0.8, 0.5)), "crop_scale"),
    (dict(crop_scale=(0.5, 1.2)), "crop_scale"),
    (dict(crop_ratio=(2.0, 1.0)), "crop_ratio"),
    (dict(blur_sigma=(0.0, 1.0)), "blur_sigma"),
    (dict(hue=0.7), "hue"),
    (dict(brightness=-1.0), "brightness"),
    (dict(mean=(0.5, 0.5), std=(0.5,)), "mean and std"),
    (dict(std=(0.0,)), "std"),
    (dict(size=0), "size"),
])
def test_bad_config_raises(changes, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**{"size": 28, **changes})


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="channels"):
        TwoViews(AugmentConfig(size=28), 2)
    with pytest.raises(ValueError, match="mean/std"):
        TwoViews(default_config("cifar10", 28), 1)
    with pytest.raises(ValueError, match="uint8"):
        TwoViews(AugmentConfig(size=28), 1)(images(2, 1).float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_gives_same_views_on_cuda():
    augment = TwoViews(default_config("cifar10", 28), 3)
    x = images(8, 3)
    cpu = augment(x, gen(12))
    cuda = augment(x.cuda(), gen(12))
    for a, b in zip(cpu, cuda):
        assert b.is_cuda and torch.allclose(a, b.cpu(), atol=1e-4)
