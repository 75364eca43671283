"""Training augmentations for vision pretraining, in torch (the zoo does not depend on torchvision).

Each function takes a (3, H, W) float image in [0, 1] and draws its randomness from a numpy
`Generator`, so that a batch is a pure function of its seed (exact resumes, reproducible
runs). The defaults of `AugmentConfig` are what GMML's training actually applies to both its
input and its target (`DataAugmentationSiT`: `rand_resize_flip`, then `clean_transfo`);
upstream also defines a harsher transform (jitter 0.4, grayscale, solarize) that its loop
never uses. The fields let recipes switch those on.

Shapes: H x W pixels, S output side.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from modalities.vision.processing import LUMA
from zoo.errors import ConfigError

#: RGB -> YIQ; hue is turned by rotating the I/Q chroma plane
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@dataclasses.dataclass
class AugmentConfig:
    """Random resized crop and flip, then colour jitter, grayscale, blur and solarisation.

    Defaults are GMML's (crop scale (0.05, 1) as it uses without local crops; jitter 0.1 /
    0.1 / 0.1 / 0.01 with probability 0.3; blur with radius U(0.1, 2) with probability 0.1).
    """

    crop_scale: tuple[float, float] = (0.05, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    jitter_prob: float = 0.3
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.01
    grayscale_prob: float = 0.0
    blur_prob: float = 0.1
    blur_radius: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ConfigError(f"crop_scale={self.crop_scale}; use 0 < low <= high <= 1, e.g. (0.05, 1.0)")
        if not 0 <= self.hue <= 0.5:
            raise ConfigError(f"hue={self.hue}; a hue jitter lies in [0, 0.5]")


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, rows, cols) of a random crop of area share U(scale) and log-uniform aspect
    `ratio`, tried 10 times as torchvision's RandomResizedCrop; else a central crop."""
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_low, log_high))
        cols, rows = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cols <= width and 0 < rows <= height:
            return int(rng.integers(0, height - rows + 1)), int(rng.integers(0, width - cols + 1)), rows, cols
    aspect = width / height
    if aspect < ratio[0]:
        cols, rows = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        rows, cols = height, round(height * ratio[1])
    else:
        rows, cols = height, width
    return (height - rows) // 2, (width - cols) // 2, rows, cols


def resized_crop(image: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """The box resized to size x size (bicubic, antialiased, clamped to [0, 1])."""
    top, left, rows, cols = box
    patch = image[None, :, top : top + rows, left : left + cols]
    return F.interpolate(patch, size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> its luma repeated on three channels."""
    luma = torch.tensordot(torch.tensor(LUMA, dtype=image.dtype), image, dims=1)
    return luma.expand(3, -1, -1)


def rotate_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Turn the hue by `shift` of a full turn (a rotation of YIQ's chroma plane: close to the
    HSV shift torchvision applies, and smooth)."""
    angle = 2 * math.pi * shift
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    matrix = torch.linalg.inv(RGB_TO_YIQ) @ rotation @ RGB_TO_YIQ
    return torch.tensordot(matrix.to(image.dtype), image, dims=1).clamp(0, 1)


def color_jitter(image: torch.Tensor, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue, each by a random factor, in random order."""
    for operation in rng.permutation(4):
        if operation == 0 and config.brightness > 0:
            image = (image * rng.uniform(1 - config.brightness, 1 + config.brightness)).clamp(0, 1)
        elif operation == 1 and config.contrast > 0:
            factor = rng.uniform(1 - config.contrast, 1 + config.contrast)
            image = (factor * image + (1 - factor) * grayscale(image).mean()).clamp(0, 1)
        elif operation == 2 and config.saturation > 0:
            factor = rng.uniform(1 - config.saturation, 1 + config.saturation)
            image = (factor * image + (1 - factor) * grayscale(image)).clamp(0, 1)
        elif operation == 3 and config.hue > 0:
            image = rotate_hue(image, rng.uniform(-config.hue, config.hue))
    return image


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation `sigma` pixels (PIL's radius), reflected edges."""
    radius = min(max(1, math.ceil(3 * sigma)), min(image.shape[-2:]) - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image[:, None], (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))[:, 0]


def solarize(image: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert the pixels at or above `threshold` (PIL's solarize at 128)."""
    return torch.where(image >= threshold, 1.0 - image, image)


def augment(image: torch.Tensor, size: int, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> a random (3, S, S) view in [0, 1]."""
    view = resized_crop(image, crop_box(*image.shape[-2:], config.crop_scale, config.crop_ratio, rng), size)
    if rng.random() < config.flip_prob:
        view = view.flip(-1)
    if rng.random() < config.jitter_prob:
        view = color_jitter(view, config, rng)
    if rng.random() < config.grayscale_prob:
        view = grayscale(view)
    if rng.random() < config.blur_prob:
        view = gaussian_blur(view, rng.uniform(*config.blur_radius))
    if rng.random() < config.solarize_prob:
        view = solarize(view)
    return view.contiguous()
