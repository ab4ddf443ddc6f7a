"""Two-view augmentation, batched on the data's device with per-sample random parameters.

The MoCo v2 "aug+" recipe (RandomResizedCrop, ColorJitter p=0.8, RandomGrayscale p=0.2,
Gaussian blur p=0.5, horizontal flip) is applied to a whole uint8 batch (B, C, H, W) at once:
every random parameter of every sample is drawn in one ``torch.rand`` call
(:func:`sample_params`) and each operation is a batched tensor operation taking per-sample
parameters, so there is no per-sample Python loop. Crop and flip are one affine
``grid_sample``; colour operations follow ``torchvision.transforms.v2.functional``
semantics on float images in [0, 1] (each clamps its result to [0, 1]); the blur is a
separable depthwise convolution with one kernel per sample.

Grayscale batches (C=1) get crop, flip, brightness and contrast (and blur when
``blur_p > 0``); saturation, hue and random grayscale are meaningless there and skipped.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)

# Column layout of the single uniform draw in sample_params.
_CROP_TRIALS = 10  # torchvision RandomResizedCrop tries 10 boxes before a central fallback
_AREA = slice(0, _CROP_TRIALS)
_RATIO = slice(_CROP_TRIALS, 2 * _CROP_TRIALS)
(_TOP, _LEFT, _FLIP, _JITTER, _BRIGHTNESS, _CONTRAST, _SATURATION, _HUE,
 _GRAY, _BLUR, _SIGMA) = range(2 * _CROP_TRIALS, 2 * _CROP_TRIALS + 11)
_N_UNIFORMS = _SIGMA + 1


def _check_range(name: str, pair: tuple, upper: float) -> None:
    """Raise ValueError unless ``pair`` is (low, high) with 0 < low <= high <= upper."""
    if len(pair) != 2 or not 0 < pair[0] <= pair[1] <= upper:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= {upper}, got {pair!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the augmentation recipe (defaults: MoCo v2 aug+).

    ``saturation``, ``hue`` and ``grayscale_p`` act on RGB batches only. ``mean``/``std``
    hold one value per channel, or a single value broadcast to all channels.
    """

    size: int
    crop_scale: tuple = (0.2, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple = (0.1, 2.0)
    mean: tuple = (0.5,)
    std: tuple = (0.5,)

    def __post_init__(self):
        """Validate every field; raise ValueError naming the offending one."""
        if not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        _check_range("crop_scale", self.crop_scale, 1.0)
        _check_range("crop_ratio", self.crop_ratio, math.inf)
        _check_range("blur_sigma", self.blur_sigma, math.inf)
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)!r}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        if len(self.mean) == 0 or len(self.mean) != len(self.std):
            raise ValueError(f"mean and std must be non-empty and of equal length, "
                             f"got mean={self.mean!r}, std={self.std!r}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")


