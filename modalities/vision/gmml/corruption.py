"""GMML's corruption (Sara-Ahmed/GMML `GMML_drop_rand_patches`, `GMML_replace_list`), as pure
functions of a numpy generator so that a batch depends only on its seed.

Convention: `mask` is (H, W) or (B, 1, H, W) bool, True where a pixel was corrupted; the
loss is taken there only (upstream's `drop_only=1`). Images are normalised (3, H, W), so
"noise" is N(0, 1) in the normalised space, as upstream draws it after `Normalize`.

1. Every crop loses a fraction f ~ U(min(0.5, drop_perc), drop_perc) of its pixels to random
   rectangles (sides 1 .. 0.3 H / 0.3 W, positions and sides on multiples of `align`; upstream's
   default align is 1, so they ignore the patch grid). Rectangles are added until at least
   f H W pixels are covered, so the last one may overshoot by up to one rectangle. Each crop
   draws one fill from `drop_types`: "noise", "zeros" or "replace" (a block copied from
   elsewhere in the same crop).
2. `paste_from_batch` then redoes each crop from its clean version with probability
   1 / (len(drop_types) + 1) (1/2 by default), pasting rectangles covering about
   `replace_perc` (0.3) of it from another crop of the batch. Upstream draws the donor among
   all crops, itself included (a no-op corruption the loss still counts); here the donor is
   always another crop, and a batch of one keeps its first corruption.

Shapes: B crops, H x W pixels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

#: corruption fills of step 1
DROP_TYPES = ("noise", "zeros", "replace")
#: largest rectangle side as a fraction of the image side (upstream's `max_block_sz`)
MAX_BLOCK = 0.3
#: upstream's lower end of the corrupted fraction
MIN_FRACTION = 0.5

Block = tuple[int, int, int, int]


def random_blocks(height: int, width: int, fraction: float, rng: np.random.Generator, align: int = 1,
                  max_block: float = MAX_BLOCK) -> tuple[np.ndarray, list[Block]]:
    """Rectangles (top, left, height, width) added until they cover at least `fraction` of
    the pixels; returns their union as an (H, W) bool mask and the rectangles in order."""
    align = max(1, align)
    tallest, widest = max(align + 1, int(height * max_block)), max(align + 1, int(width * max_block))
    mask = np.zeros((height, width), dtype=bool)
    blocks: list[Block] = []
    target = fraction * height * width
    while mask.sum() < target:
        top = (rng.integers(0, max(1, height - align)) // align) * align
        left = (rng.integers(0, max(1, width - align)) // align) * align
        rows = round(min(int(rng.integers(align, tallest)), height - top) / align) * align
        cols = round(min(int(rng.integers(align, widest)), width - left) / align) * align
        if rows == 0 or cols == 0:
            continue
        mask[top : top + rows, left : left + cols] = True
        blocks.append((int(top), int(left), int(rows), int(cols)))
    return mask, blocks


def corrupt(image: torch.Tensor, rng: np.random.Generator, drop_perc: float = 0.75, drop_type: str = "noise",
            align: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 on one normalised (3, H, W) crop -> (corrupted crop, (H, W) mask)."""
    height, width = image.shape[-2:]
    fraction = rng.uniform(min(MIN_FRACTION, drop_perc), drop_perc)
    mask, blocks = random_blocks(height, width, fraction, rng, align)
    mask_t = torch.from_numpy(mask)
    if drop_type == "noise":
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
        return torch.where(mask_t, noise, image), mask_t
    if drop_type == "zeros":
        return image.masked_fill(mask_t, 0.0), mask_t
    corrupted = image.clone()
    for top, left, rows, cols in blocks:  # in order: later copies may read earlier ones, as upstream
        source_top = (int(rng.integers(0, max(1, height - rows))) // align) * align
        source_left = (int(rng.integers(0, max(1, width - cols))) // align) * align
        corrupted[:, top : top + rows, left : left + cols] = \
            corrupted[:, source_top : source_top + rows, source_left : source_left + cols].clone()
    return corrupted, mask_t


def parse_drop_types(text: str) -> tuple[str, ...]:
    """Upstream's `--drop_type` ("noise", "noise-zeros", ...) as a tuple of fills."""
    from zoo.errors import ConfigError

    types = tuple(text.split("-"))
    bad = [name for name in types if name not in DROP_TYPES]
    if bad or not types:
        raise ConfigError(f"drop type {text!r} has unknown fills {bad}; join fills of {DROP_TYPES} with '-'")
    return types


def corrupt_batch(clean: torch.Tensor, rng: np.random.Generator, drop_perc: float = 0.75,
                  drop_types: Sequence[str] = ("noise",), replace_perc: float = 0.3,
                  align: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1 and 2 on (B, 3, H, W) clean normalised crops -> (corrupted, (B, 1, H, W) mask)."""
    corrupted, masks = [], []
    for image in clean:
        fill = drop_types[int(rng.integers(len(drop_types)))]
        image, mask = corrupt(image, rng, drop_perc, fill, align)
        corrupted.append(image)
        masks.append(mask)
    corrupted_t, mask_t = torch.stack(corrupted), torch.stack(masks)[:, None]
    if replace_perc > 0:
        paste_from_batch(clean, corrupted_t, mask_t, rng, replace_perc, 1 / (len(drop_types) + 1), align)
    return corrupted_t, mask_t


def paste_from_batch(clean: torch.Tensor, corrupted: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator,
                     replace_perc: float, probability: float, align: int = 1) -> None:
    """Step 2, in place: with `probability`, crop i becomes its clean self with rectangles
    covering about `replace_perc` of it pasted from crop j != i (same places in both)."""
    count, height, width = clean.shape[0], clean.shape[-2], clean.shape[-1]
    for index in range(count):
        if count < 2 or rng.random() >= probability:
            continue
        donor = (index + 1 + int(rng.integers(count - 1))) % count
        fraction = rng.uniform(min(MIN_FRACTION, replace_perc), replace_perc)
        pasted = torch.from_numpy(random_blocks(height, width, fraction, rng, align)[0])
        corrupted[index] = torch.where(pasted, clean[donor], clean[index])
        mask[index, 0] = pasted
