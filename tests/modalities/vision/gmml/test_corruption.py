"""GMML's corruption: how much, where, with what, and the loss it feeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalities.vision.gmml.corruption import corrupt, corrupt_batch, parse_drop_types, random_blocks
from modalities.vision.gmml.pretrain import reconstruction_loss
from zoo.errors import ConfigError


def test_blocks_cover_the_drawn_share_and_ignore_the_patch_grid():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        fraction = rng.uniform(0.5, 0.75)
        mask, blocks = random_blocks(32, 32, fraction, rng)
        covered = mask.mean()
        largest = max(rows * cols for _, _, rows, cols in blocks) / 32 / 32
        assert fraction <= covered < fraction + largest  # stops at the first rectangle past the share
        assert all(rows <= 9 and cols <= 9 for _, _, rows, cols in blocks)  # sides up to 0.3 of the image
        starts.update((top % 4, left % 4) for top, left, _, _ in blocks)
    assert len(starts) == 16  # free rectangles: every offset from a 4-pixel patch grid occurs


def test_aligned_blocks_follow_the_grid():
    mask, blocks = random_blocks(32, 32, 0.6, np.random.default_rng(1), align=4)
    assert all(value % 4 == 0 for block in blocks for value in block)


def test_noise_fills_only_the_mask_and_each_crop_gets_50_to_84_percent():
    clean = torch.full((3, 32, 32), 7.0)
    for seed in range(20):
        corrupted, mask = corrupt(clean, np.random.default_rng(seed))
        assert 0.5 <= mask.float().mean() <= 0.75 + 0.09
        assert torch.equal(corrupted[:, ~mask], clean[:, ~mask])
        noise = corrupted[:, mask]
        assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1) < 0.1
    zeros, mask = corrupt(clean, np.random.default_rng(0), drop_type="zeros")
    assert bool((zeros[:, mask] == 0).all())


def test_half_the_crops_get_blocks_pasted_from_another_crop():
    batch = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 16, 16).clone()
    pasted = 0
    for seed in range(10):
        corrupted, mask = corrupt_batch(batch, np.random.default_rng(seed))
        for index in range(8):
            inside = corrupted[index][:, mask[index, 0]]
            if bool((inside.round() == inside).all()):  # pasted crop: integer values of another crop
                pasted += 1
                assert float(index) not in inside.unique().tolist()  # never from itself
                assert torch.equal(corrupted[index][:, ~mask[index, 0]], batch[index][:, ~mask[index, 0]])
                assert 0.3 <= mask[index].float().mean() <= 0.3 + 0.1
    assert 25 <= pasted <= 55  # 1 / (1 fill + 1) of 80 crops


def test_loss_counts_corrupted_pixels_only():
    clean = torch.zeros(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :2] = True
    reconstruction = clean.clone()
    reconstruction[:, :, 2:] = 100.0  # errors outside the mask do not count
    reconstruction[:, :, :2] = 0.5
    assert float(reconstruction_loss(reconstruction, clean, mask)) == pytest.approx(0.5)
    assert float(reconstruction_loss(reconstruction, clean, mask, corrupted_only=False)) == pytest.approx(50.25)


def test_drop_types_are_checked():
    assert parse_drop_types("noise-zeros") == ("noise", "zeros")
    with pytest.raises(ConfigError, match="'blur'"):
        parse_drop_types("noise-blur")


def test_replaced_blocks_are_copied_from_other_rows_and_columns():
    """A "replace" block is copied from a random place of the crop, both its rows and its columns
    drawn: on a 32 x 32 crop whose pixels hold their row index, the copies change pixels (a source
    at the block's own rows would copy the same values and corrupt nothing), as on one holding
    column indices. Over 5 seeds; the chance a source keeps its rows is about 1/22 a block."""
    rows = torch.arange(32.0)[:, None].expand(3, 32, 32)
    for image in (rows, rows.transpose(-1, -2)):
        changed = [not torch.equal(corrupt(image, np.random.default_rng(seed), drop_type="replace")[0], image)
                   for seed in range(5)]
        assert all(changed)
