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
        if not 1 <= self.min_context <= self.max_context:
            raise ConfigError(f"context shares [{self.min_context_share}, {self.max_context_share}] of "
                              f"{self.num_features} features give [{self.min_context}, {self.max_context}] features; "
                              f"the context needs at least one: raise the shares, e.g. --set min_context_share="
                              f"{1 / self.num_features:.3g}")
        if not 1 <= self.min_target <= self.max_target:
            raise ConfigError(f"target shares [{self.min_target_share}, {self.max_target_share}] of "
                              f"{self.num_features} features give [{self.min_target}, {self.max_target}] features; "
                              f"each target needs at least one: raise the shares, e.g. --set min_target_share="
                              f"{1 / self.num_features:.3g}")
        if self.min_context + self.min_target > self.num_features:
            raise ConfigError(f"the smallest context ({self.min_context}) and target ({self.min_target}) do not fit "
                              f"in {self.num_features} features; lower the minimum shares")
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
