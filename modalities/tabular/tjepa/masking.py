"""T-JEPA's feature masks: predict one subset of a row's features from another.

As the official `MaskCollator` (after I-JEPA's multiblock collator): for each batch, a
context size is drawn uniformly in [min, max] of the context share and a target size in
[min, max] of the target share (redrawn until both fit in the row); each row then gets
its own random context subset and `num_preds` target subsets drawn from the features
outside its context (targets may overlap one another, never the context).

Indices are feature indices 0..F-1. With the recipe's `mask_scope: "features"` the
objective shifts them past the regularization tokens, which every context keeps. The
official code indexes the token sequence with the feature indices, so there the first
regularization token can be context or target and the last feature is never masked;
`mask_scope: "official"` does the same.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from zoo.errors import ConfigError


@dataclasses.dataclass
class FeatureMasks:
    """context: (B, n_context) feature indices; targets: (num_preds, B, n_target)."""

    context: torch.Tensor
    targets: torch.Tensor


@dataclasses.dataclass
class MaskSampler:
    """Draws T-JEPA's context and target feature subsets for a batch of rows."""

    num_features: int
    min_context_share: float
    max_context_share: float
    min_target_share: float
    max_target_share: float
    num_preds: int = 4

    def __post_init__(self) -> None:
        self.min_context = round(self.num_features * self.min_context_share)
        self.max_context = round(self.num_features * self.max_context_share)
        self.min_target = round(self.num_features * self.min_target_share)
        self.max_target = round(self.num_features * self.max_target_share)
        check_mask_sizes(self.num_features, self.min_context, self.max_context, self.min_target, self.max_target)
        if self.num_preds < 1:
            raise ConfigError(f"num_preds={self.num_preds}; predict at least one target subset")

    def sizes(self, generator: Optional[torch.Generator] = None) -> tuple[int, int]:
        """The batch's context and target sizes, redrawn until they fit in a row."""
        while True:
            context = draw_between(self.min_context, self.max_context, generator)
            target = draw_between(self.min_target, self.max_target, generator)
            if context + target <= self.num_features:
                return context, target

    def __call__(self, batch_size: int, generator: Optional[torch.Generator] = None) -> FeatureMasks:
        """Masks for `batch_size` rows; without a generator they come from torch's global RNG,
        which a pretraining checkpoint saves, so a resumed run draws the same masks."""
        n_context, n_target = self.sizes(generator)
        order = torch.rand(batch_size, self.num_features, generator=generator).argsort(dim=1)
        context, rest = order[:, :n_context], order[:, n_context:]
        picks = torch.rand(self.num_preds, batch_size, rest.shape[1], generator=generator).argsort(dim=2)
        targets = torch.gather(rest.expand(self.num_preds, -1, -1), 2, picks[:, :, :n_target])
        return FeatureMasks(context=context, targets=targets)


def draw_between(low: int, high: int, generator: Optional[torch.Generator] = None) -> int:
    """low + round((high - low) * u), u uniform in [0, 1): the official size draw."""
    return low + round((high - low) * torch.rand(1, generator=generator).item())


def check_mask_sizes(features: int, min_context: int, max_context: int, min_target: int, max_target: int) -> None:
    """Refuse shares that cannot draw a context and a target, naming every problem at once with
    the `--set` flags that fit this table (a small table met one refusal after another, and one
    fix suggested a minimum above the maximum)."""
    if features < 2:
        raise ConfigError(f"T-JEPA predicts some of a row's features from the others, and this table has {features} "
                          "feature(s); pretrain on a table of at least 2 (--target and --ignore columns are not "
                          "features)")
    problems = [problem for failed, problem in (
        (min_context < 1, "the context needs at least one feature"),
        (min_target < 1, "each target needs at least one feature"),
        (min_context > max_context, "the smallest context is above the largest"),
        (min_target > max_target, "the smallest target is above the largest"),
        (min_context + min_target > features, f"the smallest context and target ({min_context} + {min_target}) do "
                                              f"not fit in {features}"),
    ) if failed]
    if not problems:
        return
    sizes = dict(zip(("min_context", "max_context", "min_target", "max_target"),
                     (min_context, max_context, min_target, max_target)))
    fitting = fitting_sizes(features, **sizes)
    flags = " ".join(f"--set {key}_share={share_of(fitting[key], features)}" for key in sizes
                     if fitting[key] != sizes[key])
    raise ConfigError(f"the mask shares give a context of {min_context}-{max_context} and targets of "
                      f"{min_target}-{max_target} of the table's {features} features: {'; '.join(problems)}; for "
                      f"{features} features, e.g. {flags}")


def fitting_sizes(features: int, min_context: int, max_context: int, min_target: int,
                  max_target: int) -> dict[str, int]:
    """The nearest sizes that draw (at least 2 features): minimums raised to one, the larger
    minimum lowered until both fit, and each maximum at least its minimum."""
    min_context, min_target = max(min_context, 1), max(min_target, 1)
    while min_context + min_target > features:
        if min_context >= min_target:
            min_context -= 1
        else:
            min_target -= 1
    return {"min_context": min_context, "max_context": max(max_context, min_context),
            "min_target": min_target, "max_target": max(max_target, min_target)}


def share_of(size: int, features: int) -> str:
    """The shortest share that `round(features * share)` turns back into `size`."""
    for digits in range(3, 17):
        share = f"{size / features:.{digits}g}"
        if round(features * float(share)) == size:
            return share
    return repr(size / features)  # all 17 digits: the share itself