def _uniform(u: Tensor, bounds: tuple) -> Tensor:
    """Map uniforms in [0, 1) to [bounds[0], bounds[1])."""
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _fallback_box(height: int, width: int, ratio: tuple) -> tuple:
    """torchvision's central (height, width) fallback when no random box fits."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return round(width / min(ratio)), width
    if in_ratio > max(ratio):
        return height, round(height * max(ratio))
    return height, width


def _sample_boxes(u: Tensor, height: int, width: int, cfg: AugmentConfig) -> Tensor:
    """RandomResizedCrop boxes (B, 4) = (top, left, height, width) in whole pixels.

    Vectorised torchvision ``RandomResizedCrop.get_params``: each sample tries
    ``_CROP_TRIALS`` (area, log-ratio) draws and keeps the first box that fits; samples
    with none get the central fallback box.
    """
    area = height * width * _uniform(u[:, _AREA], cfg.crop_scale)
    aspect = torch.exp(_uniform(u[:, _RATIO], (math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting trial
    found = fits.any(dim=1)
    fallback_h, fallback_w = _fallback_box(height, width, cfg.crop_ratio)
    h = torch.where(found, h.gather(1, first).squeeze(1), float(fallback_h))
    w = torch.where(found, w.gather(1, first).squeeze(1), float(fallback_w))
    top = torch.where(found, torch.minimum(torch.floor(u[:, _TOP] * (height - h + 1)), height - h),
                      torch.floor((height - h) / 2))
    left = torch.where(found, torch.minimum(torch.floor(u[:, _LEFT] * (width - w + 1)), width - w),
                       torch.floor((width - w) / 2))
    return torch.stack([top, left, h, w], dim=1)


def sample_params(batch_size: int, cfg: AugmentConfig, channels: int,
                  generator: torch.Generator | None, device: torch.device | str,
                  image_size: tuple) -> dict[str, Tensor]:
    """Draw every per-sample random parameter of one view in a single ``torch.rand`` call.

    The uniforms are drawn on ``generator``'s device (on ``device`` when ``generator`` is
    None) and then moved to ``device``, so a seeded CPU generator gives the same
    parameters for CPU and CUDA batches. ``image_size`` is the input (H, W).

    Returns (all of length ``batch_size``, on ``device``):
    ``boxes`` (B, 4) crop boxes (top, left, height, width) in pixels; ``flip`` bool;
    ``brightness``, ``contrast``, ``saturation`` multiplicative factors and ``hue`` shift
    (identity 1, 1, 1, 0 where jitter is not applied); ``grayscale`` bool; ``sigma`` blur
    sigma (0 = no blur). For ``channels == 1`` the RGB-only parameters are identities.
    """
    draw_device = generator.device if generator is not None else device
    u = torch.rand(batch_size, _N_UNIFORMS, generator=generator, device=draw_device).to(device)
    jitter = u[:, _JITTER] < cfg.jitter_p
    rgb = channels == 3

    def jitter_factor(col: int, strength: float) -> Tensor:
        """ColorJitter factor U[max(0, 1 - s), 1 + s], 1 where jitter is off."""
        return torch.where(jitter, _uniform(u[:, col], (max(0.0, 1 - strength), 1 + strength)), 1.0)

    return {
        "boxes": _sample_boxes(u, image_size[0], image_size[1], cfg),
        "flip": u[:, _FLIP] < cfg.flip_p,
        "brightness": jitter_factor(_BRIGHTNESS, cfg.brightness),
        "contrast": jitter_factor(_CONTRAST, cfg.contrast),
        "saturation": jitter_factor(_SATURATION, cfg.saturation if rgb else 0.0),
        "hue": torch.where(jitter & rgb, _uniform(u[:, _HUE], (-cfg.hue, cfg.hue)), 0.0),
        "grayscale": (u[:, _GRAY] < cfg.grayscale_p) & rgb,
        "sigma": torch.where(u[:, _BLUR] < cfg.blur_p, _uniform(u[:, _SIGMA], cfg.blur_sigma), 0.0),
    }


def crop_theta(boxes: Tensor, flip: Tensor, height: int, width: int) -> Tensor:
    """Affine matrices (B, 2, 3) mapping output coordinates onto each box of an H x W image.

    Normalised coordinates with ``align_corners=False``: the box's pixel edges
    [left, left + w] map to [-1, 1]; a flip is a negative x scale about the box centre.
    """
    top, left, h, w = boxes.unbind(dim=1)
    zero = torch.zeros_like(top)
    sx = torch.where(flip, -w, w) / width
    tx = (2 * left + w) / width - 1
    sy = h / height
    ty = (2 * top + h) / height - 1
    return torch.stack([sx, zero, tx, zero, sy, ty], dim=1).view(-1, 2, 3)


def random_resized_crop(x: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Crop each sample's box (top, left, height, width) and resize it to (size, size).

    One batched ``affine_grid`` + bilinear ``grid_sample`` (``align_corners=False``,
    border padding); equals torchvision's crop-then-resize (bilinear, antialias off)
    except at box edges when upsampling, where neighbouring image pixels are used instead
    of repeating the box's edge pixels. ``flip`` (B,) bool mirrors samples horizontally.
    """
    if flip is None:
        flip = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    theta = crop_theta(boxes.to(x.dtype), flip, x.shape[-2], x.shape[-1])
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _per_sample(values: Tensor) -> Tensor:
    """View a (B,) tensor as (B, 1, 1, 1) to broadcast over images."""
    return values.view(-1, 1, 1, 1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``factor * x + (1 - factor) * other`` per sample, clamped to [0, 1]."""
    f = _per_sample(factor)
    return (f * x + (1 - f) * other).clamp_(0.0, 1.0)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of an RGB batch (B, 3, H, W), torchvision weights."""
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Multiply each image by its factor (B,), clamped to [0, 1]."""
    return (x * _per_sample(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with the mean of its grayscale version by its factor (B,)."""
    means = x.mean(dim=(2, 3))
    if x.shape[1] == 3:  # the luma of the channel means is the mean of the luma
        gray_mean = means @ torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
    else:
        gray_mean = means[:, 0]
    return _blend(x, _per_sample(gray_mean), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each RGB image with its grayscale version by its factor (B,)."""
    return _blend(x, rgb_to_grayscale(x), factor)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """HSV (B, 3, H, W), all channels in [0, 1], of an RGB batch in [0, 1]."""
    r, g, b = x.unbind(dim=1)
    minc, maxc = torch.aminmax(x, dim=1)
    chroma = maxc - minc
    gray = chroma == 0
    saturation = chroma / torch.where(gray, 1.0, maxc)
    c = torch.where(gray, 1.0, chroma)
    hue = torch.where(maxc == r, (g - b) / c,
                      torch.where(maxc == g, (b - r) / c + 2.0, (r - g) / c + 4.0))
    return torch.stack([torch.remainder(hue / 6.0, 1.0), saturation, maxc], dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """RGB (B, 3, H, W) of an HSV batch: channel n is v - v s clamp(min(k, 4 - k), 0, 1),
    k = (n + 6 h) mod 6 with n = 5, 3, 1 for R, G, B."""
    h, s, v = x.split(1, dim=1)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h, 6.0)
    return v - v * s * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate each RGB image's hue by its shift (B,) in [-0.5, 0.5] (fraction of a turn)."""
    hsv = rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, :1] + _per_sample(shift), 1.0)
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))


