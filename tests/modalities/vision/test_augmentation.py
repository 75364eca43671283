"""Vision training augmentations: shapes, ranges, and that each operation does what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalities.vision.augmentation import (AugmentConfig, augment, color_jitter, crop_box, gaussian_blur,
                                            grayscale, rotate_hue, solarize)
from zoo.errors import ConfigError


def test_crop_boxes_lie_inside_with_the_drawn_area():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, rows, cols = crop_box(30, 40, (0.05, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + rows <= 30 and 0 <= left and left + cols <= 40
        assert 0.04 <= rows * cols / 1200 <= 1.0


def test_augment_is_a_function_of_the_generator():
    image = torch.rand(3, 28, 36)
    config = AugmentConfig(jitter_prob=1.0, grayscale_prob=0.5, blur_prob=0.5, solarize_prob=0.5)
    first = augment(image, 32, config, np.random.default_rng(3))
    assert first.shape == (3, 32, 32) and 0 <= float(first.min()) and float(first.max()) <= 1
    assert torch.equal(first, augment(image, 32, config, np.random.default_rng(3)))
    assert not torch.equal(first, augment(image, 32, config, np.random.default_rng(4)))


def test_operations():
    image = torch.rand(3, 16, 16)
    grey = grayscale(image)
    assert torch.equal(grey[0], grey[2]) and torch.allclose(grey[0], 0.299 * image[0] + 0.587 * image[1]
                                                            + 0.114 * image[2])
    assert torch.allclose(rotate_hue(grey, 0.2), grey, atol=1e-5)  # grey has no hue to turn
    assert torch.allclose(rotate_hue(image, 0.0), image, atol=1e-5)
    flat = torch.full((3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat) and gaussian_blur(image, 1.0).std() < image.std()
    assert torch.allclose(solarize(torch.tensor([0.2, 0.6, 0.9])), torch.tensor([0.2, 0.4, 0.1]))
    unchanged = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0)
    assert torch.equal(color_jitter(image, unchanged, np.random.default_rng(0)), image)


def test_bad_settings():
    with pytest.raises(ConfigError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.0, 1.0))
