"""Vision training augmentations: shapes, ranges, and that each operation does what it says."""

from __future__ import annotations

import dataclasses

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


def test_the_random_flip_is_a_left_right_mirror():
    """flip_prob=1 mirrors the view left to right (the horizontal flip of SimCLR and GMML), so it is
    exactly the unflipped view from the same generator, flipped on its last axis (an upside-down
    view would differ)."""
    image = torch.rand(3, 20, 24)
    still = AugmentConfig(jitter_prob=0.0, blur_prob=0.0)
    flipped = augment(image, 16, dataclasses.replace(still, flip_prob=1.0), np.random.default_rng(5))
    assert torch.equal(flipped, augment(image, 16, dataclasses.replace(still, flip_prob=0.0),
                                        np.random.default_rng(5)).flip(-1))


def test_blur_is_the_same_along_rows_and_columns():
    """The Gaussian blur is separable and isotropic: blurring a transposed image is the transposed
    blur (to 1e-6), so a bright row spreads up and down as a bright column spreads sideways (a
    blur along rows only would leave the transposed image sharp)."""
    image = torch.rand(3, 12, 12)
    assert torch.allclose(gaussian_blur(image.transpose(-1, -2), 1.0), gaussian_blur(image, 1.0).transpose(-1, -2),
                          atol=1e-6)


def test_contrast_keeps_the_mean_luma():
    """Contrast pulls pixels towards the image's mean grey (luma-weighted, as torchvision), so the
    luma mean is unchanged (to 1e-5) for a coloured image; pulling towards the plain channel mean
    (0.267 here against luma 0.278) moves it by up to 0.006 at contrast 0.5."""
    image = torch.tensor([0.5, 0.2, 0.1])[:, None, None].expand(3, 8, 8) + 0.05 * torch.rand(3, 8, 8)
    config = AugmentConfig(brightness=0, contrast=0.5, saturation=0, hue=0)
    for seed in range(5):
        jittered = color_jitter(image, config, np.random.default_rng(seed))
        assert not torch.allclose(jittered, image, atol=1e-3)
        assert float(grayscale(jittered).mean()) == pytest.approx(float(grayscale(image).mean()), abs=1e-5)


def test_crop_boxes_have_the_drawn_aspect_ratio():
    """A crop of aspect range (2, 2) is twice as wide as tall (cols / rows within 1% of 2), and of
    (1/2, 1/2) twice as tall: aspect jitter, not square crops of the drawn area."""
    rng = np.random.default_rng(0)
    _, _, rows, cols = crop_box(1000, 1000, (0.25, 0.25), (2.0, 2.0), rng)
    assert cols / rows == pytest.approx(2.0, rel=0.01) and rows * cols == pytest.approx(250_000, rel=0.01)
    _, _, rows, cols = crop_box(1000, 1000, (0.25, 0.25), (0.5, 0.5), rng)
    assert rows / cols == pytest.approx(2.0, rel=0.01)