def random_grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """Replace the RGB images selected by ``mask`` (B,) bool with their 3-channel luma."""
    return torch.where(_per_sample(mask), rgb_to_grayscale(x).expand_as(x), x)


def blur_kernel_size(side: int) -> int:
    """Odd Gaussian kernel size of about 10% of the image side (SimCLR/MoCo), at least 3."""
    return max(3, int(0.1 * side)) | 1


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """Normalised 1-D Gaussian kernels (B, kernel_size) for sigmas (B,); sigma 0 gives the identity."""
    offsets = torch.arange(kernel_size, dtype=sigma.dtype, device=sigma.device) - kernel_size // 2
    weights = torch.exp(-0.5 * (offsets / sigma.clamp_min(1e-6).unsqueeze(1)) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int | None = None) -> Tensor:
    """Blur each image with its own sigma (B,) (0 = unchanged), reflect padding as torchvision.

    Separable depthwise convolution: the batch is folded into channels (groups = B * C)
    so that each image is convolved with its own kernel. ``kernel_size`` defaults to
    :func:`blur_kernel_size` of the image height.
    """
    batch, channels, height, width = x.shape
    size = blur_kernel_size(height) if kernel_size is None else kernel_size
    kernels = gaussian_kernels(sigma.to(x.dtype), size).repeat_interleave(channels, dim=0)
    half = size // 2
    padded = F.pad(x, (half, half, half, half), mode="reflect")
    padded = padded.reshape(1, batch * channels, height + 2 * half,
                                                                       width + 2 * half)
    rows = F.conv2d(padded, kernels.view(-1, 1, 1, size), groups=batch * channels)
    out = F.conv2d(rows, kernels.view(-1, 1, size, 1), groups=batch * channels)
    return out.view(batch, channels, height, width)


def normalize(x: Tensor, mean: tuple, std: tuple) -> Tensor:
    """``(x - mean) / std`` with per-channel (or single broadcast) mean and std."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def to_float(x: Tensor, cfg: AugmentConfig) -> Tensor:
    """Evaluation transform: uint8 (B, C, H, W) to normalised float32 (B, C, size, size).

    Resizes (bilinear, antialias off, as the training crop) only when H or W differ
    from ``cfg.size``.
    """
    out = x.float() / 255.0
    if out.shape[-2:] != (cfg.size, cfg.size):
        out = F.interpolate(out, size=(cfg.size, cfg.size), mode="bilinear", align_corners=False,
                            antialias=False)
    return normalize(out, cfg.mean, cfg.std)


def apply_params(x: Tensor, params: dict[str, Tensor], cfg: AugmentConfig) -> Tensor:
    """Augment a uint8 batch with given parameters (see :func:`sample_params`).

    Order: crop + flip, brightness, contrast, saturation, hue, grayscale, blur, normalise.
    Unlike torchvision's ColorJitter, which permutes the four jitter operations at random
    per call, they are applied in this fixed order. Operations whose strength in ``cfg``
    is zero, and RGB-only operations on grayscale batches, are skipped.
    """
    out = random_resized_crop(x.float() / 255.0, params["boxes"], cfg.size, params["flip"])
    if cfg.jitter_p > 0 and cfg.brightness > 0:
        out = adjust_brightness(out, params["brightness"])
    if cfg.jitter_p > 0 and cfg.contrast > 0:
        out = adjust_contrast(out, params["contrast"])
    if out.shape[1] == 3:
        if cfg.jitter_p > 0 and cfg.saturation > 0:
            out = adjust_saturation(out, params["saturation"])
        if cfg.jitter_p > 0 and cfg.hue > 0:
            out = adjust_hue(out, params["hue"])
        if cfg.grayscale_p > 0:
            out = random_grayscale(out, params["grayscale"])
    if cfg.blur_p > 0:  # a convex combination, but rounding can leave [0, 1] by an ulp
        out = gaussian_blur(out, params["sigma"]).clamp_(0.0, 1.0)
    return normalize(out, cfg.mean, cfg.std)


class TwoViews:
    """Callable producing two independently augmented views of a uint8 batch."""

    def __init__(self, cfg: AugmentConfig, channels: int):
        """Check that ``channels`` (1 or 3) is compatible with ``cfg.mean``/``cfg.std``."""
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if len(cfg.mean) not in (1, channels):
            raise ValueError(f"mean/std have {len(cfg.mean)} values, expected 1 or {channels}")
        self.cfg = cfg
        self.channels = channels

    def view(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One augmented view (B, C, size, size) float32 of a uint8 batch (B, C, H, W)."""
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected a uint8 batch (B, {self.channels}, H, W), "
                             f"got {x.dtype} {tuple(x.shape)}")
        params = sample_params(x.shape[0], self.cfg, self.channels, generator, x.device, x.shape[-2:])
        return apply_params(x, params, self.cfg)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Two views with independent parameters, computed as one batch of 2B images."""
        first, second = self.view(torch.cat([x, x]), generator).chunk(2)
        return first, second


# Per-channel statistics of the training sets in [0, 1].
_STATS = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def default_config(name: str, size: int, images: torch.Tensor | None = None) -> AugmentConfig:
    """Recipe for a data set: MoCo v2 aug+ for RGB sets, crop/flip/brightness/contrast
    (no saturation, hue, grayscale or blur) for grayscale Fashion-MNIST. An image folder
    (``imagefolder:PATH``) is normalised with the statistics of its training ``images``
    (uint8, (N, C, H, W)), computed here."""
    if name.startswith("imagefolder:"):
        if images is None:
            raise ValueError(f"{name}: pass its training images to compute the normalisation")
        mean, std = channel_statistics(images)
    elif name in _STATS:
        mean, std = _STATS[name]
    else:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(_STATS)} and imagefolder:PATH")
    if name == "fashion_mnist" or len(mean) == 1:
        return AugmentConfig(size=size, saturation=0.0, hue=0.0, grayscale_p=0.0, blur_p=0.0,
                             mean=mean, std=std)
    return AugmentConfig(size=size, mean=mean, std=std)


def channel_statistics(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and std of uint8 images (N, C, H, W) as floats in [0, 1], in chunks of images."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].to("cpu", torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += x.pow(2).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (squares / n - mean ** 2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
